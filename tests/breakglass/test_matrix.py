"""The role x URL x method matrix of group break glass: every page, admin page and API operation,
asked by every role, with the methods each URL accepts and ones it must refuse.

TABLE holds every expected answer; each of its cells is one generated test. A cell checks the
status code (and where a redirect leads). A refused cell also checks that no grant, group or
membership changed; a cell where a state-changing URL succeeds checks the change itself.
A URL of the breakglass or api namespaces, or of the Group and Grant
admin, that has no row fails `test_every_url_has_a_row`. The risk admin (the rule table and
incidents) has rows too: staff without its permissions are refused, superusers edit the table
and incidents but never add or delete a rule nor delete an incident.
"""

import json
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import get_resolver, include, path, reverse

from accounts.models import User
from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import AccessRequest, Application, Grant, Group, Scope
from breakglass.services.applications import create_application
from breakglass.services.break_glass import break_glass
from breakglass.services.requests import request_access
from risk.models import Incident, RiskRule
from risk.rules import RULE_FIELDS, SENSITIVITIES, current_table, table_problems
from tests.conftest import PASSWORD, add_authenticator, make_user, sign_in
from tests.test_url_access import walk

pytestmark = pytest.mark.django_db

# Outcomes other than a plain status code: a 302 and where it leads.
LOGIN = "to-login"  # the sign-in page
VERIFY = "to-verify"  # the second-factor step
ADMIN = "to-admin-login"  # the admin's login, which then answers a verified non-staff user 403
DONE = "done"  # onward from an action that took effect
SHOWN = "shown"  # 200, and nothing changed (the page is shown again with its error)

# The cast of the page rows, in column order. "unverified" is the grant holder (also a
# break-glass user) after the password step only: the role that would succeed if verified.
# "staff_viewer" is staff with only the view permissions on groups and grants (an auditor).
USER_ROLES = ("anonymous", "unverified", "outsider", "member", "bg_user", "holder", "owner",
              "other_owner", "reviewer", "staff_viewer", "admin")
# The callers of the API rows, in column order.
TOKEN_ROLES = ("no_token", "malformed", "unknown", "disabled", "no_scope", "scoped")


@dataclass
class World:
    group: Group  # prod-db: owned by olivia, mark a permanent member, bella and hal break glass
    grant: Grant  # hal's active grant to prod-db
    users: dict[str, User]  # by role
    request: AccessRequest  # mark's pending request for an hour of prod-db (requestable)
    incident: Incident | None = None  # INC-9, made by the incident admin rows (world_incident)


def holds_longer_access(world: World, actor: User) -> bool:
    """The actor's grant runs past the one set up (a new grant, or hal's extended)."""
    return Grant.objects.active().filter(user=actor, group=world.group,
                                         expires_at__gt=world.grant.expires_at).exists()


def bg_user_holds_access(world: World, actor: User | None) -> bool:
    return holds_longer_access(world, world.users["bg_user"])


def grant_ended(world: World, actor: User | None) -> bool:
    return Grant.objects.get(pk=world.grant.pk).status == Grant.Status.REVOKED


def incident_opened(world: World, actor: User | None) -> bool:
    return list(Incident.objects.values_list("external_id", "groups__slug")) == [
        ("PD-77", world.group.slug)]


def bg_users_replaced_by_outsider(world: World, actor: User | None) -> bool:
    return list(world.group.break_glass_users.all()) == [world.users["outsider"]]


def requested_by_actor(world: World, actor: User) -> bool:
    return AccessRequest.objects.filter(requester=actor, status="pending").exclude(
        pk=world.request.pk).exists()


def outsider_requested(world: World, actor: User | None) -> bool:
    return AccessRequest.objects.filter(requester=world.users["outsider"],
                                        status="pending").exists()


def settings_changed(world: World, actor: User) -> bool:
    return Group.objects.get(pk=world.group.pk).request_max_minutes == 60


def extension_requested(world: World, actor: User) -> bool:
    return AccessRequest.objects.filter(kind="extension", grant=world.grant,
                                        requester=actor).exists()


def request_became(status: str) -> Callable:
    def check(world: World, actor: User) -> bool:
        return AccessRequest.objects.get(pk=world.request.pk).status == status
    return check


def outsider_added_to_bg_users(world: World, actor: User | None) -> bool:
    """Through the admin's group form, and audited like the owners' page does it."""
    names = set(world.group.break_glass_users.values_list("username", flat=True))
    change = AuditEvent.objects.filter(kind=EventKind.BREAK_GLASS_USERS_CHANGED).get()
    return names == {"bella", "hal", "oscar"} and (
        change.actor_label, change.data) == (actor.username, {"added": ["oscar"], "removed": []})


