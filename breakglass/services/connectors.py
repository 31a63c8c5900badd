"""Connectors as a service: setting one up (command and admin), testing its connection,
mapping users to logins, telling targets of grant changes through the outbox, and
reconciling a target's members with the access decision.

After every grant change, each enabled connector of the groups the grant reaches is told,
through the outbox (retried with backoff, dead-lettered and alerted like any delivery; never
inside the user's request). Kinds that mirror access (roles, directory groups, Django groups)
decide at send time from the access decision, so a late retry can never undo a later
revocation; kinds that notify (a webhook) send the event as it was recorded.

The state of each user on each target is a ConnectorMembership: what Breakglass last asked
(present or absent) and whether the target confirmed it. An unconfirmed absence is a pending
revocation, shown on the grant page, /access/ and the API until the target confirms it;
reconciliation retries it every minute and alerts once it is 5 minutes old."""

import contextlib
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth.models import Group as AuthGroup
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.expressions import RawSQL
from django.utils import timezone

from accounts.models import User
from audit.alerts import alert, queue_message
from audit.catalogue import EventKind, Outcome
from audit.models import AuditEvent, Delivery
from audit.outbox import DeliveryError
from audit.services import record
from breakglass import sql
from breakglass.access import decide
from breakglass.connectors import target_class, target_for
from breakglass.connectors.base import ConnectorProblem, Notice, Setting, Settings, Target
from breakglass.models import Connector, ConnectorLogin, ConnectorMembership, Grant, Group
from breakglass.services.errors import InvalidInput

logger = logging.getLogger(__name__)

# A revocation the target has not confirmed this long alerts owners and reviewers.
REVOCATION_OVERDUE_AFTER = timedelta(minutes=5)
# Drift lists in events and alerts are cut here; the count is always whole.
LISTED_AT_MOST = 50

COMMON_SETTINGS = (
    Setting("logins", "username (default: a user's login is their username unless set) or "
            "explicit (only users with a login set; others are refused access)",
            store="field", choices=tuple(Connector.Logins.values)),
    Setting("mode", "repair (default: reconciliation grants what is missing and revokes what "
            "is extra) or report (it only alerts)", store="field",
            choices=tuple(Connector.Mode.values)),
    Setting("ignore_logins", "Logins reconciliation never touches (service accounts, a "
            "placeholder member), comma-separated; separate with ';' when one holds a comma "
            "(an LDAP DN).", kind="list"),
)
SECRET_STORES = ("server_url", "bind_dn", "bind_password")


def settings_of(kind: str) -> tuple[Setting, ...]:
    return COMMON_SETTINGS + target_class(kind).SETTINGS


# --- Setting a connector up ------------------------------------------------------------------

def parse_settings(kind: str, raw: dict[str, str]) -> Settings:
    """`raw` (key → text, as typed after --option) checked against the kind's settings.
    Raises InvalidInput naming the first bad option."""
    if kind not in Connector.Kind.values:
        raise InvalidInput("kind", f"unknown kind {kind!r}: choose one of "
                           f"{', '.join(Connector.Kind.values)}")
    known = {setting.key: setting for setting in settings_of(kind)}
    for key in raw:
        if key not in known:
            raise InvalidInput(key, f"option {key}: not a setting of a {kind} connector "
                               f"(it takes {', '.join(known)})")
    parsed = Settings()
    for key, setting in known.items():
        if key not in raw or raw[key] == "":
            if setting.required:
                raise InvalidInput(key, f"option {key}: required for a {kind} connector "
                                   f"({setting.help})")
            if setting.default is not None and setting.store == "options":
                parsed.options[key] = setting.default
            continue
        _store(parsed, setting, _parse_value(setting, raw[key]))
    try:
        target_class(kind).check_settings(parsed)
    except ConnectorProblem as problem:
        key = str(problem).split(":", 1)[0]
        raise InvalidInput(key, f"option {problem}") from None
    return parsed


