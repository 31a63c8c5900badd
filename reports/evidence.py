"""The evidence pack: for one incident or one grant, every audit event concerned (with the
chain MACs), the alerts delivered for them, the actions reported, the reviews and the grants,
as JSON and as a printable page.

The pack carries each event's sealed fields, its MAC and the MAC it chains from, so anyone
holding AUDIT_HMAC_KEY can recompute every MAC from the pack alone; `verify_pack` also holds
the pack against the database and the whole chain. Message bodies are left out: they can hold
secrets (one-time codes, abort links).
"""

import hmac
import json
from datetime import datetime, timedelta
from functools import reduce
from operator import or_

from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from audit import chain
from audit.catalogue import EventKind
from audit.models import AuditEvent, ChainHead, Delivery
from audit.services import EPOCH, audit_key, epoch_micros, record, sealed_values, verify_trail
from breakglass.models import AccessRequest, Grant, GrantActivity
from review.models import Review
from risk.models import Incident

PACK_FORMAT = "breakglass-evidence/1"
SUBJECT_MODELS = {"incident": Incident, "grant": Grant}
HOW_TO_VERIFY = [
    "manage.py verify_evidence FILE.json  (every MAC, against the database and the chain)",
    "manage.py verify_audit  (the whole audit chain)",
]


def find_subject(kind: str, identifier: str) -> Incident | Grant | None:
    """The incident (by external id, else primary key) or grant (by primary key) named."""
    identifier = identifier.strip()
    if kind == "incident":
        found = Incident.objects.filter(external_id=identifier).first()
        if found is not None:
            return found
    if not identifier.isdigit():
        return None
    return SUBJECT_MODELS[kind].objects.filter(pk=int(identifier)).first()


def build_pack(*, incident: Incident | None = None, grant: Grant | None = None) -> dict:
    """The pack as JSON-able data, up to the chain head read first (so an event recorded
    meanwhile is either wholly in the pack or after its head)."""
    if (incident is None) == (grant is None):
        raise ValueError("an evidence pack is about one incident or one grant")
    head = ChainHead.objects.get(pk=1)
    subject_object = incident if incident is not None else grant
    concerned = _concerned(subject_object)
    events = _events_about(subject_object, concerned, up_to=head.sequence)
    grants, requests = concerned["grants"], concerned["requests"]
    subject = (_incident_facts(incident) if incident is not None
               else {"type": "grant", "id": grant.pk, "label": str(grant)})
    return {
        "format": PACK_FORMAT,
        "subject": subject,
        "generated_at": _iso(timezone.now()),
        "chain_head": {"sequence": head.sequence, "mac": head.mac},
        "sealed_fields": list(chain.SEALED_FIELDS),
        "events": _event_entries(events),
        "grants": [_grant_facts(one, [r for r in requests if r.grant_id == one.pk])
                   for one in grants],
        "recovery_attempts": [_attempt_facts(attempt) for attempt in concerned["attempts"]],
        "reported_actions": _reported_actions(grants, events),
        "reviews": [_review_facts(review) for review in concerned["reviews"]],
        "how_to_verify": HOW_TO_VERIFY,
    }


def _concerned(subject: Incident | Grant) -> dict[str, list]:
    """The grants under an incident (or the grant itself), the incident's recovery attempts,
    the grants' access requests and the reviews of all of them."""
    if isinstance(subject, Incident):
        grants = list(subject.grants.select_related("user", "group", "ended_by").order_by("pk"))
        attempts = list(subject.recovery_attempts.select_related("policy", "initiator")
                        .order_by("pk"))
    else:
        grants, attempts = [subject], []
    requests = list(AccessRequest.objects.filter(grant__in=grants)
                    .select_related("requester", "decided_by")
                    .prefetch_related("approvals__approver").order_by("pk"))
    reviews = list(Review.objects.filter(Q(grant__in=grants) | Q(attempt__in=attempts))
                   .select_related("reviewed_by").order_by("pk"))
    return {"grants": grants, "attempts": attempts, "requests": requests, "reviews": reviews}


def _events_about(subject, concerned: dict[str, list], *, up_to: int) -> list[AuditEvent]:
    """Events whose target is the subject or anything concerned, then the events about their
    alerts' delivery (a delivery dead-lettered or retried), in sequence order."""
    targets = [subject, *(item for items in concerned.values() for item in items)]
    events = _events_targeting(targets, up_to=up_to)
    deliveries = Delivery.objects.filter(event__in=events).only("pk")
    events += _events_targeting(deliveries, up_to=up_to)
    unique = {event.sequence: event for event in events}
    return [unique[sequence] for sequence in sorted(unique)]


def _events_targeting(targets, *, up_to: int) -> list[AuditEvent]:
    ids_by_type: dict[str, set[str]] = {}
    for target in targets:
        # The same "app_label.model_name" and str(pk) that audit.services.record() writes.
        ids_by_type.setdefault(target._meta.label_lower, set()).add(str(target.pk))
    if not ids_by_type:
        return []
    about = reduce(or_, (Q(target_type=target_type, target_id__in=ids)
                         for target_type, ids in ids_by_type.items()))
    return list(AuditEvent.objects.filter(about, sequence__lte=up_to).order_by("sequence"))


