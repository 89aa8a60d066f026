"""`tagwarden audit`: every filter, time ranges, --json, --limit, escaped table output, on
logs written by tagwarden's own writer; and the same answers as a plain scan of every
line, whichever path the search takes (needles, times, several processes)."""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import C, make_server
from tagwarden import audit_file, audit_query
from tagwarden.audit import append
from tagwarden.cli import main as cli

PLANNER = "components/agents/planner"
OTHER = "components/prompts/other"


def rec(ts, event="decision", pusher="alice", component=C, slot="staging",
        decision="accepted", change="deploy", version="v1.0.0", rule=None, **extra):
    return {"ts": ts, "event": event, "pusher": pusher, "component": component, "slot": slot,
            "ref": f"refs/tags/{component}/{slot}", "decision": decision, "change": change,
            "version": version, "rule": rule, **extra}


# line numbers (1-based) are the test's names for the records
LOG = [
    rec("2026-11-20T09:00:00.000001Z"),                                               # 1
    rec("2026-11-20T09:00:00.400000Z", event="applied"),                              # 2
    rec("2026-11-21T10:00:00.000000Z", pusher="bob", slot="production", version="v1.1.0",
        decision="rejected", change="out-of-order", rule="promotion-order"),          # 3
    rec("2026-11-21T10:30:00Z", pusher="bob", slot="production", change="promote"),   # 4
    rec("2026-11-21T10:30:00.500000Z", event="applied", pusher="bob", slot="production",
        change="promote"),                                                            # 5
    rec("2026-11-22T08:00:00.000000Z", pusher="carol", component=PLANNER,
        slot="production", change="rollback", version="v2.0.0"),                     # 6
    rec("2026-11-22T08:00:00.300000Z", event="applied", pusher="carol",
        component=PLANNER, slot="production", change="rollback", version="v2.0.0"),   # 7
    {"ts": "2026-11-22T09:00:00.000000Z", "event": "incident", "incident": "3f2a9c1e7b40",
     "decision": "rejected", "rule": "internal-error", "push_id": "x"},               # 8
    rec("2026-11-22T10:00:00.000000Z", pusher="dave", component=OTHER, slot="v1.2.0",
        decision="warned", change="create", version="v1.2.0", rule="out-of-order"),  # 9
]

QUERIES = [  # (arguments, the lines that match)
    ([], [1, 2, 3, 4, 5, 6, 7, 8, 9]),
    (["--component", C], [1, 2, 3, 4, 5]),
    (["--component", "components/*/planner"], [6, 7]),
    (["--component", "components/prompts/*"], [1, 2, 3, 4, 5, 9]),
    (["--component", "*"], [1, 2, 3, 4, 5, 6, 7, 9]),
    (["--component", "components/prompts/extr?ction"], [1, 2, 3, 4, 5]),
    (["--component", "components/prompts/extract"], []),
    (["--slot", "production"], [3, 4, 5, 6, 7]),
    (["--pusher", "bob"], [3, 4, 5]),
    (["--decision", "rejected"], [3, 8]),
    (["--decision", "warned"], [9]),
    (["--event", "incident"], [8]),
    (["--event", "applied"], [2, 5, 7]),
    (["--change", "rollback"], [6, 7]),
    (["--since", "2026-11-21"], [3, 4, 5, 6, 7, 8, 9]),
    (["--until", "2026-11-21"], [1, 2, 3, 4, 5]),  # a date: the whole day
    (["--since", "2026-11-21", "--until", "2026-11-21"], [3, 4, 5]),
    (["--since", "2026-11-21T10:30", "--until", "2026-11-21T10:30"], [4]),  # "…:00Z" too
    (["--since", "2026-11-21T10:30:00.000001Z"], [5, 6, 7, 8, 9]),
    (["--since", "2026-11-21T11:30+01:00", "--until", "2026-11-21 10:30:00.500000"], [4, 5]),
    (["--until", "2026-11-20T09:00:00.000001Z"], [1]),
    (["--since", "2026-11-22T09:00Z", "--until", "2026-11-22T09:00:00Z"], [8]),
    (["--component", C, "--slot", "production", "--event", "applied"], [5]),
    (["--slot", "production", "--since", "2026-11-22"], [6, 7]),
    (["--pusher", "bob", "--decision", "accepted", "--change", "promote"], [4, 5]),
    (["--limit", "2"], [8, 9]),
    (["--pusher", "bob", "--limit", "1"], [5]),
    (["--limit", "50"], [1, 2, 3, 4, 5, 6, 7, 8, 9]),
    (["--pusher", "nobody"], []),
    (["--pusher", "bo"], []),  # exact, not a substring
]


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "audit.jsonl"
    for record in LOG:
        append(str(path), [record])
    return path


