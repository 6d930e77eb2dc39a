"""A package's download over HTTP, the same from the subject's status page and over the API: a strong ETag (the
package's SHA-256) that If-None-Match is answered with a 304, and one range of bytes, answered with a 206 (a 416
past the end), so that a download cut short is finished rather than paid for again. Only a download that starts at
byte 0 counts; a range that starts further on resumes one counted within a day, up to one package's bytes
(exports.open_for_resumption). The callers keep their own checks and their own way of saying no."""

import re
from collections.abc import Callable
from http import HTTPStatus

from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.http import parse_etags, quote_etag
from django.utils.translation import gettext as _

from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import ExportPackage
from requests_app.services import exports

# How a caller answers a refusal, `refused(status, detail, headers=...)`: a problem for the API, a page for the subject.
Refusal = Callable[..., HttpResponse]


def package_download(
    http_request: HttpRequest, export: ExportPackage, *, actor: Actor, by_organisation: bool, refused: Refusal
) -> HttpResponse:
    """Answer a GET of `export`: a 304 while the package named in If-None-Match is not ended; else one range of it
    (206), or all of it (200), counted against the subject's downloads or, `by_organisation`, the organisation's, and
    audited as `actor`'s (exports.count_download), unless the range resumes a download (exports.open_for_resumption).
    `refused` answers a range past the end (416) and a package that may not be downloaded (410); a 304 or a 416 counts
    nothing."""
    # The package's digest names its contents: strong, and the same for every download of it.
    etag = quote_etag(export.sha256)
    not_ended = exports.not_ended(by_organisation=by_organisation).filter(pk=export.pk)
    if etag_matches(http_request.headers.get("If-None-Match", ""), etag) and not_ended.exists():
        return HttpResponseNotModified(headers={"ETag": etag})
    wanted = None
    # If-Range names the package the client holds part of: another one (or a date) gets the whole package.
    if http_request.headers.get("If-Range", etag).strip() == etag:
        try:
            wanted = byte_range(http_request.headers.get("Range", ""), export.size)
        except RangeNotSatisfiable:
            if not_ended.exists():
                detail = _("The range is outside the package, which has %(size)s bytes.") % {"size": export.size}
                return refused(
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, detail, headers={"Content-Range": f"bytes */{export.size}"}
                )
            # Ended: the download's own refusal (410) says what ended it.
    export_filter, request = {"public_id": export.public_id}, export.request
    try:
        resumed = None
        if wanted is not None and wanted[0] > 0:
            resumed = exports.open_for_resumption(
                export_filter, request=request, actor=actor, first_byte=wanted[0], last_byte=wanted[1],
                by_organisation=by_organisation,
            )
        export, package_file = resumed or exports.count_download(
            export_filter, request=request, actor=actor, by_organisation=by_organisation
        )
    except RequestError as error:
        return refused(HTTPStatus.GONE, str(error))
    filename = f"{request.reference}-{export.kind}.zip"
    if wanted is None:
        response = FileResponse(package_file, as_attachment=True, filename=filename, content_type="application/zip")
    else:
        first, last = wanted
        response = FileResponse(
            FileSlice(package_file, first, last - first + 1),
            status=HTTPStatus.PARTIAL_CONTENT, as_attachment=True, filename=filename, content_type="application/zip",
        )
        response["Content-Range"] = f"bytes {first}-{last}/{export.size}"
        response["Content-Length"] = last - first + 1
    response["ETag"] = etag
    response["Accept-Ranges"] = "bytes"
    return response


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match field names `etag` (or is "*"), compared weakly as RFC 9110 has it for this field."""
    tags = parse_etags(if_none_match)
    return "*" in tags or etag in [tag.removeprefix("W/") for tag in tags]


class RangeNotSatisfiable(Exception):
    """A Range that starts past the end of the package: a 416."""


# One range of bytes, "bytes=first-last", "bytes=first-" or "bytes=-suffix_length" (RFC 9110, 14.1.2).
BYTE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The first and last byte, inclusive, of the one range a Range field asks of `size` bytes; None to send them
    all: no Range, several ranges (answered whole, rather than as multipart/byteranges: a resuming client asks for
    one), or a range that cannot be read, which RFC 9110 lets a server ignore. RangeNotSatisfiable for a range
    that starts past the end."""
    matched = BYTE_RANGE.match(header.strip())
    if matched is None or matched.groups() == ("", ""):
        return None
    first, last = matched.groups()
    if not first:  # the last `last` bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(size - int(last), 0), size - 1
    if last and int(last) < int(first):
        return None
    if int(first) >= size:
        raise RangeNotSatisfiable
    return int(first), min(int(last), size - 1) if last else size - 1


class FileSlice:
    """`length` bytes of a file from byte `start`, read a block at a time as FileResponse streams a file: a range of
    a package is never read into memory whole. Without tell() or seek(), so that FileResponse does not count the
    length to the file's end: package_download sets it."""

    def __init__(self, file, start: int, length: int):
        file.seek(start)
        self.file, self.left = file, length

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.file.read(size) if size else b""
        self.left -= len(data)
        return data

    def close(self):
        self.file.close()