def check_options(kind: str, options: dict) -> dict:
    """Options as typed in the admin's JSON: each must be an option of the kind, and text is
    read as the command reads it (a list from "a, b", a bool from "false")."""
    if not isinstance(options, dict):
        raise InvalidInput("options", "options: give a JSON object, e.g. {\"mode\": ...}")
    known = {setting.key: setting for setting in settings_of(kind)
             if setting.store == "options"}
    checked = {}
    for key, value in options.items():
        setting = known.get(key)
        if setting is None:
            raise InvalidInput("options", f"options: {key} is not an option of a {kind} "
                               f"connector (it takes {', '.join(known) or 'none'})")
        if isinstance(value, str):
            value = _parse_value(setting, value)
        elif setting.kind == "list" and not (
                isinstance(value, list) and all(isinstance(item, str) for item in value)):
            raise InvalidInput(key, f"option {key}: give a list of text")
        elif setting.kind == "bool" and not isinstance(value, bool):
            raise InvalidInput(key, f"option {key}: give true or false")
        checked[key] = value
    return checked


def _parse_value(setting: Setting, text: str):
    key = setting.key
    if "\x00" in text:
        raise InvalidInput(key, f"option {key}: holds a NUL character")
    if setting.kind == "bool":
        if text.lower() not in {"true", "false", "yes", "no", "1", "0"}:
            raise InvalidInput(key, f"option {key}: give true or false, not {text!r}")
        return text.lower() in {"true", "yes", "1"}
    if setting.kind == "list":
        # Commas separate, unless the text holds a semicolon or a line break: then those do
        # (an LDAP DN holds commas).
        separator = next((mark for mark in (";", "\n") if mark in text), ",")
        return [item.strip() for item in text.split(separator) if item.strip()]
    if setting.choices and text not in setting.choices:
        raise InvalidInput(key, f"option {key}: give one of {', '.join(setting.choices)}, "
                           f"not {text!r}")
    return text


def _store(parsed: Settings, setting: Setting, value) -> None:
    if setting.store in SECRET_STORES:
        parsed.secrets[setting.store] = value
    elif setting.store == "target":
        parsed.target_name = value
    elif setting.store == "field":
        parsed.fields[setting.key] = value
    else:
        parsed.options[setting.key] = value


@transaction.atomic
def create_connector(kind: str, name: str, group: Group, raw: dict[str, str], *, actor,
                     request=None) -> Connector:
    """A new connector from checked settings; secrets are encrypted before they are stored.
    Audited (connector.created) with every setting but the secrets."""
    from recovery.crypto import encrypt_field

    if not name or len(name) > 80 or not all(c.isalnum() or c in "-_" for c in name):
        raise InvalidInput("name", "name: letters, digits, - and _ only, at most 80")
    if Connector.objects.filter(name=name).exists():
        raise InvalidInput("name", f"name: a connector called {name!r} exists already")
    parsed = parse_settings(kind, raw)
    connector = Connector(name=name, group=group, kind=kind, target_name=parsed.target_name,
                          options=parsed.options)
    for store, value in parsed.secrets.items():
        setattr(connector, f"{store}_encrypted", encrypt_field(value))
    fields = dict(parsed.fields)
    if kind == Connector.Kind.DJANGO_GROUP:
        fields["django_group"] = _auth_group(fields.pop("django_group", ""))
    for key, value in fields.items():
        setattr(connector, key, value)
    connector.save()
    shown = {key: value for key, value in raw.items()
             if key in {s.key for s in settings_of(kind) if s.store not in SECRET_STORES}}
    record(EventKind.CONNECTOR_CREATED, actor=actor, target=connector, request=request,
           data={"kind": kind, "name": name, "group": group.slug, "settings": shown})
    return connector


