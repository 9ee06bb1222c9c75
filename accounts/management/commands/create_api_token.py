from django.core.management.base import BaseCommand, CommandError

from accounts.choices import TokenScope
from accounts.models import User
from accounts.services import api_token_create
from tessera_common.errors import ApplicationError


class Command(BaseCommand):
    help = "Create an API token for a user (a CRM integration) and print its key once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="What the token is for, e.g. 'Salesforce sync'.")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            choices=TokenScope.values,
            required=True,
            help="read, write or route; repeat for several.",
        )

    def handle(self, *args, username, name, scopes, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        try:
            token, key = api_token_create(user=user, name=name, scopes=scopes)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Token '{token.name}' for {user.username} ({', '.join(token.scopes)}).")
        self.stdout.write("Key (shown once, store it now):")
        self.stdout.write(key)
