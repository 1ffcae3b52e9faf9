"""Filtering, sorting and cursor paging the way Stigg's list queries do them.

Stigg's filters (`CustomerSubscriptionFilter` and friends) come from nestjs-query, which
turns them into SQL. The sandbox evaluates them over its records with the same meaning:

- the fields of one filter object must all hold (AND); `and: [...]` and `or: [...]` nest;
- the operators inside one field comparison are alternatives (nestjs-query ORs them);
- SQL's NULL: a missing value (a subscription without a resource, say) matches only
  `is: null`; `eq`, `neq`, `in`, `notIn`, ... are all false on it, so
  `resource: {resourceId: {neq: "a"}}` does not match a subscription without a resource;
- `is`/`isNot` take null, or true/false on boolean fields only.

What the sandbox does not model is refused with a GraphQL error (code UnsupportedParameter,
a message that says the sandbox does not model it), never silently ignored: filter fields
it keeps no data for, order comparisons on strings and enums (their SQL order depends on the
database's collation and enum declarations), sorting on anything but dates.

Cursors are opaque (base64 of the sort key of the edge's record) and keyset-based: a page
after a cursor starts after that key even if records were added or changed meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.errors import StiggError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Kinds of value a filter field holds; they decide which operators are modelled.
STRING, ENUM, UUID, DATE, NUMBER, BOOLEAN = "string", "enum", "uuid", "date", "number", "bool"
_EQUALITY = {"eq", "neq", "in", "notIn"}
_ORDER = {"gt", "gte", "lt", "lte", "between", "notBetween"}
_PATTERN = {"like", "notLike", "iLike", "notILike"}
_MODELLED_OPERATORS = {
    STRING: _EQUALITY | _PATTERN,
    ENUM: _EQUALITY,
    UUID: _EQUALITY,
    DATE: _EQUALITY | _ORDER,
    NUMBER: _EQUALITY | _ORDER,
    BOOLEAN: set(),
}


def not_modelled(what: str) -> StiggError:
    return StiggError(
        "UnsupportedParameter",
        f"The Stigg sandbox does not model {what}; it refuses it rather than ignore it.",
        is_validation_error=True,
    )


def bad_input(message: str) -> StiggError:
    return StiggError("BadUserInput", message, is_validation_error=True)


@dataclass(frozen=True)
class Field:
    get: Callable[[Any], Any]
    kind: str


@dataclass(frozen=True)
class Entity:
    """The filterable shape of one record type: its fields and its to-one relations."""

    name: str  # the GraphQL filter type, for messages
    fields: dict[str, Field]
    relations: dict[str, tuple[Callable[[Any], Any], Entity]] = field(default_factory=dict)


def matches(entity: Entity, record: Any, query: dict[str, Any]) -> bool:
    """Does `record` (None: a relation that is absent) satisfy the filter `query`?"""
    for key, condition in query.items():
        if condition is None:
            raise not_modelled(f"a null value for {entity.name}.{key}")
        if key == "and":
            if not all(matches(entity, record, part) for part in condition):
                return False
        elif key == "or":
            if condition and not any(matches(entity, record, part) for part in condition):
                return False
        elif key in entity.relations:
            get_related, related_entity = entity.relations[key]
            related = get_related(record) if record is not None else None
            if not matches(related_entity, related, condition):
                return False
        elif key in entity.fields:
            spec = entity.fields[key]
            value = spec.get(record) if record is not None else None
            if not _compare(f"{entity.name}.{key}", spec.kind, value, condition):
                return False
        else:
            raise not_modelled(f"the filter field {entity.name}.{key}")
    return True


def _compare(name: str, kind: str, value: Any, comparison: dict[str, Any]) -> bool:
    """One field comparison: its operators are alternatives (OR), as in nestjs-query."""
    results = [_operator(name, kind, value, op, operand) for op, operand in comparison.items()]
    return any(results) if results else True


def _operator(name: str, kind: str, value: Any, op: str, operand: Any) -> bool:
    if op in ("is", "isNot"):
        if operand is None:
            outcome = value is None
        elif kind == BOOLEAN:
            outcome = value is operand
        else:
            raise not_modelled(f"`{op}: {json.dumps(operand)}` on {name} (only null)")
        return outcome if op == "is" else not outcome
    if op not in _MODELLED_OPERATORS[kind]:
        raise not_modelled(f"the `{op}` comparison on {name}")
    if value is None:
        return False  # SQL: comparing NULL is never true
    if op == "eq":
        return operand is not None and value == _operand(kind, operand)
    if op == "neq":
        return operand is not None and value != _operand(kind, operand)
    if op == "in":
        return value in {_operand(kind, item) for item in operand}
    if op == "notIn":
        return value not in {_operand(kind, item) for item in operand}
    if op in _PATTERN:
        found = _like(operand, ignore_case=op in ("iLike", "notILike")).fullmatch(value)
        return (found is not None) == (op in ("like", "iLike"))
    if op in ("between", "notBetween"):
        inside = _operand(kind, operand["lower"]) <= value <= _operand(kind, operand["upper"])
        return inside == (op == "between")
    bound = _operand(kind, operand)
    return {
        "gt": value > bound,
        "gte": value >= bound,
        "lt": value < bound,
        "lte": value <= bound,
    }[op]


def _operand(kind: str, operand: Any) -> Any:
    if kind == UUID and isinstance(operand, str):
        return operand.lower()
    return operand


@functools.lru_cache(maxsize=256)
def _like(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """SQL LIKE: % is any run, _ any one character, backslash escapes."""
    parts, escaped = [], False
    for char in pattern:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


# --- sorting and keyset paging -------------------------------------------------------------


def time_key(value: datetime | None) -> int | None:
    """A datetime as whole microseconds since the epoch: exact, and JSON in a cursor."""
    return None if value is None else (value - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class SortKey:
    get: Callable[[Any], int | None]
    descending: bool
    nulls_first: bool


def sort_keys(
    sorting: Sequence[dict[str, Any]],
    sortable: dict[str, Callable[[Any], datetime | None]],
    type_name: str,
) -> list[SortKey]:
    """CustomerSubscriptionSort-like specs as sort keys (date fields only are modelled)."""
    keys = []
    for spec in sorting:
        name = spec["field"]
        if name not in sortable:
            raise not_modelled(f"sorting {type_name} by {name} (only by its dates)")
        descending = spec["direction"] == "DESC"
        nulls = spec.get("nulls")
        # PostgreSQL's default: NULLS LAST when ascending, NULLS FIRST when descending.
        nulls_first = descending if nulls is None else nulls == "NULLS_FIRST"
        get = sortable[name]
        keys.append(SortKey(lambda record, get=get: time_key(get(record)), descending, nulls_first))
    return keys


def _compare_values(a: Any, b: Any, key: SortKey) -> int:
    if a is None or b is None:
        if a is None and b is None:
            return 0
        return -1 if (a is None) == key.nulls_first else 1
    order = (a > b) - (a < b)
    return -order if key.descending else order


@dataclass(frozen=True)
class Ordering:
    """Sort keys plus the record's creation sequence, which makes the order total."""

    keys: list[SortKey]
    sequence: Callable[[Any], int]

    @property
    def _tie_break(self) -> SortKey:
        descending = self.keys[0].descending if self.keys else False
        return SortKey(self.sequence, descending, False)

    def key_of(self, record: Any) -> list[Any]:
        return [key.get(record) for key in self.keys] + [self.sequence(record)]

    def compare(self, a: list[Any], b: list[Any]) -> int:
        for left, right, key in zip(a, b, [*self.keys, self._tie_break], strict=True):
            order = _compare_values(left, right, key)
            if order:
                return order
        return 0

    def sort(self, records: list[Any]) -> list[Any]:
        keyed = [(self.key_of(record), record) for record in records]
        keyed.sort(key=functools.cmp_to_key(lambda x, y: self.compare(x[0], y[0])))
        return [record for _, record in keyed]


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode_cursor(cursor: str, length: int) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if (
        not isinstance(key, list)
        or len(key) != length
        or not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in key)
    ):
        raise bad_input(f"Invalid cursor: {cursor!r}")
    return key


