"""Read-only views of journeys for the API: definitions, stats, and a customer's instances."""

from __future__ import annotations

from typing import Any

import msgspec
from redis.asyncio import Redis

from conversations.journeys.definition import DefinitionError, Journey, SendStep
from conversations.journeys.instance import Instance, LogEntry, SendRecord, decode_instance
from conversations.journeys.machine import current_step_id
from conversations.journeys.registry import compile_stored, current_versions, stored_version, versions_of
from conversations.store import Keys

STEP_METRICS = ("sent", "delivered", "read", "failed", "replied", "clicked")
TOTALS = ("entered", "active", "completed", "converted", "exited")


class JourneySummary(msgspec.Struct):
    """One journey in ``GET /v1/journeys``."""

    name: str
    version: int
    versions: list[int]
    status: str
    description: str
    trigger: str
    published_at: float


class StepStats(msgspec.Struct):
    id: str
    type: str
    sent: int = 0
    delivered: int = 0
    read: int = 0
    failed: int = 0
    replied: int = 0
    clicked: int = 0


class JourneyStats(msgspec.Struct):
    """Counters since the journey was first published (all versions together)."""

    journey: str
    version: int
    entered: int
    active: int
    completed: int
    converted: int
    exited: int
    conversion_rate: float
    steps: list[StepStats]


class Waiting(msgspec.Struct, omit_defaults=True):
    step: str
    until: float | None = None
    event: str = ""
    reply: bool = False
    handoff: bool = False


class InstanceView(msgspec.Struct, omit_defaults=True):
    """Where one instance stands."""

    id: str
    journey: str
    version: int
    status: str
    step: str
    started_at: float
    updated_at: float
    trigger: dict[str, Any]
    sends: list[SendRecord]
    log: list[LogEntry]
    waiting: Waiting | None = None
    finished_at: float | None = None
    reason: str = ""
    last_reply: str = ""


class JourneyReader:
    """Reads journey data for the HTTP API."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._compiled: dict[tuple[str, int], Journey | None] = {}

    async def journey(self, name: str, version: int) -> Journey | None:
        if (name, version) not in self._compiled:
            stored = await stored_version(self._redis, self._keys, name, version)
            try:
                self._compiled[(name, version)] = compile_stored(name, version, stored) if stored else None
            except DefinitionError:
                self._compiled[(name, version)] = None
        return self._compiled[(name, version)]

    async def summaries(self) -> list[JourneySummary]:
        found = []
        for name, version in sorted((await current_versions(self._redis, self._keys)).items()):
            stored = await stored_version(self._redis, self._keys, name, version)
            journey = await self.journey(name, version)
            if stored is None or journey is None:
                continue
            definition = journey.definition
            found.append(
                JourneySummary(
                    name,
                    version,
                    await versions_of(self._redis, self._keys, name),
                    definition.status,
                    definition.description,
                    definition.trigger.event,
                    stored.published_at,
                )
            )
        return found

    async def stats(self, name: str) -> JourneyStats | None:
        version = (await current_versions(self._redis, self._keys)).get(name)
        if version is None:
            return None
        journey = await self.journey(name, version)
        raw = await self._redis.hgetall(self._keys.journey_stats(name))
        counters = {k.decode(): int(v) for k, v in raw.items()}
        steps: dict[str, StepStats] = {}
        if journey is not None:
            for step in journey.definition.steps:
                if isinstance(step, SendStep):
                    steps[step.id] = StepStats(step.id, "send")
        for field, count in sorted(counters.items()):
            if field.startswith("step:"):
                _, step_id, metric = field.split(":", 2)
                entry = steps.setdefault(step_id, StepStats(step_id, "send"))
                if metric in STEP_METRICS:
                    setattr(entry, metric, count)
        totals = {name: counters.get(name, 0) for name in TOTALS}
        rate = round(totals["converted"] / totals["entered"], 4) if totals["entered"] else 0.0
        return JourneyStats(name, version, **totals, conversion_rate=rate, steps=list(steps.values()))

    async def customer_instances(self, customer_id: str, limit: int = 50) -> list[InstanceView]:
        """The customer's instances, newest first."""
        ids = await self._redis.zrevrange(self._keys.journey_history(customer_id), 0, limit - 1)
        if not ids:
            return []
        blobs = await self._redis.mget([self._keys.journey_instance(i.decode()) for i in ids])
        views = []
        for blob in blobs:
            if blob:
                instance = decode_instance(blob)
                views.append(_view(instance, await self.journey(instance.journey, instance.version)))
        return views


def _view(instance: Instance, journey: Journey | None) -> InstanceView:
    wait = instance.wait
    waiting = Waiting(wait.step, wait.due, wait.event, wait.reply, wait.handoff) if wait is not None else None
    step = current_step_id(instance, journey) if journey is not None else str(instance.position)
    return InstanceView(
        id=instance.id,
        journey=instance.journey,
        version=instance.version,
        status=instance.status.value,
        step=step,
        started_at=instance.started_at,
        updated_at=instance.updated_at,
        trigger={
            "name": instance.trigger.name,
            "at": instance.trigger.at,
            "properties": instance.trigger.properties,
        },
        sends=instance.sends,
        log=instance.log,
        waiting=waiting,
        finished_at=instance.finished_at,
        reason=instance.reason,
        last_reply=instance.last_reply,
    )
