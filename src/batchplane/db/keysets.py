"""Sets of integer keys in WHERE clauses, as a few ranges instead of a parameter per key.

`column.in_(values)` binds one parameter per value and SQLAlchemy expands them on every
execution, after its statement cache: for the hundreds of item keys of a chunk of work,
or the thousands of outbox ids a relay deletes, that was most of the statement's CPU.
The keys of a chunk are almost always a few runs of consecutive integers (a work record
names a range of a batch's items; outbox ids are taken in order), so they are written
as ranges: `batch_id = :b AND item_index BETWEEN :lo AND :hi`, OR-ed per run. Every
database plans that as index range scans, whatever its statistics (array joins were
planned as nested loops over whole batches on tables not analysed yet).

The number of ranges is padded to a power of two (repeating the last range, which
changes nothing) so that a statement has few shapes to compile and prepare. Sets of
more than `MAX_RUNS` ranges fall back to `IN`, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import and_, false, or_, tuple_

T = TypeVar("T")

# More ranges than this: a plain IN (keys scattered, e.g. by a cancel or requeue).
MAX_RUNS = 16


def runs(values: Iterable[int]) -> list[tuple[int, int]]:
    """The distinct values as sorted (first, last) runs of consecutive integers."""
    found: list[tuple[int, int]] = []
    for value in sorted(set(values)):
        if found and found[-1][1] == value - 1:
            found[-1] = (found[-1][0], value)
        else:
            found.append((value, value))
    return found


def pair_runs(pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """The distinct (a, b) pairs as sorted (a, first b, last b) runs of consecutive b."""
    found: list[tuple[int, int, int]] = []
    for a, b in sorted(set(pairs)):
        if found and found[-1][0] == a and found[-1][2] == b - 1:
            found[-1] = (a, found[-1][1], b)
        else:
            found.append((a, b, b))
    return found


def values_in(column: Any, values: Sequence[int]) -> Any:
    """`column IN values`, as ranges when they form at most `MAX_RUNS` runs."""
    found = runs(values)
    if not found:
        return false()
    if len(found) > MAX_RUNS:
        return column.in_(sorted(set(values)))
    return or_(*(column.between(first, last) for first, last in _padded(found)))


def pairs_in(columns: tuple[Any, Any], pairs: Sequence[tuple[int, int]]) -> Any:
    """`(a, b) IN pairs`, as `a = x AND b BETWEEN lo AND hi` ranges when they form at
    most `MAX_RUNS` runs."""
    found = pair_runs(pairs)
    if not found:
        return false()
    if len(found) > MAX_RUNS:
        return tuple_(*columns).in_(sorted(set(pairs)))
    a, b = columns
    return or_(*(and_(a == x, b.between(lo, hi)) for x, lo, hi in _padded(found)))


def _padded(found: list[T]) -> list[T]:
    """`found` (not empty) repeated at its end to the next power of two in length."""
    size = 1
    while size < len(found):
        size *= 2
    return found + [found[-1]] * (size - len(found))
