"""``/v1/customers``: find a customer, read their profile and their one thread."""

from __future__ import annotations

import msgspec
from aiohttp import web

from conversations.access import Scope
from conversations.models import Customer
from conversations.normalize import InvalidIdentifier, phone_identifier
from conversations.thread import is_valid_cursor
from gateway.errors import ApiError
from gateway.routes.messages import json_response
from gateway.services import SERVICES

routes = web.RouteTableDef()

DEFAULT_PAGE = 50


class CustomerList(msgspec.Struct):
    """Customers found by an identifier (zero or one today)."""

    data: list[Customer]


@routes.get("/v1/customers")
async def find_customers(request: web.Request) -> web.Response:
    """Customers matching an identifier (``?phone=``)."""
    services = request.app[SERVICES]
    services.api_keys.require(request, Scope.READ)
    phone = request.query.get("phone")
    if not phone:
        raise ApiError(422, "missing_query", "give an identifier to search by, e.g. ?phone=+1555…", "phone")
    try:
        identifier = phone_identifier(phone)
    except InvalidIdentifier as exc:
        raise ApiError(422, "invalid_identifier", str(exc), "phone") from exc
    customer_id = await services.reader.find_customer_id(identifier)
    customer = await services.reader.customer(customer_id) if customer_id else None
    return json_response(CustomerList([customer] if customer else []))


@routes.get("/v1/customers/{customer_id}")
async def get_customer(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    services.api_keys.require(request, Scope.READ)
    customer = await services.reader.customer(request.match_info["customer_id"])
    if customer is None:
        raise ApiError(404, "customer_not_found", "no customer with this id")
    return json_response(customer)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(DEFAULT_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise ApiError(422, "invalid_query", "limit must be an integer from 1 to 500", "limit")
    return int(raw)


@routes.get("/v1/customers/{customer_id}/thread")
async def get_thread(request: web.Request) -> web.Response:
    """The customer's thread, oldest first; ``?cursor=`` from ``next_cursor`` for the next page."""
    services = request.app[SERVICES]
    services.api_keys.require(request, Scope.READ)
    customer_id = request.match_info["customer_id"]
    cursor = request.query.get("cursor") or None
    if cursor is not None and not is_valid_cursor(cursor):
        raise ApiError(422, "invalid_query", "cursor must be a next_cursor value", "cursor")
    limit = _limit(request)
    if await services.reader.customer(customer_id) is None:
        raise ApiError(404, "customer_not_found", "no customer with this id")
    page = await services.reader.page(customer_id, cursor, limit)
    return json_response(page)