def _event_entries(events: list[AuditEvent]) -> list[dict]:
    previous_sequences = [event.sequence - 1 for event in events]
    previous_macs = dict(AuditEvent.objects.filter(sequence__in=previous_sequences)
                         .values_list("sequence", "mac"))
    previous_macs[0] = chain.GENESIS_MAC  # the first event chains from the genesis value
    deliveries: dict[int, list[dict]] = {}
    for delivery in Delivery.objects.filter(event__in=events).order_by("pk"):
        deliveries.setdefault(delivery.event_id, []).append(_delivery_facts(delivery))
    entries = []
    for event in events:
        entry = dict(zip(chain.SEALED_FIELDS, sealed_values(event), strict=True))
        entry["recorded_at"] = _iso(EPOCH + timedelta(microseconds=entry["recorded_at"]))
        # A missing predecessor (deleted row) leaves this empty: the MAC check then fails.
        entry["previous_mac"] = previous_macs.get(event.sequence - 1, "")
        entry["mac"] = event.mac
        entry["deliveries"] = deliveries.get(event.pk, [])
        entries.append(entry)
    return entries


def sealed_from_entry(entry: dict) -> tuple:
    """An event's sealed values as `audit.chain.seal` takes them, read back from the pack."""
    if not isinstance(entry.get("sequence"), int) or isinstance(entry["sequence"], bool):
        raise ValueError("its sequence is not an integer")
    return tuple(
        epoch_micros(datetime.fromisoformat(entry[name])) if name == "recorded_at" else entry[name]
        for name in chain.SEALED_FIELDS
    )


def verify_pack(pack) -> list[str]:
    """Problems found, none for a sound pack: (a) each MAC recomputes from the event's fields
    in the pack and the MAC it chains from, with the current key; (b) each event is still in
    the database, unchanged, and so is the chain head the pack was cut at, and no event about
    the subject up to that head is missing from the pack; (c) the database chain is intact."""
    entries = pack.get("events") if isinstance(pack, dict) else None
    if not isinstance(entries, list):
        return ["this is not an evidence pack: it has no list of events"]
    problems, sealed = _check_macs(entries)
    problems += _check_against_database(pack, sealed)
    report = verify_trail()
    if not report.intact:
        problems.append(f"the audit chain in the database is broken: {report.problem}")
    return problems


def _check_macs(entries: list) -> tuple[list[str], dict[int, tuple]]:
    key, problems, sealed = audit_key(), [], {}
    for position, entry in enumerate(entries, start=1):
        try:
            values = sealed_from_entry(entry)
            recomputed = chain.seal(key, str(entry["previous_mac"]), values)
            mac_matches = hmac.compare_digest(str(entry["mac"]).encode(), recomputed.encode())
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"entry {position} of the pack is not a readable event ({exc})")
            continue
        sequence = values[0]
        if sequence in sealed:
            problems.append(f"event {sequence} appears twice in the pack")
        elif not mac_matches:
            problems.append(f"event {sequence}: its MAC does not match its content in the pack "
                            "(the pack was edited, or it was sealed with another key)")
        sealed[sequence] = (values, entry["mac"])
    return problems, sealed


def _check_against_database(pack: dict, sealed: dict[int, tuple]) -> list[str]:
    problems = []
    stored = {event.sequence: event for event in AuditEvent.objects.filter(sequence__in=sealed)}
    for sequence, (values, mac) in sorted(sealed.items()):
        event = stored.get(sequence)
        if event is None:
            problems.append(f"event {sequence} is no longer in the database")
        elif event.mac != mac or (chain.canonical(sealed_values(event))
                                  != chain.canonical(values)):
            problems.append(f"event {sequence} in the database differs from the pack")
    head = pack.get("chain_head")
    try:
        head_sequence, head_mac = int(head["sequence"]), str(head["mac"])
    except (KeyError, TypeError, ValueError):
        return [*problems, "the pack does not say at which chain head it was cut"]
    stored_head = AuditEvent.objects.filter(sequence=head_sequence).values_list(
        "mac", flat=True).first()
    if head_sequence and stored_head != head_mac:
        problems.append(f"the chain head the pack was cut at (event {head_sequence}) is "
                        "missing or different in the database")
    problems += _check_completeness(pack.get("subject"), sealed, head_sequence)
    return problems


