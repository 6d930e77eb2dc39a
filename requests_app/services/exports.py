"""Export packages: start, compile (the Celery task's work), review, release,
download and expiry.

Compiling is safe against redelivery and dead workers: a run claims the
export with a conditional update that bumps `attempt`, writes the ZIP to a
local temporary file, stores it under a name unique to that attempt, and
finishes by locking the export and its request again: only while its attempt
is still current, and its data may still go to the subject, is it marked
ready. So a package is either complete and released once, or not there at
all; never two, never a truncated one.

While a run compiles, a timer stamps its heartbeat (requests_app.heartbeat),
however long a source takes to answer: a run whose heartbeat goes stale has
died, and its export is queued again within minutes (requeue_dead_exports).
"""

import contextlib
import datetime
import logging
import os
import secrets
import time
import uuid
from collections import defaultdict
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from requests_app import emails, roles, selectors, sms, tasks
from requests_app.services import agents, webhooks
from requests_app.services.orphans import stored_files
from requests_app.audit import Actor, record_event
from requests_app.exports.package import NO_EXTRACT_ASKED, NO_VERIFIED_IDENTIFIER, PackageWriter
from requests_app.heartbeat import ATTEMPTS_BEFORE_GIVING_UP, Heartbeat, TakenOver, not_queued_since_death, stale_before
from requests_app.lifecycle import VERIFIED_OPEN, RequestError
from requests_app.models import (
    ActorKind,
    ConnectorKind,
    ExportKind,
    ExportPackage,
    ExportStatus,
    IdentityKind,
    NO_DATA_DELIVERED,
    PACKAGE_FOR_RIGHT,
    ManualTask,
    PrivacyRequest,
    SourceSystem,
    Status,
    answers_a_refused_right,
)
from requests_app.sources import SourceError
from requests_app.sources.manual import extract_problem
from requests_app.wording import date_in_words, in_sentence

logger = logging.getLogger(__name__)

DOWNLOAD_SALT = "requests_app.export-download"
ACTIVE = (ExportStatus.QUEUED, ExportStatus.RUNNING, ExportStatus.WAITING_MANUAL)
# A run that died ATTEMPTS_BEFORE_GIVING_UP times (requests_app.heartbeat, the rule source actions share)
# is not started again by itself (requeue_dead_exports, _claim); a retry by staff gives it one more attempt.
NOT_COLLECTED = "the request was withdrawn, refused or forwarded to its controller: no data is collected"
RIGHT_REFUSED = "the completion refused the right this package answers: no data is collected"
# The packages ended (delete_export) once their data may no longer go to the subject: all but a run under way,
# which fails itself when it finishes (_compile), and those ended already.
ENDED_WHEN_UNDELIVERABLE = (
    ExportStatus.READY, ExportStatus.RELEASED, ExportStatus.WAITING_MANUAL, ExportStatus.FAILED, ExportStatus.QUEUED
)


def default_kind(request: PrivacyRequest) -> str | None:
    """The package a request asks for: access first, else portability; None when it asks for no copy."""
    return next((kind for kind in ExportKind.values if kind in request.requested_rights), None)


def export_start(*, request: PrivacyRequest, actor: Actor, kind: str | None = None, encrypt: bool = False) -> ExportPackage:
    """Queue the compilation of a package (of `kind`, by default the one it asks for) for a verified, open request.

    One active export per request at a time. Manual sources get a task for
    their owner; the package is compiled once every one is done.
    """
    if actor.user is not None:
        roles.require_can_work(actor, request)
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status not in VERIFIED_OPEN:
            raise RequestError(_("Only an open, verified request can have its data exported."))
        kind = kind or default_kind(locked) or ExportKind.ACCESS
        if kind not in locked.requested_rights:
            # A package is the answer to a request for a copy; an erasure or an objection asks for none.
            raise RequestError(
                _("This request does not ask for %(kind)s: compile that package only for a request that does.")
                % {"kind": ExportKind(kind).label}
            )
        if not locked.identities.searchable().exists():
            # The sources are searched only by verified identifiers: without one the package would
            # say "no data" about a person the controller may well hold data on.
            raise RequestError(
                _("Verify one of the subject's identifiers first: the source systems are searched only by verified ones.")
            )
        if locked.exports.filter(status__in=ACTIVE).exists():
            raise RequestError(_("An export of this request is already under way."))
        if encrypt and not sms.available():
            raise RequestError(_("An encrypted package needs an SMS gateway for its password, and none is configured (SMS_BACKEND)."))
        if encrypt and selectors.password_phone(locked) is None:
            raise RequestError(_password_phone_missing())
        export = ExportPackage.objects.create(
            request=locked, kind=kind, encrypted=encrypt, created_by=actor.user, max_downloads=settings.EXPORT_MAX_DOWNLOADS
        )
        manual_sources = SourceSystem.objects.filter(active=True, connector=ConnectorKind.MANUAL)
        ManualTask.objects.bulk_create(
            ManualTask(export=export, source=source, assignee=source.owner) for source in manual_sources
        )
        if manual_sources:
            export.status = ExportStatus.WAITING_MANUAL
            export.save(update_fields=["status"])
        record_event(locked, "export_started", actor=actor, data={"export": str(export.public_id), "kind": kind})
        if export.status == ExportStatus.QUEUED:
            _queue_compilation(export.id)
    return export