def _auth_group(name: str) -> AuthGroup:
    auth_group = AuthGroup.objects.filter(name=name).first()
    if auth_group is None:
        raise InvalidInput("django_group", f"option django_group: no Django group is called "
                           f"{name!r}")
    return auth_group


def test_connection(connector: Connector, *, actor, request=None) -> tuple[bool, str]:
    """Ask the target whether it is reachable with sufficient rights: (ok, plain words).
    Recorded (connector.checked) and kept as the connector's health."""
    try:
        with target_for(connector) as target:
            ok, words = True, target.check()
    except (ConnectorProblem, DeliveryError) as problem:
        ok, words = False, str(problem)
    except Exception as unexpected:  # a driver's own error must still answer in words
        logger.exception("testing connector %s failed unexpectedly", connector.name)
        ok, words = False, f"the target answered with an unexpected error: {_named(unexpected)}"
    with transaction.atomic():
        _set_health(connector, ok, words)
        record(EventKind.CONNECTOR_CHECKED, actor=actor, target=connector, request=request,
               outcome=Outcome.SUCCESS if ok else Outcome.FAILURE, reason=words[:1000])
    return ok, words


def _set_health(connector: Connector, ok: bool, words: str, *, reconciled: bool = False) -> None:
    changes = {"health": Connector.Health.OK if ok else Connector.Health.FAILING,
               "health_detail": words[:2000], "health_checked_at": timezone.now()}
    if reconciled:
        changes["last_reconciled_at"] = changes["health_checked_at"]
    Connector.objects.filter(pk=connector.pk).update(**changes)
    for key, value in changes.items():
        setattr(connector, key, value)


# --- Users and their logins ------------------------------------------------------------------

def uses_logins(connector: Connector) -> bool:
    """Django groups act on Breakglass users themselves; every other kind on logins."""
    return connector.kind != Connector.Kind.DJANGO_GROUP


def logins_of(connector: Connector, users: dict[int, str]) -> dict[int, str]:
    """user id → login on the connector's target, for the users that have one (users maps
    id → username)."""
    if not uses_logins(connector):
        return dict(users)
    overrides = dict(ConnectorLogin.objects.filter(connector=connector, user_id__in=list(users))
                     .values_list("user_id", "login"))
    if connector.logins == Connector.Logins.EXPLICIT:
        return overrides
    return {user_id: overrides.get(user_id, username) for user_id, username in users.items()}


def login_of(connector: Connector, user: User) -> str | None:
    return logins_of(connector, {user.pk: user.get_username()}).get(user.pk)


def connectors_reaching(group_id: int):
    reached = RawSQL(sql.REACH_IDS_SQL, [group_id])  # noqa: S611 (constant SQL, bound id)
    return Connector.objects.filter(group_id__in=reached, enabled=True)


def missing_logins(group: Group | int, user: User) -> list[Connector]:
    """The enabled connectors access to `group` would reach on which `user` has no login:
    access is refused before it begins (a grant no target could carry out is no grant)."""
    group_id = group if isinstance(group, int) else group.pk
    return list(connectors_reaching(group_id).filter(logins=Connector.Logins.EXPLICIT)
                .exclude(login_set__user=user))


def missing_login_message(connectors: list[Connector], user: User) -> str:
    names = ", ".join(f"{c.name} ({c.get_kind_display()} {c.target_name})" for c in connectors)
    return (f"{user.get_username()} has no login set on {names}: access there cannot be "
            "given until an administrator sets one (Connector logins in the admin).")


# --- What the outbox asks of a target --------------------------------------------------------

