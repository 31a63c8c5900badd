from django.db import models

from accounts.models import DirectoryGroup, User


class ScimResource(models.Model):
    """What the directory sent about one account or directory group beyond the columns SCIM
    maps onto (a nickname, phone numbers, the enterprise extension...), kept so that every
    published attribute reads back as it was written, and when it was last written.

    An account the directory deleted keeps its row (the audit trail points at it) and gets
    `deleted_at` here: SCIM answers 404 for it from then on."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, null=True, blank=True,
                                related_name="scim_resource")
    directory_group = models.OneToOneField(DirectoryGroup, on_delete=models.CASCADE, null=True,
                                           blank=True, related_name="scim_resource")
    # Users have no column of their own for it; directory groups keep theirs in the model.
    external_id = models.CharField(max_length=255, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    modified_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Only an account the directory created may be claimed by a first single sign-on
    # (scim/linking.py); one made in Breakglass and later written to over SCIM may not.
    provisioned = models.BooleanField(default=False)
    # Set when SCIM deprovisioned the account: only then may SCIM reactivate it. An account
    # an abort link or an administrator deactivated stays so until an administrator decides.
    deactivated_by_directory = models.BooleanField(default=False)

    class Meta:
        verbose_name = "SCIM resource"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, directory_group__isnull=True)
                | models.Q(user__isnull=True, directory_group__isnull=False),
                name="scim_resource_user_or_group",
            ),
        ]

    def __str__(self) -> str:
        return f"SCIM data of {self.user or self.directory_group}"
