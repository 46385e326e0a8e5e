"""The routing policy file: the shipped default loads; mistakes name the field and the line."""

from __future__ import annotations

import pytest

from conversations.models import Channel, MessageStatus
from conversations.routing.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy, parse_policy

DEFAULT_TEXT = DEFAULT_POLICY_PATH.read_text()


def _line_containing(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_default_policy_has_the_playbook_mapping() -> None:
    policy = load_policy()
    chains = {name: rules.chain for name, rules in policy.types.items()}
    assert chains == {
        "transactional": [Channel.SMS, Channel.VOICE],
        "service": [Channel.WHATSAPP, Channel.SMS],
        "rich_media": [Channel.RCS, Channel.WHATSAPP, Channel.SMS],
        "urgent": [Channel.VOICE, Channel.SMS],
        "marketing": [Channel.EMAIL, Channel.WHATSAPP],
    }
    assert policy.types["urgent"].mode == "all"
    assert policy.types["marketing"].quiet_hours and not policy.types["transactional"].quiet_hours
    cap = policy.types["marketing"].frequency_cap
    assert cap is not None and (cap.max, cap.window_days, cap.action) == (3, 7, "drop")
    assert policy.types["marketing"].steps[Channel.WHATSAPP].min_engagement > 0
    assert policy.channel(Channel.WHATSAPP).success_status is MessageStatus.DELIVERED
    assert policy.channel(Channel.WHATSAPP).timeout_seconds == 60
    assert policy.channel(Channel.SMS).success_status is MessageStatus.SENT
    assert policy.channel(Channel.SMS).timeout_seconds == 30
    assert (policy.quiet_hours.start, policy.quiet_hours.end) == ("21:00", "08:00")


@pytest.mark.parametrize(
    ("old", "new", "field", "line_of"),
    [
        ("max = 3", 'max = "three"', "$.types.marketing.frequency_cap.max", 'max = "three"'),
        ('chain = ["sms", "voice"]', 'chain = ["sms", "fax"]', "$.types.transactional.chain[1]", '"fax"'),
        ("timeout_seconds = 30", "timeout_seconds = -5", "$.channels.sms.timeout_seconds", "= -5"),
        ('mode = "all"', 'mode = "all"\nretries = 2', "$.types.urgent", "retries = 2"),
        ('start = "21:00"', 'start = "9pm"', "$.quiet_hours.start", 'start = "9pm"'),
        ('default_type = "service"', 'default_type = "promo"', "$.default_type", 'default_type = "promo"'),
    ],
)
def test_a_bad_value_names_the_field_and_line(old: str, new: str, field: str, line_of: str) -> None:
    text = DEFAULT_TEXT.replace(old, new, 1)
    assert text != DEFAULT_TEXT
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.toml")
    message = str(caught.value)
    assert message.startswith("routing policy policy.toml: ")
    assert f"`{field}`" in message
    assert f"(line {_line_containing(text, line_of)})" in message


def test_a_toml_syntax_error_gives_tomllibs_line() -> None:
    text = DEFAULT_TEXT.replace("[types.urgent]", "[types.urgent", 1)
    with pytest.raises(PolicyError, match=rf"at line {_line_containing(text, '[types.urgent')}"):
        parse_policy(text)


def test_a_step_for_a_channel_outside_the_chain_is_refused() -> None:
    text = DEFAULT_TEXT.replace("[types.marketing.steps.whatsapp]", "[types.marketing.steps.voice]", 1)
    with pytest.raises(PolicyError, match=r"`\$\.types\.marketing\.steps\.voice`"):
        parse_policy(text)


def test_a_missing_policy_file_is_one_line(tmp_path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nope.toml")


def test_the_docs_show_the_shipped_policy() -> None:
    docs = (DEFAULT_POLICY_PATH.parents[2] / "docs" / "routing.md").read_text()
    assert f"```toml\n{DEFAULT_TEXT}```" in docs
