"""How one audit event looks in the SIEM: an RFC 5424 syslog message or a JSON line, each
carrying the event's sealed fields, its MAC and the MAC before it, so the copy can be checked
with AUDIT_HMAC_KEY alone (siem/verify.py).

Syslog: APP-NAME "breakglass", MSGID the event kind (at most 32 characters, RFC 5424's limit;
the full kind is in the MSG), STRUCTURED-DATA `[<SIEM_SYSLOG_SD_ID> seq="…" mac="…" prev="…"]`
and MSG the canonical JSON the MAC sealed (audit/chain.py). The default SD-ID's number, 32473,
is the example Private Enterprise Number of RFC 5612: an organisation with its own PEN sets
SIEM_SYSLOG_SD_ID."""

import socket

import orjson
from django.conf import settings

from audit import chain
from audit.services import EPOCH, MICROSECOND

APP_NAME = "breakglass"
FACILITY_AUTHPRIV = 10
SEVERITY = {"success": 6, "denied": 4, "failure": 4}  # informational; warning
MSGID_MAX = 32


class MessageTooLarge(Exception):
    pass


def escape_sd_value(value: str) -> str:
    """RFC 5424 section 6.3.3: inside PARAM-VALUE, `"`, `\\` and `]` are escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def sealed_json(values: tuple) -> bytes:
    """The canonical JSON the MAC sealed, with DEL (which JSON allows raw) written as an
    escape: syslog receivers rewrite raw control characters (rsyslog's
    escapeControlCharactersOnReceive). The same JSON value, so a verifier that parses and
    re-canonicalises the MSG gets exactly the sealed bytes back."""
    return chain.canonical(values).replace(b"\x7f", b"\\u007f")


def _hostname() -> str:
    name = socket.gethostname() or "-"
    return "".join(c for c in name if 33 <= ord(c) <= 126)[:255] or "-"


HOSTNAME = _hostname()


def syslog_message(row: tuple, previous_mac: str) -> bytes:
    """`row` is (*SEALED_FIELDS, mac), as audit.services.stored_rows() reads it."""
    values, mac = row[:-1], row[-1]
    sequence, micros, kind, outcome = values[:4]
    header = "<{}>1 {} {} {} - {} ".format(
        FACILITY_AUTHPRIV * 8 + SEVERITY.get(outcome, 5),
        (EPOCH + micros * MICROSECOND).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), HOSTNAME, APP_NAME,
        kind[:MSGID_MAX])
    mac, previous_mac = escape_sd_value(mac), escape_sd_value(previous_mac)
    data = f'[{settings.SIEM_SYSLOG_SD_ID} seq="{sequence}" mac="{mac}" prev="{previous_mac}"]'
    return _within_limit((header + data + " ").encode() + sealed_json(values), sequence)


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 section 3.4.1 (and RFC 5425 section 4.3): `MSG-LEN SP SYSLOG-MSG`."""
    return str(len(message)).encode() + b" " + message


def json_line(row: tuple, previous_mac: str) -> bytes:
    """One object per event: readable fields for the SIEM's searches, and `sealed` (the array
    the MAC sealed), `mac` and `previous_mac` for the verifier."""
    values, mac = row[:-1], row[-1]
    readable = dict(zip(chain.SEALED_FIELDS, values, strict=True))
    readable["recorded_at"] = EPOCH + values[1] * MICROSECOND
    line = orjson.dumps({**readable, "sealed": values, "mac": mac, "previous_mac": previous_mac},
                        option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z) + b"\n"
    return _within_limit(line, values[0])


def _within_limit(message: bytes, sequence: int) -> bytes:
    if len(message) > settings.SIEM_MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"event {sequence} is {len(message)} bytes, more than SIEM_MAX_MESSAGE_BYTES "
            f"({settings.SIEM_MAX_MESSAGE_BYTES}): raise the destination's maximum message "
            "size and that setting; the stream waits at this event")
    return message
