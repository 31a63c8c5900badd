"""A person the directory provisioned over SCIM signs on for the first time: which account is
theirs. Only accounts SCIM created (never one made by hand and later written to over SCIM),
active, not deleted, not linked yet, and holding no role or administrator right given in
Breakglass, so an identity can never claim an account that is not the directory's own.

By the SCIM `externalId`, when the directory sends the identity's stable id there (Okta's
user id is the `sub`; Entra ID's objectId is the `oid` claim). By the username only when
OIDC_LINK_BY_USERNAME is on: a provider where people may change their own username must not
turn that into someone else's account."""

from django.conf import settings

from accounts.models import User


def directory_account_for(claims: dict) -> User | None:
    unlinked = User.objects.filter(
        sso_subject__isnull=True, is_active=True, scim_resource__provisioned=True,
        scim_resource__deleted_at__isnull=True,
        is_staff=False, is_superuser=False, may_use_local_login=False,
    ).exclude(groups__isnull=False)  # no role given in Breakglass since
    ids = [str(value) for value in (claims.get("sub"), claims.get("oid")) if value]
    account = unlinked.filter(scim_resource__external_id__in=ids).order_by("pk").first()
    if account is not None or not settings.OIDC_LINK_BY_USERNAME:
        return account
    username = str(claims.get("preferred_username") or "")
    if not username:
        return None
    return unlinked.filter(username__iexact=username).order_by("pk").first()
