"""Preparing an outbound message for its channel once its customer is known (on the shard).

Tracking tokens name the customer, so link rewriting waits until the shard has resolved the
recipient; SMS segments and cost are counted after that, on the text that will really be
sent (a tracked link is longer than the original).
"""

from __future__ import annotations

from channels.tracking import LinkTracker
from conversations.config import Config
from conversations.models import Channel, OutboundContent, OutboundRequest
from conversations.pricing import PriceTable
from conversations.sms_segments import encoding_of, segment_count


class OutboundPreparer:
    """Rewrites links for tracking (when the request asks for it) and prices the message."""

    def __init__(self, tracker: LinkTracker | None, prices: PriceTable) -> None:
        self._tracker = tracker
        self._prices = prices

    @classmethod
    def from_config(cls, config: Config, prices: PriceTable) -> OutboundPreparer:
        """A preparer pricing with ``prices``: the same table routing decides with."""
        tracker = LinkTracker(config.tracking.secret, config.public_url) if config.tracking.secret else None
        return cls(tracker, prices)

    def __call__(
        self, entry: OutboundRequest, customer_id: str, channel: Channel, country: str
    ) -> OutboundContent:
        """The content as sent on ``channel``; ``country`` is the one routing priced the decision for."""
        body, html = entry.body, entry.html
        if entry.track and self._tracker is not None:
            body = self._tracker.rewrite_text(body, entry.message_id, customer_id)
            if html:
                html = self._tracker.rewrite_html(html, entry.message_id, customer_id)
        segments, encoding = 0, ""
        if channel is Channel.SMS:
            segments, encoding = segment_count(body), encoding_of(body)
        cost = self._prices.cost(channel, country, entry.message_type, segments)
        return OutboundContent(body=body, html=html, segments=segments, encoding=encoding, cost=cost)