# The cell of the rule table the risk admin rows change: low × SEV3 ships without SMS alerts,
# and turning them on keeps the table consistent (more sensitive cells already alert by SMS).
RULE_CELL = ("low", "sev3")


def the_rule() -> RiskRule:
    return RiskRule.objects.get(sensitivity=RULE_CELL[0], severity=RULE_CELL[1])


def rule_cell_alerts_by_sms(world: World, actor: User) -> bool:
    """Only that cell changed, audited once with before and after, and the table is whole."""
    change = AuditEvent.objects.filter(kind=EventKind.RISK_RULES_CHANGED).get()
    return the_rule().alert_sms and table_problems(current_table()) == [] and (
        change.actor_label, change.data["changed"], change.data["before"]["alert_sms"],
        change.data["after"]["alert_sms"]) == (actor.username, ["alert_sms"], False, True)


def incident_resolved_and_its_grant_ended(world: World, actor: User) -> bool:
    """Resolving INC-9 ends bella's grant opened under it (not hal's), the incident as cause."""
    incident = Incident.objects.get(pk=world.incident.pk)
    bellas = Grant.objects.get(user=world.users["bg_user"], incident_record=incident)
    revoked = AuditEvent.objects.filter(kind=EventKind.GRANT_REVOKED).get()
    return (incident.status, bellas.status, Grant.objects.get(pk=world.grant.pk).status,
            revoked.data["cause"]["incident"]) == (
        Incident.Status.RESOLVED, Grant.Status.REVOKED, Grant.Status.ACTIVE, "INC-9")


@dataclass(frozen=True)
class Row:
    url: str  # a URL name; its arguments are the world's group and grant
    method: str
    cells: tuple  # one outcome per role of USER_ROLES, or of TOKEN_ROLES for "api:" rows
    send: str = ""  # the body (or query) sent: a key of BODIES
    effect: Callable | None = None  # the change a successful cell must show
    scope: str = ""  # API rows: the scope the operation needs

    @property
    def roles(self) -> tuple[str, ...]:
        return TOKEN_ROLES if self.url.startswith("api:") else USER_ROLES

    @property
    def label(self) -> str:
        return " ".join(part for part in (self.url, self.method, self.send) if part)


L, V, A = LOGIN, VERIFY, ADMIN
# The admin actions that end grants need breakglass.revoke_grant, a security reviewer or an
# administrator: staff who may only view are refused (403, audited) and nothing changes.
VIEWER_REVOKES = 403

