"""tagwarden history | status | report: the deployment ledger read back for auditors.

One ledger made by real pushes (pre-receive mode, clock injected with tagwarden.clock)
serves every test of the module: three components over four simulated days, staging,
canary and production slots, two rollbacks, a redeploy and a deleted slot. The HTML
report is rendered by a real headless Chromium when one is installed."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import HOUR, T0, git, make_server, module_git_env, ts
from tagwarden.cli import main
from tagwarden.gitview import open_ledger
from tagwarden.report_html import _ticks, render_html
from tagwarden.reports import slot_key

# the console script pip put beside the interpreter running the tests: the suite runs as
# .venv/bin/python -m pytest, with the venv's bin/ not on PATH
INSTALLED = os.path.join(os.path.dirname(sys.executable), "tagwarden")

E = "components/prompts/extraction"
S = "components/agents/summarizer"
R = "components/queries/router"
NOW = T0 + 90 * HOUR


def at(h: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(T0 + h * HOUR))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo ledger: (server, clone). Built once; the tests only read it."""
    base = tmp_path_factory.mktemp("reports")
    with module_git_env(base):
        server, clone = make_server(base, "pre-receive", name="app.git")

        def push(h, who, *refs):
            server.config("tagwarden.clock", str(T0 + h * HOUR))
            out = clone.push("--force", *refs, env={"GL_USER": who})
            assert out.ok, out.out

        def release(h, who, version, *components):
            clone.commit()
            push(h, who, *(clone.release(version, c) for c in components))

        def deploy(h, who, slot, version, *components, message=None):
            push(h, who, *(clone.set_env(slot, version, c, message) for c in components))

        release(0, "alice", "v1.0.0", E, S, R)
        deploy(1, "alice", "staging", "v1.0.0", E, S, R)
        deploy(24, "bob", "production", "v1.0.0", E, S, R)
        release(26, "carol", "v1.1.0", E, R)
        deploy(27, "carol", "staging", "v1.1.0", E, R)
        deploy(28, "carol", "canary", "v1.1.0", R)
        deploy(48, "bob", "production", "v1.1.0", E)
        deploy(50, "bob", "production", "v1.1.0", R)
        deploy(54, "carol", "production", "v1.0.0", E, message="incident 7: back")
        release(60, "alice", "v1.2.0", E)
        clone.release("v1.1.0", S)
        push(60.5, "alice", f"{S}/v1.1.0")
        deploy(61, "alice", "staging", "v1.2.0", E)
        deploy(61.5, "alice", "staging", "v1.1.0", S)
        deploy(62, "alice", "canary", "v1.2.0", E)
        deploy(72, "bob", "production", "v1.1.0", S)
        deploy(74, "dave", "staging", "v1.2.0", E, message="same again")
        deploy(78, "carol", "production", "v1.0.0", R, message="latency: back")
        push(80, "alice", f":refs/tags/{R}/canary")
        deploy(84, "bob", "production", "v1.2.0", E)
        server.settle()
    return server, clone


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def rows_of(text: str) -> list[list[str]]:
    lines = text.splitlines()
    return [line.split() for line in lines[1:]]


# ---- history --------------------------------------------------------------------------

def test_history_lists_every_move_and_release_of_a_component(demo, capsys):
    server, _ = demo
    rc, out, err = run(capsys, "history", E, "--repo", str(server.path))
    assert rc == 0, err
    assert out.splitlines()[0].split() == \
        ["ts", "slot", "decision", "version", "commit", "pusher", "push_id"]
    got = [(r[0], r[1], r[2], r[3], r[5]) for r in rows_of(out)]
    assert got == [
        (ts(0), "v1.0.0", "create", "v1.0.0", "alice"),
        (ts(1), "staging", "deploy", "v1.0.0", "alice"),
        (ts(24), "production", "promote", "v1.0.0", "bob"),
        (ts(26), "v1.1.0", "create", "v1.1.0", "carol"),
        (ts(27), "staging", "deploy", "v1.1.0", "carol"),
        (ts(48), "production", "promote", "v1.1.0", "bob"),
        (ts(54), "production", "rollback", "v1.0.0", "carol"),
        (ts(60), "v1.2.0", "create", "v1.2.0", "alice"),
        (ts(61), "staging", "deploy", "v1.2.0", "alice"),
        (ts(62), "canary", "deploy", "v1.2.0", "alice"),
        (ts(74), "staging", "redeploy", "v1.2.0", "dave"),
        (ts(84), "production", "promote", "v1.2.0", "bob"),
    ]
    commits = {v: server.commit_of(f"{E}/{v}")[:7] for v in ("v1.0.0", "v1.1.0", "v1.2.0")}
    assert all(r[4] == commits[r[3]] for r in rows_of(out))
    assert all(re.fullmatch(r"[0-9a-f]{16}", r[6]) for r in rows_of(out))