def manual_task_upload(*, task: ManualTask, actor: Actor, upload) -> ManualTask:
    """The source's owner (or a DPO) uploads the extract; the last one queues the compilation."""
    if not roles.is_owner_or_dpo(actor.user, task.assignee_id):
        raise roles.NotAllowed(_("Only the system owner or the DPO may upload this extract."))
    if not upload.name.lower().endswith((".csv", ".jsonl")):
        raise RequestError(_("Upload the extract as CSV (with a header row) or JSON lines."))
    problem = extract_problem(upload)
    if problem:
        raise RequestError(problem)
    with transaction.atomic():
        export = ExportPackage.objects.select_for_update().select_related("request").get(pk=task.export_id)
        _require_data_may_be_delivered(export)
        if export.status != ExportStatus.WAITING_MANUAL:
            raise RequestError(_("This export is not waiting for extracts."))
        task.upload.save(f"{export.public_id}-{task.source.slug}{os.path.splitext(upload.name)[1].lower()}", upload, save=False)
        task.done_at, task.done_by = timezone.now(), actor.user
        task.save()
        record_event(export.request, "manual_extract_uploaded", actor=actor, data={"source": task.source.slug})
        if not export.manual_tasks.filter(done_at__isnull=True).exists():
            export.status = ExportStatus.QUEUED
            export.save(update_fields=["status"])
            _queue_compilation(export.id)
    return task


def _queue_compilation(export_id: int) -> None:
    """Queue the compile task on commit, and note when (see requeue_lost_exports and requeue_dead_exports)."""
    ExportPackage.objects.filter(pk=export_id).update(queued_at=timezone.now())
    tasks.queue_after_commit(tasks.compile_export, export_id)


def requeue_lost_exports(*, now: datetime.datetime | None = None) -> int:
    """Queue again the compilations and package passwords whose task the broker lost; returns how many.

    Lost means queued longer ago than EXPORT_LOST_AFTER and never taken (a
    run that took its export and died is requeue_dead_exports' to find). A
    task queued twice is harmless: only one run claims the export (_claim),
    the other waits for it.
    """
    now = now or timezone.now()
    quiet = Q(queued_at__lt=now - settings.EXPORT_LOST_AFTER) | Q(queued_at__isnull=True)
    lost = ExportPackage.objects.filter(quiet, status=ExportStatus.QUEUED).exclude(request__status__in=NO_DATA_DELIVERED)
    export_ids = list(lost.values_list("id", flat=True))
    for export_id in export_ids:
        _queue_compilation(export_id)
    # A released package whose password task was lost, or gave up while the SMS gateway was down:
    # try again until it is sent or the package expires (which erases the password).
    unsent = ExportPackage.objects.filter(
        status=ExportStatus.RELEASED, queued_at__lt=now - emails.LOST_TASK_AFTER
    ).exclude(pending_password="").exclude(request__status__in=NO_DATA_DELIVERED)
    password_ids = list(unsent.values_list("id", flat=True))
    for export_id in password_ids:
        _queue_password(export_id)
    if export_ids or password_ids:
        logger.warning("queued again the lost tasks of %d export(s) and %d package password(s)", len(export_ids), len(password_ids))
    return len(export_ids) + len(password_ids)


def requeue_dead_exports(*, now: datetime.datetime | None = None) -> int:
    """Queue again the compilations whose run died (worker killed, out of memory, machine gone); returns how many.

    Dead means compiling with a heartbeat older than EXPORT_HEARTBEAT_STALE_SECONDS: a live run's
    timer stamps it every EXPORT_HEARTBEAT_INTERVAL_SECONDS, so only a run whose process is gone
    goes stale. When the whole worker went, the broker would hand its task out again only after the
    visibility timeout, hours away. Queued once per death: not again while the task queued since the
    run's last beat waits for a worker, unless that task is lost too (EXPORT_LOST_AFTER). The run it
    starts takes the export over (_claim) and removes the dead run's work files. A run that died on
    its ATTEMPTS_BEFORE_GIVING_UP-th attempt, or of a request withdrawn or refused since, is marked
    failed instead. Runs every minute.
    """
    now = now or timezone.now()
    stale = stale_before(settings.EXPORT_HEARTBEAT_STALE_SECONDS, now)
    not_queued_since = not_queued_since_death(now, settings.EXPORT_LOST_AFTER)
    dead = ExportPackage.objects.filter(status=ExportStatus.RUNNING, heartbeat_at__lt=stale)
    # Withdrawn or refused since: nothing to compile. Failed, the hourly clean-up then deletes it.
    for export_id, attempt in dead.filter(request__status__in=NO_DATA_DELIVERED).values_list("id", "attempt"):
        _fail(export_id, attempt, source="", message=NOT_COLLECTED)
    dead = dead.exclude(request__status__in=NO_DATA_DELIVERED)
    # A run that kills its worker each time (out of memory, the hard time limit) would pull the
    # subject's data from every source again every few minutes: staff look, then retry.
    for export_id, attempt in dead.filter(attempt__gte=ATTEMPTS_BEFORE_GIVING_UP).values_list("id", "attempt"):
        message = f"The worker compiling it stopped {attempt} times (out of memory, or killed): check the sources, then retry."
        _fail(export_id, attempt, source="", message=message)
    export_ids = list(
        dead.filter(not_queued_since, attempt__lt=ATTEMPTS_BEFORE_GIVING_UP).values_list("id", flat=True)
    )
    for export_id in export_ids:
        _queue_compilation(export_id)
    if export_ids:
        logger.warning("queued again %d export(s) whose run died", len(export_ids))
    return len(export_ids)


def _claim(export_id: int) -> int | None:
    """Take the export for this run; returns the attempt number, or None if it is not ours to run.

    A dead run is taken over only below ATTEMPTS_BEFORE_GIVING_UP (a redelivered task would otherwise
    start it over after every death): past it, requeue_dead_exports marks the export failed.
    """
    stale = stale_before(settings.EXPORT_HEARTBEAT_STALE_SECONDS)
    dead = Q(status=ExportStatus.RUNNING, heartbeat_at__lt=stale, attempt__lt=ATTEMPTS_BEFORE_GIVING_UP)
    claimed = ExportPackage.objects.filter(Q(status=ExportStatus.QUEUED) | dead, pk=export_id).update(status=ExportStatus.RUNNING, attempt=F("attempt") + 1, heartbeat_at=timezone.now(), error="", failed_source="", progress={})
    if not claimed:
        return None
    return ExportPackage.objects.values_list("attempt", flat=True).get(pk=export_id)


