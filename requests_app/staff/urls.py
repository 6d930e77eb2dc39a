from django.urls import path

from requests_app.staff import views

app_name = "staff"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/code/", views.otp, name="otp"),
    path("logout/", views.logout, name="logout"),
    path("", views.home, name="home"),
    path("requests/", views.queue, name="queue"),
    path("requests/bulk/", views.bulk, name="bulk"),
    path("requests/search/", views.queue_search, name="queue_search"),
    path("requests/<str:reference>/", views.request_detail, name="request"),
    path("requests/<str:reference>/export/", views.export_start, name="export_start"),
    path("requests/<str:reference>/<str:action>/", views.request_action, name="request_action"),
    path("exports/<uuid:public_id>/", views.export_detail, name="export"),
    path("exports/<uuid:public_id>/progress/", views.export_progress, name="export_progress"),
    path("exports/<uuid:public_id>/<str:action>/", views.export_action, name="export_action"),
    path("attachments/<uuid:public_id>/", views.attachment_download, name="attachment"),
    path("rules/", views.rules, name="rules"),
    path("rules/new/", views.rule_edit, name="rule_new"),
    path("rules/<int:pk>/", views.rule_edit, name="rule_edit"),
    path("templates/", views.response_templates, name="templates"),
    path("templates/new/", views.response_template_edit, name="template_new"),
    path("templates/<int:pk>/", views.response_template_edit, name="template_edit"),
    path("teams/", views.teams, name="teams"),
    path("teams/new/", views.team_edit, name="team_new"),
    path("teams/<int:pk>/", views.team_edit, name="team_edit"),
    path("inventory/", views.inventory, name="inventory"),
    path("inventory/sources/new/", views.source_edit, name="source_new"),
    path("inventory/sources/<int:pk>/", views.source_edit, name="source_edit"),
    path("inventory/categories/new/", views.category_edit, name="category_new"),
    path("inventory/categories/<int:pk>/", views.category_edit, name="category_edit"),
    path("inventory/recipients/new/", views.recipient_edit, name="recipient_new"),
    path("inventory/recipients/<int:pk>/", views.recipient_edit, name="recipient_edit"),
    path("webhooks/", views.webhooks, name="webhooks"),
    path("webhooks/<uuid:public_id>/redeliver/", views.webhook_redeliver, name="webhook_redeliver"),
    path("users/", views.users, name="users"),
    path("users/new/", views.user_edit, name="user_new"),
    path("users/<int:pk>/", views.user_edit, name="user_edit"),
]
