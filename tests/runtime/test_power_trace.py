"""The power-trace contract: parsing, clear errors, replay, and the shipped traces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glonet_edge.runtime.power import (
    STATE_COLUMNS, TraceError, TraceSource, load_trace, parse_trace, resolve_trace, shipped_traces,
)

GOOD = """\
# recorded on nothing: a unit-test trace
t_s,on_battery,battery_pct,power_w,power_budget_w,power_mode,temp_c
0,0,100,6.5,15,15W,45
10,1,99.5,,15,15W,46.5
25,1,98,7,7,7W,
"""


def test_parse_good_trace():
    trace = parse_trace(GOOD, "unit.csv")
    assert len(trace) == 3 and trace.duration_s == 25 and trace.provenance == ["recorded on nothing: a unit-test trace"]
    assert trace.columns == list(STATE_COLUMNS)
    s = trace.states[1]
    assert s.on_battery is True and s.battery_pct == 99.5 and s.power_w is None and s.power_mode == "15W"
    assert trace.states[2].temp_c is None and trace.states[2].source == "trace:unit"


def test_state_at_holds_rows():
    trace = parse_trace(GOOD)
    assert trace.state_at(-5).battery_pct == 100  # before the first row: the first row
    assert trace.state_at(9.99).battery_pct == 100
    assert trace.state_at(10).battery_pct == 99.5
    assert trace.state_at(1e9).battery_pct == 98  # after the last row: it holds


def test_byte_order_mark_and_crlf_from_spreadsheets():
    trace = parse_trace("\ufefft_s,battery_pct\r\n0,50\r\n1,49\r\n")
    assert trace.times == [0.0, 1.0] and trace.states[1].battery_pct == 49


def test_only_t_s_is_required_and_extra_columns_are_ignored():
    trace = parse_trace("t_s,cpu_util_pct\n0,12\n1,40\n")
    assert trace.columns == [] and trace.ignored_columns == ["cpu_util_pct"] and trace.states[0].is_unknown


@pytest.mark.parametrize("text, fragment", [
    ("", "no header row"),
    ("# only comments\n", "no header row"),
    ("on_battery,battery_pct\n1,50\n", "has no 't_s' column"),
    ("t_s,battery_pct\n", "no data rows"),
    ("t_s,battery_pct\n0,50\n0,49\n", "line 3, column 't_s': 0 is not after the previous row's 0"),
    ("t_s,battery_pct\n5,50\n2,49\n", "line 3, column 't_s': 2 is not after"),
    ("t_s,battery_pct\n0,fifty\n", "line 2, column 'battery_pct': battery_pct must be a number, got 'fifty'"),
    ("t_s,battery_pct\n0,150\n", "line 2, column 'battery_pct': battery_pct must be within"),
    ("t_s,on_battery\n0,2\n", "line 2, column 'on_battery': on_battery must be 0 or 1"),
    ("t_s,power_w\n0,-3\n", "column 'power_w'"),
    ("t_s,temp_c\nzero,40\n", "line 2, column 't_s': 'zero' is not a number of seconds"),
    ("t_s,temp_c\nnan,40\n", "not a finite number"),
    ("t_s,battery_pct\n0,50,7\n", "line 2: expected 2 comma-separated fields"),
    ("t_s,t_s\n0,1\n", "appear twice"),
    ("t_s,,power_w\n0,1,2\n", "empty column name"),
    ("t_s,battery_pc\n0,50\n", "did you mean 'battery_pct'"),
    ('t_s,power_mode\n0,"15W\n', "not a CSV row"),
])
def test_trace_errors_name_line_and_column(text, fragment):
    with pytest.raises(TraceError) as info:
        parse_trace(text, "bad.csv")
    assert fragment in str(info.value) and "bad.csv" in str(info.value)


def test_load_trace_file_errors(tmp_path):
    with pytest.raises(TraceError, match="not found"):
        load_trace(tmp_path / "missing.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TraceError, match="UTF-8"):
        load_trace(binary)
    with pytest.raises(TraceError, match="shipped trace name"):
        resolve_trace("no_such_trace")


# ---- garbage never escapes as another exception type -----------------------------------------------
_cells = st.one_of(st.text(max_size=8), st.sampled_from(["0", "1", "-1", "1e400", "nan", "50.5", "", "15W", '"']))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_parses_or_raises_trace_error(text):
    try:
        trace = parse_trace(text)
    except TraceError:
        return
    assert len(trace) >= 1 and all(b > a for a, b in zip(trace.times, trace.times[1:]))


@settings(max_examples=300, deadline=None)
@given(header=st.lists(st.sampled_from(["t_s", *STATE_COLUMNS, "junk", "battery_pc"]), min_size=1, max_size=8),
       rows=st.lists(st.lists(_cells, min_size=1, max_size=8), max_size=6))
def test_csv_shaped_garbage_parses_or_raises_trace_error(header, rows):
    text = ",".join(header) + "\n" + "\n".join(",".join(r) for r in rows)
    try:
        trace = parse_trace(text)
    except TraceError as exc:
        assert "line" in str(exc) or "<trace>" in str(exc)
        return
    for s in trace.states:
        s.validated()  # whatever parsed is a plausible state


# ---- replay -----------------------------------------------------------------------------------------
def test_trace_source_replays_by_clock():
    now = [1000.0]
    source = TraceSource(parse_trace(GOOD), clock=lambda: now[0])
    assert source.read().battery_pct == 100  # the first read starts the replay
    now[0] += 12
    assert source.read().battery_pct == 99.5
    now[0] += 100
    assert source.read().battery_pct == 98


def test_trace_source_speed_and_loop():
    now = [0.0]
    source = TraceSource(parse_trace(GOOD), clock=lambda: now[0], speed=10.0, loop=True)
    source.read()
    now[0] = 1.5  # 15 trace seconds
    assert source.read().battery_pct == 99.5
    now[0] = 4.0  # 40 trace seconds: past the end (25 + last spacing 15 = 40): starts over
    assert source.read().battery_pct == 100


def test_trace_source_by_step():
    source = TraceSource(parse_trace(GOOD))
    assert [source.step().battery_pct for _ in range(5)] == [100, 99.5, 98, 98, 98]
    assert source.read().battery_pct == 98


# ---- shipped traces ------------------------------------------------------------------------------------
def test_shipped_traces_load_and_state_their_provenance():
    names = shipped_traces()
    assert {"laptop_discharge", "orin_nano_battery", "orin_nano_thermal", "thinkpad_discharge_recorded"} <= set(names)
    for name in names:
        trace = load_trace(resolve_trace(name))
        text = " ".join(trace.provenance)
        # Every shipped trace says what it is in its first words: a recording or a synthetic model.
        if name.endswith("_recorded"):
            assert text.startswith("RECORDED trace") and "Source:" in text, name
        else:
            assert "SYNTHETIC" in text and "not a recording" in text and not trace.ignored_columns, name
        assert len(trace) > 100


def test_shipped_laptop_trace_discharges():
    trace = load_trace(resolve_trace("laptop_discharge"))
    assert trace.states[0].on_battery is False and trace.states[-1].on_battery is True
    assert trace.states[0].battery_pct == 100 and trace.states[-1].battery_pct < 5
