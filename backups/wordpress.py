"""The database settings of a WordPress site, read from its wp-config.php without running PHP.

A small PHP tokenizer (comments, open and close tags, string literals) finds the
`define( 'DB_…', '…' );` calls and the `$table_prefix = '…';` assignment. A setting whose value
only PHP could know (a function call, a concatenation, a variable inside double quotes, two
different values in two branches) is refused, never guessed.
"""

import errno
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

MAX_CONFIG_BYTES = 1024 * 1024
SETTINGS = ("DB_NAME", "DB_USER", "DB_PASSWORD", "DB_HOST", "DB_CHARSET")
PREFIX = "$table_prefix"
REQUIRED = ("DB_NAME", "DB_USER", "DB_PASSWORD", "DB_HOST", PREFIX)
COMPUTED = "it is computed by PHP"
INTERPOLATED = "it takes the value of a PHP variable inside double quotes"
COMPARISONS = {"==", "===", "!=", "!==", "<=", ">="}

IDENT = r"[A-Za-z_\x80-\U0010ffff][0-9A-Za-z_\x80-\U0010ffff]*"
# Longest first, so that `===` or `.=` is one operator, never `=` and another.
OPERATORS = (r"<=>|[!=]==|\?->|\?\?=|<<=|>>=|\*\*=|[-+*/.%&|^<>!=]=|->|=>|::|&&|\|\||\?\?|<<|>>"
             r"|\*\*|\+\+|--|\.\.\.")
LEXEME = re.compile(rf"""(?P<space>[ \t\n\r]+)
    | (?P<comment>(?://|\#(?!\[))(?:[^\r\n?]|\?(?!>))*|/\*.*?(?:\*/|\Z))
    | (?P<close>\?>)
    | (?P<heredoc><<<[ \t]*(?P<quote>["']?)(?P<label>{IDENT})(?P=quote)\r?\n)
    | (?P<variable>\${IDENT})
    | (?P<word>[0-9A-Za-z_\x80-\U0010ffff]+)
    | (?P<op>{OPERATORS}|.)""", re.VERBOSE | re.DOTALL)
OPEN_TAG = re.compile(r"<\?(?:php\b|=)?", re.IGNORECASE)
QUOTED = re.compile(r"'([^'\\]*(?:\\.[^'\\]*)*)'|`([^`\\]*(?:\\.[^`\\]*)*)`", re.DOTALL)
DOUBLE_PLAIN = re.compile(r'[^"\\${]+')
ESCAPE = re.compile(r'\\(?:([ntrvef\\$"])|([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u\{([0-9A-Fa-f]+)\})')
SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "e": "\x1b", "f": "\f"}
# wpdb::parse_db_host: a socket after ":/", then an IPv6 address (two colons or more) or a
# host with an optional port.
IPV6_HOST = re.compile(r"\[(?P<host>[0-9a-fA-F:]+)\](?::(?P<port>[0-9]*))?|(?P<bare>[0-9a-fA-F:]+)")
HOST = re.compile(r"(?P<host>[^:/]*)(?::(?P<port>[0-9]*))?")


class WordPressConfigError(Exception):
    """wp-config.php cannot be read safely; the message says what is wrong and what to do."""


class Token(NamedTuple):
    kind: str  # "string", "variable", "word", "op" or "end"
    text: str  # as written; for a string whose value only PHP knows, the reason
    value: str | None  # a string literal's value
    pos: int


@dataclass(frozen=True)
class WordPressConfig:
    name: str
    user: str
    password: str = field(repr=False)
    host: str
    port: int | None
    socket: str | None
    table_prefix: str
    charset: str | None

    def database_url(self) -> str:
        """mysql://user:password@host:port/name, every part percent-quoted."""
        if self.socket is not None:
            raise WordPressConfigError(
                f"wp-config.php reaches the database through the socket {self.socket}, but the "
                "emergency backup connects over the network; set the database URL "
                "(mysql://user:password@host:port/name) by hand instead.")
        host = f"[{self.host}]" if ":" in self.host else quote(self.host, safe="")
        port = "" if self.port is None else f":{self.port}"
        return (f"mysql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{host}{port}/{quote(self.name, safe='')}")

    def summary(self) -> dict[str, object]:
        """What the website manager confirms before the backup; never the password."""
        return {"name": self.name, "user": self.user, "host": self.host, "port": self.port,
                "table_prefix": self.table_prefix, "charset": self.charset,
                "password_set": bool(self.password)}


def read_wp_config_file(path: str | Path) -> WordPressConfig:
    """The settings of the wp-config.php at `path` (UTF-8, at most 1 MiB). A symlink is
    refused: it could point the reader at any file this server may read."""
    flags = os.O_NONBLOCK | os.O_NOFOLLOW  # a FIFO planted under the name must not hang us
    try:
        with open(path, "rb", opener=lambda name, mode: os.open(name, mode | flags)) as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise WordPressConfigError(f"{path} is not a regular file; point to the site's "
                                           "own wp-config.php.")
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise WordPressConfigError(f"{path} is a symlink; the backup reads only the "
                                       "site's own wp-config.php, not a link to one.") from None
        raise WordPressConfigError(f"{path} cannot be read ({error.strerror}); check that the "
                                   "website's files directory holds wp-config.php.") from None
    return read_wp_config_bytes(data, str(path))


