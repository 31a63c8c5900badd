from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from oauth2_provider.models import Application

# username → (password, groups): "amr:mfa" makes the provider assert a second factor.
PEOPLE = {
    "sso-alice": ("alice-at-the-idp", ["breakglass-responders"]),
    "sso-mfa": ("mfa-at-the-idp", ["breakglass-responders", "amr:mfa"]),
    "sso-stranger": ("stranger-at-the-idp", []),
}


class Command(BaseCommand):
    help = "The relying party's registration and the provider's people."

    def add_arguments(self, parser):
        parser.add_argument("--client-id", required=True)
        parser.add_argument("--client-secret", required=True)
        parser.add_argument("--redirect-uri", action="append", required=True)

    def handle(self, *args, client_id, client_secret, redirect_uri, **options):
        Application.objects.update_or_create(client_id=client_id, defaults={
            "name": "Breakglass", "client_secret": client_secret,
            "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "algorithm": Application.RS256_ALGORITHM, "redirect_uris": " ".join(redirect_uri),
            "skip_authorization": True})
        for username, (password, groups) in PEOPLE.items():
            user, _ = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@idp.example.org"})
            user.set_password(password)
            user.save()
            user.groups.set([Group.objects.get_or_create(name=name)[0] for name in groups])
