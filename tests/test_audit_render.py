"""A push's audit lines rendered together equal, line for line, what the structlog
pipeline writes for each record on its own."""
from hypothesis import example, given, settings, strategies as st

from tagwarden import audit

TS = "2026-11-22T00:00:00.000000Z"


def line(template: audit.Template) -> str:
    """The line a template becomes, chained after some line (the same for both sides)."""
    return audit.fill(template, "ab" * 32, 7)
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from(["a", "b%s"]),
                    st.text(max_size=6), st.floats(allow_nan=False),
                    st.lists(st.text(max_size=3), max_size=2),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_KEYS = ["event", "ref", "old", "new", "rule", "warnings", "pct%s", "zz"]


@st.composite
def push(draw):
    """Records of one shape (a push's decisions) over the push's shared keys; columns
    often hold one value throughout, as a thousand version creates do."""
    keys = draw(st.lists(st.sampled_from(_KEYS), min_size=1, max_size=6, unique=True))
    n = draw(st.integers(2, 6))
    records = []
    for _ in range(n):
        records.append({k: draw(_VALUES) for k in keys})
    for k in keys:  # make some columns constant, some mixed
        if draw(st.booleans()):
            value = draw(_VALUES)
            for r in records:
                r[k] = value
    shared = draw(st.dictionaries(st.sampled_from(["pusher", "repo", "hook"]), _VALUES,
                                  max_size=3))
    return shared, records


@settings(max_examples=400, deadline=None)
@example(({}, [{"warnings": []}, {"warnings": []}, {"warnings": ["x"]}]))
@example(({}, [{"rule": 0}, {"rule": False}]))
@example(({"pusher": "%s"}, [{"ref": "%d"}, {"ref": "%%"}]))
@given(push())
def test_rendering_a_whole_push_equals_the_pipeline_line_by_line(case):
    shared, records = case
    batch = audit._Batch(records, TS, shared or None)
    for record, fast in zip(records, batch.render_all(records)):
        if fast is not None:
            assert line(fast) == line(audit._template({**shared, **record}, TS))


def test_a_thousand_like_records_all_take_the_batch():
    records = [{"event": "decision", "ref": f"refs/tags/p/t/c{i}/v1.0.0", "rule": None,
                "warnings": [], "lock_wait_ms": 0} for i in range(1000)]
    shared = {"pusher": "alice", "push_id": "abc"}
    lines = audit._Batch(records, TS, shared).render_all(records)
    assert None not in lines
    assert line(lines[7]) == line(audit._template({**shared, **records[7]}, TS))


@settings(max_examples=300, deadline=None)
@example(({}, [{"warnings": []}, {"warnings": ["x"]}]))
@example(({"pusher": "a%s"}, [{"ref": "r", "warnings": [], "rule": None}]))  # update mode: one
@given(push())
def test_a_push_given_as_columns_renders_as_its_records_would(case):
    shared, records = case
    table = {k: [r[k] for r in records] for k in records[0]}
    got = audit._table_templates(table, TS, shared)
    assert [line(t) for t in got] == \
        [line(audit._template({**shared, **r}, TS)) for r in records]


def test_columns_that_shadow_the_shared_keys_or_hold_a_chain_key_go_one_by_one():
    for table, shared in (({"pusher": ["bob", "carol"]}, {"pusher": "alice"}),
                          ({"seq": [1, 2], "ref": ["a", "b"]}, {"pusher": "alice"})):
        assert audit._Batch.of_keys(table.keys(), TS, shared) is None
        records = [dict(zip(table, row)) for row in zip(*table.values())]
        assert [line(t) for t in audit._table_templates(table, TS, shared)] == \
            [line(audit._template({**shared, **r}, TS)) for r in records]
