"""git's hook input, parsed: the whole-input check agrees with the line-by-line one."""
import pytest
from hypothesis import example, given, settings, strategies as st

from tagwarden.hook import HookInputError, checked_rows, parse_updates
from tagwarden.model import RefUpdate

ZERO, A, B = "0" * 40, "a" * 40, "b" * 40
_ID = st.one_of(st.text("0123456789abcdef", min_size=40, max_size=40),
                st.text("0123456789abcdef", min_size=64, max_size=64),
                st.text("0123456789abcdefABCDEFg", min_size=38, max_size=66))
_REF = st.one_of(st.text(max_size=30).map(lambda t: "refs/tags/" + t),
                 st.text(max_size=12), st.just("refs/heads/main"))
_LINE = st.builds(lambda o, n, r, sep: f"{o}{sep}{n}{sep}{r}", _ID, _ID, _REF,
                  st.sampled_from([" ", " ", " ", "  ", "\t"]))


def line_by_line(text: str):
    try:
        return checked_rows([line.split(" ") for line in text.split("\n") if line])
    except HookInputError as exc:
        return str(exc)


def parsed(text: str):
    try:
        return parse_updates("pre-receive", [], text.encode("utf-8", "surrogateescape"))
    except HookInputError as exc:
        return str(exc)


@settings(max_examples=400, deadline=None)
@example([f"{ZERO} {A} refs/tags/x"], "\n")
@example([f"{A} {B} refs/tags/\udce9"], "\n")
@example([f"{A} {'b' * 64} refs/tags/x"], "\n")
@example([f"{A} {B} refs/"], "")
@given(st.lists(_LINE, max_size=6), st.sampled_from(["\n", "", "\n\n"]))
def test_the_whole_input_check_agrees_with_the_line_by_line_one(lines, end):
    text = "\n".join(lines) + end
    assert parsed(text) == line_by_line(text)


def test_well_formed_input_in_order():
    text = f"{ZERO} {A} refs/tags/p/t/n/v1.0.0\n{A} {B} refs/heads/main\n"
    assert parsed(text) == [RefUpdate("refs/tags/p/t/n/v1.0.0", ZERO, A),
                            RefUpdate("refs/heads/main", A, B)]
    assert parsed("") == []


@pytest.mark.parametrize("text", [
    f"{ZERO} {A}\n", f"{ZERO} {A} tags/x\n", f"{ZERO} {A.upper()} refs/tags/x\n",
    f"{ZERO} {A} refs/tags/a b\n", f"{ZERO} {A} refs/tags/a\x1bb\n", f"{ZERO} {'a' * 64} refs/x\n",
])
def test_anything_git_never_sends_names_the_line(text):
    assert parsed(text).startswith("unexpected hook input line: ")
    assert "\x1b" not in parsed(text)
