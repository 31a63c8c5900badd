from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from recovery import crypto

# Every field holding encrypt_field() ciphertext. A field missing here keeps the old key's
# ciphertext, unreadable once that key is dropped: tests/recovery/test_reencrypt_fields.py
# fails when a model has a field named *_encrypted that is not listed.
ENCRYPTED_FIELDS = {
    "accounts.TOTPDevice": ("encrypted_key",),
    "recovery.EmergencyCredential": ("username_encrypted", "secret_encrypted",
                                     "notes_encrypted"),
    "recovery.RecoveryPolicy": ("signing_seed",),
    "recovery.RecoveryBundle": ("content",),
    "audit.WebhookEndpoint": ("secret_encrypted", "previous_secret_encrypted"),
    "breakglass.Connector": ("server_url_encrypted", "bind_dn_encrypted",
                             "bind_password_encrypted"),
    "backups.Website": ("database_url_encrypted", "ssh_private_key_encrypted",
                        "ssh_passphrase_encrypted"),
    "paging.Subscription": ("secret_encrypted",),
    "siem.SiemStream": ("bearer_token_encrypted",),
}


class Command(BaseCommand):
    help = ("Re-encrypt every encrypted field with the first FIELD_ENCRYPTION_KEY. Rotate a key "
            "by putting the new one first, running this, then removing the old one.")

    def handle(self, *args, **options):
        changed = 0
        with transaction.atomic():
            for label, fields in ENCRYPTED_FIELDS.items():
                model = apps.get_model(label)
                # The base manager: a default manager that hides rows must not skip them.
                for row in model._base_manager.select_for_update().only("pk", *fields):
                    updates = {field: crypto.reencrypt_field(getattr(row, field))
                               for field in fields
                               if getattr(row, field) and crypto.needs_reencryption(
                                   getattr(row, field))}
                    if updates:
                        # update(): ciphertext is not configuration, so no history row.
                        model._base_manager.filter(pk=row.pk).update(**updates)
                        changed += 1
        self.stdout.write(f"{changed} row(s) re-encrypted with the current key.")