TABLE = [
    # Pages. Groups are not owner-scoped (every verified user sees the whole catalog), so a
    # group page answers everyone and a non-owner is refused with 403, not 404. Grants are
    # owner-scoped: whoever may not see a grant gets 404 for its id.
    #    anon  unver outsd membr bgusr holdr owner other revwr viewr admin
    Row("breakglass:catalog", "GET",
        (L,    V,    200,  200,  200,  200,  200,  200,  200,  200,  200)),
    Row("breakglass:catalog", "POST",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    Row("breakglass:group-detail", "GET",
        (L,    V,    200,  200,  200,  200,  200,  200,  200,  200,  200)),
    Row("breakglass:group-detail", "POST",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    Row("breakglass:break-glass", "POST",
        (L,    V,    403,  403,  DONE, DONE, 403,  403,  403,  403,  403),
        send="reason", effect=holds_longer_access),  # the holder's press extends their grant
    Row("breakglass:break-glass", "GET",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    # Only owners manage break-glass users here; administrators do it in the admin (below).
    Row("breakglass:break-glass-users", "POST",
        (L,    V,    403,  403,  403,  403,  DONE, 403,  403,  403,  403),
        send="users", effect=bg_users_replaced_by_outsider),
    Row("breakglass:break-glass-users", "GET",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    Row("breakglass:break-glass-users", "PUT",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405), send="users"),
    Row("breakglass:my-access", "GET",
        (L,    V,    200,  200,  200,  200,  200,  200,  200,  200,  200)),
    Row("breakglass:my-access", "POST",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    # "End access now", and the owners' revoke on the group page. other_owner is the explicit
    # "another owner's id" cell: an owner of another group asking for this group's grant gets
    # 404, like any stranger.
    Row("breakglass:end-grant", "POST",
        (L,    V,    404,  404,  404,  DONE, DONE, 404,  DONE, 404,  DONE), effect=grant_ended),
    # hal's grant's timeline: its holder, the group's owners, reviewers and administrators.
    Row("breakglass:grant-timeline", "GET",
        (L,    V,    404,  404,  404,  200,  200,  404,  200,  404,  200)),
    Row("breakglass:grant-timeline", "POST",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    Row("breakglass:end-grant", "GET",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    Row("breakglass:end-grant", "DELETE",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    # Access requests. Anyone verified may ask; mark already waits (409) and hal already has
    # access (409: ask for an extension). Only owners change the request settings.
    #    anon  unver outsd membr bgusr holdr owner other revwr viewr admin
    Row("breakglass:request-access", "POST",
        (L,    V,    DONE, 409,  DONE, 409,  DONE, DONE, DONE, DONE, DONE),
        send="request", effect=requested_by_actor),
    Row("breakglass:request-access", "GET",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    Row("breakglass:request-settings", "POST",
        (L,    V,    403,  403,  403,  403,  DONE, 403,  403,  403,  403),
        send="settings", effect=settings_changed),
    Row("breakglass:request-settings", "GET",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    # hal's grant: only its holder asks for more time; for anyone else it does not exist.
    Row("breakglass:request-extension", "POST",
        (L,    V,    404,  404,  404,  DONE, 404,  404,  404,  404,  404),
        send="extension", effect=extension_requested),
    Row("breakglass:request-extension", "GET",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    # mark's request: seen by mark, the group's owners, reviewers and administrators (404 for
    # anyone else, another group's owner included); decided only by an owner who is not mark.
    Row("breakglass:request-detail", "GET",
        (L,    V,    404,  200,  404,  404,  200,  404,  200,  404,  200)),
    Row("breakglass:request-detail", "POST",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    Row("breakglass:approve-request", "POST",
        (L,    V,    404,  403,  404,  404,  DONE, 404,  403,  404,  403),
        effect=request_became("approved")),
    Row("breakglass:approve-request", "GET",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    Row("breakglass:deny-request", "POST",
        (L,    V,    404,  403,  404,  404,  DONE, 404,  403,  404,  403),
        send="comment", effect=request_became("denied")),
    Row("breakglass:deny-request", "GET",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),
    Row("breakglass:withdraw-request", "POST",
        (L,    V,    404,  DONE, 404,  404,  403,  404,  403,  404,  403),
        effect=request_became("withdrawn")),
    Row("breakglass:withdraw-request", "GET",
        (L,    V,    405,  405,  405,  405,  405,  405,  405,  405,  405)),

    # The admin (an OTPAdminSite): verified staff only; a verified non-staff user is sent to the
    # admin's login, which refuses them (A). Django's admin answers any method but POST like a
    # GET: the GET rows with an action in the query, and the DELETE row, show that such a
    # request changes nothing (the changelist redirects unknown parameters to ?e=1).
    #    anon  unver outsd membr bgusr holdr owner other revwr viewr admin
    Row("admin:breakglass_group_changelist", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    200,  200)),
    Row("admin:breakglass_group_changelist", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    VIEWER_REVOKES, DONE),
        send="revoke_all_of_selected", effect=grant_ended),
    Row("admin:breakglass_group_changelist", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    302,  302),
        send="revoke_all_of_selected"),
    Row("admin:breakglass_group_add", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  200)),
    Row("admin:breakglass_group_change", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    200,  200)),
    Row("admin:breakglass_group_change", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  DONE),
        send="group form", effect=outsider_added_to_bg_users),
    Row("admin:breakglass_group_change", "DELETE",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    200,  200)),
    # A group with grants is protected: the admin is shown why it cannot be deleted.
    Row("admin:breakglass_group_delete", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  200), send="confirm"),
    Row("admin:breakglass_group_history", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    200,  200)),
    Row("admin:breakglass_group_simple_history", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    200,  200)),
    Row("admin:breakglass_grant_changelist", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    200,  200)),
    Row("admin:breakglass_grant_changelist", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    VIEWER_REVOKES, DONE),
        send="end_selected", effect=grant_ended),
    Row("admin:breakglass_grant_changelist", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    VIEWER_REVOKES, DONE),
        send="revoke_everything", effect=grant_ended),
    Row("admin:breakglass_grant_changelist", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    302,  302),
        send="revoke_everything"),
    # Grants are read-only in the admin, superusers included: no add, edit or delete.
    Row("admin:breakglass_grant_add", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  403)),
    Row("admin:breakglass_grant_change", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    200,  200)),
    Row("admin:breakglass_grant_change", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  403), send="grant form"),
    Row("admin:breakglass_grant_delete", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  403)),
    Row("admin:breakglass_grant_delete", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  403), send="confirm"),
    Row("admin:breakglass_grant_history", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    200,  200)),

    # The risk admin. The staff viewer holds no risk permission: 403 everywhere. The rule
    # table is edited as a whole on its list page or one cell at a time; a table with a
    # contradiction is shown again with the error (200) and nothing changes. Cells are never
    # added or deleted, incidents never deleted, superusers included.
    #    anon  unver outsd membr bgusr holdr owner other revwr viewr admin
    Row("admin:risk_riskrule_changelist", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  200)),
    Row("admin:risk_riskrule_changelist", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  DONE),
        send="rule table", effect=rule_cell_alerts_by_sms),
    Row("admin:risk_riskrule_changelist", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  SHOWN),
        send="contradictory rule table"),
    Row("admin:risk_riskrule_add", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  403)),
    Row("admin:risk_riskrule_add", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  403), send="rule form"),
    Row("admin:risk_riskrule_change", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  200)),
    Row("admin:risk_riskrule_change", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  DONE),
        send="rule form", effect=rule_cell_alerts_by_sms),
    Row("admin:risk_riskrule_change", "DELETE",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  200)),
    Row("admin:risk_riskrule_delete", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  403)),
    Row("admin:risk_riskrule_delete", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  403), send="confirm"),
    Row("admin:risk_riskrule_history", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  200)),
    Row("admin:risk_incident_changelist", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  200)),
    Row("admin:risk_incident_add", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  200)),
    Row("admin:risk_incident_add", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  DONE),
        send="incident form", effect=incident_opened),
    Row("admin:risk_incident_change", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  200)),
    Row("admin:risk_incident_change", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  DONE),
        send="resolve", effect=incident_resolved_and_its_grant_ended),
    Row("admin:risk_incident_delete", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  403)),
    Row("admin:risk_incident_delete", "POST",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  403), send="confirm"),
    Row("admin:risk_incident_history", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  200)),
    Row("admin:risk_incident_simple_history", "GET",
        (L,    V,    A,    A,    A,    A,    A,    A,    A,    403,  200)),

    # The API under /api/v1/. "scoped" holds only the operation's scope, "no_scope" all the
    # others. Ninja answers an unsupported method 405 before it looks at the token.
    #    none  malf  unkn  disab nosc  scoped
    Row("api:check_access", "GET",
        (401,  401,  401,  403,  403,  200), send="access query",
        scope=Scope.ACCESS_READ),
    Row("api:check_access", "POST",
        (405,  405,  405,  405,  405,  405), scope=Scope.ACCESS_READ),
    Row("api:list_grants", "GET",
        (401,  401,  401,  403,  403,  200), scope=Scope.GRANTS_READ),
    Row("api:list_grants", "DELETE",
        (405,  405,  405,  405,  405,  405), scope=Scope.GRANTS_READ),
    Row("api:revoke", "POST",
        (401,  401,  401,  403,  403,  200), send="revoke",
        effect=grant_ended, scope=Scope.GRANTS_WRITE),
    Row("api:revoke", "GET",
        (405,  405,  405,  405,  405,  405), scope=Scope.GRANTS_WRITE),
    Row("api:break_glass", "POST",
        (401,  401,  401,  403,  403,  201), send="api break glass",
        effect=bg_user_holds_access, scope=Scope.BREAK_GLASS_WRITE),
    Row("api:break_glass", "PUT",
        (405,  405,  405,  405,  405,  405), send="api break glass",
        scope=Scope.BREAK_GLASS_WRITE),
    Row("api:report_activity", "POST",
        (401,  401,  401,  403,  403,  201), send="activity", scope=Scope.ACTIVITY_WRITE),
    Row("api:report_activity", "GET",
        (405,  405,  405,  405,  405,  405), scope=Scope.ACTIVITY_WRITE),
    Row("api:incidents", "POST",
        (401,  401,  401,  403,  403,  201), send="incident", effect=incident_opened,
        scope=Scope.INCIDENTS_WRITE),
    Row("api:incidents", "GET",
        (405,  405,  405,  405,  405,  405), scope=Scope.INCIDENTS_WRITE),
    Row("api:audit_events", "GET",
        (401,  401,  401,  403,  403,  200), scope=Scope.AUDIT_READ),
    Row("api:audit_events", "POST",
        (405,  405,  405,  405,  405,  405), scope=Scope.AUDIT_READ),
    Row("api:replace_shifts", "PUT",
        (401,  401,  401,  403,  403,  200), send="shifts", scope=Scope.SCHEDULES_WRITE),
    Row("api:replace_shifts", "GET",
        (405,  405,  405,  405,  405,  405), scope=Scope.SCHEDULES_WRITE),
    # The bundle goes to its policy's own application only ("scoped" is that application
    # here; another application with the scope gets 403 in tests/recovery).
    Row("api:recovery_bundle", "GET",
        (401,  401,  401,  403,  403,  200), send="bundle", scope=Scope.RECOVERY_BUNDLE),
    Row("api:recovery_bundle", "POST",
        (405,  405,  405,  405,  405,  405), scope=Scope.RECOVERY_BUNDLE),
    # Access requests, for the people the body names (the services check their rights).
    Row("api:requests", "GET",
        (401,  401,  401,  403,  403,  200), scope=Scope.REQUESTS_READ),
    Row("api:requests", "POST",
        (401,  401,  401,  403,  403,  201), send="api request", effect=outsider_requested,
        scope=Scope.REQUESTS_WRITE),
    Row("api:requests", "DELETE",
        (405,  405,  405,  405,  405,  405), scope=Scope.REQUESTS_WRITE),
    Row("api:request", "GET",
        (401,  401,  401,  403,  403,  200), scope=Scope.REQUESTS_READ),
    Row("api:request", "POST",
        (405,  405,  405,  405,  405,  405), scope=Scope.REQUESTS_WRITE),
    Row("api:approve_request", "POST",
        (401,  401,  401,  403,  403,  200), send="api approve",
        effect=request_became("approved"), scope=Scope.REQUESTS_WRITE),
    Row("api:approve_request", "GET",
        (405,  405,  405,  405,  405,  405), scope=Scope.REQUESTS_WRITE),
    Row("api:deny_request", "POST",
        (401,  401,  401,  403,  403,  200), send="api deny",
        effect=request_became("denied"), scope=Scope.REQUESTS_WRITE),
    Row("api:deny_request", "GET",
        (405,  405,  405,  405,  405,  405), scope=Scope.REQUESTS_WRITE),
    Row("api:withdraw_request", "POST",
        (401,  401,  401,  403,  403,  200), send="api withdraw",
        effect=request_became("withdrawn"), scope=Scope.REQUESTS_WRITE),
    Row("api:withdraw_request", "GET",
        (405,  405,  405,  405,  405,  405), scope=Scope.REQUESTS_WRITE),
    Row("api:groups", "GET",
        (401,  401,  401,  403,  403,  200), scope=Scope.GROUPS_READ),
    Row("api:groups", "POST",
        (405,  405,  405,  405,  405,  405), scope=Scope.GROUPS_READ),
    Row("api:group", "GET",
        (401,  401,  401,  403,  403,  200), scope=Scope.GROUPS_READ),
    Row("api:group", "POST",
        (405,  405,  405,  405,  405,  405), scope=Scope.GROUPS_READ),
    # Public by design (settings.PUBLIC_URLS): no token is looked at. The schema and the docs
    # are plain Django views that answer POST like GET: read-only, so no harm.
    Row("api:openapi-json", "GET",
        (200,  200,  200,  200,  200,  200)),
    Row("api:openapi-json", "POST",
        (200,  200,  200,  200,  200,  200)),
    Row("api:openapi-view", "GET",
        (200,  200,  200,  200,  200,  200)),
    Row("api:openapi-view", "POST",
        (200,  200,  200,  200,  200,  200)),
    # Ninja's root only names the docs' address, in a 404.
    Row("api:api-root", "GET",
        (404,  404,  404,  404,  404,  404)),
    Row("api:api-root", "POST",
        (404,  404,  404,  404,  404,  404)),
]


