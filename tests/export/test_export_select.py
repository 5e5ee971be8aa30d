"""Depth selection: the Pareto front of score vs MACs, and the CLI depth spec."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glonet_edge.errors import ConfigError
from glonet_edge.export.select import pareto_depths, parse_depths, resolve_depths

# A reference fc accuracy-vs-depth curve on MNIST: a steep rise, then flat (the shape select.py's
# Pareto choice must keep the rise of and cut the plateau from).
PAPER = {1: 0.216, 2: 0.564, 3: 0.755, 4: 0.884, 5: 0.934, 6: 0.950, 7: 0.951, 8: 0.953}
LINEAR_COST = {d: 1000 * d for d in PAPER}


def test_paper_curve_keeps_the_rise_and_drops_the_plateau():
    # 7 is within half a point of 6, 8 is the full depth and always kept.
    assert pareto_depths(PAPER, LINEAR_COST) == [1, 2, 3, 4, 5, 6, 8]
    assert pareto_depths(PAPER, LINEAR_COST, step=0.02) == [1, 2, 3, 4, 5, 8]


def test_dominated_deeper_depths_are_dropped_but_full_depth_stays():
    scores = {1: 0.5, 2: 0.9, 3: 0.8, 4: 0.85}
    assert pareto_depths(scores, {d: d for d in scores}) == [1, 2, 4]


def test_cost_not_depth_order_decides():
    # A deeper depth that is cheaper (e.g. a cut before an expensive stage) comes first.
    scores = {1: 0.6, 2: 0.7, 3: 0.9}
    assert pareto_depths(scores, {1: 10, 2: 30, 3: 20}) == [1, 3]


@pytest.mark.parametrize("bad", [{}, {1: math.nan}])
def test_rejects_empty_or_non_finite_scores(bad):
    with pytest.raises(ConfigError):
        pareto_depths(bad, {1: 1})


def test_rejects_missing_cost_and_bad_step():
    with pytest.raises(ConfigError, match="no cost"):
        pareto_depths({1: 0.5, 2: 0.6}, {1: 1})
    with pytest.raises(ConfigError, match="step"):
        pareto_depths({1: 0.5}, {1: 1}, step=-1)


scores_and_costs = st.integers(1, 24).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0, 1), min_size=n, max_size=n),
    st.lists(st.integers(1, 10**9), min_size=n, max_size=n),
    st.sampled_from([0.0, 0.001, 0.005, 0.05]),
))


@settings(max_examples=200, deadline=None)
@given(scores_and_costs)
def test_pareto_properties(case):
    score_list, cost_list, step = case
    scores = dict(enumerate(score_list, start=1))
    costs = dict(enumerate(cost_list, start=1))
    full = max(scores)
    kept = pareto_depths(scores, costs, step)
    assert kept == sorted(set(kept)) and full in kept
    cheapest = min(scores, key=lambda d: (costs[d], -scores[d], d))
    assert cheapest in kept
    # Along the front (full depth aside) more cost always buys at least `step` more score.
    front = sorted((d for d in kept if d != full or d == cheapest), key=lambda d: (costs[d], -scores[d], d))
    for a, b in zip(front, front[1:]):
        assert scores[b] >= scores[a] + step
    # Every dropped depth is matched within `step` by a kept depth that costs no more.
    for d in set(scores) - set(kept):
        assert any(costs[k] <= costs[d] and scores[k] > scores[d] - step - 1e-12 for k in kept)


def test_parse_depths():
    assert parse_depths("all") == "all"
    assert parse_depths(" Auto ") == "auto"
    assert parse_depths("8,1,2,4") == [8, 1, 2, 4]
    for bad in ("", "1,x", "one"):
        with pytest.raises(ConfigError):
            parse_depths(bad)


def test_resolve_depths():
    assert resolve_depths("all", 3) == [1, 2, 3]
    assert resolve_depths([4, 1, 4], 8) == [1, 4]
    assert resolve_depths("auto", 8, PAPER, LINEAR_COST) == [1, 2, 3, 4, 5, 6, 8]
    for bad in ([0], [9], [], [True], "some"):
        with pytest.raises(ConfigError):
            resolve_depths(bad, 8)
    with pytest.raises(ConfigError, match="auto"):
        resolve_depths("auto", 8)
