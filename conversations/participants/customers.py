"""The customer hash in a batch: read once per customer, written once per customer at flush."""

from __future__ import annotations

from redis.asyncio.client import Pipeline

from conversations.batch.context import BatchContext, BatchItem, ReadQueue
from conversations.customer_hash import parse_customer_hash


class CustomerHashes:
    """Reads every home customer's hash into ``ctx.customers``; writes ``ctx.customer_writes``."""

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        for customer_id in ctx.home_customers():

            def keep(fields: dict[bytes, bytes], customer_id: str = customer_id) -> None:
                ctx.customers[customer_id] = parse_customer_hash(customer_id, fields)

            reads.then(keep).hgetall(ctx.keys.customer(customer_id))

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None:
        return None

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None:
        ctx.customer_writes.flush(tx, ctx.keys.customer)
