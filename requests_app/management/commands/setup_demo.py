"""Create the demo staff accounts and a few demo requests (development only)."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from requests_app import lifecycle
from requests_app.audit import Actor
from requests_app.models import Channel, PrivacyRequest, Relationship, RequestType, SourceSystem, Team
from requests_app.services.intake import RightDetails, request_submit, request_verify_email, verification_token

# (username, role, password): known passwords, so refused in production.
DEMO_STAFF = [
    ("dpo", "DPO", "demo-dpo-password"),
    ("handler", "Handler", "demo-handler-password"),
    ("auditor", "Auditor", "demo-auditor-password"),
]
DEMO_TEAM = "Carrier services"

DEMO_REQUESTS = [
    # (name, email, rights, channel, transitions to apply after intake)
    ("Ana Peeters", "ana.peeters@example.com", [RightDetails(RequestType.ACCESS)], Channel.WEB, []),
    (
        "Luc Janssens",
        "luc.janssens@example.com",
        [RightDetails(RequestType.ERASURE), RightDetails(RequestType.OBJECTION, objection_processing="Marketing calls")],
        Channel.WEB,
        ["verify_email"],
    ),
    (
        "Marie Dubois",
        "marie.dubois@example.com",
        [RightDetails(RequestType.RECTIFICATION, rectification_data="Billing address", rectification_value="Rue Neuve 1, 1000 Brussels")],
        Channel.POST,
        ["start_identity_check", "start_work"],
    ),
]


class Command(BaseCommand):
    help = "Create the demo DPO account and demo requests. Refuses to run in production."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("setup_demo creates a known password and is for development only.")
        user = None
        for username, role, password in DEMO_STAFF:
            account = self.staff_account(username, role, password)
            user = user or account
        if not SourceSystem.objects.exists():
            # Small demo source systems, so exports work out of the box.
            call_command("seed_demo", subjects=20, cdrs_per_subject=500, stdout=self.stdout)
        if PrivacyRequest.objects.exclude(subject_email__startswith="demo").exists():
            self.stdout.write("Demo requests already present.")
            return
        for name, email, rights, channel, steps in DEMO_REQUESTS:
            with transaction.atomic():
                actor = Actor.subject() if channel == Channel.WEB else Actor.staff(user)
                request = request_submit(
                    rights=rights,
                    subject_name=name,
                    subject_email=email,
                    relationship=Relationship.BUSINESS_CONTACT,
                    signature=name,
                    regime="gdpr",
                    language="en",
                    channel=channel,
                    actor=actor,
                )
                for step in steps:
                    if step == "verify_email":
                        # As if the subject clicked the emailed link.
                        request = request_verify_email(token=verification_token(request))
                    else:
                        lifecycle.transition(request, step, actor=Actor.staff(user), note="Demo data")
            self.stdout.write(f"Created demo request {request.reference} ({request.status}).")

    def staff_account(self, username: str, role: str, password: str):
        """A staff account in `role` with a confirmed authenticator; see `manage.py totp_code`."""
        User = get_user_model()
        user, created = User.objects.get_or_create(
            # The DPO also administers the product, so is a superuser in the admin.
            username=username,
            defaults={"email": f"{username}@example.com", "is_staff": True, "is_superuser": role == "DPO"},
        )
        if created:
            user.set_password(password)
            user.save()
            user.groups.add(Group.objects.get_or_create(name=role)[0])
            if role == "Handler":
                Team.objects.get_or_create(name=DEMO_TEAM)[0].members.add(user)
            TOTPDevice.objects.create(user=user, name="demo authenticator", confirmed=True)
            self.stdout.write(f"Created demo {role} account {username}.")
        return user