def test_who_moved_production_and_when(demo, capsys):
    server, _ = demo
    rc, out, _ = run(capsys, "history", E, "production", "--repo", str(server.path))
    assert rc == 0
    assert [(r[0], r[2], r[3], r[5]) for r in rows_of(out)] == [
        (ts(24), "promote", "v1.0.0", "bob"), (ts(48), "promote", "v1.1.0", "bob"),
        (ts(54), "rollback", "v1.0.0", "carol"), (ts(84), "promote", "v1.2.0", "bob")]
    # the whole tag name says the same; so does the installed command
    assert run(capsys, "history", f"{E}/production", "--repo", str(server.path))[1] == out
    cmd = subprocess.run([INSTALLED, "history", E, "production"], cwd=server.path,
                         capture_output=True, text=True, check=False)
    assert cmd.returncode == 0 and cmd.stdout == out, cmd.stderr


def test_history_json_is_the_ledger_entries(demo, capsys):
    server, _ = demo
    rc, out, _ = run(capsys, "history", R, "canary", "--repo", str(server.path), "--json")
    assert rc == 0
    got = [json.loads(line) for line in out.splitlines()]
    want = [e for e in open_ledger(str(server.path)).entries()
            if e["component"] == R and e["slot"] == "canary"]
    assert got == want
    assert [(e["decision"], e["version"], e["pusher"]) for e in got] == \
        [("deploy", "v1.1.0", "carol"), ("delete", None, "alice")]
    # the table shows a deleted slot as holding nothing
    rc, out, _ = run(capsys, "history", R, "canary", "--repo", str(server.path))
    assert rows_of(out)[-1][1:6] == ["canary", "delete", "-", "-", "alice"]


def test_history_says_what_it_does_not_know(demo, capsys, tmp_path):
    server, _ = demo
    rc, out, err = run(capsys, "history", "components/prompts/extractoin", "--repo",
                       str(server.path))
    assert rc == 1 and not out
    assert "no component 'components/prompts/extractoin'" in err
    assert f"did you mean {E}?" in err
    rc, _, err = run(capsys, "history", E, "prod", "--repo", str(server.path))
    assert rc == 1
    assert f"{E} has no recorded slot 'prod'; its slots: staging, canary, production, " \
           "v1.0.0, v1.1.0, v1.2.0" in err

    bare = tmp_path / "plain.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    for argv in (["history", E, "--repo", str(bare)], ["status", str(bare)],
                 ["report", "--html", str(tmp_path / "r.html"), str(bare)]):
        rc, _, err = run(capsys, *argv)
        assert rc == 1 and "has no deployment ledger (refs/tagwarden/ledger)" in err, argv
        assert "git fetch origin refs/tagwarden/ledger:refs/tagwarden/ledger" in err
    assert not (tmp_path / "r.html").exists()
    rc, _, err = run(capsys, "status", str(tmp_path / "nowhere"))
    assert rc == 1 and "no such repository" in err
    rc, _, err = run(capsys, "status", str(tmp_path))
    assert rc == 1 and "not a git repository" in err


# ---- status ---------------------------------------------------------------------------

