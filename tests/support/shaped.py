"""Hypothesis strategies for JSON shaped like a msgspec struct (valid-ish, with wrong types mixed in),
so fuzzing gets past a parser's first type check and into its logic."""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def shaped_like(
    type_: Any, hints: dict[str, st.SearchStrategy] | None = None, noise: float = 0.05
) -> st.SearchStrategy:
    """JSON values for ``type_``: each value is of the wrong type with probability ``noise``;
    ``hints`` give strategies for fields by name (e.g. phone numbers)."""
    return _strategy(mi.type_info(type_), hints or {}, 0, noise)


def _noisy(good: st.SearchStrategy, wrong: st.SearchStrategy, noise: float) -> st.SearchStrategy:
    # Hypothesis shrinks towards 0: keep the well-typed value the simple one.
    return st.floats(0, 1).flatmap(lambda roll: wrong if roll > 1 - noise else good)


def _strategy(
    info: mi.Type, hints: dict[str, st.SearchStrategy], depth: int, noise: float
) -> st.SearchStrategy:
    wrong = _ANY if depth < 6 else st.none()
    if isinstance(info, mi.StructType):
        fields = {}
        optional = {}
        for field in info.fields:
            value = (
                hints[field.name] if field.name in hints else _strategy(field.type, hints, depth + 1, noise)
            )
            target = fields if field.required else optional
            target[field.encode_name] = value
        return _noisy(st.fixed_dictionaries(fields, optional=optional), wrong, noise)
    if isinstance(info, mi.UnionType):
        return st.one_of([_strategy(t, hints, depth + 1, noise) for t in info.types])
    if isinstance(info, mi.ListType | mi.TupleType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        item = getattr(info, "item_type", None)
        inner = _strategy(item, hints, depth + 1, noise) if item is not None else _ANY
        return st.lists(inner, max_size=3 if depth < 4 else 1)
    if isinstance(info, mi.DictType):
        return st.dictionaries(
            st.text(max_size=8), _strategy(info.value_type, hints, depth + 1, noise), max_size=3
        )
    if isinstance(info, mi.LiteralType):
        return _noisy(st.sampled_from(info.values), st.text(max_size=8), noise)
    if isinstance(info, mi.EnumType):
        return _noisy(st.sampled_from([member.value for member in info.cls]), st.text(max_size=8), noise)
    simple = {
        mi.StrType: st.text(max_size=30),
        mi.IntType: st.integers(-(2**40), 2**40),
        mi.FloatType: st.floats(allow_nan=False, allow_infinity=False),
        mi.BoolType: st.booleans(),
        mi.NoneType: st.none(),
    }
    for kind, strategy in simple.items():
        if isinstance(info, kind):
            return _noisy(strategy, wrong, noise)
    return _ANY


def encoded(strategy: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """The values of ``strategy`` as JSON bytes."""
    return strategy.map(msgspec.json.encode)


_DELETE = object()


def mutations_of(document: Any, max_changes: int = 3) -> st.SearchStrategy:
    """A real payload with up to ``max_changes`` of its values replaced or removed: close enough to
    valid to reach deep into a parser, wrong enough to find the edges it forgot."""
    paths = list(_paths(document, ()))
    replacement = st.one_of(_ANY, st.text(max_size=20), st.just(_DELETE))
    changes = st.lists(st.tuples(st.sampled_from(paths), replacement), max_size=max_changes)
    return changes.map(lambda edits: _apply(document, edits))


def _paths(node: Any, prefix: tuple) -> Any:
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _apply(document: Any, edits: list[tuple[tuple, Any]]) -> Any:
    copy = msgspec.json.decode(msgspec.json.encode(document))
    for path, value in edits:
        parent = copy
        try:
            for step in path[:-1]:
                parent = parent[step]
            if value is _DELETE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced this path
    return copy
