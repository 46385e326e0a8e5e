"""Hypothesis strategies for inputs that once made a 500: odd numeric strings and deep nesting."""

from __future__ import annotations

from hypothesis import strategies as st

# Digits str.isdigit accepts but int() refuses or reads otherwise (superscripts, other scripts).
_DIGITS = st.characters(categories=("Nd", "No"))
_NUMERIC_CHARS = st.one_of(st.sampled_from("0123456789-.eE+_ "), _DIGITS)

odd_numbers = st.one_of(
    st.text(_DIGITS, min_size=1, max_size=3),
    st.sampled_from(
        ["\u00b2", "inf", "-inf", "nan", "NaN", "-5", "1e400", "0x1F", "+1", " 7", "1_000", "-0"]
    ),
    st.sampled_from(["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"]),
    st.integers(2**63, 2**70).map(str),
    st.floats().map(repr),
    st.text(_NUMERIC_CHARS, min_size=1, max_size=8),
)
"""Strings a query parameter that holds a number, a time or a count might receive."""

odd_stream_ids = st.one_of(
    st.tuples(st.integers(2**63, 2**65), st.integers(0, 2**65)).map(lambda pair: f"{pair[0]}-{pair[1]}"),
    st.tuples(odd_numbers, odd_numbers).map("-".join),
    st.just(f"{2**64 - 1}-{2**64 - 1}"),
)
"""Strings shaped like Redis stream ids (cursors) that Redis refuses."""

odd_query_values = st.one_of(odd_numbers, odd_stream_ids)

nesting_depths = st.sampled_from([33, 1_000, 20_000])
"""How deep to nest: just past our limit, past msgspec's recursion limit, and far past it."""


def nested_array(depth: int) -> bytes:
    """``depth`` nested empty JSON arrays."""
    return b"[" * depth + b"]" * depth


def with_nested_field(body: bytes, depth: int) -> bytes:
    """A JSON object ``body`` with an unknown field nested ``depth`` deep put first."""
    rest = body.lstrip()[1:].lstrip()
    return b'{"zz_nested": ' + nested_array(depth) + (b"," if not rest.startswith(b"}") else b"") + rest
