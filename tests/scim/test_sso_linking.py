"""The directory provisions people over SCIM before they ever sign on: their first single
sign-on finds that account (linked once, audited), never an account made by hand."""

import pytest

from accounts.models import User
from accounts.sso import SsoBackend
from audit.catalogue import EventKind
from audit.models import AuditEvent
from tests.conftest import make_user
from tests.scim.conftest import new_user

pytestmark = pytest.mark.django_db


def first_sign_on(**claims) -> User | None:
    backend = SsoBackend()
    backend.request = None
    return backend.filter_users_by_claims(claims).first()


def provisioned(scim, username: str, **attributes) -> User:
    response = scim("POST", "/Users", new_user(username, **attributes))
    assert response.status_code == 201, response.content
    return User.objects.get(username=username)


def test_the_first_sign_on_links_the_account_with_the_same_external_id(scim):
    carol = provisioned(scim, "carol@example.org", externalId="00u1abcd")

    assert first_sign_on(sub="00u1abcd", preferred_username="carol@example.org") == carol
    carol.refresh_from_db()
    assert carol.sso_subject == "00u1abcd"
    linked = AuditEvent.objects.get(kind=EventKind.SSO_ACCOUNT_LINKED)
    assert (linked.target_id, linked.data) == (str(carol.pk), {"sub": "00u1abcd"})
    # Found by `sub` from now on; linked once.
    assert first_sign_on(sub="00u1abcd") == carol
    assert AuditEvent.objects.filter(kind=EventKind.SSO_ACCOUNT_LINKED).count() == 1


def test_entra_ids_object_id_claim_links_too(scim):
    dave = provisioned(scim, "dave@example.org", externalId="7d3e9b1c-oid")
    assert first_sign_on(sub="pairwise-sub-for-this-app", oid="7d3e9b1c-oid") == dave


def test_the_username_links_only_where_the_deployment_says_so(scim, settings):
    erin = provisioned(scim, "erin@example.org")
    assert first_sign_on(sub="s-erin", preferred_username="ERIN@example.org") is None
    settings.OIDC_LINK_BY_USERNAME = True
    assert first_sign_on(sub="s-erin", preferred_username="ERIN@example.org") == erin


def test_an_account_made_by_hand_is_never_claimed(scim, settings):
    settings.OIDC_LINK_BY_USERNAME = True
    make_user("admin", is_staff=True)
    assert first_sign_on(sub="s-admin", preferred_username="admin") is None
    assert User.objects.get(username="admin").sso_subject is None


def test_a_deactivated_or_already_linked_account_is_not_claimed(scim, settings):
    settings.OIDC_LINK_BY_USERNAME = True
    frank = provisioned(scim, "frank", externalId="x-frank")
    assert first_sign_on(sub="x-frank") == frank
    # Another identity with the same username cannot take it over.
    assert first_sign_on(sub="someone-else", preferred_username="frank") is None
    gina = provisioned(scim, "gina", externalId="x-gina", active=False)
    assert first_sign_on(sub="x-gina") is None
    assert User.objects.get(pk=gina.pk).sso_subject is None


def test_an_account_made_by_hand_is_not_made_claimable_by_writing_to_it(scim):
    """A directory token sets an externalId on an account made in Breakglass: that account
    never becomes one a first sign-on may claim."""
    handmade = make_user("handmade")
    response = scim("PATCH", f"/Users/{handmade.pk}",
                    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "replace", "path": "externalId",
                                     "value": "attacker-sub"}]})
    assert response.status_code in {200, 204}, response.content
    assert first_sign_on(sub="attacker-sub") is None
    assert User.objects.get(pk=handmade.pk).sso_subject is None


def test_an_account_given_a_role_in_breakglass_is_not_claimed(scim):
    from django.contrib.auth.models import Group as AuthGroup

    from accounts.models import SECURITY_REVIEWERS_GROUP

    rita = provisioned(scim, "rita", externalId="x-rita")
    rita.groups.add(AuthGroup.objects.get_or_create(name=SECURITY_REVIEWERS_GROUP)[0])
    assert first_sign_on(sub="x-rita") is None
