from django.core.management.base import BaseCommand, CommandError

from requests_app.audit import check_chain
from requests_app.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Check the audit trail's hash chain, record the result, and name the first broken event. With --expect, "
        "also check an event's hash against one recorded outside the database (the daily digest gives it)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--expect", action="append", default=[], metavar="SEQUENCE:HASH",
            help="an event's number and hash as a digest gave them; may be repeated",
        )

    def handle(self, *args, expect, **options):
        expected = [self._parse(item) for item in expect]
        check = check_chain()
        if not check.intact:
            raise CommandError(
                f"Audit chain broken at event #{check.broken_at_sequence}: {check.reason}. "
                + ("1 event before it is intact." if check.events_checked == 1 else f"{check.events_checked} events before it are intact.")
            )
        # A chain consistent in itself may still have been rewritten whole, hashes and all, by someone who can
        # write to the database: a hash kept elsewhere since shows it.
        for sequence, recorded in expected:
            found = AuditEvent.objects.filter(sequence=sequence).values_list("hash", flat=True).first()
            if found != recorded:
                raise CommandError(
                    f"Audit event #{sequence} " + ("is missing" if found is None else f"has the hash {found}")
                    + f", not {recorded} as recorded: the trail was rewritten since."
                )
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {check.events_checked} event{'' if check.events_checked == 1 else 's'}."))
        for sequence, _recorded in expected:
            self.stdout.write(self.style.SUCCESS(f"Event #{sequence} has the hash recorded."))

    @staticmethod
    def _parse(item: str) -> tuple[int, str]:
        sequence, _, recorded = item.partition(":")
        if not sequence.isdigit() or len(recorded) != 64:
            raise CommandError(f"--expect takes SEQUENCE:HASH (a number, a colon and 64 hex digits), not {item!r}")
        return int(sequence), recorded.lower()
