"""The syslog sink (git config tagwarden.syslog): every audit line, once written to the
file, arrives as the MSG of one RFC 5424 message, byte for byte, at a real rsyslogd over
udp, tcp and unix sockets. A sink that fails, or a target that makes no sense, never
refuses a push: the file gets one chained ship_failed line instead."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import C, make_server
from tagwarden import audit, shipping
from tagwarden.audit import GENESIS

RSYSLOGD = shutil.which("rsyslogd") or next(
    (p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.access(p, os.X_OK)), None)
needs_rsyslog = pytest.mark.skipif(RSYSLOGD is None,
                                   reason="rsyslogd is not installed (Debian package rsyslog)")

LOCAL0, AUTH = 16, 4
INFO, WARNING, ERR = 6, 4, 3
# what rsyslogd writes for each message: header fields as it parsed them, then the MSG,
# then the whole message as it came off the wire (tabs: JSON lines hold none)
FIELDS = ("input", "pri", "msgid", "app", "procid", "hostname", "sd", "ts", "msg", "raw")
TEMPLATE = "\\t".join(["%inputname%", "%pri%", "%msgid%", "%app-name%", "%procid%",
                       "%hostname%", "%structured-data%", "%timereported:::date-rfc3339%",
                       "%msg%", "%rawmsg%"]) + "\\n"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rsyslog:
    """rsyslogd in the foreground with a config of its own: udp and tcp on loopback, a
    unix datagram socket (imuxsock) and a unix stream socket (imptcp) in its directory;
    every message goes to one file through TEMPLATE."""

    def __init__(self, base: Path):
        self.base = base
        self.udp, self.tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
        self.dgram, self.stream = base / "dgram.sock", base / "stream.sock"
        self.out, self.ready = base / "received.log", base / "ready.log"
        (base / "work").mkdir()
        self.config = base / "rsyslog.conf"
        self.config.write_text(f"""\
