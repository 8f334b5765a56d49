"""The gateway's calls to its predictor, over BentoML's client for a service's dependency.

BentoML starts the predictor's uvicorn with uvicorn's keep-alive of 5 s (`bentoml serve
--timeout-keep-alive` reaches the entry service only), while the gateway's aiohttp pool keeps an
idle connection for 15 s. A call that takes a pooled connection as the predictor closes it fails
before the predictor has read the request: aiohttp cannot write to the closing transport, or the
predictor disconnects without an answer. The gateway answers in process while it is idle
(InlineRoute), so its pooled connections do go idle, and the first burst after a lull got HTTP
500s. Such a call is made again, on a connection the pool opens afresh. Neither BentoML nor
aiohttp has a setting for either keep-alive on this hop, hence this small retry of our own: it is
BentoML issue #4971, and its open pull request #5698 proposes the same retry inside BentoML's client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

log = logging.getLogger("ml_pipelines.serving")

T = TypeVar("T")
# a connection the predictor closed: the request was not written, or not answered. A predictor that
# died while scoring also ends in a disconnect; its call made again finds the restarted predictor
# (or fails to connect, which is not retried). Only then might a shadow score be logged twice.
STALE_CONNECTION = (aiohttp.ClientConnectionResetError, aiohttp.ServerDisconnectedError)
ATTEMPTS = 3  # the pool may hold more than one closed connection


def on_stale_connection(exc: BaseException) -> bool:
    """Whether exc, or an exception it was raised from, is a connection the predictor closed."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        if isinstance(error, STALE_CONNECTION):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


async def call_predictor(call: Callable[[], Awaitable[T]], what: str) -> T:
    """call(), made again (up to ATTEMPTS in all) when it fails on a connection the predictor closed."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await call()
        except Exception as exc:
            if attempt == ATTEMPTS or not on_stale_connection(exc):
                raise
            log.info("%s: the predictor had closed the connection (%s); calling again", what, exc)
    raise AssertionError("unreachable")
