"""Invite staff accounts' owners to choose a password and set up an authenticator.

This is how the first DPO, made with `createsuperuser`, gets an authenticator:
sign-in never sets one up (see services.staff_setup). It blanks the account's
password and authenticator and emails the one-time link; --print-link also
prints it, for when email is not working yet.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from requests_app import roles
from requests_app.audit import Actor
from requests_app.emails import absolute_url
from requests_app.services import staff_setup


class Command(BaseCommand):
    help = "Email staff accounts' owners a one-time link to choose a password and set up an authenticator."

    def add_arguments(self, parser):
        parser.add_argument("usernames", nargs="+", metavar="username")
        parser.add_argument("--print-link", action="store_true", help="also print each link here")
        parser.add_argument(
            "--language",
            choices=[code for code, _name in settings.LANGUAGES],
            default=settings.LANGUAGE_CODE,
            help="the invitation email's language (default: %(default)s)",
        )

    def handle(self, *args, usernames, print_link, language, **options):
        accounts = []
        for username in usernames:
            user = get_user_model().objects.filter(username=username).first()
            if user is None or roles.role_of(user) is None:
                raise CommandError(f"{username} is not an active staff account with a role (DPO, Handler or Auditor).")
            if not user.email and not print_link:
                raise CommandError(f"{username} has no email address: give it one, or use --print-link.")
            if staff_setup.email_shared(user.email, account=user):
                # The link is emailed to the address: the other account's owner would receive it too.
                raise CommandError(f"{username}: another staff account uses {user.email}; give each account its own address first.")
            accounts.append(user)
        hours = settings.PASSWORD_RESET_TIMEOUT // 3600
        for user in accounts:
            staff_setup.invite(user=user, actor=Actor.system(), language=language)
            self.stdout.write(f"Invited {user.username}: the link works once, for {hours} hours (STAFF_INVITATION_HOURS).")
            if print_link:
                self.stdout.write(absolute_url(staff_setup.setup_path(user)))