def read_wp_config_bytes(data: bytes, where: str) -> WordPressConfig:
    """The settings in the bytes of a wp-config.php read from `where` (named in errors)."""
    if len(data) > MAX_CONFIG_BYTES:
        raise WordPressConfigError(f"{where} is larger than 1 MiB, far more than any "
                                   "wp-config.php; check that it is the site's own file.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise WordPressConfigError(f"{where} is not UTF-8 text (byte {error.start}); save it as "
                                   "UTF-8 or set the database URL by hand instead.") from None
    return read_wp_config(text)


def read_wp_config(text: str) -> WordPressConfig:
    """The database settings in the text of a wp-config.php; WordPressConfigError if they
    cannot be known without running PHP, or are missing."""
    end = Token("end", "", None, len(text))
    tokens = [*_tokens(text), end, end, end, end, end]
    found: dict[str, tuple[str, int]] = {}
    for index, token in enumerate(tokens[:-5]):
        if index and tokens[index - 1].text.lower() in ("->", "?->", "::", "$", "function"):
            continue  # a method, a static member, a variable variable or a declaration
        if (token.kind == "word" and token.text.lower() == "define"
                and _is_op(tokens[index + 1], "(")):
            _read_define(text, tokens[index + 2:index + 6], found)
        elif token.kind == "variable" and token.text == PREFIX:
            _read_prefix(text, tokens[index + 1:index + 4], found)
    missing = [name for name in REQUIRED if name not in found]
    if missing:
        raise WordPressConfigError(
            f"wp-config.php does not set {' and '.join(missing)}, which WordPress needs to reach "
            "its database; check that this is the site's own wp-config.php or set the database "
            "URL by hand instead.")
    values = {name: value for name, (value, _) in found.items()}
    if not values["DB_NAME"]:
        raise WordPressConfigError("DB_NAME in wp-config.php is empty; write the database name "
                                   "there or set the database URL by hand instead.")
    if not re.fullmatch(r"[A-Za-z0-9_]*", values[PREFIX]):
        raise WordPressConfigError(
            f"$table_prefix in wp-config.php ({values[PREFIX]!r}) may hold only letters, digits "
            "and underscores, as WordPress requires; correct it in wp-config.php.")
    host, port, socket = _parse_db_host(values["DB_HOST"])
    return WordPressConfig(name=values["DB_NAME"], user=values["DB_USER"],
                           password=values["DB_PASSWORD"], host=host, port=port, socket=socket,
                           table_prefix=values[PREFIX], charset=values.get("DB_CHARSET") or None)


def _read_define(text: str, arguments: list[Token], found: dict[str, tuple[str, int]]) -> None:
    name, comma, value, close = arguments
    if name.kind != "string" or name.value is None:
        raise WordPressConfigError(
            f"wp-config.php defines a setting whose name is computed by PHP (line "
            f"{_line(text, name.pos)}), so its database settings cannot be read safely; set the "
            "database URL by hand instead.")
    if name.value not in SETTINGS:
        return
    if not (_is_op(comma, ",") and _is_plain(value) and _is_op(close, ")")):
        raise _not_plain(name.value, value)
    _record(text, found, name.value, value)


def _read_prefix(text: str, following: list[Token], found: dict[str, tuple[str, int]]) -> None:
    operator, value, after = following
    if operator.kind != "op" or not operator.text.endswith("=") or operator.text in COMPARISONS:
        return  # read, not assigned
    if not (operator.text == "=" and _is_plain(value) and _is_op(after, ";")):
        raise _not_plain(PREFIX, value)
    _record(text, found, PREFIX, value)


def _record(text: str, found: dict[str, tuple[str, int]], name: str, token: Token) -> None:
    if name in found and found[name][0] != token.value:
        raise WordPressConfigError(
            f"{name} is set twice in wp-config.php with different values (lines "
            f"{_line(text, found[name][1])} and {_line(text, token.pos)}); only PHP knows which "
            "one applies, so set the database URL by hand instead.")
    found.setdefault(name, (token.value, token.pos))


def _parse_db_host(value: str) -> tuple[str, int | None, str | None]:
    host, at, path = value.partition(":/")
    socket = "/" + path if at else None
    match = (IPV6_HOST if host.count(":") > 1 else HOST).fullmatch(host)
    port = int(match["port"]) if match and match["port"] else None
    if not match or (port or 0) > 65535:
        raise WordPressConfigError(
            f"DB_HOST in wp-config.php ({value!r}) is not a host, host:port, host:/socket or "
            "[IPv6]:port; correct it or set the database URL by hand instead.")
    host = match["host"] if match["host"] is not None else match["bare"]
    return host or "localhost", port or None, socket