EXPORTS_FOLDER = "exports"


def package_folder(export: ExportPackage) -> str:
    """Where every attempt of the package stores its ZIP."""
    return f"{EXPORTS_FOLDER}/{export.public_id}"


def storage_name(export: ExportPackage, attempt: int) -> str:
    return f"{package_folder(export)}/attempt-{attempt}.zip"


def compile_export(*, export_id: int) -> str | None:
    """Compile a queued export into a stored ZIP. The Celery task and `manage.py compile_export` call this.

    Returns the storage name, or None when another run took the export over or
    it was not queued; raises ExportBusy while another run holds it. A failing
    source marks the export failed, naming the source, and so does a storage that
    will not take the package, saying so; nothing partial is kept.
    """
    attempt = _claim(export_id)
    if attempt is None:
        still_running = ExportPackage.objects.filter(pk=export_id, status=ExportStatus.RUNNING).exists()
        if still_running:
            raise ExportBusy(export_id)
        return None
    # The claim holds while the heartbeat is fresh: the timer keeps it so for as long as this
    # process lives, through a source that is slow to answer and the upload of the package.
    ours = ExportPackage.objects.filter(pk=export_id, status=ExportStatus.RUNNING, attempt=attempt)
    with Heartbeat(ours, every=settings.EXPORT_HEARTBEAT_INTERVAL_SECONDS, name=f"export-{export_id}-heartbeat") as heartbeat:
        return _compile(export_id, attempt, heartbeat)


def _compile(export_id: int, attempt: int, heartbeat: Heartbeat) -> str | None:
    """compile_export's work, once this run holds the export as `attempt`."""
    export = ExportPackage.objects.select_related("request").get(pk=export_id)
    refusal = _collection_refusal(export)
    if refusal:
        # Withdrawn, refused, or its right refused by a completion (which does not wait for the package)
        # while queued: nothing about the subject is collected.
        _fail(export_id, attempt, source="", message=refusal)
        return None
    sources = list(selectors.export_sources())
    manual_uploads = {task.source_id: task.upload for task in export.manual_tasks.filter(done_at__isnull=False)}
    password = secrets.token_urlsafe(12) if export.encrypted else None
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)
    # A run killed mid-way leaves its work files behind: they hold personal
    # data, so the next attempt removes them before it starts, and so does any
    # run on this machine once no run can still be writing them.
    remove_work_files(export)
    remove_stale_work_files()
    path = os.path.join(settings.EXPORT_WORK_DIR, f"{work_file_prefix(export)}{attempt}.zip")
    current_source = ""

    def on_progress(progress: dict) -> None:
        heartbeat.raise_if_lost()  # the run that took over has removed this run's work file: stop here
        ExportPackage.objects.filter(pk=export_id, attempt=attempt).update(
            progress={**progress, "sources_done": done, "sources_total": len(sources)}
        )

    done = 0
    writer = PackageWriter(
        path, request=export.request, kind=export.kind, password=password, on_progress=on_progress, work_prefix=f"{path}.part"
    )
    try:
        for source in sources:
            current_source = source.slug
            if source.connector == ConnectorKind.MANUAL:
                upload = manual_uploads.get(source.id)
                if upload:
                    writer.add_source(source, manual_upload=upload)
                else:
                    # Made active after this export started: nobody was asked for its extract.
                    writer.skipped.append(
                        {"source": source.slug, "name": source.texts_in(export.request.language)["name"], "reason": NO_EXTRACT_ASKED}
                    )
            else:
                writer.add_source(source)
            done += 1
            on_progress({"rows": writer.rows_total})
        manifest = writer.finish(sources)
    except SourceError as error:
        writer.abort()
        os.unlink(path)
        _fail(export_id, attempt, source=current_source, message=str(error))
        return None
    except TakenOver:
        writer.abort()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        logger.warning("export %s: attempt %s stopped, another run took the export over", export_id, attempt)
        return None
    except Exception as error:
        # A bug or a time limit, not the source's fault: fail visibly rather
        # than leave the export "compiling" for ever, and let the task log it.
        writer.abort()
        os.unlink(path)
        _fail(export_id, attempt, source=current_source, message=f"{current_source}: unexpected {type(error).__name__}")
        raise

    name = storage_name(export, attempt)
    try:
        with open(path, "rb") as stored:
            digest = _sha256_file(stored)
            stored.seek(0)
            saved_name = default_storage.save(name, File(stored))
        size = os.path.getsize(path)
    except Exception as error:
        # The package storage failed (its disk full, the object storage down or refusing). Left running, the export
        # would be read as a dead run, collected from every source twice more and failed as a dying worker; failed now,
        # it says why. Not retried here: the S3 client retries a passing error itself, and a full disk is not freed in
        # seconds. _fail deletes what the storage kept of it; staff retry once it is mended.
        logger.exception("export %s: the package could not be stored", export.public_id)
        _fail(export_id, attempt, source="", message=_storage_failure(error))
        return None
    finally:
        # The whole package, in plain: it never stays on the worker's disk.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    with transaction.atomic():
        # The export and its request locked, in the order export_release locks them, and read afresh: a
        # completion that refused this package's right, or a withdrawal, rejection or forwarding, while this run
        # collected, has committed by now, or waits for this transaction (it locks the request first, then ends
        # the packages it may, end_packages_of_refused_rights or end_packages_of_closed_request, all but this
        # running one): either way this run finds it, and fails.
        current = (
            ExportPackage.objects.select_for_update().select_related("request")
            .filter(pk=export_id, attempt=attempt, status=ExportStatus.RUNNING).first()
        )
        if current is None:
            # A newer attempt took over while this one ran: it alone may finish.
            transaction.on_commit(lambda: default_storage.delete(saved_name))
            return None
        refusal = _collection_refusal(current)
        if refusal:
            # The package may never be released: neither it nor the extracts that went into it are kept
            # until the hourly clean-up, which ends the failed export.
            ExportPackage.objects.filter(pk=export_id).update(status=ExportStatus.FAILED, error=refusal, finished_at=timezone.now())
            record_event(current.request, "export_failed", actor=Actor.system(), data={"export": str(export.public_id), "source": ""})
            _delete_package_files(current)
            _delete_manual_extracts(current)
            logger.warning("export %s compiled, then failed: %s", export.public_id, refusal)
            return None
        ExportPackage.objects.filter(pk=export_id).update(
            status=ExportStatus.READY,
            storage_name=saved_name,
            size=size,
            sha256=digest,
            manifest=manifest,
            finished_at=timezone.now(),
            progress={"rows": manifest["rows"], "sources_done": len(sources), "sources_total": len(sources)},
        )
        if password:
            ExportPackage.objects.filter(pk=export_id).update(pending_password=password)
        record_event(
            export.request,
            "export_compiled",
            actor=Actor.system(),
            data={"export": str(export.public_id), "rows": manifest["rows"], "sha256": digest},
        )
        _delete_manual_extracts(export)  # in the package now
    _delete_package_files(export, keep=saved_name)  # those of earlier attempts that died after storing theirs
    logger.info("export %s compiled: %s rows, %s bytes", export.public_id, manifest["rows"], size)
    return saved_name


