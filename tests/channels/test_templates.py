"""Templates: one kind, every channel variant; a missing variable is named; only HTML is escaped."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError

from channels.templates import MissingVariable, RenderFailed, TemplateNotAvailable, TemplateRenderer
from conversations.models import Channel
from tests.support.stack import Stack, unique_phone

SHIPPED = {
    "customer_name": "Ann",
    "order_id": "1042",
    "carrier": "UPS",
    "tracking_url": "https://track.example.com/1Z999?ref=a&b=c",
}


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer()


def test_the_shipped_kinds_are_listed(renderer: TemplateRenderer) -> None:
    assert {"order_shipped", "otp", "cart_abandoned", "appointment_reminder", "generic"} <= set(
        renderer.kinds()
    )


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.WHATSAPP, Channel.RCS])
def test_text_channels_render_their_variant(renderer: TemplateRenderer, channel: Channel) -> None:
    content = renderer.render("order_shipped", channel, SHIPPED)
    assert "1042" in content.body and "UPS" in content.body
    assert SHIPPED["tracking_url"] in content.body  # text is never HTML-escaped
    assert content.subject == "" and content.html == ""


def test_channel_variants_differ(renderer: TemplateRenderer) -> None:
    bodies = {ch: renderer.render("order_shipped", ch, SHIPPED).body for ch in Channel if ch != Channel.EMAIL}
    assert "*1042*" in bodies[Channel.WHATSAPP]  # WhatsApp bold markup, only there
    assert "*" not in bodies[Channel.SMS]
    assert "1 0 4 2" in bodies[Channel.VOICE]  # spoken digit by digit
    assert "https://" not in bodies[Channel.VOICE]
    assert len(set(bodies.values())) == 4


def test_email_renders_subject_text_and_html(renderer: TemplateRenderer) -> None:
    content = renderer.render("order_shipped", Channel.EMAIL, SHIPPED)
    assert content.subject == "Your order 1042 has shipped"
    assert "Track your package: https://track.example.com/1Z999?ref=a&b=c" in content.body
    assert content.html.startswith("<!DOCTYPE html>")
    assert 'href="https://track.example.com/1Z999?ref=a&amp;b=c"' in content.html


def test_rcs_falls_back_to_the_sms_text(renderer: TemplateRenderer) -> None:
    otp = {"code": "482913"}
    assert renderer.render("otp", Channel.RCS, otp).body == renderer.render("otp", Channel.SMS, otp).body


def test_defaults_apply_but_missing_variables_are_named(renderer: TemplateRenderer) -> None:
    assert "10 minutes" in renderer.render("otp", Channel.SMS, {"code": "1"}).body
    with pytest.raises(MissingVariable) as caught:
        renderer.render("otp", Channel.SMS, {})
    assert caught.value.variable == "code"
    assert caught.value.template == "otp.sms.j2"
    assert "'code'" in str(caught.value)


@pytest.mark.parametrize("channel", list(Channel))
def test_missing_variable_is_an_error_on_every_channel(renderer: TemplateRenderer, channel: Channel) -> None:
    given = {k: v for k, v in SHIPPED.items() if k != "carrier"}
    with pytest.raises(MissingVariable) as caught:
        renderer.render("order_shipped", channel, given)
    assert caught.value.variable == "carrier"


def test_missing_nested_variable_is_named_by_its_path() -> None:
    renderer = TemplateRenderer("tests", "fixtures/templates")
    ok = renderer.render("receipt", Channel.SMS, {"order": {"number": 7, "lines": [1, 2], "total": "$3"}})
    assert ok.body == "Order 7: 2 items, $3 total."
    with pytest.raises(MissingVariable) as caught:
        renderer.render("receipt", Channel.SMS, {"order": {"number": 7, "lines": []}})
    assert caught.value.variable == "order.total"


def test_html_is_autoescaped_and_text_is_not(renderer: TemplateRenderer) -> None:
    hostile = {**SHIPPED, "customer_name": '<script>alert("x")</script> & Co'}
    email = renderer.render("order_shipped", Channel.EMAIL, hostile)
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in email.html
    assert '<script>alert("x")</script> & Co' in email.body
    assert '<script>alert("x")</script> & Co' in renderer.render("order_shipped", Channel.SMS, hostile).body


def test_unknown_kinds_and_partials_are_refused(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateNotAvailable):
        renderer.render("no_such_kind", Channel.SMS, {})
    with pytest.raises(TemplateNotAvailable):
        renderer.render("../templates/otp", Channel.SMS, {})
    with pytest.raises(TemplateNotAvailable):
        renderer.render("_layout", Channel.EMAIL, {})


def test_a_kind_without_a_channel_variant_is_refused() -> None:
    renderer = TemplateRenderer("tests", "fixtures/templates")  # receipt has only an SMS text
    order = {"order": {"number": 7, "lines": [], "total": "$0"}}
    assert renderer.render("receipt", Channel.WHATSAPP, order).body.startswith("Order 7")  # falls back
    for channel in (Channel.EMAIL, Channel.VOICE):
        with pytest.raises(TemplateNotAvailable):
            renderer.render("receipt", channel, order)


def test_the_sandbox_refuses_unsafe_attribute_access(renderer: TemplateRenderer) -> None:
    template = renderer._env.from_string("{{ body.__class__.__mro__ }}")
    with pytest.raises(SecurityError):
        template.render({"body": "x"})


async def test_api_names_the_missing_variable(stack: Stack) -> None:
    status, body = await stack.api(
        "POST",
        "/v1/messages",
        json={
            "to": {"phone": unique_phone()},
            "template": {"kind": "order_shipped", "variables": {"customer_name": "Ann", "order_id": "1"}},
        },
    )
    assert status == 422, body
    assert body["error"]["code"] == "template_variable_missing"
    assert body["error"]["field"] == "template.variables.carrier"


async def test_api_template_renders_the_sms(stack: Stack) -> None:
    from tests.support.stack import eventually

    phone = unique_phone()
    status, accepted = await stack.api(
        "POST",
        "/v1/messages",
        json={
            "to": {"phone": phone},
            "channel": "sms",
            "template": {"kind": "otp", "variables": {"code": "482913"}},
        },
    )
    assert status == 202, accepted
    (sent,) = await eventually(lambda: stack.sent_to(phone))
    assert sent["body"].startswith("482913 is your Threadline verification code.")


@pytest.mark.parametrize(
    "payload, code, field",
    [
        ({"template": {"kind": "otp", "variables": {"code": "1"}}, "body": "x"}, "validation_failed", "body"),
        ({}, "validation_failed", "body"),
        ({"template": {"kind": "nope"}}, "template_not_found", "template.kind"),
        (
            {"template": {"kind": "otp", "variables": {"code": "1"}}, "subject": "s"},
            "validation_failed",
            "subject",
        ),
        ({"body": "x" * 1601}, "body_too_long", "body"),
    ],
)
async def test_api_template_errors(stack: Stack, payload: dict, code: str, field: str) -> None:
    status, body = await stack.api("POST", "/v1/messages", json={"to": {"phone": unique_phone()}, **payload})
    assert status == 422, body
    assert (body["error"]["code"], body["error"]["field"]) == (code, field)


def test_a_variable_of_the_wrong_shape_is_a_render_error(renderer: TemplateRenderer) -> None:
    with pytest.raises(RenderFailed):
        renderer.render("otp", Channel.VOICE, {"code": 482913})  # spoken digit by digit: needs text


@pytest.mark.parametrize(
    "variables",
    [
        {"rule": "=", "width": 10**8, "title": "t", "lines": []},  # 100 MB of "="
        {"rule": "=", "width": 1, "title": "t", "lines": ["x" * 1_000] * 1_000},  # a 1 MB message
        {"rule": "=", "width": 1, "title": "t", "lines": range(10**6)},  # a million loop turns
    ],
    ids=["huge product", "huge output", "long loop"],
)
def test_variables_cannot_make_a_huge_message(variables: dict) -> None:
    renderer = TemplateRenderer("tests", "fixtures/templates")
    with pytest.raises(RenderFailed, match="refused"):
        renderer.render("banner", Channel.SMS, variables)
    ok = {"rule": "=", "width": 3, "title": "Hi", "lines": ["a"]}
    assert renderer.render("banner", Channel.SMS, ok).body == "=== Hi a"
