"""Query parameters, read one way by every route: strict values or a 422 naming the parameter."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TypeVar

from aiohttp import web

from conversations.numerals import decimal
from conversations.numerals import stream_id as parse_stream_id
from gateway.errors import ApiError

E = TypeVar("E", bound=enum.Enum)
LATEST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


class QueryParams:
    """The query string of one request; each reader returns a typed value or raises 422."""

    def __init__(self, query: Mapping[str, str]) -> None:
        self._query = query

    def text(self, name: str) -> str | None:
        """The raw value, or None when absent or empty."""
        return self._query.get(name) or None

    def integer(self, name: str, *, default: int, minimum: int, maximum: int) -> int:
        """A whole number from ``minimum`` to ``maximum`` in ASCII digits; ``default`` when absent."""
        raw = self._query.get(name)
        if raw is None:
            return default
        value = decimal(raw, maximum)
        if value is None or value < minimum:
            raise _invalid(name, f"{name} must be an integer from {minimum} to {maximum}")
        return value

    def instant(self, name: str) -> float | None:
        """A time as unix seconds or ISO 8601 (UTC when no offset), from 1970 to the year 9999."""
        raw = self.text(name)
        if raw is None:
            return None
        try:
            seconds = float(raw)
        except ValueError:
            seconds = _iso_seconds(raw, name)
        if not (math.isfinite(seconds) and 0 <= seconds <= LATEST_INSTANT):
            raise _invalid(name, f"{name} must be a time from 1970 to the year 9999")
        return seconds

    def stream_id(self, name: str, what: str) -> str | None:
        """A Redis stream id ``<ms>-<seq>`` (cursors, event ids) that Redis accepts, as given."""
        raw = self.text(name)
        if raw is not None and parse_stream_id(raw) is None:
            raise _invalid(name, f"{name} must be {what}")
        return raw

    def choice(self, name: str, kind: type[E]) -> E | None:
        """One member of ``kind`` by value, or None when absent."""
        raw = self.text(name)
        return None if raw is None else _member(kind, raw.strip(), name)

    def choices(self, name: str, kind: type[E]) -> frozenset[E]:
        """Comma-separated members of ``kind``; empty when absent."""
        raw = self.text(name) or ""
        return frozenset(_member(kind, part.strip(), name) for part in raw.split(",") if part.strip())


def query_params(request: web.Request) -> QueryParams:
    """The request's query string, to read through the typed readers above."""
    return QueryParams(request.query)


def _iso_seconds(raw: str, name: str) -> float:
    try:
        parsed = datetime.fromisoformat(raw)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        raise _invalid(name, f"{name} is unix seconds or ISO 8601") from None


def _member(kind: type[E], raw: str, name: str) -> E:
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in kind)
        raise _invalid(name, f"{name} {raw!r} is not one of: {allowed}") from None


def _invalid(name: str, message: str) -> ApiError:
    return ApiError(422, "invalid_query", message, name)
