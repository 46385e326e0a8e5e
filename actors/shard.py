"""ShardActor: the single writer for every customer whose home is this shard."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import msgspec
import ray
from redis.asyncio import Redis
from redis.exceptions import RedisError

from actors.loops import Loops
from actors.outbox import OutboxSender
from actors.streams import ensure_group, new_batch, pending_batches
from channels.attempt_renderer import AttemptRenderer
from channels.registry import StatusCallbacks, build_senders
from conversations import commands, layout, merge
from conversations.capabilities import CapabilityCache
from conversations.config import Config
from conversations.console import ConsoleBatchHook
from conversations.models import OutboxJob
from conversations.participants import build_processor
from conversations.participants.routing import RoutingSettings
from conversations.pricing import configured_prices
from conversations.routing.policy import load_policy
from conversations.sharding import shard_for_customer
from conversations.store import Keys
from conversations.timers import TimerWheel

log = logging.getLogger(__name__)


def shard_actor_name(shard: int) -> str:
    """The Ray name of a shard's actor (in the configured namespace)."""
    return f"shard-{shard}"


class ShardStats(msgspec.Struct):
    """What a shard has done since it (re)started."""

    shard: int
    started_at: float
    batches: int
    entries: int
    forwarded: int
    dead: int
    sent: int
    send_failures: int
    timers_fired: int