def _group_form(world: World) -> dict:
    group, users = world.group, world.users
    return {
        "name": group.name, "slug": group.slug, "description": "",
        "sensitivity": group.sensitivity, "owners": [users["owner"].pk],
        "members": [users["member"].pk], "contains": [], "break_glass_minutes": "",
        "break_glass_users": [users["bg_user"].pk, users["holder"].pk, users["outsider"].pk],
        "requestable": "on", "request_max_minutes": group.request_max_minutes,
        "request_reason_required": "on", "approvals_needed": 1,
        "request_expiry_minutes": group.request_expiry_minutes,
    }


def _action(name: str, *selected: int) -> dict:
    return {"action": name, "index": "0", "_selected_action": list(selected)}


def _shifts(world: World) -> dict:
    """hal on call while his grant runs, in a schedule under the group's slug (the slug
    url_of() passes): the world itself has no schedule."""
    from oncall.models import Schedule

    Schedule.objects.get_or_create(slug=world.group.slug, defaults={"name": "Primary rota"})
    return {"shifts": [{"user": "hal", "starts_at": world.grant.activated_at.isoformat(),
                        "ends_at": world.grant.expires_at.isoformat()}]}


def rule_table_form(changes: dict[tuple[str, str], dict] | None = None) -> dict:
    """The rule table's list page as submitted: every cell in the page's order (sensitivity
    rank, then severity) with the management form, `changes` applied to their cells."""
    changes = changes or {}
    rules = sorted(RiskRule.objects.all(),
                   key=lambda rule: (SENSITIVITIES.index(rule.sensitivity), rule.severity))
    data = {"form-TOTAL_FORMS": len(rules), "form-INITIAL_FORMS": len(rules),
            "form-MIN_NUM_FORMS": 0, "form-MAX_NUM_FORMS": 1000, "_save": "Save"}
    for index, rule in enumerate(rules):
        values = {name: getattr(rule, name) for name in RULE_FIELDS}
        values.update(changes.get((rule.sensitivity, rule.severity), {}))
        data[f"form-{index}-id"] = rule.pk
        data.update(form_values(values, prefix=f"form-{index}-"))
    return data