def lines(path) -> list[bytes]:
    return path.read_bytes().splitlines()


def run(*argv) -> tuple[int, str, str]:
    out = subprocess.run([sys.executable, "-m", "tagwarden.cli", "audit", *argv],
                         capture_output=True, text=True)
    return out.returncode, out.stdout, out.stderr


@pytest.mark.parametrize("argv, expected", QUERIES, ids=[" ".join(q[0]) or "all" for q in QUERIES])
def test_each_filter_prints_exactly_the_matching_lines(log, capsysbinary, argv, expected):
    assert cli(["audit", "--log", str(log), "--json", *argv]) == 0
    out = capsysbinary.readouterr().out
    every = lines(log)
    assert out.splitlines() == [every[n - 1] for n in expected]


@pytest.mark.parametrize("argv, expected", QUERIES[:12], ids=[" ".join(q[0]) or "all"
                                                            for q in QUERIES[:12]])
def test_the_table_has_one_row_per_match(log, capsys, argv, expected):
    assert cli(["audit", "--log", str(log), *argv]) == 0
    rows = capsys.readouterr().out.splitlines()
    if not expected:
        assert rows == []
        return
    assert rows[0].split() == ["ts", "event", "pusher", "ref", "change", "decision",
                               "version", "rule"]
    assert [row.split()[0] for row in rows[1:]] == \
        [LOG[n - 1]["ts"][:19] + "Z" for n in expected]