def _tokens(text: str) -> Iterator[Token]:
    """PHP's tokens, without comments and the text outside <?php … ?>."""
    opening = OPEN_TAG.search(text)
    pos = opening.end() if opening else len(text)
    while pos < len(text):
        start = pos
        if text[pos] in "'\"`":
            value, reason, pos = _string(text, pos)
            yield Token("string", reason, value, start)
            continue
        match = LEXEME.match(text, pos)
        kind, pos = match.lastgroup, match.end()
        if kind == "close":  # ?> ends a statement, then plain HTML runs up to the next tag
            yield Token("op", ";", None, start)
            opening = OPEN_TAG.search(text, pos)
            pos = opening.end() if opening else len(text)
        elif kind == "heredoc":
            pos = _heredoc_end(text, pos, match["label"])
            yield Token("string", "it is written as a heredoc", None, start)
        elif kind == "word" and match.group().lower() == "__halt_compiler":
            return  # what follows is data, not PHP
        elif kind in ("variable", "word", "op"):
            yield Token(kind, match.group(), None, start)


def _string(text: str, start: int) -> tuple[str | None, str, int]:
    """The value of the string literal at `start` (None and why, if only PHP knows it) and the
    position after it."""
    if text[start] == '"':
        return _double_quoted(text, start)
    if not (match := QUOTED.match(text, start)):
        raise _unterminated(text, start)
    if match[2] is not None:
        return None, "it runs a shell command", match.end()
    return re.sub(r"\\([\\'])", r"\1", match[1]), "", match.end()


def _double_quoted(text: str, start: int) -> tuple[str | None, str, int]:
    value, reason, pos = bytearray(), "", start + 1
    while True:
        if plain := DOUBLE_PLAIN.match(text, pos):
            value += plain.group().encode("utf-8", "surrogatepass")
            pos = plain.end()
        if pos >= len(text):
            raise _unterminated(text, start)
        char, following = text[pos], text[pos + 1:pos + 2]
        if char == '"':
            break
        if char == "\\":
            pos = _escape(text, pos, value)
        elif char == "$" and re.match(IDENT, following):
            reason, pos = INTERPOLATED, pos + 1
        elif (char, following) in (("$", "{"), ("{", "$")):
            reason, pos = INTERPOLATED, _skip_braces(text, pos + (char == "$"))
        else:
            value += char.encode()
            pos += 1
    try:
        return (None if reason else value.decode()), reason, pos + 1
    except UnicodeDecodeError:
        return None, "its escapes do not make UTF-8 text", pos + 1


def _escape(text: str, pos: int, value: bytearray) -> int:
    match = ESCAPE.match(text, pos)
    if not match or (match[4] and int(match[4], 16) > 0x10FFFF):
        if text.startswith("\\u{", pos):
            raise WordPressConfigError(
                f"wp-config.php has a \\u{{…}} escape PHP cannot read (line {_line(text, pos)}), "
                "so WordPress cannot run either; correct the file.")
        value += b"\\"  # PHP keeps a backslash that starts no escape
        return pos + 1
    simple, octal, hexadecimal, code_point = match.groups()
    if simple:
        value += SIMPLE_ESCAPES.get(simple, simple).encode()
    elif octal or hexadecimal:
        value.append(int(octal, 8) & 0xFF if octal else int(hexadecimal, 16))
    else:
        value += chr(int(code_point, 16)).encode("utf-8", "surrogatepass")
    return match.end()


def _skip_braces(text: str, pos: int) -> int:
    """The position after the {…} interpolation at `pos`, which may hold strings and braces."""
    depth, start = 0, pos
    while pos < len(text):
        if text[pos] in "'\"":
            pos = _string(text, pos)[2]
            continue
        depth += {"{": 1, "}": -1}.get(text[pos], 0)
        pos += 1
        if depth == 0:
            return pos
    raise _unterminated(text, start)


def _heredoc_end(text: str, pos: int, label: str) -> int:
    closing = re.compile(rf"^[ \t]*{re.escape(label)}(?![0-9A-Za-z_\x80-\U0010ffff])", re.M)
    if not (match := closing.search(text, pos)):
        raise _unterminated(text, pos)
    return match.end()


def _is_op(token: Token, text: str) -> bool:
    return token.kind == "op" and token.text == text


def _is_plain(token: Token) -> bool:
    return token.kind == "string" and token.value is not None


def _not_plain(name: str, value: Token) -> WordPressConfigError:
    reason = value.text if value.kind == "string" and value.text else COMPUTED
    return WordPressConfigError(f"{name} is not a plain string in wp-config.php ({reason}); "
                                "set the database URL by hand instead.")


def _unterminated(text: str, pos: int) -> WordPressConfigError:
    return WordPressConfigError(
        f"wp-config.php has a string that never ends (from line {_line(text, pos)}), so "
        "WordPress cannot run it either; correct the file.")


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1
