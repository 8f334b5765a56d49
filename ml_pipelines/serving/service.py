"""BentoML services for one pipeline (ML_PIPELINES_SERVE_PIPELINE):

- `Predictor` holds the champion model and answers batchable `predict_rows`
  calls; BentoML's adaptive batching groups rows from concurrent requests.
- `ModelService` is the HTTP front: POST /predict validates the request against
  a schema generated from the served version's features and schema (types,
  nullability, declared ranges, string lengths; a body over
  serving.max_body_bytes never gets that far), checks the API key, has the rows
  scored and appends an audit record before answering. While no other request is
  being scored it scores them itself, with a copy of the model that follows the
  predictor's version (runtime.InlineRoute): an idle service answers without the
  hop to the predictor and its batching wait (on its event loop when the request is
  alone and such answers are quick, else in a thread). Otherwise the Predictor scores them,
  in batches. With serving.shadow the process that scored a row also hands it to a
  ShadowScorer, which scores the challenger in large batches after the answers and
  appends its predictions to the audit trail under the same request id (never in the answer).
  POST /feedback takes ground truth by request id, checked (core.feedback) and
  fsynced before the answer. Its /readyz fails while the registry's champion
  cannot be loaded, and /metrics says whether the served version is the champion.
  Their IO is typed from the champion's features (what /docs.json shows); requests are
  validated by serving.schema against the version served now (RequestContract), with
  messages that name `records[i].field`. Every 4xx has one shape (serving.http).

BentoML declares services at import time, so this module reads its
configuration (Settings.from_env() and the champion's registry record) on import,
and verifies the champion there: `bentoml serve` imports it before it starts any
worker, so a version that cannot be served stops the server with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import Field, SkipValidation
from starlette.exceptions import HTTPException

from ml_pipelines import __version__
from ml_pipelines.core.feedback import FeedbackError, parse_feedback
from ml_pipelines.serving.audit import AuditWriter, utc_timestamp
from ml_pipelines.serving.bento import VERSION_ARG, bento_image
from ml_pipelines.serving.hop import call_predictor
from ml_pipelines.serving.http import ApiKeyAuth, ErrorEnvelope, OpenAPIDocument, check_api_key, service_document
from ml_pipelines.serving.lifecycle import stop_server, stop_with_parent
from ml_pipelines.serving.limits import BodySizeLimit, CountRequests, RequestsInFlight
from ml_pipelines.serving.runtime import (
    InlineRoute,
    ModelHolder,
    RequestContract,
    ServingConfig,
    ServingError,
    ServingState,
    ShadowScorer,
    feedback_book,
)
from ml_pipelines.serving.schema import (
    FeedbackAnswer,
    FeedbackRecord,
    RequestError,
    record_model,
    response_model,
    validate_records,
)
from ml_pipelines.settings import Settings
from ml_pipelines.spec import ServingSpec

# a bento names the version it carries in its arguments (bento.yaml `args`, serving.bento), which
# BentoML sets before it imports this module from the bento; elsewhere there are none
CONFIG = ServingConfig.from_settings(Settings.from_env(), bento_version=vars(bentoml.use_arguments()).get(VERSION_ARG))
try:
    _VERSION = CONFIG.initial_version()
    # the whole check once per process (checksums only while a bento is built); the model is not kept
    _RECORD = CONFIG.declared_record(_VERSION)
except ServingError as exc:
    stop_server(CONFIG.parent_pid, str(exc))  # in a worker: rather than being respawned forever
    raise
# operators (and the benchmark) may override the packaged settings, e.g. {"batchable": false}
SERVING = ServingSpec.model_validate({**_RECORD.serving.model_dump(), **CONFIG.overrides})
READY_TIMEOUT_S = 5.0
log = logging.getLogger("ml_pipelines.serving")

# typed IO for /docs.json, from the version served at start. Validation is not BentoML's
# (SkipValidation): validate_records checks against the version served now and names records[i].field.
Records = Annotated[
    SkipValidation[list[record_model(_RECORD.features, _RECORD.schema, SERVING.max_string_length)]],
    Field(description=f"at most {SERVING.max_records} records; every model input, null only where nullable"),
]
Prediction = response_model(_RECORD.task, _RECORD.classes)
FeedbackRecords = Annotated[SkipValidation[list[FeedbackRecord]], Field(description=f"at most {SERVING.max_records}")]
ROUTE_ERRORS = {"/predict": (400, 401, 413), "/feedback": (400, 401, 404, 409, 413)}  # the 4xx each answers
IN_FLIGHT = RequestsInFlight()  # this process's requests (CountRequests): is one alone?

UNSEEN = bentoml.metrics.Counter(
    name="ml_pipelines_unseen_categories",
    documentation="Served values of categorical inputs that the model's encoder never saw",
    labelnames=["pipeline", "column"],
)
IS_CHAMPION = bentoml.metrics.Gauge(
    name="ml_pipelines_served_version_is_champion",
    documentation="1 while the served model version is the registry's champion; 0 while it differs"
    " (a pinned version, a champion still loading, or one that failed to load: /readyz says which)",
    labelnames=["pipeline"],
    multiprocess_mode="livemin",  # every predictor worker must serve the champion
)
SCORED = bentoml.metrics.Counter(
    name="ml_pipelines_scored_requests",
    documentation="Requests answered by the gateway's own copy of the model (route=inline: nothing else was"
    " being scored) or by the batching predictor (route=predictor)",
    labelnames=["pipeline", "route"],
)
SHADOW_DROPPED = bentoml.metrics.Counter(
    name="ml_pipelines_shadow_dropped_rows",
    documentation="Rows the challenger did not shadow-score because too many were waiting (best effort)",
    labelnames=["pipeline"],
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
        stop_with_parent(CONFIG.parent_pid)
        try:
            self.holder = ModelHolder(CONFIG, _VERSION, shadow_scorer=_shadow_scorer())
        except ServingError as exc:  # it loaded at import: the files changed since
            stop_server(CONFIG.parent_pid, str(exc))
            raise
        _publish(self.holder.state())
        self.holder.watch(on_poll=_publish)
        gc.freeze()  # see ModelService.__init__

    @bentoml.api(
        batchable=SERVING.batchable,
        max_batch_size=SERVING.max_batch_size,
        max_latency_ms=SERVING.max_latency_ms,
    )
    def predict_rows(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """items: {"row": the validated record, "ref": [request id, index]}, so shadow scores can be logged."""
        return self.holder.predict_rows([item["row"] for item in items], [tuple(item["ref"]) for item in items])

    @bentoml.api
    def serving_state(self) -> dict[str, Any]:
        """The served version against the registry's champion, and what is wrong, if anything."""
        state = self.holder.state()
        shadow = self.holder.shadow
        return {"served": state.served, "champion": state.champion, "problem": state.problem,
                "shadow": shadow.version if shadow is not None else None}