def ask(connector: Connector, user: User, *, wanted: bool, grant=None) -> None:
    """Note, in the caller's transaction, that the target must now have `user` present or
    absent; the outbox delivery that carries it out confirms it (confirm_membership). The
    login granted is kept, so a revocation removes it even if the user's login changes."""
    now = timezone.now()
    memberships = ConnectorMembership.objects.filter(connector=connector, user=user)
    changes = {"wanted": wanted, "applied": False, "version": F("version") + 1,
               "asked_at": now, "grant": grant, "overdue_alerted_at": None}
    login = login_of(connector, user) or ""
    if wanted:
        changes["login"] = login  # a revocation keeps the login that was granted
    if memberships.update(**changes):
        return
    try:
        with transaction.atomic():  # two first asks at once: the loser updates instead
            ConnectorMembership.objects.create(connector=connector, user=user, wanted=wanted,
                                               grant=grant, asked_at=now, login=login)
    except IntegrityError:
        memberships.update(**changes)


def membership_asked(connector: Connector, user: User) -> tuple[int | None, str]:
    """The version of the last ask and the login it granted ("" when none)."""
    row = (ConnectorMembership.objects.filter(connector=connector, user=user)
           .values_list("version", "login").first())
    return row if row is not None else (None, "")


def confirm_membership(connector: Connector, user: User, *, version: int | None,
                       present: bool) -> None:
    """The target did what the ask of `version` wanted (`present` is what it now holds). A
    newer ask made meanwhile stays pending: its own delivery confirms it."""
    memberships = ConnectorMembership.objects.filter(connector=connector, user=user)
    if version is not None:
        memberships.filter(version=version).update(
            wanted=present, applied=True, applied_at=timezone.now(), last_error="")


def note_failure(connector: Connector, user: User, *, version: int | None, error: str) -> None:
    if version is not None:
        ConnectorMembership.objects.filter(connector=connector, user=user,
                                           version=version).update(last_error=error[:1000])


def pending_revocations(*, user: User | None = None, grant=None):
    """Revocations a target has not confirmed yet, oldest first."""
    pending = ConnectorMembership.objects.filter(wanted=False, applied=False)
    if user is not None:
        pending = pending.filter(user=user)
    if grant is not None:
        pending = pending.filter(grant=grant)
    return pending.select_related("connector", "grant__group").order_by("asked_at")


def pending_on(username: str, slug: str) -> list[str]:
    """Names of the connectors, of the group or the groups it contains, whose target has not
    confirmed removing the user: one query."""
    reached = RawSQL(sql.REACH_IDS_BY_SLUG_SQL, [slug])  # noqa: S611 (constant SQL, bound slug)
    return list(ConnectorMembership.objects.filter(
        user__username=username, wanted=False, applied=False, connector__group_id__in=reached,
    ).order_by("connector__name").values_list("connector__name", flat=True))


def pending_by_grant(grant_ids: list[int]) -> dict[int, list[str]]:
    """grant id → names of the connectors whose revocation is pending, in one query."""
    found: dict[int, list[str]] = {}
    for grant_id, name in (ConnectorMembership.objects
                           .filter(grant_id__in=grant_ids, wanted=False, applied=False)
                           .order_by("connector__name")
                           .values_list("grant_id", "connector__name")):
        found.setdefault(grant_id, []).append(name)
    return found


def provision(event: AuditEvent, grant: Grant, action: str) -> None:
    """Queue `action` ("grant" or "revoke") for every connector concerned, in the caller's
    transaction, and note what each target must now hold for the grant's user."""
    for connector in connectors_reaching(grant.group_id).select_related("group"):
        wanted = (decide(grant.user, connector.group_id).allowed if target_for(connector)
                  .mirrors_access else action == "grant")
        ask(connector, grant.user, wanted=wanted, grant=grant)
        body = json.dumps({
            "action": action, "event": event.sequence, "grant": grant.pk,
            "user": grant.user.get_username(), "email": grant.user.email,
            "group": connector.group.slug, "via_group": grant.group.slug,
            "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
            "status": grant.status,
        })
        # Due since the grant changed: the relay carries it out before the fan-outs of
        # later events (first come, first landed), not after every one queued meanwhile.
        queue_message(event, Delivery.Channel.CONNECTOR, connector.recipient, body,
                      due_since=event.recorded_at)