def page(records: list[Any], ordering: Ordering, paging: dict[str, Any]) -> dict[str, Any]:
    """A relay connection over `records` (already filtered) in `ordering`.

    `after`/`before` cut the ordered list at a cursor's key (exclusive); `first` keeps the
    head of what is left, `last` its tail; neither keeps all of it. pageInfo tells whether
    records lie beyond the page on either side; totalCount counts every filtered record.
    """
    first, last = paging.get("first"), paging.get("last")
    for name, value in (("first", first), ("last", last)):
        if value is not None and value < 0:
            raise bad_input(f"paging.{name} must not be negative")
    if first is not None and last is not None:
        raise bad_input("Send paging.first or paging.last, not both")
    ordered = ordering.sort(records)
    keys = [ordering.key_of(record) for record in ordered]
    width = len(ordering.keys) + 1
    start, end = 0, len(ordered)
    if paging.get("after") is not None:
        cut = _decode_cursor(paging["after"], width)
        start = next((i for i, k in enumerate(keys) if ordering.compare(k, cut) > 0), end)
    if paging.get("before") is not None:
        cut = _decode_cursor(paging["before"], width)
        end = next((i for i, k in enumerate(keys) if ordering.compare(k, cut) >= 0), end)
        end = max(end, start)
    if first is not None:
        end = min(end, start + first)
    if last is not None:
        start = max(start, end - last)
    edges = [{"cursor": encode_cursor(keys[i]), "node": ordered[i]} for i in range(start, end)]
    return {
        "edges": edges,
        "pageInfo": {
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
            "hasNextPage": end < len(ordered),
            "hasPreviousPage": start > 0,
        },
        "totalCount": len(ordered),
    }
