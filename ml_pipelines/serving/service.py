"""BentoML services for one pipeline (ML_PIPELINES_SERVE_PIPELINE):

- `Predictor` holds the champion model and answers batchable `predict_rows`
  calls; BentoML's adaptive batching groups rows from concurrent requests.
- `ModelService` is the HTTP front: POST /predict validates the request against
  a schema generated from the model's features, checks the API key, calls the
  Predictor and appends an audit record before answering.

BentoML declares services at import time, so this module reads its
configuration (Settings.from_env() and the champion's registry record) on import.
"""

from __future__ import annotations

import gc
import hmac
import uuid
from http import HTTPStatus
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException

from ml_pipelines.serving.audit import AuditWriter, utc_timestamp
from ml_pipelines.serving.runtime import ModelHolder, ServingConfig, hash_key
from ml_pipelines.serving.schema import RequestError, record_model, validate_records
from ml_pipelines.settings import Settings

CONFIG = ServingConfig.from_settings(Settings.from_env())
_VERSION = CONFIG.initial_version()
_RECORD = CONFIG.record(_VERSION)
# operators (and the benchmark) may override the packaged settings, e.g. {"batchable": false}
SERVING = {**_RECORD.serving.model_dump(), **CONFIG.overrides}

UNSEEN = bentoml.metrics.Counter(
    name="ml_pipelines_unseen_categories",
    documentation="Served values of categorical inputs that the model's encoder never saw",
    labelnames=["pipeline", "column"],
)


class HTTPError(BentoMLException):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.error_code = HTTPStatus(status)


# runner_connection: BentoML's gateway client closes its session to the predictor every
# max_requests calls (default 100) while other calls are still in flight on it, and those
# fail with "Server disconnected" (a 500). The predictor is a local socket; never recycle it.
@bentoml.service(
    name=f"{CONFIG.pipeline}_predictor", workers=1, traffic={"timeout": 30},
    runner_connection={"max_requests": 2**62, "max_age": 1e12},
)
class Predictor:
    # declared so a built bento carries the model it starts with
    bento_model = bentoml.models.BentoModel(f"{CONFIG.pipeline}:{_VERSION}") if CONFIG.from_bento else None

    def __init__(self) -> None:
        self.holder = ModelHolder(CONFIG)
        self.holder.watch()
        gc.freeze()  # see ModelService.__init__

    @bentoml.api(
        batchable=SERVING["batchable"],
        max_batch_size=SERVING["max_batch_size"],
        max_latency_ms=SERVING["max_latency_ms"],
    )
    def predict_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.holder.predict_rows(rows)


@bentoml.service(name=f"{CONFIG.pipeline}_service", traffic={"timeout": 30})
class ModelService:
    predictor = bentoml.depends(Predictor)

    def __init__(self) -> None:
        self.record_model = record_model(_RECORD.features)
        self.audit = AuditWriter(CONFIG.layout.audit, CONFIG.pipeline) if CONFIG.audit else None
        # everything loaded so far (bentoml, pandas, sklearn, the model) lives as long as the process:
        # keep it out of the cyclic GC, whose full passes over it stall the event loop under load
        gc.freeze()

    def _caller(self, ctx: bentoml.Context) -> str | None:
        if not CONFIG.api_keys:
            return None
        header = ctx.request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() == "bearer" and key:
            digest = hash_key(key.strip())
            for key_id, expected in CONFIG.api_keys.items():
                if hmac.compare_digest(digest, expected):
                    return key_id
        raise HTTPError("missing or invalid API key: send `Authorization: Bearer <key>`", 401)

    @bentoml.api(route="/predict")
    async def predict(self, ctx: bentoml.Context, records: list[Any]) -> dict[str, Any]:
        caller = self._caller(ctx)
        try:
            rows = validate_records(records, self.record_model, SERVING["max_records"])
        except RequestError as exc:
            raise HTTPError(str(exc), exc.status) from None
        results = await self.predictor.to_async.predict_rows(rows)
        request_id = uuid.uuid4().hex
        versions = {r["model_version"] for r in results}
        response: dict[str, Any] = {
            "request_id": request_id,
            "model_version": results[0]["model_version"] if len(versions) == 1 else sorted(versions),
            "predictions": [r["prediction"] for r in results],
        }
        if "probabilities" in results[0]:
            response["probabilities"] = [r["probabilities"] for r in results]
        for result in results:
            for column in result.get("unseen_categories", ()):
                UNSEEN.labels(pipeline=CONFIG.pipeline, column=column).inc()
        if self.audit is not None:
            now = utc_timestamp()
            await self.audit.write([
                {"request_id": request_id, "index": i, "caller": caller, "model_version": r["model_version"],
                 "timestamp": now, "input": row, "output": {k: v for k, v in r.items() if k != "model_version"}}
                for i, (row, r) in enumerate(zip(rows, results))
            ])
        return response