def send_to_connector(delivery: Delivery) -> str:
    """The outbox's sender for connector deliveries: what the target answered, or a
    DeliveryError (retryable unless the connector or the user is gone, or the target says
    it can never succeed). The user's membership is confirmed or its error kept."""
    connector = Connector.objects.select_related("group", "django_group").filter(
        pk=int(delivery.recipient.split(":", 1)[1])).first()
    if connector is None or not connector.enabled:
        raise DeliveryError("the connector was removed or disabled", retryable=False)
    payload = json.loads(delivery.body)
    user = User.objects.filter(username=payload["user"]).first()
    if user is None:
        raise DeliveryError("the user no longer exists", retryable=False)
    notice = Notice(payload=payload, body=delivery.body.encode(),
                    idempotency_key=delivery.idempotency_key)
    version, granted_login = membership_asked(connector, user)
    target = _relay_targets.open(connector)
    present = (decide(user, connector.group_id).allowed if target.mirrors_access
               else payload["action"] == "grant")
    login = login_of(connector, user)
    if present and login is None:
        note_failure(connector, user, version=version, error="no login is set")
        raise DeliveryError(f"{user.get_username()} has no login set on {connector.name}",
                            retryable=False)
    # A revocation removes the login that was granted and the current one, if they differ
    # (an administrator changed the user's login meanwhile).
    logins = [login] if present else list(dict.fromkeys(
        name for name in (granted_login, login) if name))
    try:
        answers = [target.grant(name, notice) if present else target.revoke(name, notice)
                   for name in logins]
    except DeliveryError as failure:
        _relay_targets.discard(connector)  # the next try starts on a fresh connection
        note_failure(connector, user, version=version, error=str(failure))
        raise
    except Exception as failure:  # a driver's own error: retried like any failure
        _relay_targets.discard(connector)
        words = f"the target answered with an unexpected error: {_named(failure)}"
        note_failure(connector, user, version=version, error=words)
        raise DeliveryError(words) from failure
    confirm_membership(connector, user, version=version, present=present)
    return "; ".join(answers) or "no login: nothing to revoke"


def _named(error: Exception) -> str:
    """An unexpected error in a few words (its type and first line), never a traceback."""
    first = (str(error).strip().splitlines() or [""])[0][:300]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


class _OpenTargets:
    """The relay's targets, kept open between deliveries of the same worker (a database or
    directory connection costs more than the change it carries), one per connector and
    thread (a connection is never shared between threads). A connector changed since (its
    settings or secrets) gets a new one; a failure drops it; close_all() closes every
    thread's."""

    def __init__(self):
        self._all: dict[tuple[int, int], tuple[tuple, Target]] = {}
        self._lock = threading.Lock()

    @property
    def targets(self):
        return _ThreadView(self)

    @staticmethod
    def _settings(connector: Connector) -> tuple:
        return (connector.kind, connector.target_name, connector.server_url_encrypted,
                connector.bind_dn_encrypted, connector.bind_password_encrypted,
                json.dumps(connector.options, sort_keys=True), connector.django_group_id,
                connector.url, connector.secret_version)

    def open(self, connector: Connector) -> Target:
        settings = self._settings(connector)
        kept = self.targets.get(connector.pk)
        if kept is not None and kept[0] == settings:
            kept[1].connector = connector  # the fresh row (its group, its logins setting)
            return kept[1]
        self.discard(connector)
        target = target_for(connector)
        self.targets[connector.pk] = (settings, target)
        return target

    def discard(self, connector: Connector) -> None:
        kept = self.targets.pop(connector.pk, None)
        if kept is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                kept[1].close()


    def close_all(self) -> None:
        with self._lock:
            kept, self._all = list(self._all.values()), {}
        for _, target in kept:
            with contextlib.suppress(Exception):
                target.close()


