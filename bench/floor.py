"""The bare floor: what any Twilio webhook gateway must do per message, and nothing more.

Parse the form, verify X-Twilio-Signature (one HMAC over the one public URL), then one
pipelined ``SET NX`` (dedupe on MessageSid) + ``XADD`` of the raw form to one stream, one
round trip per request. Threadline's inbound figures are read against this handler's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import signal

from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

from channels.twilio_signature import compute_signature
from conversations.store import INGEST_FIELD, Keys

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM_TYPE = "application/x-www-form-urlencoded"
DEDUPE_TTL = 7 * 24 * 3600
FLOOR_SHARD = 0  # the floor writes one stream: sharding is Threadline's work, not the floor's

REDIS = web.AppKey("floor_redis", Redis)


def signature_ok(auth_token: str, url: str, form: list[tuple[str, str]], signature: str | None) -> bool:
    """One HMAC over the configured public URL; constant-time compare."""
    if not signature:
        return False
    expected = compute_signature(auth_token, url, form)
    return hmac.compare_digest(expected.encode(), signature.encode())


def create_floor_app(redis_url: str, keys: Keys, auth_token: str, public_url: str) -> web.Application:
    """The floor handler on ``POST /webhooks/twilio/sms``."""
    stream = keys.ingest(FLOOR_SHARD)

    async def inbound(request: web.Request) -> web.Response:
        if request.content_type != FORM_TYPE:
            return web.Response(status=415)
        raw = await request.read()
        posted = await request.post()  # parses the body read above
        form = [(name, value) for name, value in posted.items() if isinstance(value, str)]
        url = public_url + request.raw_path
        if not signature_ok(auth_token, url, form, request.headers.get("X-Twilio-Signature")):
            return web.Response(status=403)
        sid = str(posted.get("MessageSid", ""))
        if not sid:
            return web.Response(status=400)
        pipe = request.app[REDIS].pipeline(transaction=False)
        pipe.set(keys.dedupe(FLOOR_SHARD, f"twilio:msg:{sid}"), b"1", nx=True, ex=DEDUPE_TTL)
        pipe.xadd(stream, {INGEST_FIELD: raw})
        await pipe.execute()
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/webhooks/twilio/sms", inbound)

    async def redis(app: web.Application):
        # a blocking pool: a burst waits for a connection instead of failing with "too many"
        app[REDIS] = Redis(connection_pool=BlockingConnectionPool.from_url(redis_url, max_connections=64))
        yield
        await app[REDIS].aclose()

    app.cleanup_ctx.append(redis)
    return app


async def serve(args: argparse.Namespace) -> None:
    app = create_floor_app(args.redis_url, Keys(args.prefix), args.auth_token, args.public_url)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, reuse_port=True).start()
    print("floor ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--public-url", required=True)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