class ShardActor:
    """Consumes the shard's ingest stream in batches and runs its outbox sender.

    Created by ``actors.supervisor`` as a named, restartable Ray async actor. Everything it
    needs to resume lives in Redis: on restart it re-reads the entries it had taken but not
    acked, so an actor killed mid-batch loses nothing.
    """

    async def __init__(self, config_json: bytes, shard: int, callbacks_json: bytes) -> None:  # type: ignore[misc]
        self._config = msgspec.json.decode(config_json, type=Config)
        self._callbacks = msgspec.json.decode(callbacks_json, type=StatusCallbacks)
        self._shard = shard
        self._slot_map = self._config.slot_map()
        self._keys = Keys(self._config.key_prefix)
        self._redis = Redis.from_url(self._config.redis_url)
        self._session = aiohttp.ClientSession()
        self._capabilities = CapabilityCache(self._redis, self._keys, self._config.rbm.capability_ttl_seconds)
        senders = build_senders(self._session, self._config, self._capabilities)
        # One table for routing's estimates and each attempt's cost.
        prices = configured_prices(self._config.prices)
        render = AttemptRenderer.from_config(self._config, prices, self._callbacks.opt_out_urls)
        # Routing only chooses channels that have a sender here; others are skipped with
        # reason channel_unavailable in the decision.
        routing = RoutingSettings(
            policy=load_policy(self._config.routing_policy or None),
            prices=prices,
            channels=frozenset(senders),
            render=render,
            whatsapp_templates=self._config.whatsapp.templates,
        )
        self._processor = build_processor(
            self._redis,
            self._keys,
            shard,
            self._slot_map,
            routing=routing,
            keyword_replies=self._config.keyword_replies,
            session_idle_seconds=self._config.session_idle_seconds,
            console=ConsoleBatchHook(self._keys, self._config.console_events_maxlen),
        )
        self._sender = OutboxSender(
            self._redis,
            self._keys,
            shard,
            senders,
            self._callback_url,
            concurrency=self._config.send_concurrency,
        )
        self._timers = TimerWheel(self._redis, self._keys, shard)
        # Batches and direct commands (profile upserts, merges) change the same customers:
        # one lock keeps this actor the single, sequential writer of its shard.
        self._lock = asyncio.Lock()
        self._stats = ShardStats(shard, time.time(), 0, 0, 0, 0, 0, 0, 0)
        # Any exception a loop lets out is logged and the loop restarted after a backoff;
        # ping() reports the shard not ready while one of them is not running.
        self._loops = Loops()
        self._loops.start(f"ingest-{shard}", self._consume_ingest)
        self._loops.start(f"outbox-{shard}", self._sender.run)
        self._loops.start(f"timers-{shard}", self._fire_timers)

    def _callback_url(self, job: OutboxJob) -> str:
        return self._callbacks.url(job)

    async def _consume_ingest(self) -> None:
        stream = self._keys.ingest(self._shard)
        consumer = f"shard-{self._shard}"
        count = self._config.batch_max_entries
        adopted = False
        while True:
            try:
                await ensure_group(self._redis, stream)
                if not adopted:
                    await self._adopt_retired_shards()
                    adopted = True
                async for batch in pending_batches(self._redis, stream, consumer, count):
                    await self._apply(batch)
                while True:
                    batch = await new_batch(self._redis, stream, consumer, count, 1000)
                    if batch:
                        await self._apply(batch)
            except RedisError as exc:
                # The batch stays pending; after a pause the loop re-reads it from the start
                # (any other error does the same through the loop's supervisor).
                log.warning("shard %s: Redis error, retrying: %s", self._shard, exc)
                await asyncio.sleep(0.5)

    async def _adopt_retired_shards(self) -> None:
        """Check the deployment's slot count; take over what shards no longer run left pending."""
        most = await layout.record_layout(self._redis, self._keys, self._config.slots, self._config.shards)
        for retired in layout.retired_for(self._shard, self._config.shards, most):
            moved = await layout.adopt(self._redis, self._keys, retired, self._shard)
            if moved:
                log.info(
                    "shard %s: adopted %d entries and timers of retired shard %s", self._shard, moved, retired
                )

    async def _fire_timers(self) -> None:
        """Poll the shard's timer set; due timers become ingest entries (fired once)."""
        interval = self._config.timer_poll_interval_ms / 1000
        while True:
            try:
                fired = await self._timers.fire_due(time.time())
                self._stats.timers_fired += fired
                if fired:
                    continue  # more may be due: drain before sleeping
            except RedisError as exc:
                log.warning("shard %s: timer poll failed: %s", self._shard, exc)
            await asyncio.sleep(interval)

    async def _apply(self, batch) -> None:
        try:
            async with self._lock:
                result = await self._processor.process(batch)
        except RedisError:
            raise
        except Exception:
            # A bug or an entry no code path expected must not stall the whole shard: apply the
            # entries one by one, and set aside (dead-letter, logged) only those that fail alone.
            log.exception(
                "shard %s: batch of %d failed; applying its entries one by one", self._shard, len(batch)
            )
            for entry in batch:
                await self._apply_alone(entry)
            return
        self._stats.batches += 1
        self._stats.entries += result.applied
        self._stats.forwarded += result.forwarded
        self._stats.dead += result.dead

    async def _apply_alone(self, entry) -> None:
        async with self._lock:
            try:
                result = await self._processor.process([entry])
            except RedisError:
                raise
            except Exception:
                log.exception("shard %s: entry %r dead-lettered", self._shard, entry[0])
                await self._processor.dead_letter(entry)
                self._stats.dead += 1
                return
        self._stats.entries += result.applied

    async def upsert_profile(self, request: bytes) -> bytes:
        """Create or update a customer homed here; see conversations.commands."""
        async with self._lock:
            return await commands.run_upsert(self._redis, self._keys, self._shard, self._slot_map, request)

    async def set_preferences(self, request: bytes) -> bytes:
        async with self._lock:
            return await commands.run_set_preferences(self._redis, self._keys, request)

    async def hand_over(self, loser: str, winner: str) -> bytes:
        """Merge step 1 for a customer homed here: redirect it and its identifiers to ``winner``."""
        async with self._lock:
            try:
                await merge.hand_over(self._redis, self._keys, loser, winner, self._shard)
            except merge.MergeRefused as exc:
                return commands.encode_command(
                    commands.MergeReply(refused_code=exc.code, refused_message=str(exc))
                )
        return commands.encode_command(commands.MergeReply())

    async def merge(self, request: bytes) -> bytes:
        """Merge ``loser`` into ``winner`` (homed here); see conversations.merge for the two steps."""
        command = commands.decode_merge_request(request)
        winner_home = shard_for_customer(command.winner, self._slot_map)
        if winner_home != self._shard:
            return commands.encode_command(commands.MergeReply(wrong_shard=winner_home))
        lock = self._keys.merge_lock(command.winner, command.loser)
        if not await self._redis.set(lock, "1", nx=True, ex=60):
            return commands.encode_command(
                commands.MergeReply(
                    refused_code="merge_in_progress", refused_message="a merge of these customers is running"
                )
            )
        try:
            loser_home = shard_for_customer(command.loser, self._slot_map)
            if loser_home == self._shard:
                raw = await self.hand_over(command.loser, command.winner)
            else:
                actor = await asyncio.to_thread(
                    ray.get_actor, shard_actor_name(loser_home or 0), self._config.ray_namespace
                )
                raw = await actor.hand_over.remote(command.loser, command.winner)
            handed = commands.decode_merge_reply(raw)
            if handed.refused_code:
                return raw
            async with self._lock:
                try:
                    result = await merge.merge_into(
                        self._redis, self._keys, command.winner, command.loser, command.now, self._shard
                    )
                except merge.MergeRefused as exc:
                    return commands.encode_command(
                        commands.MergeReply(refused_code=exc.code, refused_message=str(exc))
                    )
            return commands.encode_command(commands.MergeReply(result=result))
        finally:
            await self._redis.delete(lock)

    async def ping(self) -> int:
        """Readiness probe: the shard number once Redis answers and every loop is running
        (else LoopsNotRunning naming the loops that are not)."""
        await self._redis.ping()
        self._loops.check()
        return self._shard

    async def stats(self) -> ShardStats:
        """Counters since this incarnation started."""
        self._stats.sent = self._sender.sent
        self._stats.send_failures = self._sender.failed
        return self._stats

    async def shutdown(self) -> None:
        """Stop taking new work and wait for sends in flight."""
        await self._loops.stop()
        await self._sender.drain()
        await self._session.close()
        await self._redis.aclose()
