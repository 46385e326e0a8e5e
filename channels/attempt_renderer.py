"""Rendering one routing attempt for its channel, on the shard, once its customer is known.

Each attempt renders from what was asked (``AttemptContent``): a template kind renders its own
variant for the attempt's channel, a rich card becomes text (title, description, link within the
segment limit) where it cannot be shown, links are rewritten for tracking (tokens name the
customer, so this waits for the shard), and SMS segments and cost are counted on the text that
is really sent (a tracked link is longer than the original).
"""

from __future__ import annotations

from collections.abc import Mapping

from channels.rcs_render import render_sms
from channels.templates import MissingVariable, RenderFailed, TemplateNotAvailable, TemplateRenderer
from channels.tracking import LinkTracker
from conversations.config import Config
from conversations.models import Channel, OutboundContent
from conversations.opt_out_links import OptOutLinks
from conversations.pricing import PriceTable
from conversations.routing.rendering import AttemptContent
from conversations.sms_segments import encoding_of, segment_count

CARD_AS_TEXT = frozenset({Channel.SMS, Channel.WHATSAPP})  # a card becomes text here


class AttemptRenderer:
    """Renders, tracks and prices each attempt (the routing writer's ``render``)."""

    def __init__(
        self,
        tracker: LinkTracker | None,
        prices: PriceTable,
        templates: TemplateRenderer | None = None,
        card_max_segments: int = 2,
        opt_outs: OptOutLinks | None = None,
    ) -> None:
        self._tracker = tracker
        self._prices = prices
        self._templates = templates
        self._card_max_segments = card_max_segments
        self._opt_outs = opt_outs

    @classmethod
    def from_config(
        cls, config: Config, prices: PriceTable, opt_out_bases: Mapping[Channel, str] | None = None
    ) -> AttemptRenderer:
        """A renderer pricing with ``prices`` (the table routing decides with); attempts carry
        an opt-out URL on the channels ``opt_out_bases`` names (the gateway serves them)."""
        tracker = LinkTracker(config.tracking_key, config.public_url) if config.tracking_key else None
        opt_outs = OptOutLinks(config.secret_key, opt_out_bases) if opt_out_bases else None
        return cls(tracker, prices, TemplateRenderer(), config.rbm.sms_fallback_max_segments, opt_outs)

    def __call__(self, content: AttemptContent, customer_id: str, channel: Channel) -> OutboundContent:
        body, html, subject = self._rendered(content, channel)
        if content.rich_card is not None and channel in CARD_AS_TEXT:
            body = render_sms(_WithBody(content, body), self._card_max_segments)
        if content.track and self._tracker is not None:
            body = self._tracker.rewrite_text(body, content.message_id, customer_id)
            if html:
                html = self._tracker.rewrite_html(html, content.message_id, customer_id)
        segments, encoding = 0, ""
        if channel is Channel.SMS:
            segments, encoding = segment_count(body), encoding_of(body)
        cost = self._prices.cost(channel, content.country, content.message_type, segments)
        opt_out_url = ""
        if self._opt_outs is not None:
            opt_out_url = self._opt_outs.for_attempt(
                channel, content.message_type, content.message_id, customer_id, content.requested_at
            )
        return OutboundContent(
            body=body,
            html=html,
            segments=segments,
            encoding=encoding,
            cost=cost,
            subject=subject,
            opt_out_url=opt_out_url,
        )

    def _rendered(self, content: AttemptContent, channel: Channel) -> tuple[str, str, str]:
        """The template kind's own variant for ``channel``; else the content the API checked."""
        if content.template_kind and self._templates is not None:
            try:
                rendered = self._templates.render(content.template_kind, channel, content.variables)
            except (TemplateNotAvailable, MissingVariable, RenderFailed):
                pass  # the kind has no variant here: the checked rendering goes out as it is
            else:
                if rendered.body.strip():
                    return rendered.body, rendered.html or content.html, rendered.subject or content.subject
        return content.body, content.html, content.subject


class _WithBody:
    """An attempt's content with the body rendered for its channel (for the card adaptation)."""

    def __init__(self, content: AttemptContent, body: str) -> None:
        self.rich_card = content.rich_card
        self.body = body