def form_values(values: dict, prefix: str = "") -> dict:
    """Field values as a browser posts them: a ticked box as "on", an unticked one left out."""
    posted = {}
    for name, value in values.items():
        if value is True:
            posted[prefix + name] = "on"
        elif value is not False:
            posted[prefix + name] = value
    return posted


def _rule_form(world: World) -> dict:
    values = {name: getattr(the_rule(), name) for name in RULE_FIELDS}
    return {**form_values({**values, "alert_sms": True}), "_save": "Save"}


def world_incident(world: World) -> Incident:
    """INC-9 (SEV2) arming prod-db, with bella's grant opened under it."""
    if world.incident is None:
        from risk.incidents import upsert_incident

        world.incident = upsert_incident(external_id="INC-9", title="Checkout errors",
                                         severity="sev2", groups=[world.group.slug],
                                         actor=None).incident
        break_glass(world.group, actor=world.users["bg_user"], reason="checkout",
                             incident="INC-9")
    return world.incident


def _incident_form(world: World, **fields) -> dict:
    return {"external_id": "PD-77", "title": "DB down", "severity": "sev1", "status": "open",
            "url": "", "groups": [world.group.pk], "policies": [], "_save": "Save", **fields}


def _bundle(world: World) -> dict:
    """A recovery policy under the group's slug (the slug url_of() passes), held by olivia,
    whose authorized application is the one the cell's token belongs to."""
    from recovery import services as recovery
    from recovery.crypto import new_signing_seed
    from recovery.models import RecoveryPolicy

    owner = world.users["owner"]
    recovery.enrol(owner, "olivia recovery passphrase")
    policy = RecoveryPolicy.objects.create(
        name="Root", slug=world.group.slug, first_user=owner, required=1, enabled=True,
        signing_seed=new_signing_seed(),
        application=Application.objects.order_by("-pk").first())
    recovery.issue_bundle(policy)
    return {}


