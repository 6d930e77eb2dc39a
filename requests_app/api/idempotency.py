"""The Idempotency-Key header on POSTs: a retried call gets the first call's answer.

- same key, same body: the stored response (its status, body byte for byte, Location and Content-Language), with
  `Idempotent-Replayed: true`
  (a JSON body is compared by its content: re-indented, or with its keys in another order, it is the same
  body; one that names a key twice, which the parser refuses, by its bytes);
- same key, another body: 422;
- same key while the first call is still running: 409 (its own problem type, with Retry-After).
The claim is a row committed before the work, unique per organisation and key;
the answer is stored in the same transaction as the work. A 5xx answer is
not stored, nor is a call that raised (a bug, or an answer that could not be
stored): its claim is dropped, so the client may retry it at once.
"""

import datetime
import functools
import hashlib
import json

from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.response import Response
from rest_framework.utils import encoders

from requests_app.api import parsers
from requests_app.api.errors import IDEMPOTENCY_KEY_IN_FLIGHT, PROBLEM, problem
from requests_app.models import IdempotencyRecord

HEADER = "Idempotency-Key"
# The column's length; the schema declares it (views.IDEMPOTENCY_HEADER), a longer key is a 400.
MAX_KEY_LENGTH = IdempotencyRecord._meta.get_field("key").max_length
# Longer than any request may take (gunicorn's timeout is far shorter).
ABANDONED_AFTER = datetime.timedelta(minutes=5)
# The wait a retry of a call still in flight is told: a call takes well under a second as a rule, so the retry after
# it most likely gets the first call's answer.
IN_FLIGHT_RETRY_AFTER_SECONDS = 1


# The headers of an answer that a replay repeats: the new resource's address (a 201's Location), and the language
# its body is in (Content-Language: a replay asked in another language still answers the first call's words, and
# says so). The others are the server's of the moment (Date, Content-Length...) or are not stored answers (401, 429).
REPLAYED_HEADERS = ("Location", "Content-Language")


def call_fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two calls the same call: method, path and body, a JSON body by its content."""
    try:
        body = json.dumps(parsers.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        pass  # not JSON the parser takes (the view will say so): compared as it came
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), body])).hexdigest()


def idempotent(view_method):
    @functools.wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get(HEADER, "").strip()
        if not key:
            return view_method(self, request, *args, **kwargs)
        if len(key) > MAX_KEY_LENGTH:
            return problem(status.HTTP_400_BAD_REQUEST, _("%(header)s is longer than 255 characters.") % {"header": HEADER})
        organisation = request.auth.organisation
        fingerprint = call_fingerprint(request.method, request.path, request.body)
        # A claim left unfinished this long belongs to a worker that died: let the retry through.
        IdempotencyRecord.objects.filter(
            organisation=organisation, key=key, status_code__isnull=True, created_at__lt=timezone.now() - ABANDONED_AFTER
        ).delete()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(organisation=organisation, key=key, fingerprint=fingerprint)
        except IntegrityError:
            return _replay(IdempotencyRecord.objects.get(organisation=organisation, key=key), fingerprint)

        try:
            try:
                # The answer is stored in the work's own transaction: if the process dies before
                # the commit, neither exists and the retry (after ABANDONED_AFTER) does the work once.
                with transaction.atomic():
                    response = view_method(self, request, *args, **kwargs)
                    if response.status_code < 500:
                        _store(record, response)
            except Exception as error:
                # The work rolled back. A refusal (409, 400...) is an answer too: store it like any other.
                response = self.handle_exception(error)
                if response.status_code < 500:
                    _store(record, response)
        except Exception:
            # No answer is stored (a bug, or storing the answer failed): a claim left behind would tell
            # the client's retry "still being processed" until ABANDONED_AFTER.
            record.delete()
            raise
        if response.status_code >= 500:
            record.delete()
        return response

    return wrapper


def _store(record: IdempotencyRecord, response: Response) -> None:
    headers = {name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)}
    # LocaleMiddleware sets Content-Language on the way out, after this: the language the answer was written in.
    headers.setdefault("Content-Language", translation.get_language())
    # As text, its keys in the answer's order: the replay renders them the same, byte for byte (jsonb sorts them).
    body = json.dumps(response.data, cls=encoders.JSONEncoder, ensure_ascii=False)
    stored = IdempotencyRecord.objects.filter(pk=record.pk).update(
        status_code=response.status_code, response_body=body, response_headers=headers
    )
    if not stored:
        # The claim was taken for abandoned (this call outlived ABANDONED_AFTER) and a retry did the
        # work: this call's work must roll back, or it would be done twice.
        raise RuntimeError(f"the claim on this {HEADER} was given up while the call ran")


def _replay(earlier: IdempotencyRecord, fingerprint: str) -> Response:
    if earlier.fingerprint != fingerprint:
        return problem(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            _("This %(header)s was used with another request (another body or endpoint).") % {"header": HEADER},
        )
    if earlier.status_code is None:
        return problem(
            status.HTTP_409_CONFLICT,
            _("A request with this %(header)s is still being processed.") % {"header": HEADER},
            problem_type=IDEMPOTENCY_KEY_IN_FLIGHT,
            headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER_SECONDS)},
        )
    return Response(
        json.loads(earlier.response_body) if earlier.response_body is not None else None,
        status=earlier.status_code,
        content_type=PROBLEM if earlier.status_code >= 400 else None,
        headers={**earlier.response_headers, "Idempotent-Replayed": "true"},
    )
