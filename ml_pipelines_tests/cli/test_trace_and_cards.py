"""The analyst's two questions without the UI:

- trace: from a served prediction's request id (a real `ml-pipelines serve`, i.e.
  `bentoml serve`, on loopback) back to the model version, the training run, the
  data hash, the spec hash, the code version and the gate decision, and all of it
  equal to the registry record and to what Dagster recorded for the run;
- model cards: every section in markdown and in self-contained HTML, with numbers
  equal to the registry record's, and a drift section that lists each drift report
  produced for the version.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import dagster as dg
import httpx
import pytest

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.core.landing import land_batch
from ml_pipelines.core.model_card import SECTIONS
from ml_pipelines.core.records import VersionRecord
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.datasets.credit import generate
from ml_pipelines.resources import local_resources
from ml_pipelines.settings import Settings
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests import REPO_ROOT, servers
from ml_pipelines_tests.helpers import materialize
from ml_pipelines_tests.specs import NAME, make_spec, small_credit_attributes

pytestmark = pytest.mark.timeout(600)

BATCHES = f"{NAME}_production_batches"
READY_TIMEOUT_S = 180


@dataclass
class Trained:
    spec: PipelineSpec
    root: Path  # ML_PIPELINES_HOME
    instance: dg.DagsterInstance
    defs: dg.Definitions
    registry: ModelRegistry
    version: str

    @property
    def record(self) -> VersionRecord:
        return self.registry.get_version(NAME, self.version)

    def env(self) -> dict[str, str]:
        return {**os.environ, **servers.QUIET_ENV, "ML_PIPELINES_HOME": str(self.root), "ML_PIPELINES_ENV": "local"}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [servers.venv_executable("ml-pipelines"), *args],
            cwd=REPO_ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def card(self, suffix: str) -> str:
        return self.registry.store.get(self.registry.card_key(NAME, self.version, suffix)).decode()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Iterator[Trained]:
    """credit_default (3,000 rows, one sklearn model) trained, packaged and promoted once."""
    root = tmp_path_factory.mktemp("trace_and_cards") / "ml_pipelines_home"
    root.mkdir()
    spec = make_spec(**small_credit_attributes(sensors=False))
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("ML_PIPELINES_HOME", str(root))  # the landing folder is under ${ML_PIPELINES_HOME}
        result = materialize(spec, root, instance)
        assert result.success, result.step_errors()
        version = result.registry.get_alias(NAME, "champion")
        assert version is not None
        defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=local_resources(root)))
        yield Trained(spec, root, instance, defs, result.registry, version)


@pytest.fixture(scope="module")
def served(trained: Trained, tmp_path_factory) -> Iterator[str]:
    """`ml-pipelines serve credit_default` as a real process on loopback; its base URL."""
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    with servers.running(
        "ml-pipelines serve",
        [servers.venv_executable("ml-pipelines"), "serve", NAME, "--host", "127.0.0.1", "--port", str(port)],
        log_path=tmp_path_factory.mktemp("serve") / "serve.log",
        env={"ML_PIPELINES_HOME": str(trained.root), "ML_PIPELINES_ENV": "local"},
        ready=f"{url}/readyz",
        ready_timeout=READY_TIMEOUT_S,
    ):
        yield url


# ---------------------------------------------------------------- trace


def _latest(instance: dg.DagsterInstance, stage: str) -> dg.EventLogEntry:
    event = instance.get_latest_materialization_event(dg.AssetKey([NAME, stage]))
    assert event is not None, f"{stage} was never materialized"
    return event


def test_trace_walks_from_a_served_prediction_to_the_data_hash(trained: Trained, served: str):
    record = trained.record
    inputs = record.features.inputs
    rows = json.loads(generate(rows=3, seed=404)[inputs].to_json(orient="records"))
    response = httpx.post(f"{served}/predict", json={"records": rows}, timeout=60, trust_env=False)
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["model_version"] == trained.version
    assert len(body["predictions"]) == 3 and len(body["probabilities"]) == 3
    request_id = body["request_id"]

    done = trained.cli("trace", request_id)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    by_label = {line[:12].strip(): line[12:].strip() for line in lines if not line.startswith(" ")}

    assert by_label["prediction"].startswith(f"{request_id} (3 record(s))")
    served_inputs = [json.loads(line.strip().removeprefix("input").strip()) for line in lines if line.startswith("  input ")]
    assert served_inputs == rows
    assert by_label["model"].startswith(f"{NAME} version {trained.version}: {record.model_name} ({record.framework})")
    assert by_label["training run"].startswith(f"{record.trigger.run_id} (trigger: manual; reason: manual)")
    assert f"data hash {record.data_version};" in by_label["data"]
    assert by_label["code"] == f"spec hash {record.spec_hash}; code version {record.code_version}"
    gate = record.extra["gate"]
    assert gate["passed"] is True
    assert by_label["gate"] == "passed: " + "; ".join(gate["reasons"])
    card = Path(by_label["model card"])
    assert card.is_file() and card.name == f"{trained.version}.html"

    # ... and the registry record agrees with what Dagster recorded for the training run
    package = _latest(trained.instance, "model_package")
    assert record.trigger.run_id == package.run_id
    assert package.asset_materialization.metadata["version"].value == trained.version
    features = _latest(trained.instance, "features")
    assert features.run_id == record.trigger.run_id
    assert record.data_version == features.asset_materialization.tags["dagster/data_version"]
    assert record.data_version == features.asset_materialization.metadata["data_hash"].value
    assert record.spec_hash == trained.spec.spec_hash()
    assert record.code_version == package.asset_materialization.tags["dagster/code_version"]
    assert record.code_version.endswith(trained.spec.spec_hash())
    # the gate the trace prints is the gate the beats_champion check reported in that run
    check_key = dg.AssetCheckKey(dg.AssetKey([NAME, "evaluation"]), "beats_champion")
    (execution,) = trained.instance.event_log_storage.get_asset_check_execution_history(check_key, limit=1)
    assert execution.run_id == record.trigger.run_id
    assert execution.status.value == "SUCCEEDED"
    evaluation = execution.event.dagster_event.event_specific_data
    assert evaluation.passed is True
    assert evaluation.description == "; ".join(gate["reasons"])


def test_trace_of_an_unknown_request_id_fails_clearly(trained: Trained):
    done = trained.cli("trace", "0" * 32)
    assert done.returncode == 2
    assert f"no prediction with request id {'0' * 32}" in done.stdout


def test_registry_show_prints_the_card_paths(trained: Trained):
    done = trained.cli("registry", "show", NAME, trained.version)
    assert done.returncode == 0, done.stdout + done.stderr
    cards = [line.split(":", 1)[1].strip() for line in done.stdout.splitlines() if line.startswith("model card:")]
    expected = {
        trained.registry.store.uri(trained.registry.card_key(NAME, trained.version, suffix)) for suffix in ("html", "md")
    }
    assert set(cards) == expected
    assert all(Path(c).is_file() for c in cards)


# ---------------------------------------------------------------- model cards


def _markdown_sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def _markdown_table(body: str) -> list[list[str]]:
    """The first table of a section: header row then data rows, cells unescaped."""
    lines = [line for line in body.splitlines() if line.startswith("|")]
    assert lines, f"no table in {body[:200]!r}"
    rows = []
    for line in lines:
        if re.fullmatch(r"\|(---\|)+", line):
            continue
        cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
        rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


class _CardParser(HTMLParser):
    """h2 titles, the first table after each, every src/href, and every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.headings: list[str] = []
        self.links: list[tuple[str, str, str]] = []  # tag, attribute, value
        self.images: list[tuple[str, str]] = []  # alt, src
        self.tags: set[str] = set()
        self._in_h2 = False
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attributes = dict(attrs)
        for name in ("src", "href", "srcset", "poster", "data"):
            if attributes.get(name):
                self.links.append((tag, name, attributes[name]))
        if tag == "img":
            self.images.append((attributes.get("alt", ""), attributes.get("src", "")))
        if tag == "h2":
            self._in_h2 = True
            self.headings.append("")
        elif tag == "table" and self.headings and self.headings[-1] not in self.tables:
            self._table = []
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False
        elif tag in ("td", "th") and self._cell is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table" and self._table is not None:
            self.tables[self.headings[-1]] = self._table
            self._table = None

    def handle_data(self, data):
        if self._in_h2:
            self.headings[-1] += data
        if self._cell is not None:
            self._cell.append(data)