def test_status_is_a_matrix_of_components_and_environments(demo, capsys):
    server, _ = demo
    rc, out, err = run(capsys, "status", str(server.path))
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["component", "latest", "staging", "canary", "production"]
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]
    assert cells == [
        [S, f"v1.1.0 · {at(60.5)}", f"v1.1.0 · {at(61.5)}", "-", f"v1.1.0 · {at(72)}"],
        # a redeploy (same commit) keeps staging's clock at its deploy
        [E, f"v1.2.0 · {at(60)}", f"v1.2.0 · {at(61)}", f"v1.2.0 · {at(62)}",
         f"v1.2.0 · {at(84)}"],
        # the canary was deleted: not shown; production is on v1.0.0 since the rollback
        [R, f"v1.1.0 · {at(26)}", f"v1.1.0 · {at(27)}", "-", f"v1.0.0 · {at(78)}"],
    ]
    # the installed command, from inside the repository
    cmd = subprocess.run([INSTALLED, "status"], cwd=server.path, capture_output=True,
                         text=True, check=False)
    assert cmd.returncode == 0 and cmd.stdout == out, cmd.stderr


def test_status_json(demo, capsys):
    server, _ = demo
    rc, out, _ = run(capsys, "status", str(server.path), "--json")
    assert rc == 0
    rows = {r["component"]: r for r in map(json.loads, out.splitlines())}
    assert list(rows) == [S, E, R]
    router = rows[R]
    assert router["latest"]["version"] == "v1.1.0"
    assert list(router["slots"]) == ["staging", "production"]
    prod = router["slots"]["production"]
    assert (prod["version"], prod["decision"], prod["pusher"]) == ("v1.0.0", "rollback", "carol")
    assert prod["since"] == T0 + 78 * HOUR and prod["since_ts"] == ts(78)
    assert prod["commit"] == server.commit_of(f"{R}/v1.0.0")


def test_slots_are_ordered_like_a_pipeline():
    slots = ["production", "green", "canary-25", "staging", "ring-1", "rollout-10pct",
             "canary-5", "blue", "dev", "ring-0", "rollout-1pct", "canary", "v1.0.0"]
    assert sorted(slots, key=slot_key) == [
        "dev", "staging", "canary", "canary-5", "canary-25", "rollout-1pct",
        "rollout-10pct", "ring-0", "ring-1", "production", "blue", "green", "v1.0.0"]


def test_an_auditor_reads_a_fetched_copy_of_the_ledger(demo, capsys, tmp_path):
    server, _ = demo
    mirror = tmp_path / "audit.git"
    git("init", "-q", "--bare", str(mirror), cwd=tmp_path)
    git("fetch", "-q", str(server.path), "refs/tagwarden/ledger:refs/tagwarden/ledger",
        cwd=mirror)  # the ledger only: no tags, no branches
    for argv in (["status"], ["status", "--json"]):
        assert run(capsys, *argv, str(mirror)) == run(capsys, *argv, str(server.path))
    assert run(capsys, "history", E, "production", "--repo", str(mirror)) == \
        run(capsys, "history", E, "production", "--repo", str(server.path))


def test_the_commands_do_not_load_pygit2_until_they_run():
    code = "import sys, tagwarden.reports; print('pygit2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.stdout.strip() == "False", out.stderr


# ---- the HTML report ------------------------------------------------------------------

def report(capsys, server, path: Path, now=NOW) -> str:
    rc, out, err = run(capsys, "report", "--html", str(path), str(server.path),
                       "--now", str(now))
    assert rc == 0, err
    assert out.strip() == f"wrote {path}"
    return path.read_text(encoding="utf-8")


def test_the_report_is_one_self_contained_deterministic_file(demo, capsys, tmp_path):
    server, _ = demo
    page = report(capsys, server, tmp_path / "a.html")
    assert page == report(capsys, server, tmp_path / "b.html")
    assert page.startswith("<!DOCTYPE html>")
    # nothing fetched, nothing run
    assert not re.search(r"""(src|href)\s*=\s*(?!["']?#)""", page)
    for word in ("<script", "@import", "url(", "<link", "<iframe", "<img"):
        assert word not in page
    assert "<title>Deployments: app.git</title>" in page
    assert "Generated 2027-01-19 02:00 UTC" in page
    assert page.count('<article id="c') == 3


