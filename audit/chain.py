"""The tamper-evident chain: canonical JSON of each event, HMAC-SHA256 over it and the
previous event's MAC, keyed by AUDIT_HMAC_KEY (from the environment, never the database).

Verification needs only the stored rows and the key, so it runs the same in the command, the
hourly checkpoint and the benchmarks.
"""

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

GENESIS_MAC = "0" * 64

# The fields that are sealed, in the order the verifier reads them from the database.
SEALED_FIELDS = (
    "sequence", "recorded_at", "kind", "outcome", "actor_type", "actor_id", "actor_label",
    "target_type", "target_id", "target_label", "reason", "data", "ip", "user_agent",
    "request_id",
)


def canonical(values: tuple) -> bytes:
    """Canonical JSON of one event: an array of SEALED_FIELDS in order, object keys sorted,
    no whitespace, UTF-8 (RFC 8259 as orjson writes it). `recorded_at` is the integer number
    of microseconds since 1970-01-01T00:00:00Z, exact on every database."""
    return orjson.dumps(values, option=orjson.OPT_SORT_KEYS)


def seal(key: bytes, previous_mac: str, values: tuple) -> str:
    return hmac.digest(key, previous_mac.encode() + canonical(values), "sha256").hex()


@dataclass
class ChainReport:
    count: int
    last_sequence: int
    last_mac: str
    problem: str = ""

    @property
    def intact(self) -> bool:
        return not self.problem


def verify(
    key: bytes,
    rows: Iterable[tuple],
    *,
    start_sequence: int = 0,
    start_mac: str = GENESIS_MAC,
    checkpoints: dict[int, str] | None = None,
) -> ChainReport:
    """Check rows of (*SEALED_FIELDS, mac) ordered by sequence, continuing from
    (start_sequence, start_mac). Stops at the first problem and names the event.

    `checkpoints` maps sequence -> MAC recorded outside the database; each must match.
    """
    expected, previous, count = start_sequence + 1, start_mac, 0
    checkpoints = checkpoints or {}
    for row in rows:
        values, mac = row[:-1], row[-1]
        sequence = values[0]
        if sequence != expected:
            problem = (
                f"event {expected} is missing (deleted or renumbered)"
                if sequence > expected
                else f"event {sequence} is out of order or duplicated"
            )
            return ChainReport(count, expected - 1, previous, problem)
        if not hmac.compare_digest(mac, seal(key, previous, values)):
            problem = f"event {sequence} was edited or forged"
            return ChainReport(count, expected - 1, previous, problem)
        if sequence in checkpoints and not hmac.compare_digest(checkpoints[sequence], mac):
            problem = f"event {sequence} differs from its checkpoint"
            return ChainReport(count, sequence, mac, problem)
        previous, expected, count = mac, expected + 1, count + 1
    return ChainReport(count, expected - 1, previous)
