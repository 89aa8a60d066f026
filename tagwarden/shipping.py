"""The syslog sink: audit lines, already written to the file, sent as RFC 5424 messages.

The target is the repository's git config ``tagwarden.syslog`` (docs/syslog.md)::

    unix:/dev/log                  a unix socket, datagram or stream
    udp://HOST:PORT                RFC 5426
    tcp://HOST:PORT                RFC 6587 octet-counting framing
    ...?facility=local0&app=tagwarden

Each line becomes one message whose MSG is the line itself, byte for byte, after the
header ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID -``. The lines are ASCII (the
audit writer escapes everything else), so MSG is RFC 5424's MSG-ANY and carries no BOM:
a receiver such as rsyslog keeps a BOM as part of the message, and the JSON would no
longer arrive as written.

The file is the record of truth; this sink is a copy. ``send`` never raises: it returns
how many lines were handed over and, when not all of them were, why. Resolving, connecting
and sending share one deadline of ``TIMEOUT`` seconds, so an unreachable sink costs a push
at most that. No structlog here (only audit.py imports it), and nothing is imported by
the hook unless a target is configured.
"""
from __future__ import annotations

import json
import os
import socket
import time
from typing import NamedTuple, Optional
from urllib.parse import parse_qsl, urlsplit

TIMEOUT = 1.0          # seconds, for everything one send() does
DEFAULT_PORT = 514     # RFC 5426 for udp; the customary port for syslog over tcp
DEFAULT_FACILITY = 16  # local0: a facility of its own, routed with one selector
DEFAULT_APP = "tagwarden"

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13,
    "console": 14, "clock": 15, **{f"local{i}": 16 + i for i in range(8)},
}
EMERG, ALERT, CRIT, ERR, WARNING, NOTICE, INFO, DEBUG = range(8)


class TargetError(ValueError):
    """The target is not one this sink understands."""


class Target(NamedTuple):
    scheme: str            # "unix", "udp", "tcp"
    address: str           # a socket path, or a host name or address
    port: Optional[int]    # None for unix
    facility: int
    app: str


def parse(text: str) -> Target:
    """The Target ``text`` names; TargetError says what is wrong with it."""
    text = text.strip()
    base, _, query = text.partition("?")
    options = _options(query)
    facility = _facility(options.get("facility"))
    app = options.get("app", DEFAULT_APP)
    if not 1 <= len(app) <= 48 or not _printable(app):
        raise TargetError(f"app must be 1 to 48 printable ASCII characters, not {app!r}")
    scheme, sep, rest = base.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("unix", "udp", "tcp"):
        raise TargetError("expected unix:/PATH, udp://HOST:PORT or tcp://HOST:PORT")
    if scheme == "unix":
        path = rest[2:] if rest.startswith("///") else rest  # unix:///dev/log too
        if not path.startswith("/") or "\x00" in path:
            raise TargetError(f"unix: needs an absolute socket path, not {path!r}")
        return Target("unix", path, None, facility, app)
    try:
        parts = urlsplit(base)
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # a port out of range, a bad [address]
        raise TargetError(str(exc)) from None
    if not rest.startswith("//") or not host or parts.username is not None or \
            parts.password is not None or parts.path not in ("", "/") or parts.fragment:
        raise TargetError(f"expected {scheme}://HOST:PORT")
    return Target(scheme, host, port or DEFAULT_PORT, facility, app)


