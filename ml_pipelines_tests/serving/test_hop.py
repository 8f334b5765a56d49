"""serving.hop: the gateway's call to its predictor is made again when it met a connection the
predictor had closed (its keep-alive is 5 s, the gateway's pool keeps one for 15 s), and only then.
A CI run of test_serving.py got six HTTP 500s from this: a burst 5 s after the gateway had answered
in process, with `ClientOSError: Can not write request body` raised from `ClientConnectionResetError:
Cannot write to closing transport` in the gateway's log. The exceptions below are built that way."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from ml_pipelines.serving.hop import ATTEMPTS, call_predictor, on_stale_connection


def _write_failed() -> aiohttp.ClientOSError:
    """What aiohttp raised in that run: the body could not be written to a closing transport."""
    try:
        try:
            raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")
        except aiohttp.ClientConnectionResetError as reset:
            raise aiohttp.ClientOSError(None, "Can not write request body for http://127.0.0.1:3000/predict_rows") \
                from reset
    except aiohttp.ClientOSError as error:
        return error


class Predictor:
    """Fails with the given errors, one per call, then answers."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def predict_rows(self) -> list[dict[str, int]]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return [{"prediction": 1}]


@pytest.mark.parametrize("stale", [_write_failed(), aiohttp.ServerDisconnectedError()],
                         ids=["write to a closing connection", "disconnected without an answer"])
def test_a_call_on_a_connection_the_predictor_closed_is_made_again(stale):
    predictor = Predictor(stale)
    assert asyncio.run(call_predictor(predictor.predict_rows, "predict_rows")) == [{"prediction": 1}]
    assert predictor.calls == 2


def test_a_connection_closed_under_every_attempt_fails_after_the_last():
    predictor = Predictor(*[_write_failed() for _ in range(ATTEMPTS)])
    with pytest.raises(aiohttp.ClientOSError, match="Can not write request body"):
        asyncio.run(call_predictor(predictor.predict_rows, "predict_rows"))
    assert predictor.calls == ATTEMPTS


@pytest.mark.parametrize("error", [
    ValueError("the predictor's own error"),
    aiohttp.ClientOSError(111, "Connection refused"),  # no predictor listening: not a closed connection
    TimeoutError(),
], ids=["predictor error", "refused", "timeout"])
def test_any_other_failure_is_not_retried(error):
    predictor = Predictor(error)
    with pytest.raises(type(error)):
        asyncio.run(call_predictor(predictor.predict_rows, "predict_rows"))
    assert predictor.calls == 1
    assert not on_stale_connection(error)
