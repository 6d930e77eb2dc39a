from django.core.management.base import BaseCommand, CommandError

from requests_app.audit import verify_chain


class Command(BaseCommand):
    help = "Check the audit trail's hash chain and name the first broken event."

    def handle(self, *args, **options):
        checked, broken = verify_chain()
        if broken is not None:
            where = f"event #{broken.sequence}" + (f" (id {broken.event_id})" if broken.event_id else "")
            raise CommandError(f"Audit chain broken at {where}: {broken.reason}. {checked} events before it are intact.")
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {checked} events."))