def test_the_report_escapes_what_the_ledger_says():
    evil = "<script>alert(1)</script>"
    comp = 'components/prompts/x"><img src=x onerror=alert(2)>'
    base = {"old": "0" * 40, "old_commit": None, "change": "create", "verdict": "accepted",
            "rule": None, "pusher_source": "GL_USER", "push_id": "p<1>"}
    entries = [
        dict(base, ts=ts(0), epoch=T0, pusher=evil, ref=f"refs/tags/{comp}/v1.0.0",
             kind="version", component=comp, slot="v1.0.0", version="v1.0.0",
             new="a" * 40, new_commit="b" * 40, decision="create"),
        dict(base, ts=ts(1), epoch=T0 + HOUR, pusher=evil, ref=f"refs/tags/{comp}/st<a>ge",
             kind="environment", component=comp, slot="st<a>ge", version="v1.0.0",
             new="c" * 40, new_commit="b" * 40, decision="deploy"),
    ]
    current = {f"{comp}/v1.0.0": {"value": "a" * 40, "commit": "b" * 40, "version": "v1.0.0",
                                  "since": T0, "at": T0, "pusher": evil, "decision": "create",
                                  "push_id": "p"},
               f"{comp}/st<a>ge": {"value": "c" * 40, "commit": "b" * 40, "version": "v1.0.0",
                                   "since": T0 + HOUR, "at": T0 + HOUR, "pusher": evil,
                                   "decision": "deploy", "push_id": "p"}}
    page = render_html("repo<\u202e>.git", entries, current, T0 + 5 * HOUR)
    for raw in ("<script", "<img", "<a>", "\u202e", "alert(2)>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "st&lt;a&gt;ge" in page and "repo&lt;\\u202e&gt;.git" in page


def test_the_timeline_shows_outside_moves_warnings_deletes_and_bare_commits():
    c = "components/configs/limits"

    def e(h, decision, version, commit, new="e" * 40):
        return {"ts": ts(h), "epoch": T0 + h * HOUR, "push_id": f"p{h}", "pusher": "ops",
                "pusher_source": "GL_USER", "ref": f"refs/tags/{c}/production",
                "kind": "environment", "component": c, "slot": "production",
                "version": version, "old": "f" * 40, "new": new, "old_commit": None,
                "new_commit": commit, "decision": decision, "change": decision,
                "verdict": "warned" if decision == "warn" else "accepted", "rule": None}

    entries = [e(0, "seed", "v1.0.0", "a" * 40), e(2, "outside", None, None),
               e(3, "rollback", "v1.0.0", "a" * 40), e(4, "warn", "v1.1.0", "b" * 40),
               e(5, "delete", None, None, new="0" * 40),
               e(6, "unjudged", None, "c" * 40)]
    current = {f"{c}/production": {"value": "e" * 40, "commit": "c" * 40, "version": None,
                                   "since": T0 + 6 * HOUR, "at": T0 + 6 * HOUR,
                                   "pusher": "ops", "decision": "unjudged", "push_id": "p6"}}
    dom = Dom(render_html("x.git", entries, current, T0 + 8 * HOUR))
    bars = dom.find("g", "bar")
    assert [(b["data-version"], b["data-decision"], b["class"]) for b in bars] == [
        ("v1.0.0", "seed", "bar"), ("", "outside", "bar outside"),
        ("v1.0.0", "rollback", "bar rollback"), ("v1.1.0", "warn", "bar warned"),
        ("", "unjudged", "bar")]
    assert [dom.text("text", "label", b) for b in bars] == \
        ["v1.0.0", "?", "↩ v1.0.0", "v1.1.0", "ccccccc"]
    assert len(dom.find("g", "deleted", data_slot="production")) == 1
    cell, = dom.find("td", "cell", data_slot="production")
    assert dom.text("span", "ver", cell) == "ccccccc"  # a commit no version names


def test_an_empty_ledger_makes_a_short_report():
    page = render_html("new.git", [], {}, T0)
    assert "The ledger records no managed tag yet." in page and "<svg" not in page


def test_the_time_axis_fits_the_span():
    day = 86400
    _, ticks = _ticks(T0, T0 + 6 * HOUR, 860)
    assert [label for _, label in ticks] == ["08:00", "09:00", "10:00", "11:00", "12:00",
                                              "13:00", "14:00"]
    start, ticks = _ticks(T0, T0 + 60 * day, 860)  # weeks, from a Monday
    assert time.strftime("%a %b %d", time.gmtime(start)) == "Mon Jan 11"
    assert len(ticks) <= 10
    _, ticks = _ticks(T0, T0 + 400 * day, 860)
    assert [label for _, label in ticks][:3] == ["Jan 2027", "Mar 2027", "May 2027"]


class Dom(HTMLParser):
    """The elements of a serialised DOM, each with its attributes and the
    data-component of the row or article it sits in."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source"})

    def __init__(self, text: str):
        super().__init__()
        self.stack: list[dict] = []
        self.elements: list[dict] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        el = {"tag": tag, **{k: v or "" for k, v in attrs}, "text": "",
              "parent": self.stack[-1] if self.stack else None}
        el["in"] = next((p["data-component"] for p in reversed(self.stack)
                         if "data-component" in p), el.get("data-component"))
        self.elements.append(el)
        if tag not in self.VOID:
            self.stack.append(el)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i]["tag"] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        for el in self.stack:
            el["text"] += data

    def find(self, tag, cls=None, within=None, **attrs) -> list[dict]:
        return [el for el in self.elements if el["tag"] == tag
                and (cls is None or cls in el.get("class", "").split())
                and (within is None or self._below(el, within))
                and all(el.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    @staticmethod
    def _below(el, ancestor) -> bool:
        while el is not None:
            el = el["parent"]
            if el is ancestor:
                return True
        return False

    def text(self, tag, cls, within) -> str:
        return " ".join(" ".join(el["text"].split()) for el in self.find(tag, cls, within))


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
           f"--user-data-dir={profile}", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_the_report_renders_in_a_real_browser(demo, capsys, tmp_path):
    server, _ = demo
    page = tmp_path / "report.html"
    report(capsys, server, page)
    dom = Dom(chromium(tmp_path, "--dump-dom", page.as_uri()).stdout)

    # the status matrix: what each slot holds, as the browser built it
    def held(component, slot):
        cells = [c for c in dom.find("td", "cell", data_slot=slot) if c["in"] == component]
        assert len(cells) == 1, (component, slot)
        c = cells[0]
        if "none" in c["class"].split():
            return c["text"].strip()
        return (c["data-version"], dom.text("span", "ver", c), dom.text("span", "since", c),
                dom.text("span", "badge", c))

    assert held(E, "production") == ("v1.2.0", "v1.2.0", at(84), "")
    assert held(E, "latest") == ("v1.2.0", "v1.2.0", at(60), "")
    assert held(R, "production") == ("v1.0.0", "v1.0.0", at(78), "↩ rollback")
    assert held(R, "canary") == "–"  # deleted: shown empty
    assert held(S, "staging") == ("v1.1.0", "v1.1.0", at(61.5), "")
    assert [th["text"] for th in dom.find("th", scope="col")] == \
        ["component", "latest", "staging", "canary", "production"]

    # the timelines: one bar per value a slot held, in order, rollbacks marked
    def bars(component, slot):
        return [(b["data-version"], b["data-decision"], "rollback" in b["class"].split())
                for b in dom.find("g", "bar", data_slot=slot) if b["in"] == component]

    assert bars(E, "production") == [("v1.0.0", "promote", False), ("v1.1.0", "promote", False),
                                     ("v1.0.0", "rollback", True), ("v1.2.0", "promote", False)]
    assert bars(E, "staging") == [("v1.0.0", "deploy", False), ("v1.1.0", "deploy", False),
                                  ("v1.2.0", "deploy", False)]  # the redeploy: same bar
    assert bars(R, "canary") == [("v1.1.0", "deploy", False)]
    assert len([d for d in dom.find("g", "deleted") if d["in"] == R]) == 1
    assert bars(R, "production")[-1] == ("v1.0.0", "rollback", True)
    assert [g["data-version"] for g in dom.find("g", "release") if g["in"] == E] == \
        ["v1.0.0", "v1.1.0", "v1.2.0"]
    labels = [t["text"] for t in dom.find("text", "label") if t["in"] == E]
    assert "↩ v1.0.0" in labels and "v1.2.0" in labels
    ticks = [t["text"] for t in dom.find("text", "tick") if t["in"] == E]
    assert ticks == ["Jan 15", "12:00", "Jan 16", "12:00", "Jan 17", "12:00", "Jan 18",
                     "12:00", "Jan 19"]

    # and a picture of it
    png = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={png}", "--window-size=1280,1600", page.as_uri())
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 1600)
    assert len(data) > 30_000  # not a blank page
