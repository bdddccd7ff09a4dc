"""Key sets written as ranges: exact runs, few statement shapes, IN beyond MAX_RUNS."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table, select

from batchplane.db.keysets import MAX_RUNS, pair_runs, pairs_in, runs, values_in

T = Table("t", MetaData(), Column("a", Integer), Column("b", Integer))


def _sql(clause: Any) -> str:
    return str(select(T.c.a).where(clause))


def test_runs_are_sorted_distinct_and_consecutive() -> None:
    assert runs([]) == []
    assert runs([5, 3, 4, 4, 9, 10, 1]) == [(1, 1), (3, 5), (9, 10)]
    assert pair_runs([(2, 0), (1, 3), (1, 1), (1, 2), (2, 1), (2, 3), (1, 2)]) == [
        (1, 1, 3),
        (2, 0, 1),
        (2, 3, 3),
    ]
    # A run never crosses from one batch to the next, however the indexes line up.
    assert pair_runs([(1, 4), (2, 5)]) == [(1, 4, 4), (2, 5, 5)]


def test_ranges_are_padded_to_a_power_of_two() -> None:
    one = _sql(pairs_in((T.c.a, T.c.b), [(7, i) for i in range(500)]))
    assert one.count("BETWEEN") == 1
    assert " IN " not in one
    three = _sql(pairs_in((T.c.a, T.c.b), [(1, 0), (1, 5), (2, 0)]))
    assert three.count("BETWEEN") == 4  # the last range once more: a shape of 4
    assert _sql(values_in(T.c.a, [1, 2, 3, 10])).count("BETWEEN") == 2


def test_scattered_keys_fall_back_to_in() -> None:
    scattered = [(1, 2 * i) for i in range(MAX_RUNS + 1)]
    assert "BETWEEN" not in _sql(pairs_in((T.c.a, T.c.b), scattered))
    assert " IN " in _sql(pairs_in((T.c.a, T.c.b), scattered))
    assert "BETWEEN" not in _sql(values_in(T.c.a, [2 * i for i in range(MAX_RUNS + 1)]))
    edge = [(1, 2 * i) for i in range(MAX_RUNS)]
    assert _sql(pairs_in((T.c.a, T.c.b), edge)).count("BETWEEN") == MAX_RUNS


def test_an_empty_set_matches_nothing() -> None:
    assert "false" in _sql(values_in(T.c.a, [])).lower()
    assert "false" in _sql(pairs_in((T.c.a, T.c.b), [])).lower()
