"""Our X-Twilio-Signature code agrees with the official SDK's RequestValidator."""

from __future__ import annotations

import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from channels.twilio_signature import compute_signature, is_valid_signature, url_variants

TOKEN = "12345"

BODIES = [
    MultiDict(
        {
            "CallSid": "CA1234567890ABCDE",
            "Caller": "+12349013030",
            "Digits": "1234",
            "From": "+12349013030",
            "To": "+18005551212",
        }
    ),
    MultiDict({"Body": "Grüße aus Köln — 你好 🙂", "From": "+4915112345678", "MessageSid": "SMx"}),
    MultiDict(
        [
            ("MediaUrl", "https://b.example/2"),
            ("MediaUrl", "https://a.example/1"),
            ("Body", "x"),
            ("MediaUrl", "https://a.example/1"),
        ]
    ),
    MultiDict(),
    MultiDict({"Body": "a&b=c d+e%20f", "Empty": ""}),
]
URLS = [
    "https://mycompany.com/myapp.php?foo=1&bar=2",
    "https://example.com:8443/webhooks/twilio/sms",
    "http://127.0.0.1:8080/webhooks/twilio/sms/status?mid=msg_1&cid=cus_1_X",
    "https://example.com/webhooks/twilio/sms",
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("params", BODIES, ids=["voice", "non-ascii", "repeated-keys", "empty", "escapes"])
def test_signature_matches_twilio_sdk(url: str, params: MultiDict) -> None:
    expected = RequestValidator(TOKEN).compute_signature(url, params)
    assert compute_signature(TOKEN, url, params.items()) == expected


@pytest.mark.parametrize("params", BODIES[:3])
def test_signature_sha256_matches_twilio_sdk(params: MultiDict) -> None:
    url = URLS[1]
    expected = RequestValidator(TOKEN).compute_signature(url, params, "HMAC_SHA256")
    assert compute_signature(TOKEN, url, params.items(), "HMAC_SHA256") == expected


def test_twilio_documented_example() -> None:
    # The worked example from Twilio's security docs.
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert compute_signature(TOKEN, URLS[0], params.items()) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


@pytest.mark.parametrize(
    "signed_url, served_url",
    [
        ("https://example.com:443/hook", "https://example.com/hook"),
        ("https://example.com/hook", "https://example.com:443/hook"),
        ("http://example.com:80/hook?x=1", "http://example.com/hook?x=1"),
    ],
)
def test_default_port_either_way_like_the_sdk(signed_url: str, served_url: str) -> None:
    params = MultiDict({"Body": "hi"})
    signature = RequestValidator(TOKEN).compute_signature(signed_url, params)
    assert RequestValidator(TOKEN).validate(served_url, params, signature)
    assert is_valid_signature(TOKEN, served_url, params.items(), signature)


def test_wrong_token_body_or_url_is_rejected() -> None:
    params = MultiDict({"Body": "hi", "From": "+14155550100"})
    signature = compute_signature(TOKEN, URLS[3], params.items())
    assert is_valid_signature(TOKEN, URLS[3], params.items(), signature)
    assert not is_valid_signature("other", URLS[3], params.items(), signature)
    assert not is_valid_signature(TOKEN, URLS[3] + "x", params.items(), signature)
    assert not is_valid_signature(TOKEN, URLS[3], [("Body", "hi!"), ("From", "+14155550100")], signature)
    assert not is_valid_signature(TOKEN, URLS[3], params.items(), None)
    assert not is_valid_signature(TOKEN, URLS[3], params.items(), "")


@pytest.mark.parametrize(
    "served_url, signed_url",
    [
        ("https://example.com:8443/x", "https://example.com/x"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("https://example.com/x", "https://example.com:443/x"),
        ("https://example.com/x", "https://example.com:8443/x"),
    ],
)
def test_port_handling_agrees_with_the_sdk(served_url: str, signed_url: str) -> None:
    params = MultiDict({"Body": "hi"})
    signature = RequestValidator(TOKEN).compute_signature(signed_url, params)
    sdk = RequestValidator(TOKEN).validate(served_url, params, signature)
    assert is_valid_signature(TOKEN, served_url, params.items(), signature) == sdk
    assert served_url in url_variants(served_url)