global(workDirectory="{base / 'work'}" maxMessageSize="64k")
module(load="imuxsock" sysSock.use="off")
module(load="imudp")
module(load="imtcp")
module(load="imptcp")
# the regular parser chain reads RFC 5424; imuxsock's default parser does not
input(type="imuxsock" socket="{self.dgram}" useSpecialParser="off" rateLimit.interval="0")
input(type="imptcp" path="{self.stream}")
input(type="imudp" address="127.0.0.1" port="{self.udp}")
input(type="imtcp" address="127.0.0.1" port="{self.tcp}")
template(name="fields" type="string" string="{TEMPLATE}")
if $msgid == "probe" then {{
    action(type="omfile" file="{self.ready}" template="fields")
    stop
}}
action(type="omfile" file="{self.out}" template="fields")
""")
        self.log = open(base / "rsyslogd.out", "wb")
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.config), "-i", str(base / "rsyslogd.pid")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Each input has delivered a probe (a listener is up only when it has)."""
        targets = [f"udp://127.0.0.1:{self.udp}", f"tcp://127.0.0.1:{self.tcp}",
                   f"unix:{self.dgram}", f"unix:{self.stream}"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            for n, target in enumerate(targets):
                shipping.send(target, [json.dumps({"event": "probe", "n": n})])
            time.sleep(0.1)
            seen = self.ready.read_text() if self.ready.exists() else ""
            if all(f'"n": {n}}}' in seen for n in range(len(targets))):
                return
        self.stop()
        raise RuntimeError("rsyslogd did not come up:\n" +
                           (self.base / "rsyslogd.out").read_text(errors="replace"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def received(self) -> list[dict]:
        if not self.out.exists():
            return []
        rows = []
        for line in self.out.read_bytes().decode("utf-8").split("\n")[:-1]:
            rows.append(dict(zip(FIELDS, line.split("\t"))))
        return rows

    def wait_for(self, predicate, count: int, timeout: float = 10.0) -> list[dict]:
        """The received messages that match, once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            rows = [r for r in self.received() if predicate(r)]
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory):
    if RSYSLOGD is None:
        pytest.skip("rsyslogd is not installed (Debian package rsyslog)")
    for attempt in range(3):  # a port picked as free can be taken before rsyslogd binds it
        server = Rsyslog(tmp_path_factory.mktemp("rsyslog"))
        try:
            server.wait_ready()
            break
        except RuntimeError:
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        server.stop()


def file_lines(path: Path) -> list[str]:
    return path.read_bytes().decode("ascii").split("\n")[:-1]


def assert_chain(path: Path) -> list[dict]:
    prev, records = GENESIS, []
    for n, line in enumerate(file_lines(path), 1):
        record = json.loads(line)
        assert (record["seq"], record["prev_sha256"]) == (n, prev), f"line {n}"
        prev = hashlib.sha256(line.encode()).hexdigest()
        records.append(record)
    return records


def expected_severity(record: dict) -> int:
    if record["event"] == "incident":
        return ERR
    if record["event"] == "applied" or record.get("decision") == "accepted" and \
            record["event"] == "decision":
        return INFO
    return WARNING


def assert_arrived(rows: list[dict], lines: list[str], facility: int = LOCAL0,
                   app: str = "tagwarden", procid=None) -> None:
    """Each line arrived once, as the MSG, byte for byte, with the header it calls for."""
    by_msg = {r["msg"]: r for r in rows}
    assert len(by_msg) == len(rows), "a line arrived twice"
    assert sorted(by_msg) == sorted(lines)
    for line in lines:
        row, record = by_msg[line], json.loads(line)
        assert row["pri"] == str(facility * 8 + expected_severity(record)), record["event"]
        assert row["msgid"] == record["event"]
        assert row["app"] == app
        assert row["sd"] == "-"
        if procid is not None:
            assert row["procid"] == str(procid)
        # exactly the header of RFC 5424, then the line; no BOM, nothing after it
        assert row["raw"] == (f"<{row['pri']}>1 {record['ts']} {row['hostname']} {app} "
                              f"{row['procid']} {record['event']} - {line}")


def sample_records() -> list[dict]:
    """One record of each kind the hooks write, one with non-ASCII text, one longer than
    rsyslog's default message size (8 KiB), and an incident with its traceback."""
    ref = f"refs/tags/{C}/staging"
    try:
        1 / 0
    except ZeroDivisionError:
        incident = {"event": "incident", "incident": "3f2a9c1e7b40", "hook": "pre-receive",
                    "push_id": "p1", "decision": "rejected", "rule": "internal-error",
                    "exc_info": sys.exc_info()}
    return [
        {"event": "decision", "push_id": "p1", "ref": ref, "decision": "accepted"},
        {"event": "decision", "push_id": "p1", "ref": ref, "decision": "warned",
         "rule": "promotion-order", "push_options": [f"ticket=OPS-{i}" for i in range(900)]},
        {"event": "decision", "push_id": "p1", "ref": ref, "decision": "rejected",
         "reason": "caf\u00e9 \u202e | \t tab", "pusher": "b\u00f6b"},
        {"event": "applied", "push_id": "p1", "ref": ref, "decision": "accepted"},
        {"event": "not_applied", "push_id": "p1", "ref": ref, "decision": "accepted"},
        incident,
    ]


TRANSPORTS = {
    "udp": lambda rs: f"udp://127.0.0.1:{rs.udp}",
    "tcp": lambda rs: f"tcp://127.0.0.1:{rs.tcp}",
    "unix-dgram": lambda rs: f"unix:{rs.dgram}",
    "unix-stream": lambda rs: f"unix:{rs.stream}",
}
INPUTS = {"udp": "imudp", "tcp": "imtcp", "unix-dgram": "imuxsock", "unix-stream": "imptcp"}


@needs_rsyslog
@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_each_line_arrives_exactly_as_written(rsyslog, tmp_path, transport):
    log = tmp_path / "audit.jsonl"
    audit.append(str(log), [{"event": "decision", "push_id": "p0", "decision": "accepted"}])
    head = audit.append(str(log), sample_records(), ship=TRANSPORTS[transport](rsyslog))
    lines = file_lines(log)
    assert head.seq == len(lines) == 7  # no ship_failed line: all went out
    shipped = lines[1:]  # what the first append wrote was not shipped
    assert all(line.isascii() for line in shipped)
    rows = rsyslog.wait_for(lambda r: r["msg"] in shipped, len(shipped))
    assert {r["input"] for r in rows} == {INPUTS[transport]}
    assert_arrived(rows, shipped, procid=os.getpid())
    assert len(max(shipped, key=len)) > 10_000  # whole, not cut at 8 KiB
    assert_chain(log)


@needs_rsyslog
def test_facility_and_app_name_are_options_of_the_target(rsyslog, tmp_path):
    log = tmp_path / "audit.jsonl"
    audit.append(str(log), sample_records()[:4],
                 ship=f"tcp://localhost:{rsyslog.tcp}?facility=auth&app=git-eu-1")
    lines = file_lines(log)
    rows = rsyslog.wait_for(lambda r: r["msg"] in lines, len(lines))
    assert_arrived(rows, lines, facility=AUTH, app="git-eu-1")


@needs_rsyslog
def test_real_pushes_reach_rsyslog_over_udp(rsyslog, tmp_path, mode):
    server, clone = make_server(tmp_path, mode)
    server.config("tagwarden.syslog", f"udp://127.0.0.1:{rsyslog.udp}")
    clone.release("v1.0.0")
    assert clone.push(f"{C}/v1.0.0").ok
    assert clone.deploy("staging", "v1.0.0").ok
    clone.tag(f"{C}/prod", f"{C}/v1.0.0")
    assert not clone.push(f"{C}/prod").ok  # a misnamed slot: rejected
    server.settle()
    lines = file_lines(server.audit_path)
    records = [json.loads(line) for line in lines]
    assert "ship_failed" not in {r["event"] for r in records}
    assert {"decision", "applied"} <= {r["event"] for r in records}
    assert {r["decision"] for r in records} >= {"accepted", "rejected"}
    repo = str(server.path)
    rows = rsyslog.wait_for(lambda r: f'"repo": {json.dumps(repo)}' in r["msg"], len(lines))
    assert_arrived(rows, lines)
    # decisions come from the deciding hook, applied records from post-receive: two pids
    by_event = {}
    for row in rows:
        by_event.setdefault(row["msgid"], set()).add(row["procid"])
    assert not by_event["decision"] & by_event["applied"]


def closed_tcp_port():
    """A port bound but not listening: connecting is refused, and nobody else gets it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize("target, error", [
    ("tcp://127.0.0.1:{port}", "connecting: Connection refused"),
    ("syslog.example.com:514", "malformed target: expected unix:/PATH, udp://HOST:PORT or "
                               "tcp://HOST:PORT"),
], ids=["unreachable", "malformed"])
def test_a_failing_sink_never_refuses_the_push(tmp_path, mode, target, error):
    holder, port = closed_tcp_port()
    with holder:
        target = target.format(port=port)
        server, clone = make_server(tmp_path, mode)
        server.config("tagwarden.syslog", target)
        clone.release("v1.0.0")
        started = time.monotonic()
        push = clone.push(f"{C}/v1.0.0")
        assert push.ok, push.out
        assert time.monotonic() - started < 10
        server.settle()
    records = assert_chain(server.audit_path)
    events = [r["event"] for r in records]
    # one ship_failed after each append: the deciding hook's, then post-receive's
    assert events == ["decision", "ship_failed", "applied", "ship_failed"]
    for failed, shipped in ((records[1], records[0]), (records[3], records[2])):
        assert failed["target"] == target
        assert failed["error"] == error
        assert failed["unshipped"] == {"from_seq": shipped["seq"], "to_seq": shipped["seq"],
                                       "count": 1}
        assert failed["push_id"] == shipped["push_id"]
        assert failed["hook"] == shipped["hook"]
        assert failed["repo"] == str(server.path)
    assert server.ref(f"{C}/v1.0.0")
    out = subprocess.run([sys.executable, "-m", "tagwarden.cli", "audit", "verify",
                          str(server.path)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("ok: 4 lines, chain intact"), \
        out.stdout + out.stderr


def test_a_sink_that_stops_taking_lines_costs_at_most_about_a_second(tmp_path):
    """A unix datagram socket that nobody reads: its queue fills, send blocks, and the
    deadline ends it; the lines not handed over are named."""
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(tmp_path / "stuck.sock"))
    log = tmp_path / "audit.jsonl"
    with sink:
        started = time.monotonic()
        head = audit.append(str(log), [{"event": "decision", "decision": "accepted",
                                        "ref": f"refs/tags/{C}/v1.0.{i}"} for i in range(3000)],
                            ship=f"unix:{tmp_path / 'stuck.sock'}")
        took = time.monotonic() - started
    records = assert_chain(log)
    assert 0.9 < took < 3.0
    assert head.seq == len(records) == 3001
    failed = records[-1]
    assert failed["event"] == "ship_failed"
    assert failed["error"] == "sending: timed out (limit 1 s for the whole send)"
    unshipped = failed["unshipped"]
    assert 1 <= unshipped["from_seq"] <= 3000 and unshipped["to_seq"] == 3000
    assert unshipped["count"] == 3001 - unshipped["from_seq"]


def test_ship_failed_is_written_once_per_append_and_never_shipped(tmp_path):
    log = tmp_path / "audit.jsonl"
    for _ in range(2):
        audit.append(str(log), sample_records(), ship=f"unix:{tmp_path / 'nobody.sock'}")
    records = assert_chain(log)
    assert [r["event"] for r in records].count("ship_failed") == 2
    assert records[6]["event"] == records[13]["event"] == "ship_failed"
    assert records[6]["error"] == "connecting: No such file or directory"
    assert records[6]["unshipped"] == {"from_seq": 1, "to_seq": 6, "count": 6}


@pytest.mark.parametrize("target", ["", None])
def test_no_target_ships_nothing_and_imports_nothing(tmp_path, target):
    code = ("import sys, tagwarden.audit as a; "
            f"a.append(sys.argv[1], [{{'event': 'decision'}}], ship={target!r}); "
            "print('tagwarden.shipping' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.jsonl")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
    assert len(file_lines(tmp_path / "a.jsonl")) == 1


@pytest.mark.parametrize("text, parsed", [
    ("unix:/dev/log", ("unix", "/dev/log", None, LOCAL0, "tagwarden")),
    ("unix:///run/tagwarden/log.sock", ("unix", "/run/tagwarden/log.sock", None, LOCAL0,
                                        "tagwarden")),
    ("udp://logs.example.com:5514", ("udp", "logs.example.com", 5514, LOCAL0, "tagwarden")),
    ("tcp://10.0.0.5", ("tcp", "10.0.0.5", 514, LOCAL0, "tagwarden")),
    ("tcp://[2001:db8::5]:6514?facility=auth&app=git-eu-1",
     ("tcp", "2001:db8::5", 6514, AUTH, "git-eu-1")),
    ("UDP://Logs:514?facility=local7", ("udp", "logs", 514, 23, "tagwarden")),
    ("udp://h:514?facility=13", ("udp", "h", 514, 13, "tagwarden")),
])
def test_targets(text, parsed):
    assert tuple(shipping.parse(text)) == parsed


@pytest.mark.parametrize("text, error", [
    ("", "expected unix:/PATH"),
    ("/dev/log", "expected unix:/PATH"),
    ("logs.example.com:514", "expected unix:/PATH"),
    ("http://logs:514", "expected unix:/PATH"),
    ("unix:dev/log", "absolute socket path"),
    ("udp://:514", "expected udp://HOST:PORT"),
    ("udp:logs:514", "expected udp://HOST:PORT"),
    ("tcp://user@logs:514", "expected tcp://HOST:PORT"),
    ("tcp://logs:514/path", "expected tcp://HOST:PORT"),
    ("tcp://logs:70000", "out of range"),
    ("tcp://logs:port", "Port could not be cast"),
    ("udp://logs:514?facility=local8", "unknown facility 'local8'"),
    ("udp://logs:514?facility=24", "unknown facility '24'"),
    ("udp://logs:514?severity=info", "unknown option 'severity'"),
    ("udp://logs:514?app=two%20words", "app must be"),
    ("udp://logs:514?app=" + "a" * 49, "app must be"),
    ("udp://logs:514?facility", "cannot read the options"),
])
def test_malformed_targets(text, error):
    with pytest.raises(shipping.TargetError) as caught:
        shipping.parse(text)
    assert error in str(caught.value)
    assert shipping.send(text, ["{}"]) == (0, f"malformed target: {caught.value}")


def test_severity_follows_the_event_and_the_decision():
    sev = shipping.severity
    assert sev({"event": "decision", "decision": "accepted"}) == INFO
    assert sev({"event": "decision", "decision": "warned"}) == WARNING
    assert sev({"event": "decision", "decision": "rejected"}) == WARNING
    assert sev({"event": "applied", "decision": "warned"}) == INFO
    assert sev({"event": "not_applied", "decision": "accepted"}) == WARNING
    assert sev({"event": "incident", "decision": None}) == ERR
