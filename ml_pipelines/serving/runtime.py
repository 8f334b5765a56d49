"""The model a service answers with: loaded from the BentoML store, verified
against the registry record, and swapped atomically when the champion moves.
A champion that fails to load is never served: the old model answers on, and
`ModelHolder.state()` says that the served version is not the champion and why."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_pipelines.core.bento_store import RECORD_FILE, bentoml_model_ref
from ml_pipelines.core.errors import ChecksumError, InputError
from ml_pipelines.core.feedback import FeedbackBook
from ml_pipelines.core.layout import LocalLayout
from ml_pipelines.core.model_io import load_model
from ml_pipelines.core.prediction_log import iter_audit
from ml_pipelines.core.records import ModelInputs, VersionRecord
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.storage import LocalObjectStore
from ml_pipelines.serving.schema import record_model
from ml_pipelines.settings import Settings

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

log = logging.getLogger("ml_pipelines.serving")


class ServingError(RuntimeError):
    """A version cannot be served; the message names the pipeline, the version and the reason."""


@dataclass(frozen=True)
class ServingConfig:
    pipeline: str
    home: Path
    pinned_version: str | None = None
    audit: bool = True
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)  # key id -> sha256 of the key
    watch_seconds: float = 2.0
    from_bento: bool = False  # inside a built bento: the pinned version's record ships with the model
    overrides: Mapping[str, Any] = field(default_factory=dict)  # over the packaged serving settings
    parent_pid: int | None = None  # `bentoml serve` under `ml-pipelines serve`: workers stop with it
    building: bool = False  # the bento build imports the service to declare it, and serves nothing

    @classmethod
    def from_settings(cls, settings: Settings, bento_version: str | None = None) -> ServingConfig:
        """bento_version: the version a bento carries (its argument), pinned over the settings' version."""
        serve = settings.serve
        if not serve.pipeline:
            raise RuntimeError("ML_PIPELINES_SERVE_PIPELINE is not set; start with `ml-pipelines serve <pipeline>`")
        return cls(
            pipeline=serve.pipeline,
            home=settings.home,
            pinned_version=bento_version or serve.version,
            audit=serve.audit,
            api_keys=parse_api_keys(serve.api_keys),
            watch_seconds=serve.watch_seconds,
            from_bento=serve.from_bento,
            overrides=dict(serve.overrides),
            parent_pid=serve.parent_pid,
            building=serve.building,
        )

    @property
    def layout(self) -> LocalLayout:
        return LocalLayout(self.home)

    def registry(self) -> ModelRegistry:
        return ModelRegistry(LocalObjectStore(self.layout.registry))

    def model_dir(self, version: str) -> Path:
        """Inside a bento, BentoML's public bentoml.models.get; otherwise the model's folder in the
        home's BentoML store (packaging writes there), whatever BENTOML_HOME this process has."""
        import bentoml
        from bentoml.exceptions import NotFound

        tag = f"{self.pipeline}:{version}"
        if not self.from_bento:
            ref = bentoml_model_ref(self.layout.bentoml, tag)
            if not ref.path:
                raise ServingError(f"model {tag} is not in the BentoML store {self.layout.bentoml / 'models'}")
            return Path(ref.path)
        try:
            return Path(bentoml.models.get(tag).path)
        except NotFound:
            raise ServingError(f"model {tag} is not in this bento") from None

    def record(self, version: str) -> VersionRecord:
        if self.from_bento:
            return VersionRecord.from_json((self.model_dir(version) / RECORD_FILE).read_bytes())
        return self.registry().get_version(self.pipeline, version)

    def initial_version(self) -> str:
        version = self.pinned_version or self.registry().get_alias(self.pipeline, "champion")
        if version is None:
            raise ServingError(f"{self.pipeline} has no champion to serve; materialize the pipeline first")
        return version

    def declared_record(self, version: str) -> VersionRecord:
        """The record the service is declared from, after the whole check (load); while a bento is
        built, after the checksums only: the build serves nothing, and every process that serves the
        bento loads the model on import."""
        if not self.building:
            return self.load(version).record
        with self._cannot_serve(version):
            return self._verified_record(version)

    def load(self, version: str) -> LoadedModel:
        """The version's model, once it is in the store, every artifact matches the record's sha256
        and the model loads; otherwise a ServingError with the reason."""
        with self._cannot_serve(version):
            record = self._verified_record(version)
            model = load_model(self.model_dir(version), record.trusted_roots)
        return LoadedModel(version, record, model, _encoder_categories(model, record))

    def _verified_record(self, version: str) -> VersionRecord:
        """The version's record, once every artifact in its model folder matches the record's sha256."""
        record = self.record(version)
        verify_artifacts(self.model_dir(version), record)
        return record

    @contextlib.contextmanager
    def _cannot_serve(self, version: str) -> Iterator[None]:
        """Any failure inside, as a ServingError with the reason."""
        try:
            yield
        except Exception as exc:  # a missing or corrupt file, a library that cannot read it, ...
            # our errors name the file and the problem; others need their type to make sense
            reason = str(exc) if isinstance(exc, (ServingError, InputError, OSError)) else f"{type(exc).__name__}: {exc}"
            raise ServingError(f"cannot serve {self.pipeline} {version}: {reason}") from exc


