"""From one prediction back to the model, run, data and gate behind it (`ml-pipelines trace`)."""

from __future__ import annotations

import json
from pathlib import Path

from ml_pipelines.core.prediction_log import read_records
from ml_pipelines.core.registry import ModelRegistry


def find_prediction(audit_root: Path, request_id: str) -> list[dict]:
    """Every audit record of the request (one per record it carried, and any shadow scores), newest day first."""
    if not audit_root.is_dir():
        return []
    for pipeline_dir in sorted(p for p in audit_root.iterdir() if p.is_dir()):
        for day_dir in sorted((d for d in pipeline_dir.iterdir() if d.is_dir()), reverse=True):
            found = [r for r in read_records(audit_root, pipeline_dir.name, day_dir.name, shadow=True)
                     if r.get("request_id") == request_id]
            if found:
                return [{**r, "pipeline": pipeline_dir.name} for r in found]
    return []


def trace_lines(request_id: str, audit_root: Path, registry: ModelRegistry) -> list[str]:
    found = find_prediction(audit_root, request_id)
    records = sorted((r for r in found if not r.get("shadow")), key=lambda r: r.get("index", 0))
    if not records:
        raise LookupError(f"no prediction with request id {request_id} in {audit_root}")
    shadows = {r.get("index", 0): r for r in found if r.get("shadow")}
    first = records[0]
    pipeline, version = first["pipeline"], first["model_version"]
    record = registry.get_version(pipeline, version)
    gate = record.extra.get("gate") or {}
    lines = [f"prediction   {request_id} ({len(records)} record(s)) at {first['timestamp']}, caller {first.get('caller') or '-'}"]
    for r in records:
        lines.append(f"  input  {json.dumps(r['input'], sort_keys=True)}")
        lines.append(f"  output {json.dumps(r['output'], sort_keys=True)}")
        if (shadowed := shadows.get(r.get("index", 0))) is not None:
            lines.append(f"  shadow {shadowed['model_version']} {json.dumps(shadowed['output'], sort_keys=True)}")
    lines += [
        f"model        {pipeline} version {version}: {record.model_name} ({record.framework}) params={json.dumps(record.params)}",
        (
            f"training run {record.trigger.run_id} (trigger: {record.trigger.kind}"
            f"{' ' + record.trigger.name if record.trigger.name else ''}; reason: {record.trigger.reason}"
            f"{' - ' + record.trigger.detail if record.trigger.detail else ''}) at {record.created_at}"
        ),
        (
            f"data         partitions {', '.join(record.partitions) or 'all'}; data hash {record.data_version};"
            f" source {record.extra.get('source', '-')}"
        ),
        *_learned_from(record),
        f"code         spec hash {record.spec_hash}; code version {record.code_version}",
        f"gate         {'passed' if gate.get('passed') else 'not passed'}: " + "; ".join(gate.get("reasons", [])),
    ]
    card = registry.card_key(pipeline, version, "html")
    if registry.store.exists(card):
        lines.append(f"model card   {registry.store.uri(card)}")
    return lines



def _learned_from(record) -> list[str]:
    """The labelled production batches a retrain window added, with their row counts."""
    provenance = record.provenance
    if not provenance.batches:
        return []
    batches = ", ".join(f"{b.batch} ({b.rows} rows)" for b in provenance.batches)
    return [f"learned from {provenance.source_rows} source rows and production batches {batches}"]