class _ThreadView:
    """The calling thread's part of _OpenTargets, as a small mapping by connector id."""

    def __init__(self, owner: _OpenTargets):
        self.owner, self.thread = owner, threading.get_ident()

    def get(self, pk: int):
        return self.owner._all.get((self.thread, pk))

    def __setitem__(self, pk: int, value) -> None:
        with self.owner._lock:
            self.owner._all[(self.thread, pk)] = value

    def pop(self, pk: int, default=None):
        with self.owner._lock:
            return self.owner._all.pop((self.thread, pk), default)


_relay_targets = _OpenTargets()


def close_relay_targets() -> None:
    """Close the connections the relay keeps (a worker stopping, a test ending)."""
    _relay_targets.close_all()


# --- Reconciliation --------------------------------------------------------------------------

@dataclass
class Reconciliation:
    connector: Connector
    present: int = 0
    wanted: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    problem: str = ""

    @property
    def drifted(self) -> bool:
        return bool(self.missing or self.extra)


def reconcile_all() -> list[Reconciliation]:
    """The minute's reconciliation of every enabled connector whose target lists members;
    one connector failing never stops the others."""
    results = []
    for connector in Connector.objects.filter(enabled=True).exclude(
            kind=Connector.Kind.WEBHOOK).select_related("group"):
        try:
            results.append(reconcile(connector))
        except Exception:  # one connector's bug must not stop the others' repairs
            logger.exception("reconciling connector %s failed", connector.name)
    alert_overdue_revocations()
    return results


def reconcile(connector: Connector, *, actor=None, request=None) -> Reconciliation:
    """Compare the target's members with who has access now, and act per the connector's
    mode. A constant number of queries whatever the number of members: the target's list,
    the holders, their logins, the pending asks, then one call per change.

    Breakglass's own asks still pending (a revocation the target refused) are always retried,
    in either mode: they are not drift but a decision not yet carried out. Each grant is
    decided again just before it is made, so a revocation that landed meanwhile is never
    undone."""
    result = Reconciliation(connector)
    present: set[str] = set()
    logins: dict[int, str] = {}
    fold = str
    drift_missing: list[str] = []
    drift_extra: list[str] = []
    listed_at = timezone.now()
    try:
        with target_for(connector) as target:
            present = target.members()
            if present is None:
                return result
            holders = sql.holders_of(connector.group_id, listed_at)
            logins = logins_of(connector, holders)
            fold = target.login_key
            wanted = {fold(login): login for login in logins.values()}
            holder_of = {fold(login): user_id for user_id, login in logins.items()}
            found = {fold(login): login for login in present}
            ignored = {fold(login) for login in connector.options.get("ignore_logins", [])}
            result.present, result.wanted = len(present), len(wanted)
            result.missing = sorted(wanted[key] for key in set(wanted) - set(found) - ignored)
            result.extra = sorted(found[key] for key in set(found) - set(wanted) - ignored)
            pending = {fold(login): want for login, want in _pending_asks(connector).items()}
            # Access that has just ended (a grant past its instant, or ended minutes ago):
            # its revocation is Breakglass's own decision on its way, not drift.
            pending.update((fold(login), False) for login in logins_of(
                connector, sql.ending_holders(connector.group_id, listed_at)).values())
            asked_extra = [login for login in result.extra if pending.get(fold(login)) is False]
            asked_missing = [login for login in result.missing
                             if pending.get(fold(login)) is True]
            drift_missing = [login for login in result.missing if login not in asked_missing]
            drift_extra = [login for login in result.extra if login not in asked_extra]
            repairing = connector.mode == Connector.Mode.REPAIR
            to_grant = asked_missing + (drift_missing if repairing else [])
            to_revoke = asked_extra + (drift_extra if repairing else [])
            users = User.objects.in_bulk([holder_of[fold(login)] for login in to_grant])
            for login in to_grant:
                if decide(users.get(holder_of[fold(login)]), connector.group_id).allowed:
                    _apply(target.grant, login, result.granted, result.failed)
            for login in to_revoke:
                _apply(target.revoke, login, result.revoked, result.failed)
    except (ConnectorProblem, DeliveryError) as problem:
        result.problem = str(problem)
    except Exception as unexpected:  # a driver's own error: the connector is failing
        logger.exception("reconciling connector %s failed unexpectedly", connector.name)
        result.problem = f"the target answered with an unexpected error: {_named(unexpected)}"
    with transaction.atomic():
        _record_reconciliation(result, drift_missing=drift_missing, drift_extra=drift_extra,
                               actor=actor, request=request)
        if not result.problem:
            _settle_memberships(connector, present_now=_present_after(present, result),
                                logins=logins, fold=fold, listed_at=listed_at)
    return result