def test_table_columns_are_aligned_and_say_what_happened(log, capsys):
    assert cli(["audit", "--log", str(log), "--slot", "production", "--event", "applied"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    starts = [header.index(name) for name in header.split()]
    for row in rows:
        assert [row[s - 2:s] for s in starts[1:]] == ["  "] * 7  # each cell where its column is
    assert [row.split() for row in rows] == [
        ["2026-11-21T10:30:00Z", "applied", "bob", f"{C}/production", "promote", "accepted",
         "v1.0.0", "-"],
        ["2026-11-22T08:00:00Z", "applied", "carol", f"{PLANNER}/production", "rollback",
         "accepted", "v2.0.0", "-"]]


def test_an_incident_row_names_the_incident(log, capsys):
    assert cli(["audit", "--log", str(log), "--event", "incident"]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert row.split() == ["2026-11-22T09:00:00Z", "incident", "-", "incident", "3f2a9c1e7b40",
                           "-", "rejected", "-", "internal-error"]


def test_control_characters_from_the_log_are_escaped_in_the_table(tmp_path, capsys):
    path = tmp_path / "audit.jsonl"
    append(str(path), [rec("2026-11-22T10:00:00.000000Z", pusher="eve\x1b[2J\u202e",
                           slot="staging\x07", rule="r\u200bx")])
    assert cli(["audit", "--log", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\u200b" not in out
    assert "eve\\x1b[2J\\u202e" in out and "staging\\x07" in out and "r\\u200bx" in out


def test_json_output_of_a_line_not_written_by_tagwarden_is_escaped_again(tmp_path, capsysbinary):
    path = tmp_path / "audit.jsonl"
    raw = json.dumps({"event": "decision", "pusher": "eve\u202e", "ts": "2026-11-22T10:00:00Z"},
                     ensure_ascii=False).encode()
    path.write_bytes(raw + b"\n")
    assert cli(["audit", "--log", str(path), "--json", "--pusher", "eve\u202e"]) == 0
    out = capsysbinary.readouterr().out
    assert out.isascii() and json.loads(out)["pusher"] == "eve\u202e"


def test_who_moved_production_after_real_pushes(tmp_path, capsys):
    server, clone = make_server(tmp_path, "pre-receive")
    clone.release("v1.0.0")
    assert clone.push(f"{C}/v1.0.0").ok
    assert clone.deploy("staging", "v1.0.0").ok
    assert clone.deploy("production", "v1.0.0").ok
    server.settle()
    assert cli(["audit", str(server.path), "--component", C, "--slot", "production",
                "--event", "applied"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2
    assert rows[1].split()[1:] == ["applied", server.audit("applied")[-1]["pusher"],
                                   f"{C}/production", "promote", "accepted", "v1.0.0", "-"]


def test_repo_defaults_to_the_current_directory_and_follows_git_config(tmp_path, capsysbinary,
                                                                      monkeypatch):
    server, clone = make_server(tmp_path, "pre-receive")
    server.config("tagwarden.auditLog", "elsewhere.jsonl")
    clone.release("v1.0.0")
    assert clone.push(f"{C}/v1.0.0").ok
    server.settle()
    monkeypatch.chdir(server.path)
    assert cli(["audit", "--json"]) == 0
    out = capsysbinary.readouterr().out
    assert out == (server.path / "elsewhere.jsonl").read_bytes()


@pytest.mark.parametrize("argv, message", [
    (["--log", "LOG", "a", "b"], "one REPO at most"),
    (["verify", "--log", "LOG", "--json"], "takes REPO and --log only"),
    (["--log", "MISSING"], "cannot read audit log"),
    (["NOT-A-DIR"], "no such repository"),
])
def test_usage_and_missing_logs_exit_2(log, tmp_path, capsys, argv, message):
    argv = [str(log) if a == "LOG" else str(tmp_path / "nope") if a == "MISSING"
            else str(tmp_path / "no-repo") if a == "NOT-A-DIR" else a for a in argv]
    assert cli(["audit", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--since", "yesterday"], ["--until", "2026-13-01"],
                                  ["--decision", "maybe"], ["--limit", "0"]])
def test_bad_values_are_refused_by_the_parser(log, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli(["audit", "--log", str(log), *argv])
    assert exc.value.code == 2


def test_an_unreadable_candidate_line_is_counted_not_fatal(log, capsysbinary):
    log.write_bytes(log.read_bytes() + b'{"pusher": "bob", "torn\n')
    assert cli(["audit", "--log", str(log), "--json", "--pusher", "bob"]) == 0
    captured = capsysbinary.readouterr()
    assert len(captured.out.splitlines()) == 3
    assert b"1 line(s)" in captured.err and b"audit verify" in captured.err


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    path = tmp_path / "audit.jsonl"
    append(str(path), [rec(f"2026-11-22T10:00:{i % 60:02d}.000000Z") for i in range(3000)])
    proc = subprocess.Popen([sys.executable, "-m", "tagwarden.cli", "audit", "--log", str(path),
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in proc.stderr.read()


def test_the_whole_command_runs_as_a_process(log):
    code, out, err = run("--log", str(log), "--pusher", "carol", "--json")
    assert (code, err) == (0, "")
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [6, 7]


# ---- the search agrees with a plain scan of every line --------------------------------

COMPONENTS = [f"components/{t}/c{i}" for t in ("prompts", "agents") for i in range(6)]
PUSHERS = ["alice", "bob", "carol"]
SLOTS = ["dev", "staging", "production", "v1.0.0"]


@pytest.fixture(scope="module")
def big_log(tmp_path_factory):
    """A few thousand random records, some with times lacking the fraction, a torn line
    and an unchained one in the middle."""
    rng = random.Random(3)
    path = tmp_path_factory.mktemp("big") / "audit.jsonl"
    records = []
    for i in range(4000):
        second = 1000 + i * 7
        fraction = "" if rng.random() < 0.05 else f".{rng.randrange(10**6):06d}"
        ts = f"2026-11-{10 + second // 86400:02d}T{second // 3600 % 24:02d}:" \
             f"{second // 60 % 60:02d}:{second % 60:02d}{fraction}Z"
        records.append(rec(ts, event=rng.choice(audit_query.EVENTS),
                           pusher=rng.choice(PUSHERS), component=rng.choice(COMPONENTS),
                           slot=rng.choice(SLOTS), decision=rng.choice(audit_query.DECISIONS),
                           change=rng.choice(["deploy", "promote", "rollback", "create"])))
    for k in range(0, 4000, 500):
        append(str(path), records[k:k + 500])
        if k == 2000:
            with open(path, "ab") as f:
                f.write(b'{"pusher": "bob", "slot": "dev", "oops\n{"pusher": "bob"}\n')
    data = path.read_bytes()
    parsed = []
    for raw in data.splitlines():
        try:
            parsed.append((raw, json.loads(raw)))
        except ValueError:
            pass
    return path, data, parsed


def namespace(**kw) -> argparse.Namespace:
    base = {k: None for k in audit_query.FILTERS + ("since", "until")}
    base.update(kw)
    return argparse.Namespace(**base)


def times():
    return st.builds(lambda d, h, m: f"2026-11-{d:02d}T{h:02d}:{m:02d}",
                     st.integers(10, 11), st.integers(0, 23), st.integers(0, 59))


@settings(max_examples=150, deadline=None)
@given(component=st.none() | st.sampled_from(COMPONENTS + ["components/agents/*",
                                                           "*c1", "components/?rompts/c[0-2]"]),
       pusher=st.none() | st.sampled_from(PUSHERS), slot=st.none() | st.sampled_from(SLOTS),
       decision=st.none() | st.sampled_from(audit_query.DECISIONS),
       event=st.none() | st.sampled_from(audit_query.EVENTS),
       since=st.none() | times(), until=st.none() | times(),
       limit=st.none() | st.integers(1, 30), workers=st.sampled_from([1, 2, 3]))
def test_search_finds_what_a_plain_scan_finds(big_log, component, pusher, slot, decision,
                                              event, since, until, limit, workers):
    _, data, parsed = big_log
    args = namespace(component=component, pusher=pusher, slot=slot, decision=decision,
                     event=event, since=since and audit_query.parse_time(since),
                     until=until and audit_query.parse_time(until))
    query = audit_query.Query.from_args(args)
    expected = [raw for raw, record in parsed
                if isinstance(record, dict) and query.matches(record)]
    if limit:
        expected = expected[-limit:]
    found = audit_query.search(data, query, limit, workers=workers)
    assert [f.raw for f in found] == expected


def test_a_big_log_is_searched_by_several_processes_with_the_same_answer(big_log):
    _, data, _ = big_log
    query = audit_query.Query.from_args(namespace(pusher="bob", slot="dev"))
    one = audit_query.search(data, query, workers=1)
    assert len(one) > 50
    for n in (2, 4, 7):
        assert audit_query.search(data, query, workers=n) == one
    ranges = audit_file.line_ranges(data, 7)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(a[1] == b[0] and data[b[0] - 1:b[0]] == b"\n" for a, b in zip(ranges, ranges[1:]))


def test_the_unreadable_count_covers_every_process(big_log):
    _, data, _ = big_log
    query = audit_query.Query.from_args(namespace(pusher="bob"))
    for workers in (1, 3):
        stats: dict = {}
        audit_query.search(data, query, stats=stats, workers=workers)
        assert stats["unreadable"] == 1
