from django.core.management.base import BaseCommand, CommandError

from requests_app.audit import check_chain


class Command(BaseCommand):
    help = "Check the audit trail's hash chain, record the result, and name the first broken event."

    def handle(self, *args, **options):
        check = check_chain()
        if not check.intact:
            raise CommandError(
                f"Audit chain broken at event #{check.broken_at_sequence}: {check.reason}. "
                + ("1 event before it is intact." if check.events_checked == 1 else f"{check.events_checked} events before it are intact.")
            )
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {check.events_checked} event{'' if check.events_checked == 1 else 's'}."))
