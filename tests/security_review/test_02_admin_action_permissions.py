"""Staff rights end where their permissions end (Q39): every admin action that changes state
declares its permission, and staff who lack it are refused with 403 and an audit event, never
answered "No action selected". Token rotation in the admin also takes a fresh one-time code."""

import io
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import Failure, Success

from accounts.models import TOTPDevice
from audit.catalogue import EventKind
from audit.models import AuditEvent, ChainHead, Delivery
from backups.models import Website
from breakglass.models import Application, Grant, Group
from breakglass.services.applications import create_application
from breakglass.services.break_glass import break_glass
from recovery.models import RecoveryPolicy
from tests.conftest import current_totp, make_user, sign_in

pytestmark = pytest.mark.django_db

# Actions that only read (none today): the structural test lets these go without a permission.
READ_ONLY_ACTIONS: set[tuple[str, str]] = set()

# Rows a signed-in staff member's requests may touch without changing anything they guard.
UNWATCHED = {AuditEvent, ChainHead, Session}


def view_only_staff(username: str = "vic"):
    user = make_user(username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    return user


def staff_with(username: str, *codenames: str):
    user = make_user(username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"),
                              *Permission.objects.filter(codename__in=codenames))
    return user


def refusals(action: str = ""):
    events = AuditEvent.objects.filter(kind="admin.action_refused")
    return events.filter(data__action=action) if action else events


def snapshot() -> dict:
    """Every row of every model, audit trail and sessions aside."""
    return {
        model._meta.label: list(model._base_manager.order_by("pk").values_list())
        for model in apps.get_models(include_auto_created=True) if model not in UNWATCHED
    }


def load_world(owner) -> None:
    """The demo organisation, plus a row for every model whose admin has actions."""
    call_command("seed_demo", force=True, stdout=io.StringIO())
    alice = Group.objects.get(slug="prod-database").break_glass_users.get()
    break_glass(Group.objects.get(slug="prod-database"), actor=alice,
                         reason="Primary database refuses connections", incident="INC-2041",
                         stepped_up_at=timezone.now())
    create_application("Pager", ["grants:read"], actor=None)
    locked = Website.objects.first()
    locked.locked_at = timezone.now()
    locked.save(update_fields=["locked_at"])
    owner.is_active = False
    owner.save(update_fields=["is_active"])
    for model in (Success, Failure):
        model.objects.create(id=f"{model.__name__.lower()}-1", name=model.__name__, func="len",
                             started=timezone.now(), stopped=timezone.now(),
                             success=model is Success)
    AccessAttempt.objects.create(username="mallory", ip_address="192.0.2.99", user_agent="x",
                                 http_accept="*/*", path_info="/accounts/login/", get_data="",
                                 post_data="", failures_since_start=3)


def registered_actions(model_admin) -> dict:
    """Every action the admin offers anyone, whatever the user's permissions (the site's
    delete_selected included); `actions = None` turns them all off."""
    if model_admin.actions is None:
        return {}
    return {action.name: action for action in model_admin._get_base_actions()}


def all_registered_actions():
    for model, model_admin in admin.site._registry.items():
        for name, action in registered_actions(model_admin).items():
            yield model, model_admin, name, action


def test_every_admin_action_is_refused_to_view_only_staff_and_changes_nothing(owner):
    load_world(owner)
    assert Delivery.objects.exists() and Grant.objects.filter(status="active").exists()
    client = sign_in(Client(raise_request_exception=False), view_only_staff())
    walked, problems = 0, []
    for model, _admin, name, _ in all_registered_actions():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        selected = [str(pk) for pk in model._base_manager.values_list("pk", flat=True)]
        before, refused_before = snapshot(), refusals(name).count()
        response = client.post(url, {"action": name, "index": "0", "select_across": "0",
                                     "_selected_action": selected or ["0"]})
        walked += 1
        label = f"{model._meta.label}.{name}"
        if response.status_code != 403:
            problems.append(f"{label}: answered {response.status_code}, not 403")
        if refusals(name).count() != refused_before + 1:
            problems.append(f"{label}: no admin.action_refused event")
        after = snapshot()
        changed = [table for table in before if before[table] != after[table]]
        if changed:
            problems.append(f"{label}: changed {changed}")
    assert walked >= 20
    assert problems == []


def test_every_state_changing_admin_action_declares_a_permission_the_admin_can_check():
    undeclared = []
    for model, model_admin, name, action in all_registered_actions():
        if (model._meta.label, name) in READ_ONLY_ACTIONS:
            continue
        permissions = getattr(action.func, "allowed_permissions", ())
        if not permissions:
            undeclared.append(f"{model._meta.label}.{name}")
        for permission in permissions:
            assert callable(getattr(model_admin, f"has_{permission}_permission", None)), (
                f"{model._meta.label}.{name} declares {permission!r}, which the admin lacks")
    assert undeclared == []


def test_every_registered_admin_refuses_actions_beyond_the_users_permissions():
    """Third-party admins too: the site mixes the guard into every ModelAdmin it registers."""
    from audit.admin import GuardedActionsMixin

    unguarded = [model._meta.label for model, model_admin in admin.site._registry.items()
                 if not isinstance(model_admin, GuardedActionsMixin)]
    assert unguarded == []


def test_a_third_party_action_still_works_for_staff_with_its_permission(admin_user):
    failed = Failure.objects.create(id="failure-1", name="Failure", func="time.time",
                                    started=timezone.now(), stopped=timezone.now(),
                                    success=False)
    client = sign_in(Client(), admin_user)
    response = client.post(reverse("admin:django_q_failure_changelist"),
                           {"action": "resubmit_task", "index": "0",
                            "_selected_action": [failed.pk]})
    assert response.status_code == 302
    assert not Failure.objects.filter(pk=failed.pk).exists()  # resubmitted, so taken off
    assert not refusals().exists()


def test_the_refusal_names_the_action_the_model_and_the_staff_member(owner):
    load_world(owner)
    staff = view_only_staff()
    client = sign_in(Client(), staff)
    delivery = Delivery.objects.first()
    due_before = (delivery.status, delivery.next_attempt_at)
    response = client.post(reverse("admin:audit_delivery_changelist"),
                           {"action": "retry_now", "index": "0",
                            "_selected_action": [delivery.pk]})
    assert response.status_code == 403
    event = refusals("retry_now").get()
    assert (event.actor_id, event.outcome, event.data["model"]) == (
        str(staff.pk), "denied", "audit.Delivery")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at) == due_before
    assert not AuditEvent.objects.filter(kind=EventKind.DELIVERY_RETRIED).exists()