def _apply(call, login: str, done: list[str], failed: dict[str, str]) -> None:
    try:
        call(login)
        done.append(login)
    except (ConnectorProblem, DeliveryError) as problem:
        failed[login] = str(problem)
    except Exception as unexpected:  # one login's odd answer must not stop the others
        failed[login] = f"unexpected error: {_named(unexpected)}"


def _present_after(present: set[str], result: Reconciliation) -> set[str]:
    return (present | set(result.granted)) - set(result.revoked)


def _pending_asks(connector: Connector) -> dict[str, bool]:
    """login → what a pending ask wants (True present, False absent). A revocation is of
    the login that was granted."""
    rows = list(ConnectorMembership.objects.filter(connector=connector, applied=False)
                .values_list("user_id", "user__username", "wanted", "login"))
    current = logins_of(connector, {user_id: username for user_id, username, _, _ in rows})
    asks = {}
    for user_id, _, wanted, granted in rows:
        login = current.get(user_id) if wanted else (granted or current.get(user_id))
        if login:
            asks[login] = wanted
    return asks


def _settle_memberships(connector: Connector, *, present_now: set[str],
                        logins: dict[int, str], fold, listed_at) -> None:
    """Pending asks made before the target was listed, which the target now agrees with,
    are confirmed (a revocation done by this reconciliation, or by the target's operator,
    is no longer pending). A user whose access came back another way (a shift began) and
    who is present has nothing pending either."""
    rows = list(ConnectorMembership.objects.filter(
        connector=connector, applied=False, asked_at__lt=listed_at,
    ).values_list("pk", "user_id", "user__username", "wanted", "version", "login"))
    current = logins_of(connector, {r[1]: r[2] for r in rows if r[1] not in logins})
    folded = {fold(login) for login in present_now}
    now = timezone.now()
    for pk, user_id, _, wanted, version, granted in rows:
        login = logins.get(user_id) or current.get(user_id)
        if not wanted:
            login = granted or login
        if login is None:
            continue
        is_present = fold(login) in folded
        holds_access = user_id in logins
        if is_present == wanted or (is_present and holds_access):
            ConnectorMembership.objects.filter(pk=pk, version=version).update(
                wanted=is_present, applied=True, applied_at=now, last_error="")


