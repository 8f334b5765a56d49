"""`ml-pipelines registry gc <pipeline> [--dry-run]`: remove the snapshots and artifacts of the versions the
spec's `registry.retention` does not keep (core.retention); every record stays."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from ml_pipelines.cli.versions import FORMAT, PIPELINE, Format, run_on_registry

if TYPE_CHECKING:
    from ml_pipelines.core.registry import ModelRegistry
    from ml_pipelines.core.retention import GcPlan


def retention_of(pipeline: str, keep: int | None) -> tuple[int, str]:
    """How many versions to keep, and where that number comes from."""
    from ml_pipelines.cli._common import PIPELINES_DIR, load_pipeline_spec
    from ml_pipelines.spec import RetentionSpec

    if keep is not None:
        return keep, "--keep"
    try:
        spec = load_pipeline_spec(pipeline)
    except ValueError:
        return RetentionSpec().keep_versions, f"the default (no spec at {PIPELINES_DIR / pipeline})"
    return spec.registry.retention.keep_versions, "registry.retention.keep_versions in its spec"


def human(size: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return str(size)


def plan_lines(plan: GcPlan, source: str, dry_run: bool) -> list[str]:
    lines = [(f"{plan.pipeline}: keeping the {plan.keep_versions} newest versions ({source}), every alias's "
              "versions, and data a kept version uses")]
    lines += [f"  keep    {v:<24} {why}" for v, why in plan.kept.items()]
    lines += [f"  remove  {v:<24} {len(files)} files, {human(sum(s for _, s in files))}"
              for v, files in plan.collect.items()]
    lines += [f"  remove  data {key} ({human(size)})" for key, size in plan.data]
    lines += [f"  keep    data {key}: {why}" for key, why in plan.data_kept.items()]
    if plan.already_collected:
        lines.append(f"  already collected: {', '.join(plan.already_collected)}")
    verb = "would free" if dry_run else "freed"
    lines.append(f"{verb} {plan.bytes} bytes ({human(plan.bytes)}); every record stays"
                 + ("; dry run: nothing removed" if dry_run else ""))
    return lines


def gc(
    pipeline: Annotated[str, PIPELINE],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be removed; remove nothing")] = False,
    keep: Annotated[int | None, typer.Option(help="keep this many newest versions (default: the spec's "
                                                  "registry.retention.keep_versions, else 20)",
                                             show_default=False, min=1)] = None,
    grace_hours: Annotated[float, typer.Option(help="keep training data a run used within this many hours "
                                                    "(a run in progress may still need it)", min=0)] = 24.0,
    output: Annotated[Format, FORMAT] = Format.text,
) -> None:
    from ml_pipelines.core.retention import plan_gc, run_gc

    def verb(registry: ModelRegistry) -> int:
        keep_versions, source = retention_of(pipeline, keep)
        plan = plan_gc(registry, pipeline, keep_versions, grace=timedelta(hours=grace_hours))
        if not dry_run:
            run_gc(registry, plan)
        if output is Format.json:
            print(json.dumps({**plan.to_dict(), "dry_run": dry_run, "retention_from": source}, indent=2))
        else:
            print("\n".join(plan_lines(plan, source, dry_run)))
        return 0

    run_on_registry(verb)
