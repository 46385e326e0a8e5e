"""Helpers for journey tests: load the built-in examples, drive the pure step machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conversations.journeys.definition import Journey, compile_journey, load_source, parse_definition
from conversations.journeys.instance import (
    Effect,
    EventSnapshot,
    Instance,
    JourneyCustomer,
    Start,
    Stimulus,
)
from conversations.journeys.machine import advance, new_instance
from conversations.models import Identifier, IdentifierKind

EXAMPLES = Path(__file__).resolve().parent.parent / "journeys" / "examples"
T0 = 1_750_000_000.0
HOUR = 3600.0
DAY = 86400.0


def example_source(name: str) -> dict[str, Any]:
    return load_source((EXAMPLES / f"{name}.yaml").read_text())


def example(name: str, version: int = 1) -> Journey:
    return compile_journey(parse_definition(example_source(name)), version)


def customer(last_channel: str = "sms", **attributes: Any) -> JourneyCustomer:
    return JourneyCustomer(
        "cus_0_TEST",
        attributes=dict(attributes),
        identifiers=[
            Identifier(IdentifierKind.EMAIL, "ada@example.com"),
            Identifier(IdentifierKind.PHONE, "+14155550100"),
        ],
        last_channel=last_channel,
    )


class Drive:
    """One instance pushed through the machine, keeping every effect for assertions."""

    def __init__(self, journey: Journey, context: JourneyCustomer | None = None) -> None:
        self.journey = journey
        self.customer = context or customer()
        self.instance: Instance | None = None
        self.effects: list[Effect] = []

    def start(self, event: str, properties: dict[str, Any], now: float = T0) -> list[Effect]:
        trigger = EventSnapshot(event, now, properties, "evt_1")
        fresh = new_instance(self.journey, "jin_TEST", self.customer.id, trigger, now)
        return self._apply(fresh, Start(), now)

    def step(self, stimulus: Stimulus, now: float) -> list[Effect]:
        assert self.instance is not None
        return self._apply(self.instance, stimulus, now)

    def _apply(self, instance: Instance, stimulus: Stimulus, now: float) -> list[Effect]:
        self.instance, effects = advance(instance, self.journey, stimulus, now, self.customer)
        self.effects += effects
        return effects

    @property
    def current(self) -> Instance:
        assert self.instance is not None
        return self.instance


def of_type(effects: list[Effect], kind: type) -> list:
    return [e for e in effects if isinstance(e, kind)]
