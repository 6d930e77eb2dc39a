"""Compile a request's export package now, with the same code as the Celery task."""

from django.core.management.base import BaseCommand, CommandError

from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import ExportKind, ExportStatus, PrivacyRequest
from requests_app.services import exports


class Command(BaseCommand):
    help = "Compile the export package of a request synchronously and print its storage name."

    def add_arguments(self, parser):
        parser.add_argument("reference")
        parser.add_argument("--kind", choices=ExportKind.values, help="default: the kind the request asks for (access first)")

    def handle(self, *args, reference, kind, **options):
        request = PrivacyRequest.objects.filter(reference=reference).first()
        if request is None:
            raise CommandError(f"No request {reference}.")
        export = request.exports.filter(
            status__in=[ExportStatus.QUEUED, ExportStatus.FAILED, ExportStatus.RUNNING]
        ).first()
        try:
            # Started, or retried, by the system and audited as staff's would be; the task this
            # queues finds the work done and stops.
            if export is None:
                export = exports.export_start(request=request, actor=Actor.system(), kind=kind)
            elif export.status == ExportStatus.FAILED:
                export = exports.export_retry(export=export, actor=Actor.system())
        except RequestError as error:
            raise CommandError(str(error)) from error
        try:
            name = exports.compile_export(export_id=export.id)
        except exports.ExportBusy:
            raise CommandError("Another run is compiling this export right now.") from None
        export.refresh_from_db()
        if name is None:
            raise CommandError(f"Export failed in source {export.failed_source or '?'}: {export.error or export.status}")
        self.stdout.write(name)