def parse_api_keys(raw: str) -> dict[str, str]:
    """`id1:sha256hex,id2:sha256hex` -> {id: hash}."""
    keys = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key_id, _, digest = item.partition(":")
        if not key_id or len(digest) != 64:
            raise RuntimeError(f"ML_PIPELINES_API_KEYS: {item!r} is not `key_id:sha256hex`")
        keys[key_id] = digest.lower()
    return keys


@dataclass(frozen=True)
class LoadedModel:
    version: str
    record: VersionRecord
    model: Pipeline
    categories: dict[str, set[str]]  # categorical input -> categories the encoder knows


def _encoder_categories(model: Pipeline, record: VersionRecord) -> dict[str, set[str]]:
    try:
        encoder = model.named_steps["preprocess"].named_steps["encode"].named_transformers_["categorical"]
    except (KeyError, AttributeError):
        return {}
    columns = record.features.categorical
    return {c: {str(v) for v in cats} for c, cats in zip(columns, encoder.categories_)}


def verify_artifacts(directory: Path, record: VersionRecord) -> None:
    for name, expected in record.artifacts.items():
        path = directory / name
        if not path.is_file():
            raise ChecksumError(f"{path}: missing; the registry record lists it")
        if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise ChecksumError(f"{path}: checksum mismatch with registry record; refusing to serve")


@dataclass(frozen=True)
class ServingState:
    """What a service answers with, against what the registry says it should."""

    served: str
    champion: str | None  # as last read from the registry
    pinned: bool
    reload_error: str | None = None  # why the champion could not be loaded; None once it is served

    @property
    def is_champion(self) -> bool:
        return self.served == self.champion

    @property
    def problem(self) -> str | None:
        """Why the service is not ready, or None. A pinned version is served on purpose; a champion
        that is still loading is no problem yet."""
        if self.pinned or self.is_champion or self.reload_error is None:
            return None
        return (
            f"serving {self.served}, but the registry's champion is {self.champion}, which failed to load:"
            f" {self.reload_error}"
        )


def records_to_frame(rows: list[dict[str, Any]], features: ModelInputs) -> pd.DataFrame:
    """The model's input frame from validated rows: numeric inputs as float64 (null: NaN), the others
    as pandas infers them. The frame DataFrame.from_records and to_numeric would build, column by
    column from plain lists: a tenth of their cost, which is most of the frame's on one-row calls."""
    columns: dict[str, Any] = {}
    for column in features.inputs:
        values = [row[column] for row in rows]
        if features.types.get(column) in ("float", "int"):
            columns[column] = np.array([np.nan if v is None else v for v in values], dtype="float64")
        else:
            columns[column] = pd.Series(values)
    return pd.DataFrame(columns, copy=False)