BODIES: dict[str, Callable[[World], dict]] = {
    "": lambda world: {},
    "reason": lambda world: {"reason": "primary is down", "severity": "sev2"},
    "users": lambda world: {"users": [world.users["outsider"].pk]},
    "revoke_all_of_selected": lambda world: _action("revoke_all_of_selected", world.group.pk),
    "group form": _group_form,
    "confirm": lambda world: {"post": "yes"},
    "end_selected": lambda world: _action("end_selected", world.grant.pk),
    "revoke_everything": lambda world: _action("revoke_everything"),
    "grant form": lambda world: {"status": Grant.Status.REVOKED, "reason": "edited"},
    "access query": lambda world: {"user": "hal", "group": world.group.slug},
    "revoke": lambda world: {"reason": "done"},
    "api break glass": lambda world: {"user": "bella", "group": world.group.slug,
                                      "reason": "pager"},
    "shifts": _shifts,
    "request": lambda world: {"minutes": 60, "reason": "deploy"},
    "settings": lambda world: {"requestable": "on", "request_max_minutes": 60,
                               "request_reason_required": "on", "approvals_needed": 1,
                               "request_expiry_minutes": 1440},
    "extension": lambda world: {"minutes": 120, "reason": "not done"},
    "comment": lambda world: {"comment": "not now"},
    "activity": lambda world: {"action": "psql", "detail": "VACUUM FULL orders"},
    "api request": lambda world: {"user": "oscar", "group": world.group.slug, "minutes": 60,
                                  "reason": "deploy"},
    "api approve": lambda world: {"as_user": "olivia"},
    "api deny": lambda world: {"as_user": "olivia", "comment": "not now"},
    "api withdraw": lambda world: {"as_user": "mark"},
    "incident": lambda world: {"external_id": "PD-77", "title": "DB down", "severity": "sev1",
                               "groups": [world.group.slug]},
    "bundle": lambda world: _bundle(world),
    "rule table": lambda world: rule_table_form({RULE_CELL: {"alert_sms": True}}),
    # high × SEV1 would no longer allow self-service while critical × SEV1 still does.
    "contradictory rule table": lambda world: rule_table_form(
        {RULE_CELL: {"alert_sms": True}, ("high", "sev1"): {"self_service": False}}),
    "rule form": _rule_form,
    "incident form": _incident_form,
    "resolve": lambda world: _incident_form(world, title=world.incident.title,
                                            severity="sev2", status="resolved"),
}