def _parse_html(text: str) -> _CardParser:
    parser = _CardParser()
    parser.feed(text)
    parser.close()
    return parser


def _f(value: float) -> str:
    return f"{value:.4f}"


def test_every_section_is_in_both_cards(trained: Trained):
    markdown, page = trained.card("md"), trained.card("html")
    assert markdown.startswith(f"# Model card: {NAME} {trained.version}")
    assert list(_markdown_sections(markdown)) == list(SECTIONS)
    parsed = _parse_html(page)
    assert parsed.headings[: len(SECTIONS)] == list(SECTIONS)
    assert parsed.headings[len(SECTIONS) :] == ["Plots"]
    for section in SECTIONS:
        assert f"<h2>{html.escape(section)}</h2>" in page


def test_html_card_is_self_contained(trained: Trained):
    page = trained.card("html")
    parsed = _parse_html(page)
    assert not {"script", "link", "iframe", "object", "embed"} & parsed.tags, parsed.tags
    for tag, attribute, value in parsed.links:
        assert value.startswith("data:"), f"<{tag} {attribute}={value[:80]!r}> leaves the file"
    assert not re.search(r"url\(|@import|https?://", page.split("<body>", 1)[0]), "styles load nothing"
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, flags=re.IGNORECASE)
    # every registered plot is inlined, byte for byte
    record = trained.record
    plots = {name.removeprefix("plots/").removesuffix(".png"): digest
             for name, digest in record.artifacts.items() if name.startswith("plots/")}
    assert set(plots) == {"feature_importance", "roc_curve", "pr_curve", "confusion_matrix"}
    inlined = {}
    for alt, src in parsed.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), src[:40]
        png = base64.b64decode(src[len(prefix):], validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        inlined[alt] = hashlib.sha256(png).hexdigest()
    assert inlined == plots


def test_card_numbers_equal_the_registry_record(trained: Trained):
    record = trained.record
    extra = record.extra
    markdown = _markdown_sections(trained.card("md"))
    parsed = _parse_html(trained.card("html"))

    tables = {section: _markdown_table(markdown[section]) for section in SECTIONS if "|" in markdown[section]}
    # the HTML shows the very same tables
    for section, rows in tables.items():
        assert parsed.tables[section] == rows, section

    header, *rows = tables["Training data"]
    assert header == ["source", "partitions", "train rows", "test rows", "data hash"]
    (row,) = rows
    assert row[0] == extra["source"]
    assert row[2] == str(record.features.train_rows) and row[3] == str(record.features.test_rows)
    assert int(row[2]) + int(row[3]) == 3000
    assert row[4] == record.data_version
    # selection.sample_rows (100,000 by default) is more than these rows: all of them were cross-validated
    assert extra["selection"]["cv_rows"] == extra["selection"]["train_rows"] == record.features.train_rows
    assert f"Model selection: 2-fold cross-validation on all {record.features.train_rows} training rows." \
        in markdown["Training data"]

    header, *rows = tables["Metrics"]
    assert header == ["metric", "value", "95% low", "95% high"]
    assert {r[0] for r in rows} == set(record.metrics) == set(trained.spec.evaluation_metrics)
    for name, value, low, high in rows:
        interval = extra["intervals"][name]
        assert [value, low, high] == [_f(record.metrics[name]), _f(interval[0]), _f(interval[1])], name

    header, *rows = tables["Slices"]
    assert header[:3] == ["column", "value", "rows"]
    assert len(rows) == len(extra["slices"])
    for row, entry in zip(rows, extra["slices"]):
        assert row[:3] == [entry["column"], str(entry["value"]), str(entry["rows"])]
        assert row[3:] == [_f(entry["metrics"][m]) for m in header[3:]]

    header, *rows = tables["Features"]
    assert [r[0] for r in rows] == [*record.features.numeric, *record.features.categorical]

    header, *rows = tables["Lineage"]
    (row,) = rows
    assert row[0] == record.trigger.run_id
    assert row[2] == record.trigger.reason == "manual"
    assert row[3:5] == [record.spec_hash, record.code_version]

    gate = extra["gate"]
    spec_gate = trained.spec.evaluation.gate
    gate_text = markdown["Promotion gate"]
    assert (
        f"Decision: **passed** on `{gate['metric']}`: candidate {_f(gate['candidate'])}, "
        f"floor {_f(spec_gate.min)}, champion - -, allowed regression {_f(spec_gate.max_regression)}."
    ) in gate_text
    assert gate["candidate"] == record.metrics[gate["metric"]]
    for reason in gate["reasons"]:
        assert f"- {reason}" in gate_text
        assert html.escape(reason, quote=False) in trained.card("html")


def test_a_drift_report_lands_in_the_card(trained: Trained):
    before = _markdown_sections(trained.card("md"))["Drift since deployment"]
    assert "_none_" in before and "|" not in before

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ML_PIPELINES_HOME", str(trained.root))
        batch = land_batch(trained.spec, drift=1.0, rows=1000, seed=77, variables=Settings.from_env().variables)
        trained.instance.add_dynamic_partitions(BATCHES, [batch.name])  # what the landing sensor requests
        result = trained.defs.resolve_job_def(f"{NAME}_monitor_job").execute_in_process(
            instance=trained.instance, partition_key=batch.name, raise_on_error=False
        )
    assert result.success, [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
    (history,) = trained.registry.drift_history(NAME, trained.version)
    assert history["partition"] == batch.name and history["run_id"] == result.run_id
    report = result.output_for_node(f"{NAME}__drift_report")
    assert history["share_drifted"] == report.share_drifted and history["dataset_drifted"] is True

    header, *rows = _markdown_table(_markdown_sections(trained.card("md"))["Drift since deployment"])
    assert header == ["time", "batch", "drifted share", "dataset drifted", "drifted columns"]
    (row,) = rows
    assert row == [history["time"], batch.name, _f(report.share_drifted), "True", ", ".join(history["drifted_columns"])]
    assert history["drifted_columns"], "a batch landed with drift=1.0 drifts"
    parsed = _parse_html(trained.card("html"))
    assert parsed.tables["Drift since deployment"] == [header, row]
    # the drift report's own metadata links the refreshed card, served by `ml-pipelines reports`
    event = _latest(trained.instance, "drift_report")
    card_key = trained.registry.card_key(NAME, trained.version, "html")
    assert Path(trained.registry.store.uri(card_key)) == trained.root / "registry" / card_key
    assert event.asset_materialization.metadata["model_card"].value == (
        f"{Settings.from_env({}).reports_url}/registry/{card_key}"
    )