def _storage_failure(error: Exception) -> str:
    """The error of an export whose package the storage would not take: the kind of failure (the operating system's
    words for it: "No space left on device"), never a file name or the storage's own text."""
    kind = type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        kind = f"{kind}: {error.strerror}"
    return f"The package could not be stored ({kind}): check the package storage (free space, or the object storage's state), then retry."


def _delete_manual_extracts(export: ExportPackage) -> None:
    """Delete the extracts manual sources' owners uploaded, once the commit they depend on is made.
    They are raw, unmasked data (other people's fields too): kept only until compiled, or until
    their export can no longer be compiled."""
    for task in export.manual_tasks.exclude(upload=""):
        transaction.on_commit(lambda name=task.upload.name: default_storage.delete(name))
    export.manual_tasks.exclude(upload="").update(upload="")


def work_file_prefix(export: ExportPackage) -> str:
    return f"{export.public_id}-attempt-"


def remove_work_files(export: ExportPackage) -> None:
    """Delete this export's files in EXPORT_WORK_DIR (a dead run's partial ZIPs)."""
    for path in Path(settings.EXPORT_WORK_DIR).glob(f"{work_file_prefix(export)}*"):
        path.unlink(missing_ok=True)


def remove_stale_work_files() -> int:
    """Delete the work files in EXPORT_WORK_DIR last written longer ago than EXPORT_TASK_TIME_LIMIT; returns how many.

    No run can be writing them: Celery kills a run at that limit. They are the partial ZIPs of a run killed on this
    machine whose export then failed, or was compiled by a run on another machine: a copy of the subject's data
    nothing else would remove. The folder is the long queue's worker's, on its own machine in production: every
    compile on it starts with this, and the hourly remove_stale_export_work_files task, routed to that queue,
    covers a worker left idle.
    """
    cutoff = time.time() - settings.EXPORT_TASK_TIME_LIMIT
    removed = 0
    for path in Path(settings.EXPORT_WORK_DIR).glob("*"):
        # Gone meanwhile: another process of the worker swept it, or its run finished. Never a reason to fail a compile.
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


class ExportBusy(Exception):
    """Another run holds the export and its heartbeat is fresh: try again later."""


def _sha256_file(handle) -> str:
    import hashlib

    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1024 * 1024), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _fail(export_id: int, attempt: int, *, source: str, message: str) -> None:
    """Mark attempt `attempt` of the export failed, and delete what its attempts stored; nothing if that attempt is
    no longer running. requeue_dead_exports reads a run as dead, then fails it: a run only slow to beat may have
    finished meanwhile, and its package, ready, must keep its file."""
    with transaction.atomic():
        updated = ExportPackage.objects.filter(pk=export_id, attempt=attempt, status=ExportStatus.RUNNING).update(
            status=ExportStatus.FAILED, error=message, failed_source=source, finished_at=timezone.now()
        )
        if updated:
            export = ExportPackage.objects.select_related("request").get(pk=export_id)
            record_event(
                export.request,
                "export_failed",
                actor=Actor.system(),
                data={"export": str(export.public_id), "source": source},
            )
            # A retry starts from nothing: what earlier attempts stored is of no use, and holds the subject's data.
            _delete_package_files(export)
    logger.warning("export %s failed in source %s", export_id, source)


def _delete_package_files(export: ExportPackage, *, keep: str = "") -> None:
    """Delete every file stored for the package but `keep`, once the caller's transaction commits (at once
    outside a transaction): the ZIP it records, and any an attempt stored and died before recording (a copy
    of the subject's data no row names). The failure or the end of a package, and the finish of its
    compilation, call this.

    Listed now: a run that stores a file after this can no longer record it, and deletes it itself (_compile).

    A storage that fails, listing or deleting, fails no caller: a withdrawal, a rejection or a run's end commits and
    answers all the same (a 500 after a withdrawal took effect would have the portal send it again, and the hooks
    after these would not run), and the hourly clean-up deletes what is left (_delete_files_of_ended_packages)."""
    try:
        names = set(stored_files(package_folder(export)))
    except OSError:
        logger.warning("could not list the files of export %s: the hourly clean-up deletes them", export.pk)
        names = set()
    if export.storage_name:
        names.add(export.storage_name)
    for name in names - {keep}:
        transaction.on_commit(lambda name=name: default_storage.delete(name), robust=True)


def right_refused(export: ExportPackage) -> bool:
    """Whether the request's completion refused the right this package answers (PACKAGE_FOR_RIGHT): the
    letter told the subject so, and the package is neither compiled nor released."""
    return any(PACKAGE_FOR_RIGHT.get(right) == export.kind for right in export.request.refused_rights)