class ShadowScorer:
    """serving.shadow, off the reply path: the predictor hands over the rows it answered, and this
    thread scores them with the challenger in large batches (one model call per SHADOW_BATCH_SECONDS,
    not one per request batch) and appends them to the audit trail as `"shadow": true` records
    with the same request id and index. Best effort by design: with more than MAX_PENDING_ROWS
    waiting (the challenger cannot keep up), further rows are dropped and counted."""

    SHADOW_BATCH_SECONDS = 0.5
    MAX_PENDING_ROWS = 100_000

    def __init__(self, write: Callable[[list[dict[str, Any]]], None], on_drop: Callable[[int], None] | None = None):
        self._write = write
        self._on_drop = on_drop
        self._pending: list[tuple[LoadedModel, list[dict[str, Any]], list[tuple[str, int]], str]] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="shadow-scorer", daemon=True).start()

    def submit(self, model: LoadedModel, rows: list[dict[str, Any]], refs: list[tuple[str, int]]) -> None:
        with self._lock:
            if self._rows + len(rows) > self.MAX_PENDING_ROWS:
                if self._on_drop is not None:
                    self._on_drop(len(rows))
                return
            self._pending.append((model, rows, refs, datetime.now(UTC).isoformat()))
            self._rows += len(rows)
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.SHADOW_BATCH_SECONDS)  # let rows gather: one model call for many requests
            with self._lock:
                pending, self._pending, self._rows = self._pending, [], 0
                self._wake.clear()
            try:
                self._score(pending)
            except Exception:
                log.exception("shadow scoring failed for %d request batch(es)", len(pending))

    def _score(self, pending) -> None:
        by_version: dict[str, list] = {}
        for item in pending:
            by_version.setdefault(item[0].version, []).append(item)
        for items in by_version.values():
            rows = [row for _, batch, _, _ in items for row in batch]
            stamped = [(ref, at) for _, _, refs, at in items for ref in refs]
            scores = _score(items[0][0], rows)
            self._write([
                {"request_id": request_id, "index": index, "shadow": True, "model_version": score.pop("model_version"),
                 "timestamp": at, "output": score}
                for ((request_id, index), at), score in zip(stamped, scores)
            ])