def test_an_action_picked_by_a_negative_index_is_refused_too(owner):
    """Django picks the action with `index` from the list of action fields, so -1 names the
    last one: the refusal reads it the same way."""
    load_world(owner)
    client = sign_in(Client(), view_only_staff())
    response = client.post(reverse("admin:audit_delivery_changelist"),
                           {"action": ["", "retry_now"], "index": "-1",
                            "_selected_action": [Delivery.objects.first().pk]})
    assert response.status_code == 403
    assert refusals("retry_now").count() == 1


def test_retry_now_still_works_for_staff_allowed_to_change_deliveries(owner):
    load_world(owner)
    client = sign_in(Client(),
                     staff_with("rhea", "change_delivery"))
    delivery = Delivery.objects.first()
    delivery.status = Delivery.Status.FAILED
    delivery.next_attempt_at = timezone.now() + timedelta(days=1)
    delivery.save(update_fields=["status", "next_attempt_at"])
    response = client.post(reverse("admin:audit_delivery_changelist"),
                           {"action": "retry_now", "index": "0",
                            "_selected_action": [delivery.pk]})
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert AuditEvent.objects.filter(kind=EventKind.DELIVERY_RETRIED).count() == 1
    assert not refusals().exists()


def test_reopen_account_is_refused_to_view_only_staff(owner):
    owner.is_active = False
    owner.save(update_fields=["is_active"])
    client = sign_in(Client(), view_only_staff())
    response = client.post(reverse("admin:accounts_user_changelist"),
                           {"action": "reopen_after_review", "index": "0",
                            "_selected_action": [owner.pk]})
    assert response.status_code == 403
    assert refusals("reopen_after_review").count() == 1
    owner.refresh_from_db()
    assert owner.is_active is False


# --- Generate token (an application's, and a recovery policy's own) ---------------------------

def application_token_post(client, application, **extra):
    return client.post(reverse("admin:breakglass_application_changelist"),
                       {"action": "generate_token", "index": "0",
                        "_selected_action": [application.pk], **extra})


def test_generate_token_is_refused_to_view_only_staff(db):
    application, _ = create_application("Pager", ["grants:read"], actor=None)
    client = sign_in(Client(), view_only_staff())
    response = application_token_post(client, application)
    assert response.status_code == 403
    assert refusals("generate_token").count() == 1
    assert Application.objects.get().token_hash == application.token_hash
    assert not AuditEvent.objects.filter(kind=EventKind.TOKEN_ROTATED).exists()


def test_generate_token_asks_staff_who_may_change_applications_for_a_fresh_code(db):
    application, _ = create_application("Pager", ["grants:read"], actor=None)
    staff = staff_with("tom", "change_application")
    client = sign_in(Client(), staff)
    asked = application_token_post(client, application)
    assert asked.status_code == 200
    assert b'name="code"' in asked.content
    wrong = application_token_post(client, application, post="yes", code="000000")
    assert wrong.status_code == 200
    assert b"fresh one-time code" in wrong.content
    assert Application.objects.get().token_hash == application.token_hash
    assert not AuditEvent.objects.filter(kind=EventKind.TOKEN_ROTATED).exists()


