"""QUALITY Q23/Q24: every edit, deletion, reordering or forgery of the trail is detected, and a
deleted tail is caught against the checkpoint kept outside the database."""

import secrets
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit import chain
from audit.catalogue import EventKind
from audit.models import ChainHead
from audit.services import check_rows, record, stored_rows, write_checkpoint
from tests.audit.helpers import raw, triggers_lifted

pytestmark = pytest.mark.django_db

CHAIN_LENGTH = 10_000
MUTATIONS = 1_200
UNTOUCHED_RUNS = 100
chooser = secrets.SystemRandom()  # unpredictable mutations, different every run


def build_chain(member, count: int) -> None:
    reasons = ["", "routine", "SEV1 outage \u2013 \u202ertl\u202c\r\nline two", "x" * 300]
    for index in range(count):
        record(
            EventKind.SIGN_IN if index % 3 else EventKind.SIGN_IN_FAILED,
            actor=member, target=member, reason=reasons[index % 4],
            data={"index": index, "tags": ["a", str(index % 7)]},
        )


def verify_command(*args) -> str:
    out = StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def mutate(rows: list[tuple]) -> tuple[list[tuple], int, str]:
    """One random single change: edit a sealed field or the MAC, delete, swap or forge a row.
    Returns the rows, and the index from which a verifier must look to see it."""
    rows = list(rows)
    kind = chooser.choice(["edit", "edit_mac", "delete", "swap", "forge_insert", "forge_replace"])
    index = chooser.randrange(len(rows))
    if kind == "edit":
        field = chooser.randrange(1, len(chain.SEALED_FIELDS))
        values = list(rows[index])
        original = values[field]
        values[field] = (
            {**original, "index": -1} if isinstance(original, dict)
            else f"{original}·" if isinstance(original, str) else original
        )
        rows[index] = tuple(values)
    elif kind == "edit_mac":
        rows[index] = (*rows[index][:-1], secrets.token_hex(32))
    elif kind == "delete":
        del rows[index]
    elif kind == "swap":
        other = chooser.choice([i for i in (index - 1, index + 1) if 0 <= i < len(rows)])
        index, other = sorted((index, other))
        rows[index], rows[other] = rows[other], rows[index]
    elif kind == "forge_insert":
        forged = (*rows[index][:-1], chain.seal(b"guessed key", "0" * 64, rows[index][:-1]))
        rows.insert(index, forged)
    else:  # a rewritten row, correctly chained but sealed with a key that is not the deployment's
        values = list(rows[index][:-1])
        values[chain.SEALED_FIELDS.index("reason")] = "forged"
        previous = rows[index - 1][-1] if index else chain.GENESIS_MAC
        rows[index] = (*values, chain.seal(b"wrong key", previous, tuple(values)))
    return rows, max(index - 1, 0), kind


def suffix_report(rows, start: int, head_sequence: int, head_mac: str):
    """Verify from row `start` on, trusting the untouched rows before it, exactly as a full
    run would reach that point (a full run is checked separately, 100 times)."""
    if start == 0:
        return check_rows(rows, head_sequence, head_mac)
    anchor = rows[start - 1]
    report = chain.verify(
        chain_key(), rows[start:], start_sequence=anchor[0], start_mac=anchor[-1]
    )
    if report.intact and (report.last_sequence, report.last_mac) != (head_sequence, head_mac):
        report.problem = "head mismatch"
    return report


def chain_key() -> bytes:
    from audit.services import audit_key

    return audit_key()


# Each event in its own transaction, as in production: 10,000 updates of the head row inside
# one test transaction would leave PostgreSQL 10,000 row versions to step over.
@pytest.mark.django_db(transaction=True)
def test_random_single_mutations_of_a_10000_event_chain_are_all_detected(member):
    build_chain(member, CHAIN_LENGTH)
    rows = list(stored_rows())
    head = ChainHead.objects.get()
    assert len(rows) == CHAIN_LENGTH

    for _ in range(UNTOUCHED_RUNS):
        assert check_rows(rows, head.sequence, head.mac).intact

    missed = []
    seen = set()
    for _ in range(MUTATIONS):
        mutated, start, kind = mutate(rows)
        seen.add(kind)
        if mutated == rows:
            continue  # a swap of two identical rows changes nothing
        if suffix_report(mutated, start, head.sequence, head.mac).intact:
            missed.append(kind)
    assert missed == []
    assert seen == {"edit", "edit_mac", "delete", "swap", "forge_insert", "forge_replace"}