class ModelHolder:
    def __init__(self, config: ServingConfig, version: str | None = None, *,
                 shadow_scorer: ShadowScorer | None = None):
        self.config = config
        self.current = config.load(version or config.initial_version())
        # what the registry says, as of the last poll (a bento has no registry to compare with)
        self._champion = None if config.from_bento or config.pinned_version else self.current.version
        self._failed: tuple[str, str] | None = None  # (champion, why it did not load)
        self._follow_failed: tuple[str, str] | None = None  # (version, why): see follow()
        self._stop = threading.Event()
        # serving.shadow: the challenger scores every row too; never returned, kept in the audit trail
        self.shadow_scorer = None if config.from_bento else shadow_scorer
        self.shadowing = self.shadow_scorer is not None
        self.shadow: LoadedModel | None = None
        if self.shadowing:
            self.refresh_shadow()

    def state(self) -> ServingState:
        failed = self._failed
        return ServingState(
            served=self.current.version,
            champion=self._champion,
            pinned=bool(self.config.pinned_version),
            reload_error=failed[1] if failed is not None and failed[0] == self._champion else None,
        )

    def refresh(self) -> bool:
        """Switch to the champion if it moved; True when it switched. The old model answers until the
        new one is ready. A champion that fails to load is logged once, recorded for state(), and
        tried again on the next call (it may be repaired in place)."""
        if self.config.from_bento:
            return False
        champion = self.config.registry().get_alias(self.config.pipeline, "champion")
        self._champion = champion
        if self.config.pinned_version or champion is None or champion == self.current.version:
            return False
        try:
            loaded = self.config.load(champion)
        except ServingError as exc:
            reason = str(exc)
            if self._failed != (champion, reason):
                log.error("champion %s failed to load; still serving %s: %s", champion, self.current.version, reason)
            self._failed = (champion, reason)
            return False
        self.current = loaded  # one reference swap: atomic for readers
        self._failed = None
        log.info("now serving %s %s", self.config.pipeline, champion)
        return True

    def refresh_shadow(self) -> None:
        """Follow the challenger alias (not when it names the served version)."""
        challenger = self.config.registry().get_alias(self.config.pipeline, "challenger")
        self._shadow(None if challenger == self.current.version else challenger)

    def _shadow(self, challenger: str | None) -> None:
        """Shadow-score `challenger` (None: nothing), loading it when new; one that fails to load is
        not shadowed (logged)."""
        if (self.shadow.version if self.shadow is not None else None) == challenger:
            return
        if challenger is None:
            self.shadow = None
            return
        try:
            self.shadow = self.config.load(challenger)
            log.info("shadow-scoring challenger %s %s", self.config.pipeline, challenger)
        except ServingError as exc:
            self.shadow = None
            log.error("challenger %s failed to load; not shadowing: %s", challenger, exc)

    def follow(self, version: str, challenger: str | None) -> None:
        """Serve `version` and shadow `challenger` because another holder (the predictor's) does now,
        loading what is new; a ServingError when `version` cannot be loaded (logged once)."""
        if version != self.current.version:
            try:
                self.current = self.config.load(version)
            except ServingError as exc:
                if self._follow_failed != (version, str(exc)):
                    log.error("cannot follow the predictor to %s; it answers alone: %s", version, exc)
                self._follow_failed = (version, str(exc))
                raise
            self._follow_failed = None
        if self.shadowing:
            self._shadow(challenger)

    def behind_registry(self) -> bool:
        """Whether the registry names a champion (unless pinned) or, when shadowing, a challenger
        other than the ones this holder has: then the predictor may have moved (see follow)."""
        registry = None if self.config.from_bento else self.config.registry()
        if registry is None:
            return False
        champion = None if self.config.pinned_version else registry.get_alias(self.config.pipeline, "champion")
        if champion is not None and champion != self.current.version:
            return True
        if not self.shadowing:
            return False
        challenger = registry.get_alias(self.config.pipeline, "challenger")
        wanted = None if challenger == self.current.version else challenger
        return wanted != (self.shadow.version if self.shadow is not None else None)

    def watch(self, on_poll: Callable[[ServingState], None] | None = None) -> None:
        """Poll the champion alias every watch_seconds in a daemon thread; on_poll gets the state after each poll."""

        def loop() -> None:
            while not self._stop.wait(self.config.watch_seconds):
                try:
                    self.refresh()
                    if self.shadowing:
                        self.refresh_shadow()
                except Exception:  # the registry could not be read; keep serving
                    log.exception("reading the champion alias failed; still serving %s", self.current.version)
                if on_poll is not None:
                    on_poll(self.state())

        threading.Thread(target=loop, name="champion-watcher", daemon=True).start()

    def predict_rows(self, rows: list[dict[str, Any]], refs: list[tuple[str, int]] | None = None) -> list[dict[str, Any]]:
        """The served version's answers; when shadowing a challenger, the rows (with their request
        id and index in `refs`) go on to it after the answers are made."""
        loaded, shadow = self.current, self.shadow  # one model (and one challenger) for the whole batch
        results = _score(loaded, rows)
        for row, result in zip(rows, results):
            unseen = [c for c, known in loaded.categories.items() if row.get(c) is not None and str(row[c]) not in known]
            if unseen:
                result["unseen_categories"] = unseen
        if shadow is not None and self.shadow_scorer is not None and refs is not None:
            self.shadow_scorer.submit(shadow, rows, refs)
        return results