def _shadow_scorer(writer: AuditWriter | None = None) -> ShadowScorer | None:
    """serving.shadow needs the audit trail, where the challenger's scores go (through `writer`, the
    process's audit writer where it has one: one writer per process and file)."""
    if not SERVING.shadow:
        return None
    if not CONFIG.audit:
        log.warning("serving.shadow is on but the audit trail is off (ML_PIPELINES_AUDIT): not shadowing")
        return None
    writer = writer or AuditWriter(CONFIG.layout.audit, CONFIG.pipeline)
    return ShadowScorer(writer.write_nowait,
                        on_drop=lambda rows: SHADOW_DROPPED.labels(pipeline=CONFIG.pipeline).inc(rows))


def _publish(state: ServingState) -> None:
    if not CONFIG.from_bento:  # a bento knows no registry champion
        IS_CHAMPION.labels(pipeline=CONFIG.pipeline).set(1 if state.is_champion else 0)


def _bento_envs() -> list[dict[str, str]]:
    """Inside a bento (and while one is built): the environment that serves its model from it. The
    same for every version of the pipeline (the version is the bento's argument), so that the
    layers of its image up to the model's files are cached from one version to the next."""
    if not CONFIG.from_bento:
        return []
    values = {"ML_PIPELINES_SERVE_PIPELINE": CONFIG.pipeline, "ML_PIPELINES_SERVE_FROM": "bento"}
    return [{"name": name, "value": value} for name, value in values.items()]


