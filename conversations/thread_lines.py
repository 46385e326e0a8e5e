"""One-line summaries of the thread entries that are not messages: routing, events, engagement.

The thread API returns them as ``summary`` and the console shows them as compact system lines,
so both say the same thing (e.g. "WhatsApp not delivered within 60 s → SMS"). Pure text from
the logged entry; the routing machine's ``detail`` strings are read in the forms it writes them
(``conversations.routing.machine``), and any other detail is shown as it is.
"""

from __future__ import annotations

import re

from conversations.models import Channel, EngagementKind, RouteMode, RoutingDecision, RoutingEvent

CHANNEL_NAMES = {
    Channel.SMS: "SMS",
    Channel.WHATSAPP: "WhatsApp",
    Channel.RCS: "RCS",
    Channel.VOICE: "Voice",
    Channel.EMAIL: "Email",
}
ARROW = "→"

_TIMEOUT = re.compile(r"^no (?P<status>\w+) on (?P<channel>\w+) within (?P<seconds>[\d.]+)s$")
_FAILURE = re.compile(r"^(?P<channel>[a-z]+) (?P<status>[a-z_]+)(?: (?P<code>\S+))?$")


def channel_name(value: str) -> str:
    """``whatsapp`` → ``WhatsApp``; unknown names unchanged."""
    try:
        return CHANNEL_NAMES[Channel(value)]
    except ValueError:
        return value


def _words(value: str) -> str:
    return value.replace("_", " ")


def why(text: str) -> str:
    """The machine's reason for moving on, as a person would say it."""
    if match := _TIMEOUT.match(text):
        seconds = float(match["seconds"])
        return f"{channel_name(match['channel'])} not {match['status']} within {seconds:g} s"
    if match := _FAILURE.match(text):
        code = f" ({match['code']})" if match["code"] else ""
        return f"{channel_name(match['channel'])} {_words(match['status'])}{code}"
    return text


def _chain(decision: RoutingDecision) -> str:
    names = [channel_name(step.channel) for step in decision.chain]
    joiner = " + " if decision.mode is RouteMode.ALL else f" {ARROW} "
    return joiner.join(names)


def routing_line(
    event: RoutingEvent, channel: Channel | None, detail: str, decision: RoutingDecision | None
) -> str:
    """A routing entry in one line."""
    on = channel_name(channel) if channel else ""
    if event is RoutingEvent.DECIDED and decision is not None and decision.chain:
        return f"Routing: {_chain(decision)}"
    if event is RoutingEvent.DEFERRED:
        return f"Held back: {_words(detail)}" if detail else "Held back"
    if event is RoutingEvent.REFUSED:
        return f"Not sent: {detail}" if detail else "Not sent"
    if event is RoutingEvent.ATTEMPT:
        return f"Sending on {on} ({detail})" if detail else f"Sending on {on}"
    if event is RoutingEvent.TIMEOUT:
        return why(detail) if detail else f"{on} timed out"
    if event is RoutingEvent.FALLBACK:
        reason, _, following = detail.rpartition(" -> ")
        if reason:
            return f"{why(reason)} {ARROW} {channel_name(following)}"
        return f"Falling back to {on}"
    if event is RoutingEvent.SKIPPED:
        skipped, _, reason = detail.partition(": ")
        return f"Skipped {channel_name(skipped)}: {_words(reason)}" if reason else f"Skipped {on}"
    if event is RoutingEvent.SUCCEEDED:
        return f"{_words(detail).capitalize() or 'Succeeded'} on {on}"
    if event is RoutingEvent.LATE_DELIVERY:
        status, _, rest = detail.partition(" after fallback to ")
        later = ", ".join(channel_name(name) for name in rest.split("; ")[0].split(", ") if name)
        return f"{on} {status} late, after the fallback to {later}" if later else f"{on} {detail}"
    if event is RoutingEvent.EXHAUSTED:
        reason, _, left = detail.partition("; no step left")
        return f"No channel left: {why(reason)}{left}" if reason else "No channel left"
    return f"{_words(event.value).capitalize()} {on}".strip()


def event_line(name: str) -> str:
    """A backend event in one line."""
    return f"Event: {name}"


def engagement_line(kind: EngagementKind, channel: Channel | None, url: str) -> str:
    """An open or a click in one line."""
    on = f" ({channel_name(channel)})" if channel else ""
    if kind is EngagementKind.CLICKED:
        return f"Clicked {url}{on}" if url else f"Clicked a link{on}"
    return f"Opened{on}"