def _collection_refusal(export: ExportPackage) -> str:
    """Why no data may be collected for the package (its `error` when a run fails for it, untranslated as
    the others are), or "" when it may: its request was withdrawn or refused, or the right it answers."""
    if export.request.status in NO_DATA_DELIVERED:
        return NOT_COLLECTED
    if right_refused(export):
        return RIGHT_REFUSED
    return ""


def end_packages_of_refused_rights(request: PrivacyRequest) -> int:
    """End (delete_export) the packages answering a right that `request`'s completion refuses; returns how many.

    Called by request_complete, in its transaction and under its lock on the request, so that the data the
    letter refuses is not kept until the hourly clean-up. See _end_packages for a run under way and a package
    another transaction holds locked."""
    kinds = [PACKAGE_FOR_RIGHT[right] for right in request.refused_rights if right in PACKAGE_FOR_RIGHT]
    return _end_packages(request, request.exports.filter(kind__in=kinds))


def end_packages_of_closed_request(request: PrivacyRequest) -> int:
    """End (delete_export) every package of `request`, just withdrawn, rejected or forwarded to its controller
    (NO_DATA_DELIVERED); returns how many.

    Called by lifecycle.transition, in its transaction and under its lock on the request: the subject's status page
    says at once that the copy it offered was deleted, and the staff pages show it ended, so the files go when the
    closing commits, not at the hourly clean-up. See _end_packages for a run under way and a package another
    transaction holds locked."""
    return _end_packages(request, request.exports.all())


def _end_packages(request: PrivacyRequest, packages) -> int:
    """End `packages` of `request`, whose data may no longer go to the subject, in the caller's transaction, which
    holds the request locked; their files are deleted once it commits (delete_export). Returns how many.

    A run under way is left to fail itself when it finishes (_compile reads the request again under its lock), and a
    queued one is ended before a worker claims it (_claim takes only a queued one). A package another transaction
    holds locked (a release or an upload, which will find the request closed or the right refused once this commits;
    a download or a password being texted) is skipped, not waited for: a release and an upload lock the export before
    the request, and waiting would deadlock. The hourly clean-up ends it (delete_expired_exports), and it is never
    served meanwhile (ExportPackage.objects.downloadable)."""
    ended = 0
    for export in packages.select_for_update(skip_locked=True).filter(status__in=ENDED_WHEN_UNDELIVERABLE):
        export.request = request
        ended += delete_export(export)
    return ended


def delivery_refusal(export: ExportPackage) -> str:
    """Why the package's data may not go to the subject (so it is neither compiled, retried nor released),
    or "" when it may. The staff page offers the release and the retry only when it may."""
    if export.request.status == Status.FORWARDED:
        return _("This request was forwarded to the controller of the data, which answers it: no data is delivered for it.")
    if export.request.status in NO_DATA_DELIVERED:
        return _("This request was refused or withdrawn: no data is delivered for it.")
    if right_refused(export):
        return _("%(kind)s was refused when the request was completed: this package is not delivered.") % {
            "kind": ExportKind(export.kind).label
        }
    return ""


def searchable_once_verified(export: ExportPackage) -> str:
    """The package's sources left unsearched for want of a verified identifier of their kind although the subject
    gave one of that kind, with what to do, in the active language; "" when there is none. Said on the package's
    page before its release: verified, the identifier would have them searched, and released as it is, the package
    tells the subject those systems were not searched."""
    given = set(export.request.identities.values_list("kind", flat=True))
    unsearched = [
        item for item in export.manifest.get("sources_not_searched", [])
        if item.get("reason") == NO_VERIFIED_IDENTIFIER and item.get("kind") in given
    ]
    if not unsearched:
        return ""
    # Named in the reader's language (the manifest names them in the subject's); one deleted since keeps that name.
    language = translation.get_language()
    names = {
        source.slug: source.texts_in(language)["name"]
        for source in SourceSystem.objects.filter(slug__in={item["source"] for item in unsearched}).prefetch_related("translations")
    }
    sources = [
        f"{names.get(item['source']) or item.get('name') or item['source']} ({in_sentence(IdentityKind(item['kind']).label)})"
        for item in unsearched
    ]
    return _(
        "Not searched for want of a verified identifier, though the subject gave one of that kind: %(sources)s. Verify "
        "it, if it is not yet, and compile the package again before you release it: released as it is, the package "
        "tells the subject these systems were not searched."
    ) % {"sources": ", ".join(sources)}


def _password_phone_missing() -> str:
    return _(
        "An encrypted package's password goes by text message, and only to a phone number verified as the subject's line "
        "(by call-back, against the account records, or as asserted by the customer organisation): this request has none."
    )


def email_unconfirmed_refusal(request: PrivacyRequest) -> str:
    """Why an unencrypted package of a request whose address nobody confirmed is not released, and what to do: the
    release refuses with it, and the package's page says it instead of offering the button. The address is the
    agent's when an agent filed (PrivacyRequest.correspondence_email)."""
    if request.filed_by_agent:
        return _(
            "This package cannot be released yet: the status page link was emailed to the address typed for the agent "
            "who made the request, which its owner never confirmed, and whoever reads that mailbox could download the "
            "package. Send the agent a link to confirm their email address, then release the package once they have; "
            "or compile an encrypted package, whose password goes by text message to a phone number verified as the "
            "subject's line."
        )
    return _(
        "This package cannot be released yet: the status page link was emailed to an address that was typed for the "
        "subject and never confirmed by its owner, and whoever reads that mailbox could download the package. Send "
        "the subject a link to confirm their email address, then release the package once they have; or compile an "
        "encrypted package, whose password goes by text message to a phone number verified as the subject's line."
    )


def _require_data_may_be_delivered(export: ExportPackage) -> None:
    refusal = delivery_refusal(export)
    if refusal:
        raise RequestError(refusal)