def test_generate_token_with_a_fresh_code_shows_the_new_token_once(db):
    application, old_token = create_application("Pager", ["grants:read"], actor=None)
    staff = staff_with("tom", "change_application")
    client = sign_in(Client(), staff)
    code = current_totp(TOTPDevice.objects.get(user=staff), steps_ahead=1)
    response = application_token_post(client, application, post="yes", code=code)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    rotated = Application.objects.get()
    assert rotated.token_hash != application.token_hash
    assert rotated.token_prefix.encode() in response.content
    assert old_token.encode() not in response.content
    event = AuditEvent.objects.get(kind=EventKind.TOKEN_ROTATED)
    assert event.actor_id == str(staff.pk)
    again = client.get(reverse("admin:breakglass_application_change", args=[rotated.pk]))
    assert rotated.token_prefix.encode() in again.content
    assert response.context["issued"][0][1].encode() not in again.content


def test_a_recovery_policys_own_token_is_refused_to_view_only_staff(owner):
    call_command("seed_demo", force=True, stdout=io.StringIO())
    policy = RecoveryPolicy.objects.first()
    staff = view_only_staff()
    client = sign_in(Client(), staff)
    code = current_totp(TOTPDevice.objects.get(user=staff), steps_ahead=1)
    before = list(Application.objects.values_list("pk", "token_hash"))
    response = client.post(
        reverse("admin:recovery_recoverypolicy_generate_token", args=[policy.pk]), {"code": code})
    assert response.status_code == 403
    assert refusals().filter(data__view="generate_token").count() == 1
    assert list(Application.objects.values_list("pk", "token_hash")) == before
    if policy.application_id:
        application_token_post(client, policy.application, post="yes", code=code)
        assert list(Application.objects.values_list("pk", "token_hash")) == before


def test_a_recovery_policys_application_is_rotated_only_by_staff_who_may_change_the_policy(
        owner):
    """Rotating the bound application's token locks the policy's real fetcher out: it is a
    change to the policy, whichever page it is asked from."""
    call_command("seed_demo", force=True, stdout=io.StringIO())
    policy = RecoveryPolicy.objects.exclude(application=None).first()
    if policy is None:
        policy = RecoveryPolicy.objects.first()
        application, _ = create_application("Bundle fetcher", ["recovery:bundle"],
                                                     actor=None)
        policy.application = application
        policy.save(update_fields=["application"])
    staff = staff_with("tom", "change_application", "view_application")
    client = sign_in(Client(), staff)
    code = current_totp(TOTPDevice.objects.get(user=staff), steps_ahead=1)
    before = Application.objects.get(pk=policy.application_id).token_hash
    response = application_token_post(client, policy.application, post="yes", code=code)
    assert response.status_code == 403
    assert Application.objects.get(pk=policy.application_id).token_hash == before
    assert refusals("generate_token").get().data["policies"] == [policy.slug]
    assert not AuditEvent.objects.filter(kind=EventKind.TOKEN_ROTATED).exists()


def test_no_admin_reverts_a_row_from_its_history(owner, admin_user):
    """simple-history's revert form is built on an old version, so a form's step-up and custody
    checks would compare against that version: every history admin refuses the POST (403,
    audited) and changes nothing, even for a superuser; reading an old version still works."""
    from simple_history.admin import SimpleHistoryAdmin

    load_world(owner)
    client = sign_in(Client(), admin_user)
    tried = []
    for model, model_admin in admin.site._registry.items():
        row = model.objects.first() if isinstance(model_admin, SimpleHistoryAdmin) else None
        version = row.history.first() if row is not None else None
        if version is None:
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_simple_history",
                      args=[row.pk, version.history_id])
        before = snapshot()
        assert client.get(url).status_code == 200, model
        assert client.post(url, {}).status_code == 403, model
        assert snapshot() == before, model
        tried.append(model._meta.label)
    assert {"backups.Website", "recovery.RecoveryPolicy", "breakglass.Group"} <= set(tried)
    assert refusals().count() == len(tried)


# --- The admin's own pages: the dashboard and the evidence pack -------------------------------

def test_the_dashboard_refusal_is_audited(db):
    staff = make_user("stu", is_staff=True)
    client = sign_in(Client(), staff)
    response = client.get(reverse("admin:review_dashboard"))
    assert response.status_code == 403
    assert refusals().filter(data__view="dashboard").count() == 1


def test_the_evidence_pack_refusal_is_audited(db):
    staff = make_user("stu", is_staff=True)
    client = sign_in(Client(), staff)
    response = client.get(reverse("admin:evidence", args=["grant", 1, "json"]))
    assert response.status_code == 403
    assert refusals().filter(data__view="evidence").count() == 1
    assert not AuditEvent.objects.filter(kind=EventKind.EVIDENCE_EXPORTED).exists()
