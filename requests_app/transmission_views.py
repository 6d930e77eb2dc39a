"""The page the organisation the subject asked us to send their data to opens from our email (GDPR Art. 20(2)).

Its own module: the public views' module is the subject's, whose status page link this page never reveals."""

from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from requests_app.lifecycle import RequestError
from requests_app.services import transmission as transmission_service


@require_http_methods(["GET", "POST"])
def transmission_page(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows what the link offers and a button; only the POST it sends downloads, and counts. A mail scanner or a
    link preview opens the link with a GET, which must not use up the organisation's downloads (nor a HEAD: 405)."""
    try:
        if request.method == "POST":
            export, package_file = transmission_service.transmission_download(token)
            return FileResponse(
                package_file, as_attachment=True, filename=f"{export.request.reference}-portability.zip",
                content_type="application/zip",
            )
        export = transmission_service.transmitted_package(token)
    except RequestError as error:
        return render(request, "requests_app/transmission_failed.html", {"error": str(error)}, status=410)
    return render(request, "requests_app/transmission.html", {"export": export})
