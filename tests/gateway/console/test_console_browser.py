"""The console page in a real browser: Debian's Chromium, driven by Playwright's async API.

The browser is the system one (``scripts/ensure-chromium.sh`` installs it); Playwright never
downloads its own. The test fails on any JavaScript error the page raises.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.async_api import ConsoleMessage, async_playwright, expect

from tests.support.console import ConsoleClient, create_agent
from tests.support.stack import Stack, eventually, unique_phone

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FOUND = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AGENT_TIME_ZONE = "America/Chicago"
README_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "console.png"


async def _text_in(stack: Stack, phone: str, body: str) -> str:
    """A simulated customer texts the business; returns their customer id."""
    result = await stack.simulator("POST", "/simulator/inbound", json={"from": phone, "body": body})
    assert result["gateway_status"] == 200, result
    return await eventually(lambda: stack.customer_id(phone))


async def _seed_other_conversations(stack: Stack) -> None:
    """A few other customers, one already handled by a colleague, so the queue looks real."""
    await _text_in(stack, unique_phone(), "Can I move my delivery to Friday afternoon?")
    await _text_in(stack, unique_phone(), "Thanks, the replacement arrived today!")
    colleague, token = await create_agent(stack, "sam")
    busy = await _text_in(stack, unique_phone(), "I was charged twice for order 4471")
    client = await ConsoleClient.connect(stack.http, stack.gateway_url, token)
    assert (await client.request({"type": "claim", "customer_id": busy}))["type"] == "ack"
    await client.request({"type": "reply", "customer_id": busy, "text": "Checking that for you now."})
    await client.close()
    assert colleague == "sam"


async def test_agent_answers_an_inbound_sms_from_the_console_page(stack: Stack, tmp_path: Path) -> None:
    assert CHROMIUM_FOUND, "Debian's chromium is missing: run scripts/ensure-chromium.sh"
    await _seed_other_conversations(stack)
    agent, token = await create_agent(stack, "maya")
    phone = unique_phone()
    question = "Hi! My parcel says delivered but it isn't here. Can you help?"
    answer = "Sorry about that! I've opened a trace with the courier and will text you by 5pm."

    page_errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            page_errors.append(f"console: {message.text}")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": 1360, "height": 820}, timezone_id=AGENT_TIME_ZONE, locale="en-US"
            )
            page = await context.new_page()
            page.on("pageerror", lambda error: page_errors.append(f"pageerror: {error}"))
            page.on("console", on_console)

            await page.goto(stack.gateway_url + "/console")
            await page.fill("#token", token)
            await page.click("#login-form button[type=submit]")
            await expect(page.locator("#connection")).to_have_text("Live")
            await expect(page.locator("#agent-name")).to_have_text(agent)
            await expect(page.locator("#timezone")).to_have_text(f"Times in {AGENT_TIME_ZONE}")

            # The customer texts in; the conversation shows up live in the Unassigned queue.
            customer_id = await _text_in(stack, phone, question)
            item = page.locator(f'.conv-item[data-customer="{customer_id}"]')
            await expect(item).to_be_visible(timeout=10_000)
            await expect(item.locator(".conv-preview")).to_have_text(question)
            await expect(item.locator(".unread-count")).to_have_text("1")
            await expect(item.locator(".badge")).to_have_text("SMS")
            await item.click()

            inbound = page.locator(".msg.inbound", has_text=question)
            await expect(inbound).to_be_visible()
            # Timestamps are in the agent's time zone, not the server's.
            entries = (await stack.thread(customer_id))["entries"]
            received_at = datetime.fromtimestamp(entries[0]["at"], ZoneInfo(AGENT_TIME_ZONE))
            shown = (await inbound.locator(".msg-meta span").first.inner_text()).replace("\u202f", " ")
            assert shown == received_at.strftime("%-I:%M %p"), shown

            # An internal note first (never sent), then the reply, sent with Ctrl+Enter.
            await page.click('.composer-tab[data-mode="note"]')
            await page.fill("#composer-text", "Courier trace #TR-20931 opened. Follow up at 5pm.")
            await page.keyboard.press("Control+Enter")
            await expect(page.locator(".note", has_text="TR-20931")).to_be_visible()
            await page.click('.composer-tab[data-mode="reply"]')
            await expect(page.locator("#composer-channel")).to_have_value("sms")
            await page.fill("#composer-text", answer)
            await page.keyboard.press("Control+Enter")

            sent = await eventually(lambda: stack.sent_to(phone))
            assert [message["body"] for message in sent] == [answer]
            reply = page.locator(".msg.outbound", has_text=answer)
            await expect(reply.locator(".msg-status")).to_have_text(re.compile("Delivered"), timeout=10_000)
            await expect(page.locator("#conv-status")).to_have_text("Assigned to you")
            await expect(page.locator("#conv-automation")).to_have_text("Automation paused")
            await expect(page.locator("#composer-text")).to_have_value("")

            # A backend message the router places: its routing entries are one-line system rows
            # (as the thread API's summary says them), never empty message bubbles.
            status, sent_body = await stack.api(
                "POST", "/v1/messages", json={"to": {"phone": phone}, "body": "Trace TR-20931 is open."}
            )
            assert status == 202, sent_body
            routed = page.locator(".system-routing", has_text="Routing:")
            await expect(routed.first).to_be_visible(timeout=10_000)
            await expect(page.locator(".msg.outbound", has_text="TR-20931")).to_be_visible()
            summaries = [
                entry["summary"]
                for entry in (await stack.thread(customer_id))["entries"]
                if entry["kind"] == "routing"
            ]
            assert (await routed.first.locator(".system-text").inner_text()) in summaries
            bubbles = await page.locator(".thread .bubble").all_inner_texts()
            assert bubbles and all(text.strip() for text in bubbles), bubbles
            assert await page.locator(".msg.undefined, .msg:not(.inbound):not(.outbound)").count() == 0

            # The conversation moved to the agent's own queue.
            await page.click('.tab[data-queue="mine"]')
            await expect(page.locator(f'.conv-item[data-customer="{customer_id}"]')).to_be_visible()
            await page.click('.tab[data-queue="all"]')
            await page.locator("#composer-text").focus()

            screenshot = tmp_path / "console.png"
            await page.screenshot(path=str(screenshot))
            assert screenshot.stat().st_size > 10_000
            if os.environ.get("THREADLINE_UPDATE_SCREENSHOT"):  # refresh the README's picture on demand
                shutil.copyfile(screenshot, README_SCREENSHOT)
            await context.close()
        finally:
            await browser.close()

    assert page_errors == []
