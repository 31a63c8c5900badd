"""Checks a copy of the trail as a SIEM received it (rsyslog's output file of raw messages, or
a JSON lines file) with AUDIT_HMAC_KEY: no gap in the sequence, every MAC recomputed over the
event's sealed fields and the MAC of the event before it, repeats (at-least-once) tolerated
only when identical to the first copy. Lines that are not stream messages are skipped and
counted: anything lost, cut or edited among them shows as a gap or a broken MAC."""

import hmac
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import orjson

from audit import chain
from audit.services import epoch_micros
from siem.messages import MSGID_MAX

SYSLOG, JSONL = "syslog", "jsonl"
_HEADER = re.compile(r"<\d{1,3}>1 (\S+) \S+ \S+ \S+ (\S+) $")
_PARAM = re.compile(r' ([^=\s\]"]+)="((?:[^"\\\]]|\\.)*)"')


class Unreadable(ValueError):
    pass


@dataclass
class Received:
    line: int
    sequence: int
    mac: str
    previous_mac: str
    sealed: list
    readable: dict  # what a SIEM search shows, which must say what the sealed fields say


@dataclass
class CopyReport:
    events: int = 0
    duplicates: int = 0
    skipped: int = 0
    first: int = 0
    last: int = 0
    problem: str = ""

    @property
    def intact(self) -> bool:
        return not self.problem


def _unescape(value: str) -> str:
    return re.sub(r'\\(["\\\]])', r"\1", value)


def parse_syslog(text: str, number: int, sd_id: str) -> Received | None:
    start = text.find(f"[{sd_id} ")
    if start < 0:
        return None
    element = re.compile(rf'\[{re.escape(sd_id)}((?:{_PARAM.pattern})*)\] ').match(text, start)
    if element is None:
        raise Unreadable(f"line {number}: its structured data cannot be read")
    params = {name: _unescape(value) for name, value in _PARAM.findall(element.group(1))}
    message = text[element.end():].removeprefix("\ufeff").rstrip("\r")
    header = _HEADER.search(text, 0, start)
    readable = {"recorded_at": header.group(1), "kind": header.group(2)} if header else {}
    try:
        return Received(number, int(params["seq"]), params["mac"], params["prev"],
                        orjson.loads(message), readable)
    except (KeyError, ValueError) as exc:
        raise Unreadable(f"line {number}: {exc}") from None


def parse_json_line(text: str, number: int) -> Received | None:
    if not text.startswith("{"):
        return None
    try:
        entry = orjson.loads(text)
        readable = {name: entry.get(name) for name in chain.SEALED_FIELDS}
        return Received(number, int(entry["sequence"]), str(entry["mac"]),
                        str(entry["previous_mac"]), entry["sealed"], readable)
    except (KeyError, TypeError, ValueError) as exc:
        raise Unreadable(f"line {number}: {exc}") from None


def received(lines: Iterable[str], fmt: str, sd_id: str, report: CopyReport) -> Iterator:
    """The stream messages of a copy, in the order they arrived; a line that cannot be read
    (torn by a crash, or not ours) is counted as skipped."""
    for number, text in enumerate(lines, start=1):
        text = text.rstrip("\n")
        try:
            item = parse_syslog(text, number, sd_id) if fmt == SYSLOG else \
                parse_json_line(text, number)
        except Unreadable:
            item = None
        if item is None:
            report.skipped += bool(text.strip())
            continue
        yield item


def verify_copy(key: bytes, lines: Iterable[str], *, fmt: str, sd_id: str,
                start_mac: str | None = None, through: int | None = None) -> CopyReport:
    """`start_mac`: the MAC the first event received must follow (from the database, for a
    stream started after the chain's beginning); `through`: the copy must reach that event."""
    report, seen = CopyReport(), {}
    for item in received(lines, fmt, sd_id, report):
        report.problem = _check(key, item, seen, report, start_mac)
        if report.problem:
            return report
    if not seen:
        report.problem = "the copy holds no audit event"
    elif through is not None and report.last < through:
        report.problem = f"the copy ends at event {report.last}, before event {through}"
    return report


def _check(key: bytes, item: Received, seen: dict, report: CopyReport, start_mac) -> str:
    where = f"line {item.line} (event {item.sequence})"
    if not (isinstance(item.sealed, list) and len(item.sealed) == len(chain.SEALED_FIELDS)
            and item.sealed[0] == item.sequence):
        return f"{where}: its sealed fields do not match its sequence"
    if not _readable_agrees(item):
        return f"{where}: its readable fields differ from its sealed fields"
    sealed = chain.canonical(tuple(item.sealed))
    expected_mac = hmac.digest(key, item.previous_mac.encode() + sealed, "sha256").hex()
    if not hmac.compare_digest(expected_mac, item.mac):
        return f"{where}: the event was edited or forged (its MAC does not match)"
    if item.sequence in seen:
        report.duplicates += 1
        return "" if seen[item.sequence] == item.mac else \
            f"{where}: differs from the copy of the same event received earlier"
    if not seen:
        anchor = chain.GENESIS_MAC if item.sequence == 1 else start_mac
        if anchor is not None and not hmac.compare_digest(anchor, item.previous_mac):
            return f"{where}: does not follow the event before it in the trail"
        report.first = item.sequence
    elif item.sequence != report.last + 1:
        if item.sequence > report.last:
            return f"events {report.last + 1} to {item.sequence - 1} are missing ({where})"
        return f"{where}: arrived out of order"
    elif not hmac.compare_digest(seen[report.last], item.previous_mac):
        return f"{where}: does not follow the event before it in the copy"
    seen[item.sequence] = item.mac
    report.last, report.events = item.sequence, report.events + 1
    return ""


def _readable_agrees(item: Received) -> bool:
    sealed = dict(zip(chain.SEALED_FIELDS, item.sealed, strict=True))
    sealed["kind"] = str(sealed["kind"])[:MSGID_MAX] if item.readable.get("kind", "") and \
        len(item.readable["kind"]) == MSGID_MAX else sealed["kind"]  # syslog's MSGID
    for name, shown in item.readable.items():
        if name == "recorded_at":
            try:
                shown = epoch_micros(datetime.fromisoformat(str(shown)))
            except ValueError:
                return False
        if shown != sealed[name]:
            return False
    return True