def export_retry(*, export: ExportPackage, actor: Actor) -> ExportPackage:
    """Queue a failed export again; it starts from nothing."""
    if actor.user is not None:
        roles.require_can_work(actor, export.request)
    _require_data_may_be_delivered(export)
    with transaction.atomic():
        if not ExportPackage.objects.filter(pk=export.pk, status=ExportStatus.FAILED).update(status=ExportStatus.QUEUED, error=""):
            raise RequestError(_("Only a failed export can be retried."))
        record_event(export.request, "export_retried", actor=actor, data={"export": str(export.public_id)})
        _queue_compilation(export.id)
    export.refresh_from_db()
    return export


def export_release(*, export: ExportPackage, actor: Actor, share_with_organisation: bool = False) -> ExportPackage:
    """After review, let the subject download the package; send the password if it is encrypted.

    Refused, with nothing changed, for an unencrypted package while the address its status page link went to is
    unconfirmed (PrivacyRequest.email_unconfirmed): staff send a link to confirm it (intake.email_confirmation_send).
    With `share_with_organisation`, the organisation that filed the request
    may also fetch it over the API, until the same expiry and as many times as the subject
    (counted apart from the subject's downloads).
    """
    roles.require_can_work(actor, export.request)
    with transaction.atomic():
        # The request first, as export_transmit and agents.agent_authority_withdraw lock it: the checks on it below
        # (the agent's authority, the request answered already) hold until the release commits.
        request = PrivacyRequest.objects.select_for_update().get(pk=export.request_id)
        locked = ExportPackage.objects.select_for_update(of=("self",)).get(pk=export.pk)
        locked.request = request
        _require_data_may_be_delivered(locked)
        if locked.released_at is not None:  # released from another tab, or by a colleague
            raise RequestError(
                _("This package was already released on %(moment)s: nothing changed.")
                % {"moment": date_in_words(locked.released_at, "DATETIME_FORMAT")}
            )
        if locked.status != ExportStatus.READY:
            raise RequestError(_("Only a compiled package that is ready can be released."))
        if refusal := agents.authority_refusal(locked.request):
            raise RequestError(refusal)  # the data would go to someone not shown to act for the subject
        if locked.pending_password and selectors.password_phone(locked.request) is None:
            # The phone was verified again, by a method that does not prove the line, since the export started.
            raise RequestError(_password_phone_missing())
        if not locked.encrypted and locked.request.email_unconfirmed:
            # Its status page link went at once to an address typed by staff or a portal: a typo's owner would download
            # the subject's data. An encrypted package is safe there: its password goes only to the subject's line.
            raise RequestError(email_unconfirmed_refusal(locked.request))
        locked.status = ExportStatus.RELEASED
        locked.released_at, locked.released_by = timezone.now(), actor.user
        locked.expires_at = locked.released_at + settings.EXPORT_LINK_LIFETIME
        locked.shared_with_organisation = share_with_organisation and locked.request.organisation_id is not None
        locked.save(update_fields=["status", "released_at", "released_by", "expires_at", "shared_with_organisation"])
        record_event(locked.request, "export_released", actor=actor, data={"export": str(locked.public_id)})
        if locked.shared_with_organisation:
            # A package the organisation's portal may now list and fetch: its updated_since must find the request.
            PrivacyRequest.objects.filter(pk=locked.request_id).update(updated_at=timezone.now())
        if locked.shared_with_organisation:  # a package the portal cannot fetch is no news to it
            webhooks.emit(locked.request, webhooks.WebhookEvent.EXPORT_READY, {"export": str(locked.public_id)})
        if locked.pending_password:
            # Only once the release is committed: never a password for a release that did not happen.
            # The task retries while the gateway fails, and erases the password once it is sent.
            _queue_password(locked.id)
        if locked.request.correspondence_email:
            emails.owe(locked.request, "export_ready", str(locked.public_id))
            tasks.queue_after_commit(tasks.send_export_ready_email, locked.id)
    return locked


def _queue_password(export_id: int) -> None:
    """Queue the task that texts the password on commit, and note when (see requeue_lost_exports)."""
    ExportPackage.objects.filter(pk=export_id).update(queued_at=timezone.now())
    tasks.queue_after_commit(tasks.send_package_password, export_id)


def send_package_password(*, export_id: int) -> bool:
    """Text the password of a released encrypted package to the subject's line (selectors.password_phone), then erase it.

    Returns whether it was sent now. The row stays locked while the text goes, so a second task
    waits and then finds nothing to send. A gateway error leaves the password stored, and the
    task retries; a package that expires first has its password erased with it.
    """
    # Tried now (see requeue_lost_exports), even if the gateway then fails and the rest rolls back.
    ExportPackage.objects.filter(pk=export_id).update(queued_at=timezone.now())
    with transaction.atomic():
        export = (
            ExportPackage.objects.select_for_update(of=("self",)).select_related("request")
            .filter(pk=export_id, status=ExportStatus.RELEASED).exclude(pending_password="")
            .exclude(request__status__in=NO_DATA_DELIVERED).first()
        )
        if export is None:
            return False
        request = export.request
        phone = selectors.password_phone(request)
        if phone is None:
            logger.warning("export %s: no phone number verified as the subject's line to text the password to", export.public_id)
            return False
        with translation.override(request.language):
            if request.filed_by_agent:
                # The subject gets the password, the agent the package: the text says whose request it is, so that
                # the subject gives it only to someone they allowed to ask. The password stays last.
                text = _(
                    "Privacy Portal: %(agent)s made request %(reference)s for you and gets your data package. Give them "
                    "its password only if you allowed them to ask: %(password)s"
                ) % {"agent": request.agent_name, "reference": request.reference, "password": export.pending_password}
            else:
                text = _("Privacy Portal: the password for the data package of request %(reference)s is %(password)s") % {
                    "reference": request.reference, "password": export.pending_password,
                }
        sms.send(phone, text)
        ExportPackage.objects.filter(pk=export.pk).update(pending_password="")
        record_event(request, "export_password_sent", actor=Actor.system(), data={"export": str(export.public_id)})
    return True


