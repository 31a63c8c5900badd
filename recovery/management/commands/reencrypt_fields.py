from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import TOTPDevice
from recovery import crypto
from recovery.models import EmergencyCredential, RecoveryPolicy

ENCRYPTED_FIELDS = {
    TOTPDevice: ("encrypted_key",),
    EmergencyCredential: ("username_encrypted", "secret_encrypted", "notes_encrypted"),
    RecoveryPolicy: ("signing_seed",),
}


class Command(BaseCommand):
    help = ("Re-encrypt every encrypted field with the first FIELD_ENCRYPTION_KEY. Rotate a key "
            "by putting the new one first, running this, then removing the old one.")

    def handle(self, *args, **options):
        changed = 0
        with transaction.atomic():
            for model, fields in ENCRYPTED_FIELDS.items():
                for row in model.objects.select_for_update().only("pk", *fields):
                    updates = {field: crypto.reencrypt_field(getattr(row, field))
                               for field in fields
                               if getattr(row, field) and crypto.needs_reencryption(
                                   getattr(row, field))}
                    if updates:
                        # update(): ciphertext is not configuration, so no history row.
                        model.objects.filter(pk=row.pk).update(**updates)
                        changed += 1
        self.stdout.write(f"{changed} row(s) re-encrypted with the current key.")
