from django.urls import path

from requests_app import converters, transmission_views, views  # noqa: F401  (converters registers <reference:...>)

urlpatterns = [
    path("", views.submit_request, name="submit"),
    path("submitted/", views.submitted, name="submitted"),
    path("lost-link/", views.resend_link, name="resend_link"),
    path("verify/<str:token>/", views.verify_email, name="verify_email"),
    # Under /verify/: a secret address, kept out of search engines (privacy_portal.middleware.not_indexed).
    path("verify/agent/<str:token>/", views.agent_confirmation, name="agent_confirmation"),
    path("status/<reference:reference>/<str:secret>/", views.status, name="status"),
    path("status/<reference:reference>/<str:secret>/withdraw/", views.withdraw, name="withdraw"),
    path("status/<reference:reference>/<str:secret>/reply/", views.reply, name="reply"),
    path("status/<reference:reference>/<str:secret>/download/<str:token>/", views.download, name="download"),
    # The link emailed to the organisation the subject asked us to send their data to (Art. 20(2)).
    path("transfer/<str:token>/", transmission_views.transmission_page, name="transmission"),
]