PATTERNS = dict(walk(get_resolver().url_patterns))


def url_of(row: Row, world: World) -> str:
    """The row's URL for the world. Incident rows make INC-9 (and bella's grant under it)
    here, before the cell takes its snapshot."""
    if row.url == "admin:breakglass_group_simple_history":
        return reverse(row.url, args=[world.group.pk, world.group.history.earliest().pk])
    if row.url == "admin:risk_incident_simple_history":
        incident = world_incident(world)
        return reverse(row.url, args=[incident.pk, incident.history.earliest().pk])
    params = PATTERNS[row.url].pattern.regex.groupindex
    if "object_id" not in params:
        object_id = None
    elif "_riskrule_" in row.url:
        object_id = the_rule().pk
    elif "_incident_" in row.url:
        object_id = world_incident(world).pk
    else:
        object_id = world.group.pk if "_group_" in row.url else world.grant.pk
    values = {"slug": world.group.slug, "grant_id": world.grant.pk,
              "request_id": world.request.pk, "object_id": object_id}
    return reverse(row.url, kwargs={name: values[name] for name in params})


@pytest.fixture
def world(owner, member, outsider) -> World:
    # An hour of break-glass access, so that asking for two more hours extends it.
    group = Group.objects.create(name="Production DB", slug="prod-db", requestable=True,
                                 break_glass_minutes=60)
    group.owners.add(owner)
    group.members.add(member)
    bella, hal = make_user("bella"), make_user("hal")
    group.break_glass_users.add(bella, hal)
    grant = break_glass(group, actor=hal, reason="outage")
    users = {"unverified": hal, "outsider": outsider, "member": member, "bg_user": bella,
             "holder": hal, "owner": owner}
    pending = request_access(group, actor=member, minutes=60,
                                             reason="reporting")
    return World(group, grant, users, pending)


def actor_for(role: str, world: World, request) -> User:
    """The acting user. Roles that no body or effect refers to are built only when they act,
    to keep the file fast."""
    if role not in world.users:
        world.users[role] = CAST[role](request)
    return world.users[role]


def _other_owner(request) -> User:
    otto = make_user("otto")
    Group.objects.create(name="Theirs", slug="theirs").owners.add(otto)
    return otto


def _staff_viewer(request) -> User:
    vera = make_user("vera", is_staff=True)
    vera.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="breakglass", codename__in=["view_group", "view_grant"]))
    return vera


CAST = {
    "other_owner": _other_owner,
    "reviewer": lambda request: request.getfixturevalue("reviewer"),
    "staff_viewer": _staff_viewer,
    "admin": lambda request: request.getfixturevalue("admin_user"),
}


def client_for(role: str, user: User | None) -> Client:
    client = Client()
    if user is None:
        return client
    if role != "unverified":
        return sign_in(client, user)
    add_authenticator(user)
    signed_in = client.post(reverse("accounts:login"),
                            {"username": user.username, "password": PASSWORD})
    assert signed_in.status_code == 302
    return client


def authorization(role: str, row: Row) -> dict:
    if role == "no_token":
        return {}
    if role == "malformed":
        return {"HTTP_AUTHORIZATION": "Bearer not-a-token"}
    if role == "unknown":
        return {"HTTP_AUTHORIZATION": f"Bearer bg_00000000_{'x' * 43}"}
    others = [scope for scope in Scope.values if scope != row.scope]
    scopes = {"disabled": Scope.values, "no_scope": others,
              "scoped": [row.scope] if row.scope else Scope.values}[role]
    application, token = create_application(role, scopes, actor=None)
    if role == "disabled":
        application.enabled = False
        application.save(update_fields=["enabled"])
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def send(client: Client, row: Row, url: str, data: dict, headers: dict):
    if row.method == "GET":
        return client.get(url, data, **headers)
    if row.url.startswith("api:"):
        return client.generic(row.method, url, json.dumps(data),
                              content_type="application/json", **headers)
    if row.method == "POST":
        return client.post(url, data, **headers)
    return client.generic(row.method, url, **headers)