def _check_completeness(subject, sealed: dict, head_sequence: int) -> list[str]:
    """Events about the subject up to the pack's head must all be in it: removing an event
    from the pack leaves every remaining MAC valid, so only the database can tell."""
    try:
        kind, subject_id = subject["type"], int(subject["id"])
        model = SUBJECT_MODELS[kind]
    except (KeyError, TypeError, ValueError):
        return ["the pack does not name an incident or a grant as its subject"]
    found = model.objects.filter(pk=subject_id).first()
    if found is None:
        return [f"the pack's {kind} #{subject_id} is not in the database"]
    expected = _events_about(found, _concerned(found), up_to=head_sequence)
    missing = [event.sequence for event in expected if event.sequence not in sealed]
    if not missing:
        return []
    shown = ", ".join(str(sequence) for sequence in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    return [f"events about this {kind} are missing from the pack: {shown}{more}"]


@transaction.atomic
def record_export(subject: Incident | Grant, pack: dict, *, actor, files: list[str],
                  request=None) -> AuditEvent:
    """Audit an export. Written after the pack was built: the export is not part of it."""
    return record(EventKind.EVIDENCE_EXPORTED, actor=actor, target=subject, request=request,
                  data={"files": files, "events": len(pack["events"]),
                        "chain_head": pack["chain_head"]["sequence"]})


def pack_json(pack: dict) -> str:
    return json.dumps(pack, indent=2, ensure_ascii=False) + "\n"


def pack_html(pack: dict, *, request=None) -> str:
    """The printable page. With a request, the page's style carries the CSP nonce."""
    events = [{**entry, "data_text": json.dumps(entry["data"], ensure_ascii=False,
                                                 sort_keys=True, separators=(",", ":"))}
              for entry in pack["events"]]
    return render_to_string("review/evidence.html", {"pack": pack, "events": events},
                            request=request)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="microseconds") if moment else ""


def _username(user) -> str:
    return user.get_username() if user else ""


def _incident_facts(incident: Incident) -> dict:
    return {"type": "incident", "id": incident.pk, "label": str(incident),
            "external_id": incident.external_id, "title": incident.title,
            "severity": incident.severity, "status": incident.status, "url": incident.url,
            "opened_at": _iso(incident.opened_at), "resolved_at": _iso(incident.resolved_at)}


def _grant_facts(grant: Grant, requests: list[AccessRequest]) -> dict:
    return {
        "id": grant.pk, "label": str(grant), "holder": _username(grant.user),
        "group": grant.group.slug, "status": grant.status, "source": grant.source,
        "reason": grant.reason, "incident": grant.incident, "severity": grant.severity,
        "is_drill": grant.is_drill, "risk": grant.risk,
        "requested_at": _iso(grant.requested_at), "activated_at": _iso(grant.activated_at),
        "expires_at": _iso(grant.expires_at), "ended_at": _iso(grant.ended_at),
        "ended_by": _username(grant.ended_by), "end_reason": grant.end_reason,
        "requests": [_request_facts(access_request) for access_request in requests],
    }


def _request_facts(access_request: AccessRequest) -> dict:
    return {
        "id": access_request.pk, "kind": access_request.kind, "status": access_request.status,
        "requester": _username(access_request.requester), "minutes": access_request.minutes,
        "reason": access_request.reason, "incident": access_request.incident,
        "created_at": _iso(access_request.created_at),
        "decided_at": _iso(access_request.decided_at),
        "decided_by": _username(access_request.decided_by), "comment": access_request.comment,
        "approvals": [{"approver": _username(approval.approver), "comment": approval.comment,
                       "created_at": _iso(approval.created_at)}
                      for approval in access_request.approvals.all()],
    }


def _attempt_facts(attempt) -> dict:
    return {"id": attempt.pk, "label": str(attempt), "initiator": _username(attempt.initiator),
            "status": attempt.status, "reason": attempt.reason, "is_drill": attempt.is_drill,
            "opened_at": _iso(attempt.opened_at), "broken_at": _iso(attempt.broken_at),
            "ended_at": _iso(attempt.ended_at)}


def _delivery_facts(delivery: Delivery) -> dict:
    return {"channel": delivery.channel, "recipient": delivery.recipient,
            "status": delivery.status, "attempts": delivery.attempts,
            "created_at": _iso(delivery.created_at), "sent_at": _iso(delivery.sent_at),
            "provider_message_id": delivery.provider_message_id,
            "last_error": delivery.last_error}


def _reported_actions(grants: list[Grant], events: list[AuditEvent]) -> list[dict]:
    sealed_by = {event.data.get("activity"): event.sequence for event in events
                 if event.kind == EventKind.GRANT_ACTIVITY and isinstance(event.data, dict)}
    activities = (GrantActivity.objects.filter(grant__in=grants).select_related("application")
                  .order_by("happened_at", "pk"))
    return [{"grant": activity.grant_id, "action": activity.action, "detail": activity.detail,
             "happened_at": _iso(activity.happened_at), "reported_at": _iso(activity.reported_at),
             "application": activity.application.name if activity.application else "",
             "event": sealed_by.get(activity.pk)}
            for activity in activities]


def _review_facts(review: Review) -> dict:
    return {
        "id": review.pk, "label": str(review), "path": review.path, "grant": review.grant_id,
        "attempt": review.attempt_id, "subject": review.subject_label,
        "is_drill": review.is_drill, "flags": review.flags, "opened_at": _iso(review.opened_at),
        "outcome": review.outcome, "notes": review.notes,
        "postmortem_url": review.postmortem_url, "reviewed_by": _username(review.reviewed_by),
        "reviewed_at": _iso(review.reviewed_at), "escalated_at": _iso(review.escalated_at),
        "aborted_at": _iso(review.aborted_at),
    }