def test_a_deleted_tail_of_1_to_50_events_with_a_rewound_head_is_caught_by_the_checkpoint(
    member,
):
    build_chain(member, 60)
    rows = list(stored_rows())
    head = ChainHead.objects.get()
    checkpoints = {head.sequence: head.mac}
    assert check_rows(rows, head.sequence, head.mac, checkpoints).intact
    for deleted in range(1, 51):
        remaining = rows[:-deleted]
        # The attacker also rewinds the head, so only the outside checkpoint can tell.
        assert check_rows(remaining, remaining[-1][0], remaining[-1][-1]).intact
        report = check_rows(remaining, remaining[-1][0], remaining[-1][-1], checkpoints)
        assert "events after it were deleted" in report.problem, deleted


def test_verify_audit_reports_an_intact_chain(member):
    build_chain(member, 25)
    assert verify_command().strip() == "audit chain intact: 25 events"


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("UPDATE audit_auditevent SET reason = 'nothing to see' WHERE sequence = 7",
         "event 7 was edited or forged"),
        ("DELETE FROM audit_auditevent WHERE sequence = 12", "event 12 is missing"),
        ("UPDATE audit_auditevent SET sequence = -sequence WHERE sequence IN (5, 6)",
         "event 5 is missing"),
        ("DELETE FROM audit_auditevent WHERE sequence = 20", "the chain head is at event 20"),
        ("UPDATE audit_auditevent SET recorded_at = recorded_at WHERE sequence = 3", None),
    ],
)
def test_verify_audit_names_the_first_tampered_event(member, tamper, problem):
    build_chain(member, 20)
    with triggers_lifted():
        raw(tamper)
    if problem is None:  # a no-op write is not tampering
        verify_command()
        return
    with pytest.raises(CommandError, match=problem):
        verify_command()


def test_swapped_rows_are_detected(member):
    build_chain(member, 10)
    with triggers_lifted():
        raw("UPDATE audit_auditevent SET sequence = 1000 WHERE sequence = 4")
        raw("UPDATE audit_auditevent SET sequence = 4 WHERE sequence = 5")
        raw("UPDATE audit_auditevent SET sequence = 5 WHERE sequence = 1000")
    with pytest.raises(CommandError, match="event 4 was edited or forged"):
        verify_command()


def test_a_deleted_tail_is_caught_with_the_checkpoint_file(member, settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path
    build_chain(member, 30)
    write_checkpoint()
    with triggers_lifted():
        raw("DELETE FROM audit_auditevent WHERE sequence > 26")
        raw("UPDATE audit_chainhead SET sequence = 26, mac = "
            "(SELECT mac FROM audit_auditevent WHERE sequence = 26)")
    assert verify_command().strip() == "audit chain intact: 26 events"
    with pytest.raises(CommandError, match="events after it were deleted"):
        verify_command("--checkpoint")  # from the checkpoint storage
    with pytest.raises(CommandError, match="events after it were deleted"):
        verify_command("--checkpoint", str(tmp_path))  # a copy of its objects


def test_a_checkpoints_from_earlier_versions_file_still_counts(member, settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path
    build_chain(member, 30)
    head = ChainHead.objects.get()
    (tmp_path / "audit-checkpoints.jsonl").write_text(
        f'{{"sequence": {head.sequence}, "mac": "{head.mac}"}}\n')
    assert "1 checkpoints agree" in verify_command("--checkpoint")
    with triggers_lifted():
        raw("DELETE FROM audit_auditevent WHERE sequence > 26")
        raw("UPDATE audit_chainhead SET sequence = 26, mac = "
            "(SELECT mac FROM audit_auditevent WHERE sequence = 26)")
    for copy in (tmp_path, tmp_path / "audit-checkpoints.jsonl"):
        with pytest.raises(CommandError, match="events after it were deleted"):
            verify_command("--checkpoint", str(copy))


def test_an_empty_checkpoint_storage_is_not_a_pass(member, settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path / "never-written"
    build_chain(member, 3)
    with pytest.raises(CommandError, match="holds no checkpoint yet"):
        verify_command("--checkpoint")


def test_the_hourly_checkpoint_reports_a_broken_chain(member, reviewer, settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path
    build_chain(member, 5)
    with triggers_lifted():
        raw("UPDATE audit_auditevent SET actor_label = 'someone else' WHERE sequence = 2")
    checkpoint = write_checkpoint()
    assert not checkpoint.verified
    assert checkpoint.problem == "event 2 was edited or forged"
    from audit.models import AuditEvent

    broken = AuditEvent.objects.get(kind=EventKind.CHAIN_BROKEN)
    assert broken.deliveries.filter(recipient=reviewer.email).exists()
    stored = list(tmp_path.glob("audit-checkpoint-*.json"))
    assert len(stored) == 1 and '"sequence": 5' in stored[0].read_text()


def test_a_missing_checkpoint_file_is_a_clear_error(member, tmp_path):
    with pytest.raises(CommandError, match="cannot read checkpoint file"):
        verify_command("--checkpoint", str(tmp_path / "absent.jsonl"))
