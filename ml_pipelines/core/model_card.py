"""Model cards, rendered from a version record, its drift history and its production
performance: markdown, and self-contained HTML (plots inlined) for people without
the Dagster UI."""

from __future__ import annotations

import base64
import html
from typing import Any

from ml_pipelines.core.performance import PerformanceHistory
from ml_pipelines.core.records import VersionRecord

SECTIONS = (
    "Description and intended use",
    "Training data",
    "Features",
    "Metrics",
    "Slices",
    "Promotion gate",
    "Drift since deployment",
    "Lineage",
    "Production performance",
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "_none_"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(
    record: VersionRecord,
    drift_history: list[dict[str, Any]],
    aliases: list[str],
    performance_history: list[dict[str, Any]] | None = None,
) -> str:
    parts = [f"# Model card: {record.pipeline} {record.version}", ""]
    if aliases:
        parts.append(f"Aliases: **{', '.join(aliases)}**\n")
    sections = (
        _description(record), _training_data(record), _features(record), _metrics(record), _slices(record),
        _gate(record), _drift(drift_history), _lineage(record), _performance(performance_history or []),
    )
    for title, body in zip(SECTIONS, sections):
        parts += [f"## {title}", "", *body, ""]
    return "\n".join(parts)


def _description(record: VersionRecord) -> list[str]:
    return [record.extra.get("description") or "_no description in the spec_", "",
            f"Task: {record.task} of `{record.target}`"
            + (f" (classes: {', '.join(map(str, record.classes))})" if record.classes else "")
            + f". Model: {record.model_name} ({record.framework}), params `{record.params}`."]


def _training_data(record: VersionRecord) -> list[str]:
    features, provenance = record.features, record.provenance
    body = [_table(
        ["source", "partitions", "train rows", "test rows", "data hash"],
        [[record.extra.get("source", "-"), ", ".join(record.partitions) or "all",
          features.train_rows, features.test_rows, record.data_version]],
    )]
    selected = record.extra.get("selection") or {}
    if selected.get("how"):
        body += ["", f"Model selection: {selected['how']}."]
    if provenance.batches:
        body += ["", f"Learned from {provenance.source_rows} source rows and these labelled production batches "
                 "(the newest labelled rows were the holdout):", "",
                 _table(["batch", "rows"], [[b.batch, b.rows] for b in provenance.batches])]
    return body


def _features(record: VersionRecord) -> list[str]:
    features = record.features
    return [_table(
        ["feature", "kind", "computed from"],
        [[name, "numeric" if name in features.numeric else "categorical", ", ".join(features.lineage.get(name, []))]
         for name in [*features.numeric, *features.categorical]],
    )]


def _metrics(record: VersionRecord) -> list[str]:
    intervals = record.extra.get("intervals", {})
    return ["Holdout metrics with bootstrap 95% confidence intervals.", "", _table(
        ["metric", "value", "95% low", "95% high"],
        [[name, value, *(intervals.get(name) or [None, None])] for name, value in sorted(record.metrics.items())],
    )]


def _slices(record: VersionRecord) -> list[str]:
    names = sorted(record.metrics)
    return [_table(
        ["column", "value", "rows", *names],
        [[s["column"], s["value"], s["rows"], *(s["metrics"].get(m) for m in names)]
         for s in record.extra.get("slices", [])],
    )]


def _gate(record: VersionRecord) -> list[str]:
    gate = record.extra.get("gate") or {}
    reasons = "\n".join(f"- {r}" for r in gate.get("reasons", [])) or "_no gate record_"
    return [f"Decision: **{'passed' if gate.get('passed') else 'not passed'}** on `{gate.get('metric')}`: "
            f"candidate {_fmt(gate.get('candidate'))}, floor {_fmt(gate.get('minimum'))}, "
            f"champion {gate.get('champion_version') or '-'} {_fmt(gate.get('champion'))}, "
            f"allowed regression {_fmt(gate.get('max_regression'))}.", "", reasons]


def _drift(history: list[dict[str, Any]]) -> list[str]:
    return [_table(
        ["time", "batch", "drifted share", "dataset drifted", "drifted columns"],
        [[d.get("time"), d.get("partition"), d.get("share_drifted"), d.get("dataset_drifted"),
          ", ".join(d.get("drifted_columns", []))] for d in history],
    )]


def _lineage(record: VersionRecord) -> list[str]:
    trigger = record.trigger
    return [_table(
        ["run id", "trigger", "reason", "spec hash", "code version", "created"],
        [[trigger.run_id, f"{trigger.kind} {trigger.name or ''}".strip(),
          f"{trigger.reason}: {trigger.detail}" if trigger.detail else trigger.reason,
          record.spec_hash, record.code_version, record.created_at]],
    ), "", "Libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(record.libraries.items())), "",
        "Artifacts (sha256):", "", *(f"- `{name}` {digest}" for name, digest in sorted(record.artifacts.items()))]


def _performance(history: list[dict[str, Any]]) -> list[str]:
    if not history:
        return ["_no labelled production rows yet_"]
    metric = history[-1].get("metric")
    return [f"`{metric}` on labelled production rows, per batch, with bootstrap 95% intervals.", "", _table(
        ["batch", "landed", "labelled rows", metric, "95% low", "95% high", "holds", "challenger", "challenger value"],
        [[e.get("batch"), e.get("landed_at"), e.get("rows"), e.get("value"), e.get("low"), e.get("high"),
          e.get("passed"), e.get("challenger_version"), e.get("challenger_value")] for e in history],
    )]


def render_html(markdown_text: str, title: str, plots: dict[str, bytes]) -> str:
    """One HTML file with no external references: styles and plots inline."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, png in sorted(plots.items())
    )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:14px}"
        "th{background:#f3f3f3}figure{display:inline-block;margin:.5em}code{background:#f5f5f5}"
    )
    plots_section = f"<h2>Plots</h2>{images}" if images else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{body}{plots_section}</body></html>"
    )


def publish_card(registry, pipeline: str, version: str) -> dict[str, str]:
    """Render the card from the registry (record, drift history, plots) and store it
    beside the version; returns the URIs of the markdown and HTML files."""
    record = registry.get_version(pipeline, version)
    aliases = [alias for alias, v in registry.aliases(pipeline).items() if v == version]
    performance = PerformanceHistory(registry.store, pipeline).for_version(version)
    text = render_markdown(record, registry.drift_history(pipeline, version), aliases, performance)
    plots = {
        name.removeprefix("plots/").removesuffix(".png"): registry.artifact_bytes(pipeline, version, name)
        for name in record.artifacts
        if name.startswith("plots/")
    }
    page = render_html(text, f"{pipeline} {version}", plots)
    uris = {}
    for suffix, content in (("md", text), ("html", page)):
        key = registry.card_key(pipeline, version, suffix)
        registry.store.put(key, content.encode())
        uris[suffix] = registry.store.uri(key)
    return uris
