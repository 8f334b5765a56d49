"""serving.runtime without a server: the model's input frame, the gateway's copy of the model
following the predictor (ModelHolder.follow) and when that copy may answer (InlineRoute); the
audit writer written from the inline-scoring thread and its own at once."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ml_pipelines.core.records import ModelInputs
from ml_pipelines.serving.audit import AuditWriter
from ml_pipelines.serving.limits import CountRequests, RequestsInFlight
from ml_pipelines.serving.runtime import (
    InlineRoute,
    LoadedModel,
    ModelHolder,
    ServingConfig,
    ServingError,
    ShadowScorer,
    records_to_frame,
)

FEATURES = ModelInputs(
    inputs=["income", "age", "purpose", "member", "note"],
    types={"income": "float", "age": "int", "purpose": "category", "member": "bool", "note": "str"},
)


def _reference_frame(rows: list[dict[str, Any]], features: ModelInputs) -> pd.DataFrame:
    """What the service built before: DataFrame.from_records, numeric inputs through to_numeric."""
    frame = pd.DataFrame.from_records(rows, columns=features.inputs)
    for column, kind in features.types.items():
        if column in frame.columns and kind in ("float", "int"):
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype("float64")
    return frame


ROWS = [
    {"income": 52000.5, "age": 41, "purpose": "car", "member": True, "note": "a"},
    {"income": None, "age": 23, "purpose": "home", "member": None, "note": None},
    {"income": 0, "age": 99, "purpose": "unseen", "member": False, "note": "ü" * 3},
]


@pytest.mark.parametrize("rows", [ROWS[:1], ROWS[1:2], ROWS, [ROWS[1], ROWS[1]]],
                         ids=["one", "nulls", "three", "all-null"])
def test_the_input_frame_is_the_one_from_records_builds(rows):
    frame = records_to_frame(rows, FEATURES)
    pd.testing.assert_frame_equal(frame, _reference_frame(rows, FEATURES))
    assert frame["age"].dtype == np.float64 and frame["income"].dtype == np.float64


# ------------------------------------------------------------------ the gateway's copy of the model


@dataclass
class _Registry:
    aliases: dict[str, str]

    def get_alias(self, pipeline: str, alias: str) -> str | None:
        return self.aliases.get(alias)


@dataclass(frozen=True)
class _Config(ServingConfig):
    """Versions 'load' as bare LoadedModels; those in `broken` fail the way a tampered one does."""

    broken: set[str] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)
    loads: list[str] = field(default_factory=list)

    def load(self, version: str) -> LoadedModel:
        self.loads.append(version)
        if version in self.broken:
            raise ServingError(f"cannot serve demo {version}: checksum mismatch")
        return LoadedModel(version, record=None, model=None, categories={})

    def registry(self) -> Any:
        return _Registry(self.aliases)


def _holder(config: _Config, shadow: bool = False) -> ModelHolder:
    scorer = ShadowScorer(lambda records: None) if shadow else None
    return ModelHolder(config, "v1", shadow_scorer=scorer)


def test_following_loads_only_a_new_version_and_keeps_the_old_one_when_it_fails(caplog):
    config = _Config(pipeline="demo", home=Path("/nowhere"), broken={"v3"})
    holder = _holder(config)
    holder.follow("v1", None)
    assert config.loads == ["v1"], "the version it holds is not loaded again"
    holder.follow("v2", None)
    assert holder.current.version == "v2"
    for _ in range(3):
        with pytest.raises(ServingError, match="checksum mismatch"):
            holder.follow("v3", None)
    assert holder.current.version == "v2", "the copy it had answers on"
    assert caplog.text.count("cannot follow the predictor to v3") == 1, "logged once, not per poll"


def test_following_takes_the_predictors_challenger():
    config = _Config(pipeline="demo", home=Path("/nowhere"), aliases={"challenger": "v0"}, broken={"v9"})
    holder = _holder(config, shadow=True)
    assert holder.shadow.version == "v0"
    holder.follow("v1", "v5")
    assert holder.shadow.version == "v5"
    holder.follow("v1", "v9")  # a challenger that does not load is not shadowed
    assert holder.shadow is None
    holder.follow("v1", None)
    assert holder.shadow is None


def test_the_copy_asks_the_predictor_only_when_the_registry_moved_away_from_it():
    config = _Config(pipeline="demo", home=Path("/nowhere"), aliases={"champion": "v1", "challenger": "v0"})
    holder = _holder(config, shadow=True)
    assert not holder.behind_registry()
    config.aliases["champion"] = "v2"
    assert holder.behind_registry()
    holder.follow("v2", "v0")
    assert not holder.behind_registry()
    config.aliases["challenger"] = "v3"
    assert holder.behind_registry()
    config.aliases["challenger"] = "v2"  # the champion itself is not shadowed
    holder.follow("v2", None)
    assert not holder.behind_registry()
    pinned = _holder(_Config(pipeline="demo", home=Path("/nowhere"), pinned_version="v1", aliases={"champion": "v2"}))
    assert not pinned.behind_registry(), "a pinned version does not follow the champion"


# ------------------------------------------------------------------ when the copy answers


@dataclass
class _Current:
    version: str


@dataclass
class _Holder:
    current: _Current


def test_the_copy_answers_only_when_idle_and_confirmed():
    route = InlineRoute(_Holder(_Current("v1")))
    assert not route.open, "not before a poll saw the predictor serve its version"
    route.confirm(route.generation, "v1")
    assert route.open
    route.scoring += 1
    assert not route.open, "another request is being scored: this one goes to the predictor"
    route.scoring -= 1
    assert not route.saw({"v1"}) and route.open, "an answer from the same version changes nothing"


def test_a_predictor_answer_from_another_version_stops_the_copy_until_a_later_poll_confirms():
    holder = _Holder(_Current("v1"))
    route = InlineRoute(holder)
    route.confirm(route.generation, "v1")
    stale_poll = route.generation  # a poll under way when the predictor switches
    assert route.saw({"v2"}) and not route.open
    holder.current = _Current("v2")  # the copy follows
    route.confirm(stale_poll, "v1")
    route.confirm(stale_poll, "v2")
    assert not route.open, "a poll that began before the answer confirms nothing"
    route.confirm(route.generation, "v1")
    assert not route.open, "the predictor's version must be the copy's"
    route.confirm(route.generation, "v2")
    assert route.open


def test_the_copy_answers_on_the_loop_only_after_enough_quick_answers_as_large():
    route = InlineRoute(_Holder(_Current("v1")))
    budget, enough = InlineRoute.LOOP_BUDGET_SECONDS, InlineRoute.TIMED_ANSWERS
    for _ in range(enough - 1):
        route.timed(budget / 4, 1)
        assert not route.quick(1), "too few answers timed yet: in a thread"
    route.timed(budget, 3)
    assert route.quick(1) and route.quick(3)
    assert not route.quick(4), "no answer as large was timed"
    route.timed(budget * 1.01, 1)
    assert not route.quick(1), "one answer over the budget sends the next ones to the thread"
    for _ in range(enough - 1):
        route.timed(budget / 4, 1)
        assert not route.quick(1)
    route.timed(budget / 4, 1)
    assert route.quick(1), "until it is no longer among the last answers"
    assert not route.quick(3), "nor is the 3-row answer"


def test_requests_are_counted_from_the_first_middleware_until_answered():
    requests = RequestsInFlight()
    seen: list[int] = []

    async def app(scope, receive, send):
        await asyncio.sleep(0)  # one turn of the loop, as the service takes before it decides
        seen.append(requests.count)
        if scope["path"] == "/fails":
            raise RuntimeError("the app failed")

    counted = CountRequests(app, requests=requests)

    async def arrive_together() -> None:
        calls = [counted({"type": "http", "path": path}, None, None) for path in ("/a", "/b", "/fails")]
        await asyncio.gather(*calls, return_exceptions=True)
        await counted({"type": "lifespan", "path": "/"}, None, None)  # not a request

    asyncio.run(arrive_together())
    assert seen[0] == 3, "requests that arrived together are all counted by the time the first decides"
    assert seen[-1] == 0, "the lifespan scope is not counted"
    assert requests.count == 0, "each request leaves the count, a failed one too"


# ------------------------------------------------------------------ the audit trail, written from two threads


def test_records_written_here_and_through_the_queue_all_land_whole(tmp_path):
    """write_here (the inline-scoring thread) and the group-commit thread share one file per day."""
    writer = AuditWriter(tmp_path, "demo")
    stamp = "2026-12-01T10:00:00+00:00"

    async def queued() -> None:
        await asyncio.gather(*(writer.write([{"request_id": f"q{i}", "timestamp": stamp, "note": "x" * 5000}])
                               for i in range(200)))

    here = threading.Thread(target=lambda: [writer.write_here([{"request_id": f"h{i}", "timestamp": stamp,
                                                                "note": "y" * 5000}]) for i in range(200)])
    here.start()
    asyncio.run(queued())
    here.join()
    lines = (tmp_path / "demo" / "2026-12-01" / f"{writer.writer_id}.jsonl").read_text().splitlines()
    ids = sorted(json.loads(line)["request_id"] for line in lines)  # every line is one whole record
    assert ids == sorted([f"q{i}" for i in range(200)] + [f"h{i}" for i in range(200)])


# ------------------------------------------------------------------ declaring the service in a bento build


@dataclass(frozen=True)
class _Record:
    version: str
    trusted_roots: tuple[str, ...] = ()


@dataclass(frozen=True)
class _StoredConfig(ServingConfig):
    """One stored version: its record is a stand-in, its files sit in tmp."""

    def record(self, version: str) -> Any:
        return _Record(version)

    def model_dir(self, version: str) -> Path:
        return self.home / version


def test_a_bento_build_checks_the_model_files_and_does_not_load_the_model(monkeypatch, tmp_path):
    from ml_pipelines.serving import runtime
    from ml_pipelines.settings import Settings

    checked, loaded = [], []
    monkeypatch.setattr(runtime, "verify_artifacts", lambda directory, record: checked.append(directory))

    def load_model(directory: Path, roots: tuple[str, ...]):
        loaded.append(directory)
        raise ValueError("the model does not load")

    monkeypatch.setattr(runtime, "load_model", load_model)
    settings = Settings.from_env({"ML_PIPELINES_SERVE_PIPELINE": "demo", "ML_PIPELINES_SERVE_BUILDING": "1"})
    assert settings.serve.building and not Settings.from_env({}).serve.building
    building = _StoredConfig("demo", tmp_path, building=True)
    assert building.declared_record("v1") == _Record("v1")
    assert checked == [tmp_path / "v1"] and loaded == []
    # serving declares from the whole check: the model must load
    with pytest.raises(ServingError, match="cannot serve demo v1: ValueError: the model does not load"):
        _StoredConfig("demo", tmp_path).declared_record("v1")
    assert loaded == [tmp_path / "v1"]
    # a build still refuses files that do not match the record
    monkeypatch.setattr(runtime, "verify_artifacts", lambda directory, record: (_ for _ in ()).throw(
        OSError(f"{directory}/model.skops: sha256 mismatch")))
    with pytest.raises(ServingError, match="cannot serve demo v1: .*model.skops: sha256 mismatch"):
        building.declared_record("v1")