@bentoml.service(
    name=f"{CONFIG.pipeline}_service", traffic={"timeout": 30}, envs=_bento_envs(),
    image=bento_image(CONFIG.model_dir(_VERSION)) if CONFIG.from_bento else None,
)
class ModelService:
    predictor = bentoml.depends(Predictor)

    def __init__(self) -> None:
        stop_with_parent(CONFIG.parent_pid)
        self.contract = RequestContract(CONFIG, _RECORD, SERVING.max_string_length)
        self.contract.watch()
        self.audit = AuditWriter(CONFIG.layout.audit, CONFIG.pipeline) if CONFIG.audit else None
        self.feedback_log = AuditWriter(CONFIG.layout.feedback, CONFIG.pipeline) if CONFIG.audit else None
        self.book = feedback_book(CONFIG) if CONFIG.audit else None
        self.feedback_lock = asyncio.Lock()  # a check and its write are one step: no two conflicting labels
        try:  # the copy of the model that answers while nothing else is being scored (InlineRoute)
            holder = ModelHolder(CONFIG, _VERSION, shadow_scorer=_shadow_scorer(self.audit))
        except ServingError as exc:  # it loaded at import: the files changed since
            stop_server(CONFIG.parent_pid, str(exc))
            raise
        self.inline = InlineRoute(holder)
        self.inline_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inline-scoring")
        self.poll_now = asyncio.Event()
        # everything loaded so far (bentoml, pandas, sklearn, the model) lives as long as the process:
        # keep it out of the cyclic GC, whose full passes over it stall the event loop under load
        gc.freeze()

    async def __is_ready__(self) -> bool:
        """BentoML's /readyz: 503, with the reason, while the predictor does not answer or serves a
        version other than the champion because the champion failed to load."""
        try:
            state = await asyncio.wait_for(self._serving_state(), READY_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - any failure to answer means not ready
            raise HTTPException(503, f"the predictor does not answer: {type(exc).__name__}: {exc}") from None
        if state["problem"]:
            raise HTTPException(503, state["problem"])
        return True

    async def _serving_state(self) -> dict[str, Any]:
        return await call_predictor(self.predictor.to_async.serving_state, "serving_state")

    @bentoml.on_startup
    async def _start_following(self) -> None:
        self.follower = asyncio.create_task(self._follow_predictor())

    async def _follow_predictor(self) -> None:
        """Keeps the gateway's copy of the model on the version the predictor serves (InlineRoute). Every
        watch_seconds, and at once when a predictor answer disagrees with the copy, it asks the predictor
        what it serves, if the copy is not confirmed yet or the registry's aliases moved away from it
        (not otherwise: each call is a line in the predictor's access log)."""
        loop = asyncio.get_running_loop()
        route = self.inline
        while True:
            generation = route.generation
            try:
                if not route.confirmed or await loop.run_in_executor(None, route.holder.behind_registry):
                    state = await asyncio.wait_for(self._serving_state(), READY_TIMEOUT_S)
                    await loop.run_in_executor(None, route.holder.follow, state["served"], state["shadow"])
                    route.confirm(generation, state["served"])
            except Exception:  # noqa: BLE001 - the predictor is not up yet, or its version does not load here
                log.debug("the gateway's model does not follow the predictor yet", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.poll_now.wait(), CONFIG.watch_seconds)
            self.poll_now.clear()

    async def _score(
        self, rows: list[dict[str, Any]], request_id: str, caller: str | None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """The rows' answers, and whether they are in the audit trail already: in process while nothing
        else is being scored (no hop, no batching wait), else from the batching predictor. The same
        answers either way (ModelHolder.predict_rows)."""
        route = self.inline
        quick = route.quick(len(rows))
        if route.open and quick:
            # one turn of the loop first: requests that came in with this one are counted (IN_FLIGHT)
            await asyncio.sleep(0)
        inline = route.open
        on_loop = inline and quick and IN_FLIGHT.count == 1
        route.scoring += 1
        started = time.perf_counter()
        try:
            if on_loop:
                # alone, and quick (InlineRoute): on the loop, sparing two thread hand-offs; requests that
                # arrive meanwhile wait at most its budget, then see this one scoring and go to the predictor
                results = self._score_here(rows, request_id, caller)
            elif inline:
                # in a thread: requests that arrive meanwhile see this one scoring and go to the predictor
                results = await asyncio.get_running_loop().run_in_executor(
                    self.inline_pool, self._score_here, rows, request_id, caller)
            else:
                items = [{"row": row, "ref": [request_id, i]} for i, row in enumerate(rows)]
                results = await call_predictor(lambda: self.predictor.to_async.predict_rows(items), "predict_rows")
        finally:
            route.scoring -= 1
        if inline:
            route.timed(time.perf_counter() - started, len(rows))
        SCORED.labels(pipeline=CONFIG.pipeline, route="inline" if inline else "predictor").inc()
        if not inline and route.saw({r["model_version"] for r in results}):
            self.poll_now.set()
        return results, inline and self.audit is not None

    def _score_here(self, rows: list[dict[str, Any]], request_id: str, caller: str | None) -> list[dict[str, Any]]:
        """In the inline-scoring thread, or on the loop: the answers, audited here (it waits for the fsync anyway)."""
        results = self.inline.holder.predict_rows(rows, [(request_id, i) for i in range(len(rows))])
        if self.audit is not None:
            self.audit.write_here(_audit_records(request_id, caller, rows, results))
        return results

    def _caller(self, ctx: bentoml.Context) -> str | None:
        """The key id, for the audit trail (ApiKeyAuth refused the request without a valid key)."""
        if not CONFIG.api_keys:
            return None
        key_id, problem = check_api_key(ctx.request.headers.get("authorization", ""), CONFIG.api_keys)
        if problem is not None:
            raise HTTPError(problem, 401)
        return key_id

    @bentoml.api(route="/predict")
    async def predict(self, ctx: bentoml.Context, records: Records) -> Prediction:
        """Predictions for `records`, each with every model input of the served version."""
        caller = self._caller(ctx)
        try:
            rows = validate_records(records, self.contract.model, SERVING.max_records)
        except RequestError as exc:
            raise HTTPError(str(exc), exc.status) from None
        request_id = uuid.uuid4().hex
        results, audited = await self._score(rows, request_id, caller)
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
            if not audited:
                await self.audit.write(_audit_records(request_id, caller, rows, results))
            self.book.record_served(request_id, len(rows))
        return Prediction.model_construct(**response)  # built by us: no need to validate it again

    @bentoml.api(route="/feedback")
    async def feedback(self, ctx: bentoml.Context, records: FeedbackRecords) -> FeedbackAnswer:
        """Ground truth for served predictions: {"records": [{"request_id", "index" (default 0), "label"}]}."""
        caller = self._caller(ctx)
        if self.book is None:
            raise HTTPError("feedback needs the audit trail, and ML_PIPELINES_AUDIT is off", 409)
        record = self.contract.record
        try:
            items = parse_feedback(records, task=record.task, classes=record.classes,
                                   max_records=SERVING.max_records)
            async with self.feedback_lock:
                new, repeats = self.book.accept(items)
                now = utc_timestamp()
                if new:  # durable, like the audit trail, before the answer
                    await self.feedback_log.write([
                        {"request_id": f.request_id, "index": f.index, "label": f.label, "caller": caller,
                         "timestamp": now} for f in new
                    ])
                self.book.kept(new)
        except FeedbackError as exc:
            raise HTTPError(str(exc), exc.status) from None
        return FeedbackAnswer(accepted=len(new), repeats=repeats)


def _audit_records(
    request_id: str, caller: str | None, rows: list[dict[str, Any]], results: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    now = utc_timestamp()
    return [
        {"request_id": request_id, "index": i, "caller": caller, "model_version": r["model_version"],
         "timestamp": now, "input": row, "output": {k: v for k, v in r.items() if k != "model_version"}}
        for i, (row, r) in enumerate(zip(rows, results))
    ]


def _document(spec: dict[str, Any]) -> dict[str, Any]:
    return service_document(
        spec, title=f"{CONFIG.pipeline} model service", version=_VERSION, auth=bool(CONFIG.api_keys),
        protected=ROUTE_ERRORS,
        description=f"The {CONFIG.pipeline} pipeline's model, version {_VERSION} at start (the service follows"
        f" the registry's champion), served by ml_pipelines {__version__}.",
    )


# public API: Service.add_asgi_middleware. Bodies over the limit are refused before BentoML reads
# them; a missing or invalid API key before the body is read; every 4xx gets the one error shape.
ModelService.add_asgi_middleware(CountRequests, requests=IN_FLIGHT)  # the outermost of ours: before the body is read
ModelService.add_asgi_middleware(ErrorEnvelope)
ModelService.add_asgi_middleware(OpenAPIDocument, document=_document)
ModelService.add_asgi_middleware(ApiKeyAuth, api_keys=CONFIG.api_keys, paths=frozenset(ROUTE_ERRORS))
ModelService.add_asgi_middleware(BodySizeLimit, max_bytes=SERVING.max_body_bytes)