def _record_reconciliation(result: Reconciliation, *, drift_missing: list[str],
                           drift_extra: list[str], actor, request) -> None:
    connector = result.connector
    if result.problem:
        first_failure = connector.health != Connector.Health.FAILING
        _set_health(connector, False, result.problem)
        if first_failure:
            event = record(EventKind.CONNECTOR_CHECKED, actor=actor, target=connector,
                           request=request, outcome=Outcome.FAILURE,
                           reason=f"Reconciliation could not read the target: {result.problem}"
                           [:1000])
            _alert_concerned(event, connector)
        return
    failures = "; ".join(f"{login}: {error}" for login, error in result.failed.items())
    _set_health(connector, not result.failed, failures or (
        f"Reconciled: {result.present} present, {result.wanted} with access."), reconciled=True)
    if drift_missing or drift_extra:
        event = record(
            EventKind.CONNECTOR_DRIFT, actor=actor, target=connector, request=request,
            outcome=Outcome.FAILURE,
            reason=_drift_words(drift_missing, drift_extra, connector),
            data={"missing": drift_missing[:LISTED_AT_MOST],
                  "extra": drift_extra[:LISTED_AT_MOST], "missing_count": len(drift_missing),
                  "extra_count": len(drift_extra), "mode": connector.mode})
        _alert_concerned(event, connector)
    if result.granted or result.revoked or result.failed:
        event = record(
            EventKind.CONNECTOR_REPAIRED, actor=actor, target=connector, request=request,
            outcome=Outcome.FAILURE if result.failed else Outcome.SUCCESS,
            reason=failures[:1000],
            data={"granted": result.granted[:LISTED_AT_MOST],
                  "revoked": result.revoked[:LISTED_AT_MOST],
                  "failed": dict(list(result.failed.items())[:LISTED_AT_MOST])})
        if drift_missing or drift_extra or result.failed:
            _alert_concerned(event, connector)


def _drift_words(missing: list[str], extra: list[str], connector: Connector) -> str:
    parts = []
    if missing:
        parts.append(f"missing though they have access: {', '.join(missing[:10])}"
                     + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    if extra:
        parts.append(f"present without access: {', '.join(extra[:10])}"
                     + (f" and {len(extra) - 10} more" if len(extra) > 10 else ""))
    action = "repairing" if connector.mode == Connector.Mode.REPAIR else "report only"
    return f"{connector.name} ({connector.target_name or connector}): {'; '.join(parts)} " \
           f"({action})."


def _alert_concerned(event, connector: Connector) -> None:
    """The group's owners and the security reviewers, on every channel."""
    users = {user.pk: user for user in connector.group.owners.filter(is_active=True)}
    users.update({user.pk: user for user in User.objects.security_reviewers()})
    alert(event, users=list(users.values()), template="connector",
          context={"connector": connector})


def alert_overdue_revocations() -> int:
    """Each revocation a target has not confirmed for 5 minutes alerts once; it stays
    pending and is retried until it succeeds."""
    due = list(ConnectorMembership.objects.filter(
        wanted=False, applied=False, overdue_alerted_at__isnull=True,
        asked_at__lte=timezone.now() - REVOCATION_OVERDUE_AFTER,
    ).select_related("connector__group", "user", "grant"))
    for membership in due:
        with transaction.atomic():
            claimed = ConnectorMembership.objects.filter(
                pk=membership.pk, overdue_alerted_at__isnull=True,
                version=membership.version).update(overdue_alerted_at=timezone.now())
            if not claimed:
                continue
            event = record(
                EventKind.CONNECTOR_REVOCATION_OVERDUE, actor=None,
                target=membership.grant or membership.connector, outcome=Outcome.FAILURE,
                reason=(f"{membership.connector.name} has not confirmed removing "
                        f"{membership.user.get_username()} since "
                        f"{membership.asked_at:%Y-%m-%d %H:%M} UTC: "
                        f"{membership.last_error or 'no answer yet'}")[:1000],
                data={"connector": membership.connector.name,
                      "user": membership.user.get_username()})
            _alert_concerned(event, membership.connector)
    return len(due)


def pending_count_by_connector() -> dict[int, int]:
    counts: dict[int, int] = {}
    for connector_id in ConnectorMembership.objects.filter(
            wanted=False, applied=False).values_list("connector_id", flat=True):
        counts[connector_id] = counts.get(connector_id, 0) + 1
    return counts


def stale(connector: Connector) -> bool:
    """No reconciliation for 5 minutes while enabled: the worker or the target is stuck."""
    return connector.reconciles and connector.enabled and (
        connector.last_reconciled_at is None
        or connector.last_reconciled_at < timezone.now() - timedelta(minutes=5))