def download_token(export: ExportPackage) -> str:
    return signing.dumps({"e": str(export.public_id)}, salt=DOWNLOAD_SALT)


def count_download(
    export_filter: dict, *, request: PrivacyRequest, actor: Actor, by_organisation: bool = False, by_recipient: bool = False
) -> tuple[ExportPackage, File]:
    """Count one download if the package is released, not expired and under its limit; audit it. Returns the
    package and its file, to send.

    The subject's downloads and, `by_organisation`, those of the organisation it is shared with, or, `by_recipient`,
    those of the organisation the subject asked us to send it to (services.transmission), count against separate
    limits (see ExportPackage.max_downloads); the last are audited under an action of their own. The count is a conditional
    update, so the limit holds under concurrent downloads.

    The file is opened before the count commits, while the count's row lock keeps the package from being ended: a
    closing or the clean-up that ends it and deletes its file next cannot leave a download counted and nothing to
    send (an open file stays readable). One that cannot be opened (the storage down) counts nothing.
    """
    action = "export_downloaded"
    if by_organisation:
        downloadable, counter = ExportPackage.objects.downloadable_by_organisation(), "organisation_download_count"
    elif by_recipient:
        downloadable, counter = ExportPackage.objects.downloadable_by_recipient(), "recipient_download_count"
        action = "export_downloaded_by_recipient"
    else:
        downloadable, counter = ExportPackage.objects.downloadable(), "download_count"
    with transaction.atomic():
        counted = downloadable.filter(**export_filter, request=request).update(**{counter: F(counter) + 1})
        export = ExportPackage.objects.select_related("request").filter(**export_filter, request=request).first()
        if export is None:
            raise RequestError(_("This download link is not valid."))
        if not counted:
            raise RequestError(download_refusal(export, counter=counter))
        record_event(request, action, actor=actor, data={"export": str(export.public_id), "count": getattr(export, counter)})
        try:
            package_file = default_storage.open(export.storage_name, "rb")
        except OSError:
            logger.error("the file of export %s could not be opened for a download", export.pk)
            raise RequestError(_("This package is not available for download.")) from None
    return export, package_file


# How long after a counted download a range that does not start at byte 0 may finish it uncounted: long enough for
# a large package on a slow link, short enough that a cut download is not resumed days later.
DOWNLOAD_RESUMPTION_WINDOW = datetime.timedelta(hours=24)


def not_ended(*, by_organisation: bool = False):
    """The packages the subject, or `by_organisation` the organisation they are shared with, may be sent the rest of
    or told are unchanged (a 304), whatever downloads they have left."""
    return ExportPackage.objects.shared_and_deliverable() if by_organisation else ExportPackage.objects.deliverable()


def open_for_resumption(
    export_filter: dict, *, request: PrivacyRequest, actor: Actor, first_byte: int, last_byte: int,
    by_organisation: bool = False,
) -> tuple[ExportPackage, File] | None:
    """The package and its file, to send the rest of a download the subject (with the status page's link) or,
    `by_organisation`, the organisation counted (a byte range that does not start at byte 0), without counting it
    again: the rest of a package is no new copy. Within
    DOWNLOAD_RESUMPTION_WINDOW of that download, and for no more bytes in all than the package has, so that ranges
    never give more than one more copy per download counted. Each resumption is audited with its bytes, as every
    time personal data leaves. None otherwise, or once the package has ended; its download limit does not matter
    here, as the download cut short may have been the last one allowed. With None the caller counts a download as
    usual (count_download).

    Opened under the package's row lock, as count_download opens it, so that the clean-up that ends a package and
    deletes its file cannot leave nothing to send (and two resumptions cannot both take the last bytes)."""
    counter = "organisation_download_count" if by_organisation else "download_count"
    resumable = not_ended(by_organisation=by_organisation).filter(**{f"{counter}__gt": 0})
    with transaction.atomic():
        export = (
            resumable.select_for_update(of=("self",)).select_related("request").filter(**export_filter, request=request).first()
        )
        if export is None:
            return None
        this_package = request.events.filter(data__export=str(export.public_id))
        # Only the downloads of whoever resumes, as each counts against their own limit: the organisation's, or
        # those made with the status page's link (the subject's, or the agent's who filed the request).
        if by_organisation:
            this_package = this_package.filter(actor_kind=ActorKind.ORGANISATION)
        else:
            this_package = this_package.exclude(actor_kind=ActorKind.ORGANISATION)
        last_counted = this_package.filter(action="export_downloaded").order_by("-sequence").first()
        if last_counted is None or last_counted.created_at < timezone.now() - DOWNLOAD_RESUMPTION_WINDOW:
            return None
        resumed_since = this_package.filter(action="export_download_resumed", sequence__gt=last_counted.sequence)
        wanted = last_byte - first_byte + 1
        if sum(event.data["bytes"] for event in resumed_since.only("data")) + wanted > export.size:
            return None
        record_event(
            request, "export_download_resumed", actor=actor,
            data={"export": str(export.public_id), "first_byte": first_byte, "bytes": wanted},
        )
        try:
            return export, default_storage.open(export.storage_name, "rb")
        except OSError:
            logger.error("the file of export %s could not be opened for a download", export.pk)
            raise RequestError(_("This package is not available for download.")) from None


