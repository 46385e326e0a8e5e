"""How the embedded default runs its local Ray: on loopback only, token auth on, and quiet.

Nothing here imports Ray: ``prepare_environment`` must run before the first ``import ray``,
because Ray reads these variables once, at import, and its processes inherit them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import MutableMapping
from typing import TextIO

LOCAL_RAY_ENVIRONMENT = {
    # Ray takes the node's address as 127.0.0.1 only when multi-node clusters are off for this
    # node; its servers then listen on loopback, like the gateway, instead of every interface.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Ray's own default for a new local cluster, chosen explicitly so it does not warn about it.
    "RAY_AUTH_MODE": "token",
}

# Lines Ray prints that tell a user of the embedded default nothing they can act on. The worker
# count warning is expected: each shard actor is its own process, more than the machine has cores.
RAY_NOISE = (re.compile(r"worker processes have been started on node"),)


def prepare_environment(environ: MutableMapping[str, str]) -> None:
    """Set the local-Ray variables in ``environ`` (values already set there win)."""
    if "ray" in sys.modules:
        raise RuntimeError("prepare_environment must run before ray is imported")
    for name, value in LOCAL_RAY_ENVIRONMENT.items():
        environ.setdefault(name, value)


class DroppingLines:
    """A text stream that passes every line through except those matching ``noise``."""

    def __init__(self, stream: TextIO, noise: tuple[re.Pattern[str], ...] = RAY_NOISE) -> None:
        self._stream = stream
        self._noise = noise
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        kept = [line for line in lines if not any(pattern.search(line) for pattern in self._noise)]
        if kept:
            self._stream.write("\n".join(kept) + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return self._stream.encoding