def snapshot() -> tuple:
    """Everything a break-glass URL could change: grants, groups and their memberships,
    requests and request settings, the risk rule table and incidents."""
    through = (Group.owners.through, Group.members.through, Group.break_glass_users.through,
               Group.contains.through)
    return (
        list(Grant.objects.order_by("pk").values_list("pk", "status", "expires_at",
                                                      "ended_at")),
        list(Group.objects.order_by("pk").values_list("pk", "name", "slug",
                                                      "break_glass_minutes")),
        [sorted(model.objects.values_list()) for model in through],
        list(Application.objects.order_by("pk").values_list("pk", "enabled", "token_hash")),
        list(AccessRequest.objects.order_by("pk").values_list("pk", "status")),
        list(Group.objects.order_by("pk").values_list("requestable", "request_max_minutes")),
        list(RiskRule.objects.order_by("pk").values_list()),
        list(Incident.objects.order_by("pk").values_list("pk", "external_id", "title",
                                                         "severity", "status", "resolved_at")),
        sorted(Incident.groups.through.objects.values_list()),
    )


def check_status(response, expected: int | str, client: Client) -> None:
    if isinstance(expected, int):
        assert response.status_code == expected, response.content[:300]
        return
    if expected == SHOWN:
        assert response.status_code == 200
        return
    assert response.status_code == 302, response.content[:300]
    location = response["Location"]
    starts = {LOGIN: reverse("accounts:login"), VERIFY: reverse("accounts:verify"),
              ADMIN: reverse("admin:login")}
    if expected == DONE:
        assert not location.startswith(tuple(starts.values())), location
        return
    assert location.startswith(starts[expected]), location
    if expected == ADMIN:
        assert client.get(location).status_code == 403


def cases():
    for row in TABLE:
        for role, cell in zip(row.roles, row.cells, strict=True):
            yield pytest.param(row, role, cell, id=f"{row.label} [{role}]")


@pytest.mark.parametrize(("row", "role", "expected"), list(cases()))
def test_cell(request, world, row, role, expected):
    if row.url.startswith("api:"):
        client, actor, headers = Client(), None, authorization(role, row)
    else:
        actor = None if role == "anonymous" else actor_for(role, world, request)
        client, headers = client_for(role, actor), {}
    url = url_of(row, world)
    before = snapshot()
    response = send(client, row, url, BODIES[row.send](world), headers)
    check_status(response, expected, client)
    if row.effect is not None and expected in {DONE, 200, 201}:
        assert row.effect(world, actor)
    else:
        assert snapshot() == before


# URLs of the admin that are about groups and grants; the rest of the admin is classified as
# staff-only by tests/test_url_access.py.
ADMIN_PREFIXES = ("admin:breakglass_group_", "admin:breakglass_grant_")


def rowless_urls(urlconf: str | None = None) -> set[str]:
    names = {name for name, _ in walk(get_resolver(urlconf).url_patterns)}
    covered = {name for name in names if name.split(":")[0] in {"breakglass", "api"}
               or name.startswith(ADMIN_PREFIXES)}
    return covered - {row.url for row in TABLE}


def test_every_url_has_a_row():
    assert rowless_urls() == set(), "Add a row to TABLE for each of these URLs."


def test_a_new_breakglass_url_without_a_row_is_caught():
    module = types.ModuleType("tests_matrix_extra_urls")
    new_page = path("new/", lambda request: None, name="new-page")
    module.urlpatterns = [*get_resolver().url_patterns,
                          path("extra/", include(([new_page], "breakglass")))]
    sys.modules[module.__name__] = module
    try:
        assert rowless_urls(module.__name__) == {"breakglass:new-page"}
    finally:
        del sys.modules[module.__name__]


def test_rows_are_unique_and_each_url_is_tried_with_a_second_method():
    labels = [row.label for row in TABLE]
    assert len(labels) == len(set(labels))
    for url in {row.url for row in TABLE if row.url.split(":")[0] in {"breakglass", "api"}}:
        methods = {row.method for row in TABLE if row.url == url}
        assert len(methods) >= 2, f"{url}: add a row for a method it must refuse"
