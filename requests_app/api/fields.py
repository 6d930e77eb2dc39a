"""The one way the API writes a moment, in its answers and in its webhooks' bodies."""

from rest_framework import serializers


class MomentField(serializers.DateTimeField):
    """ISO 8601 in TIME_ZONE with its offset, always with six digits of microseconds:
    "2026-12-01T14:03:27.000000+01:00". DRF's own field writes datetime.isoformat(), which leaves the fraction out
    when it is zero ("2026-12-01T14:03:27+01:00"): the same field had two forms, and a portal parsing one of them
    with a fixed format failed on the other, about one time in a million, or always for a time typed in whole
    minutes (a package's expiry)."""

    def to_representation(self, value):
        if not value:
            return None
        return self.enforce_timezone(value).isoformat(timespec="microseconds")
