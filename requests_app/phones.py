"""Phone numbers in one spelling, E.164, read the same way everywhere: on the forms, in the
staff search, on the suppression lists and in corrected values."""

import phonenumbers

# A number typed without its country code is read as one of the controller's country:
# 0470 12 34 56 is +32470123456. A number starting with + keeps its own country.
DEFAULT_REGION = "BE"


def to_e164(text: str) -> str | None:
    """`text` as an E.164 number, or None when it is not a valid phone number."""
    try:
        number = phonenumbers.parse(text.strip(), DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