def _options(query: str) -> dict[str, str]:
    if not query:
        return {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise TargetError(f"cannot read the options {query!r}") from None
    unknown = sorted({k for k, _ in pairs} - {"facility", "app"})
    if unknown:
        raise TargetError(f"unknown option {unknown[0]!r} (known: facility, app)")
    return dict(pairs)


def _facility(value: Optional[str]) -> int:
    if value is None:
        return DEFAULT_FACILITY
    number = FACILITIES.get(value.lower())
    if number is None and value.isdigit() and int(value) <= 23:
        number = int(value)
    if number is None:
        raise TargetError(f"unknown facility {value!r} (kern, user, ..., local0 to local7, "
                          "or 0 to 23)")
    return number


def _printable(text: str) -> bool:
    return all(33 <= ord(c) <= 126 for c in text)


def severity(record: dict) -> int:
    """info for what was accepted or landed, warning for what was warned about, refused or
    did not land, err for an incident."""
    event = record.get("event")
    if event == "incident":
        return ERR
    if event == "applied":
        return INFO
    if event == "not_applied":
        return WARNING
    if event == "decision":
        return INFO if record.get("decision") == "accepted" else WARNING
    return NOTICE


def message(line: str, facility: int, app: str, hostname: str, pid: int) -> bytes:
    """One RFC 5424 message for one audit line: the header, no structured data, the line."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        record = {}
    ts = record.get("ts")
    msgid = record.get("event")
    header = "<%d>1 %s %s %s %d %s - " % (
        facility * 8 + severity(record),
        ts if isinstance(ts, str) and ts and _printable(ts) else "-",
        hostname, app, pid,
        msgid if isinstance(msgid, str) and 1 <= len(msgid) <= 32 and _printable(msgid)
        else "-")
    data = line.encode("utf-8")
    if not data.isascii():  # never, from audit.py; RFC 5424 wants the BOM for UTF-8
        data = b"\xef\xbb\xbf" + data
    return header.encode("ascii") + data


def _hostname() -> str:
    name = socket.gethostname()
    return name[:255] if name and _printable(name[:255]) else "-"


class _Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self, doing: str) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise _Failed(doing, socket.timeout("timed out"))
        return left


class _Failed(Exception):
    """What failed (resolving, connecting, sending), why, and how many lines were handed
    over before it."""

    def __init__(self, doing: str, error: BaseException, sent: int = 0):
        super().__init__(doing, error, sent)
        self.doing, self.error, self.sent = doing, error, sent

    def __str__(self) -> str:
        exc = self.error
        if isinstance(exc, socket.gaierror):
            why = exc.strerror or str(exc)
        elif isinstance(exc, socket.timeout):
            why = f"timed out (limit {TIMEOUT:g} s for the whole send)"
        elif isinstance(exc, OSError) and exc.strerror:
            why = exc.strerror
        else:
            why = f"{type(exc).__name__}: {exc}"
        return f"{self.doing}: {why}"


def send(target_text: str, lines: list[str]) -> tuple[int, Optional[str]]:
    """Send each line as one message to the target; (lines handed over, error or None).

    Stops at the first error. For udp, "handed over" is all that can be known: a datagram
    nobody receives is not an error here. Never raises."""
    try:
        target = parse(target_text)
    except TargetError as exc:
        return 0, f"malformed target: {exc}"
    try:
        deadline = _Deadline(TIMEOUT)
        hostname, pid = _hostname(), os.getpid()
        messages = [message(line, target.facility, target.app, hostname, pid)
                    for line in lines]
        if target.scheme == "unix":
            return _unix(target.address, messages, deadline), None
        sock_type = socket.SOCK_DGRAM if target.scheme == "udp" else socket.SOCK_STREAM
        addresses = _resolve(target.address, target.port, sock_type, deadline)
        if target.scheme == "udp":
            return _datagrams(_udp_socket(addresses), messages, deadline,
                              addresses[0][4]), None
        return _tcp(addresses, messages, deadline), None
    except _Failed as exc:
        return exc.sent, str(exc)
    except Exception as exc:  # whatever it is, the push goes on: the file has the lines
        return 0, str(_Failed("shipping", exc))


def _resolve(host: str, port: int, sock_type: int, deadline: _Deadline) -> list[tuple]:
    """getaddrinfo within the deadline: an address needs no lookup; a name is looked up
    in a thread that is abandoned when the resolver takes too long (the hook exits
    without waiting for it)."""
    try:
        return socket.getaddrinfo(host, port, 0, sock_type, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    import threading

    found: list = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, 0, sock_type))
        except Exception as exc:
            found.append(exc)

    worker = threading.Thread(target=lookup, name="tagwarden-resolve", daemon=True)
    worker.start()
    worker.join(deadline.left("resolving the host"))
    if not found:
        raise _Failed("resolving the host", socket.timeout("timed out"))
    if isinstance(found[0], Exception):
        raise _Failed("resolving the host", found[0])
    return found[0]


def _udp_socket(addresses: list[tuple]) -> socket.socket:
    family, sock_type, proto = addresses[0][:3]
    return socket.socket(family, sock_type, proto)


def _datagrams(sock: socket.socket, messages: list[bytes], deadline: _Deadline,
               address=None) -> int:
    """One datagram per message; ``address`` for an unconnected (udp) socket, which
    reports no ICMP errors: a listener that is down looks the same on every push."""
    sent = 0
    with sock:
        try:
            for data in messages:
                sock.settimeout(deadline.left("sending"))
                if address is None:
                    sock.send(data)
                else:
                    sock.sendto(data, address)
                sent += 1
        except _Failed as exc:
            exc.sent = sent
            raise
        except OSError as exc:
            raise _Failed("sending", exc, sent) from None
    return sent


def _tcp(addresses: list[tuple], messages: list[bytes], deadline: _Deadline) -> int:
    error: Optional[_Failed] = None
    for family, sock_type, proto, _, address in addresses:
        sock = socket.socket(family, sock_type, proto)
        try:
            sock.settimeout(deadline.left("connecting"))
            sock.connect(address)
        except (OSError, _Failed) as exc:
            sock.close()
            error = exc if isinstance(exc, _Failed) else _Failed("connecting", exc)
            if isinstance(error.error, socket.timeout):
                break
            continue
        return _stream(sock, messages, deadline)
    raise error or _Failed("connecting", OSError("no address to connect to"))


def _stream(sock: socket.socket, messages: list[bytes], deadline: _Deadline) -> int:
    """RFC 6587 octet counting, ``LENGTH SP MESSAGE``, all messages in one sendall. A
    stream does not say how much arrived: on failure none counts as handed over."""
    data = b"".join(b"%d %s" % (len(m), m) for m in messages)
    with sock:
        try:
            sock.settimeout(deadline.left("sending"))
            sock.sendall(data)
        except OSError as exc:
            raise _Failed("sending", exc) from None
    return len(messages)


def _unix(path: str, messages: list[bytes], deadline: _Deadline) -> int:
    """A datagram socket like /dev/log, else a stream socket with octet counting."""
    import errno

    for sock_type in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        sock = socket.socket(socket.AF_UNIX, sock_type)
        try:
            sock.settimeout(deadline.left("connecting"))
            sock.connect(path)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EPROTOTYPE and sock_type == socket.SOCK_DGRAM:
                continue  # a stream socket
            raise _Failed("connecting", exc) from None
        except _Failed:
            sock.close()
            raise
        if sock_type == socket.SOCK_DGRAM:
            return _datagrams(sock, messages, deadline)
        return _stream(sock, messages, deadline)
    raise AssertionError("unreachable")