class InlineRoute:
    """Whether the gateway may answer a request with its own copy of the model (`holder`) rather than
    send it to the predictor: only when no other request is being scored, so that an idle service
    answers without the hop to the predictor and without a batching wait, while under load the
    predictor batches. The copy follows the predictor and never gets ahead of it: it answers only
    with the version the predictor was last seen serving (`confirm`, from a poll of its state),
    and stops as soon as a predictor answer names another version (`saw`), until a poll that
    started after that answer confirms again. So once any answer came from a new champion, no
    later request is answered by the old one, whichever way it goes. Call it from one event loop.

    An inline answer is made in a thread, which keeps the event loop free, or on the loop itself
    when that is cheap (`quick`): each of the last answers made here, audit included, took at most
    LOOP_BUDGET_SECONDS, and one of them had as many rows at least. That spares two thread
    hand-offs per request (about 0.4 ms on a small VM, 5% of a one-row answer), and holds up
    requests that arrive meanwhile by about the budget."""

    LOOP_BUDGET_SECONDS = 0.02
    TIMED_ANSWERS = 8  # how many of the last inline answers `quick` judges

    def __init__(self, holder: ModelHolder):
        self.holder = holder
        self.scoring = 0  # requests being scored now, here or by the predictor
        self.generation = 0  # moves on whenever a predictor answer disagrees with the copy
        self._confirmed: str | None = None  # the predictor's version, as of the last valid poll
        self._timed: deque[tuple[float, int]] = deque(maxlen=self.TIMED_ANSWERS)  # the last (seconds, rows)

    def timed(self, seconds: float, rows: int) -> None:
        """One inline answer of `rows` rows took `seconds`, scoring and audit."""
        self._timed.append((seconds, rows))

    def quick(self, rows: int) -> bool:
        """Each of the last TIMED_ANSWERS inline answers (there were that many) fit the budget, and one
        of them had `rows` rows or more."""
        return (len(self._timed) == self.TIMED_ANSWERS
                and max(seconds for seconds, _ in self._timed) <= self.LOOP_BUDGET_SECONDS
                and rows <= max(timed_rows for _, timed_rows in self._timed))

    @property
    def confirmed(self) -> bool:
        return self._confirmed == self.holder.current.version

    @property
    def open(self) -> bool:
        return self.scoring == 0 and self.confirmed

    def saw(self, versions: set[str]) -> bool:
        """A predictor answer's versions; True when one is not the copy's (which stops: poll again now)."""
        if versions <= {self.holder.current.version}:
            return False
        self.generation += 1
        self._confirmed = None
        return True

    def confirm(self, generation: int, served: str) -> None:
        """The predictor served `served` when a poll begun at `generation` asked."""
        if generation == self.generation and served == self.holder.current.version:
            self._confirmed = served


def _score(loaded: LoadedModel, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The prediction (and class probabilities) of one loaded version for each row."""
    # here, not at the top: core.models imports sklearn, which a bento build never needs (core.bento_store)
    from ml_pipelines.core.models import predict

    record = loaded.record
    predictions, proba = predict(loaded.model, records_to_frame(rows, record.features), record.task)
    classes = [_plain(c) for c in loaded.model.classes_] if proba is not None else None
    results = []
    for i in range(len(rows)):
        result: dict[str, Any] = {"prediction": _plain(predictions[i]), "model_version": loaded.version}
        if classes is not None:
            result["probabilities"] = {str(c): float(p) for c, p in zip(classes, proba[i])}
        results.append(result)
    return results


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value



class RequestContract:
    """What the gateway checks requests and feedback against: the record of the version it
    serves, following the champion alias the way ModelHolder does, so that after a hot swap
    a request is validated by the new version's schema, not the one the service started with."""

    def __init__(self, config: ServingConfig, record: VersionRecord, max_string_length: int):
        self.config = config
        self.max_string_length = max_string_length
        self._use(record)

    def _use(self, record: VersionRecord) -> None:
        # one tuple, swapped at once: a request sees one version's record and model together
        self._current = (record, record_model(record.features, record.schema, self.max_string_length))

    @property
    def record(self) -> VersionRecord:
        return self._current[0]

    @property
    def model(self) -> type:
        return self._current[1]

    def refresh(self) -> None:
        if self.config.from_bento or self.config.pinned_version:
            return
        champion = self.config.registry().get_alias(self.config.pipeline, "champion")
        if champion is not None and champion != self.record.version:
            self._use(self.config.record(champion))

    def watch(self) -> None:
        def loop() -> None:
            while not threading.Event().wait(self.config.watch_seconds):
                try:
                    self.refresh()
                except Exception:
                    log.debug("request schema not refreshed", exc_info=True)

        threading.Thread(target=loop, name="request-contract-watcher", daemon=True).start()


FEEDBACK_HORIZON_DAYS = 30  # feedback is taken for predictions this recent (kept in memory to check it)


def feedback_book(config: ServingConfig) -> FeedbackBook:
    """The predictions of the last FEEDBACK_HORIZON_DAYS days and every label already received,
    read from the audit trail and the feedback log when the service starts."""
    since = (datetime.now(UTC) - timedelta(days=FEEDBACK_HORIZON_DAYS)).date().isoformat()
    book = FeedbackBook()
    book.load_served(iter_audit(config.layout.audit, config.pipeline, since))
    book.load_labels(iter_audit(config.layout.feedback, config.pipeline))
    return book
