"""Starting Ray (embedded or a cluster) and locating or creating the shard actors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import ray

from actors.shard import ShardActor, shard_actor_name
from channels.registry import StatusCallbacks
from conversations.config import Config

log = logging.getLogger(__name__)

EMBEDDED_OBJECT_STORE_BYTES = 256 * 1024 * 1024


def connect_ray(config: Config) -> None:
    """Join the configured Ray cluster, or start a small local Ray with the dashboard off."""
    if ray.is_initialized():
        return
    if config.ray_address:
        ray.init(
            address=config.ray_address,
            namespace=config.ray_namespace,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    else:
        # On loopback and quiet when the caller ran actors.local_ray.prepare_environment first.
        ray.init(
            namespace=config.ray_namespace,
            include_dashboard=False,
            object_store_memory=EMBEDDED_OBJECT_STORE_BYTES,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )


def start_shard_actors(config: Config, callbacks: StatusCallbacks) -> list[Any]:
    """Create (or find, when another gateway already did) one named actor per shard.

    ``callbacks`` are the status callback URLs the gateway serves (its webhook registry's).
    """
    remote_class = ray.remote(ShardActor)
    config_json = msgspec.json.encode(config)
    callbacks_json = msgspec.json.encode(callbacks)
    lifetime = "detached" if config.ray_address else None
    return [
        remote_class.options(
            name=shard_actor_name(shard),
            namespace=config.ray_namespace,
            get_if_exists=True,
            lifetime=lifetime,
            max_restarts=-1,
            max_task_retries=-1,
            num_cpus=0,
            max_concurrency=1000,
        ).remote(config_json, shard, callbacks_json)
        for shard in range(config.shards)
    ]


def find_shard_actors(config: Config) -> list[Any]:
    """Handles to the shard actors another process already started (extra gateway workers)."""
    return [
        ray.get_actor(shard_actor_name(shard), namespace=config.ray_namespace)
        for shard in range(config.shards)
    ]


async def wait_until_ready(actors: list, timeout: float = 60.0) -> None:
    """Wait for every shard actor to answer ``ping`` (which also pings Redis)."""
    await asyncio.wait_for(asyncio.gather(*(actor.ping.remote() for actor in actors)), timeout)


async def shards_ready(actors: list, timeout: float = 2.0) -> list[int]:
    """The shards that are not ready (empty when all are)."""
    return sorted(await unready_shards(actors, timeout))


async def unready_shards(actors: list, timeout: float = 2.0) -> dict[int, str]:
    """Why each shard that is not ready is not: no answer within ``timeout``, Redis, or a loop."""

    async def probe(actor) -> str | None:
        try:
            await asyncio.wait_for(actor.ping.remote(), timeout)
            return None
        except TimeoutError:
            return f"no answer within {timeout:g}s"
        except Exception as exc:
            # Ray wraps what ping() raised (e.g. LoopsNotRunning) with the actor's traceback.
            cause = getattr(exc, "cause", None) or exc
            return f"{type(cause).__name__}: {cause}"

    reasons = await asyncio.gather(*(probe(actor) for actor in actors))
    return {index: reason for index, reason in enumerate(reasons) if reason is not None}