def download_refusal(export: ExportPackage, *, counter: str = "download_count") -> str:
    """Why `export` cannot be downloaded (by the subject; by the organisation with its `counter`), in the words of
    whoever asks. What ended it first: a package that had expired, or been used up, when its request was withdrawn
    was not taken by the withdrawal. No download is counted once the request is closed without its data
    (NO_DATA_DELIVERED), so a package used up was used up before."""
    request = export.request
    if export.released_at is None:
        return _("This package is not available for download.")
    closed = request.status in NO_DATA_DELIVERED and request.closed_at is not None
    if export.expires_at <= (request.closed_at if closed else timezone.now()):
        return _("This package can no longer be downloaded: it expired on %(moment)s.") % {
            "moment": date_in_words(export.expires_at, "DATETIME_FORMAT")
        }
    if getattr(export, counter) >= export.max_downloads:
        return _("This package can no longer be downloaded: its download limit was reached.")
    if request.status == Status.WITHDRAWN:
        return _("This package can no longer be downloaded: the request was withdrawn on %(moment)s, which ended access to its data.") % {
            "moment": date_in_words(request.closed_at, "DATETIME_FORMAT")
        }
    if request.status == Status.FORWARDED:
        return _("This package can no longer be downloaded: the request was forwarded to the controller of the data, which answers it.")
    if request.status in NO_DATA_DELIVERED:
        return _("This package can no longer be downloaded: the request was refused.")
    if right_refused(export):
        return _("This package can no longer be downloaded: the right it answers was refused when the request was completed.")
    # Ended otherwise (its request's personal data purged, say): nothing more to tell.
    return _("This package is not available for download.")


def export_for_link(*, request: PrivacyRequest, token: str) -> ExportPackage:
    """The package of `request` that the subject's signed download link names, the link valid and not expired; a
    RequestError otherwise. Whether it may still be downloaded is count_download's to say, as it counts."""
    try:
        payload = signing.loads(token, salt=DOWNLOAD_SALT, max_age=settings.EXPORT_LINK_LIFETIME)
    except signing.SignatureExpired:
        # A link lives as long as a package: its package has ended too, and says what ended it first (its
        # expiry, or the withdrawal before it).
        export = (
            ExportPackage.objects.select_related("request")
            .filter(public_id=signing.loads(token, salt=DOWNLOAD_SALT).get("e"), request=request)
            .exclude(pk__in=ExportPackage.objects.downloadable().values("pk"))
            .first()
        )
        raise RequestError(download_refusal(export) if export else _("This download link has expired.")) from None
    except signing.BadSignature:
        raise RequestError(_("This download link is not valid.")) from None
    export = ExportPackage.objects.select_related("request").filter(public_id=payload.get("e"), request=request).first()
    if export is None:
        raise RequestError(_("This download link is not valid."))
    return export


def delete_expired_exports(*, now: datetime.datetime | None = None) -> int:
    """Delete released packages past their expiry or download limit, and stale unreleased ones; and
    end the exports of requests that may no longer receive data, or of a right their completion refused,
    with their manual extracts. Then delete any file still stored for a package failed or ended."""
    now = now or timezone.now()
    unreleased_cutoff = now - settings.EXPORT_UNRELEASED_LIFETIME
    expired = ExportPackage.objects.filter(
        Q(status=ExportStatus.RELEASED, expires_at__lte=now)
        # Used up: by the subject, and by the organisation too if it may download it, and by the organisation the
        # subject asked us to send it to if it was sent there.
        | Q(
            Q(shared_with_organisation=False) | Q(organisation_download_count__gte=F("max_downloads")),
            Q(transmitted_at__isnull=True) | Q(recipient_download_count__gte=F("max_downloads")),
            status=ExportStatus.RELEASED,
            download_count__gte=F("max_downloads"),
        )
        | Q(status=ExportStatus.READY, finished_at__lte=unreleased_cutoff)
        | Q(status__in=ENDED_WHEN_UNDELIVERABLE, request__status__in=NO_DATA_DELIVERED)
        # Left by the completion that refused their right (end_packages_of_refused_rights skips a locked one),
        # or failed by the run that finished after it (_compile).
        | Q(answers_a_refused_right(), status__in=ENDED_WHEN_UNDELIVERABLE)
    ).select_related("request")
    count = 0
    for export in expired:
        with transaction.atomic():
            count += delete_export(export)
    _delete_files_of_ended_packages()
    return count


def _delete_files_of_ended_packages() -> None:
    """Delete the files still stored for packages failed or ended: those of an attempt that died after storing
    its ZIP, in a package ended before delete_export deleted every attempt's file, and those whose deletion
    failed when their package ended (the storage was down): the nightly orphan job leaves those for ever,
    since the package still names them.

    One walk of the exports folder (on object storage, only packages with files left have a folder) and
    one query."""
    # Listed before the statuses are read: if a package is failed or ended when read, no attempt started
    # before the listing can record a file any more (only a retry's new run could, storing after the listing).
    stored_by_package = defaultdict(list)
    for name in stored_files(EXPORTS_FOLDER):
        with contextlib.suppress(ValueError):  # not in a package's folder
            stored_by_package[uuid.UUID(name.split("/")[1])].append(name)
    ended = ExportPackage.objects.filter(
        public_id__in=stored_by_package, status__in=(ExportStatus.FAILED, ExportStatus.EXPIRED)
    ).values_list("public_id", flat=True)
    deleted = 0
    for public_id in ended:
        for name in stored_by_package[public_id]:
            default_storage.delete(name)
            deleted += 1
    if deleted:
        logger.warning("deleted %d stored file(s) of export packages failed or ended", deleted)


def delete_export(export: ExportPackage) -> bool:
    """Delete every file an export's attempts stored, and its manual extracts, and mark it expired; its
    manifest stays, without the identities searched. False when it changed meanwhile. Runs inside the
    caller's transaction."""
    manifest = {key: value for key, value in export.manifest.items() if key != "identities_searched"}
    if not ExportPackage.objects.filter(pk=export.pk, status=export.status).update(
        status=ExportStatus.EXPIRED, pending_password="", manifest=manifest
    ):
        return False
    record_event(export.request, "export_deleted", actor=Actor.system(), data={"export": str(export.public_id)})
    _delete_package_files(export)
    _delete_manual_extracts(export)
    return True
