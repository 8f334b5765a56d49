"""`ml-pipelines registry ...`: list, show, promote and roll back model versions, print the alias history,
and remove old versions' files (gc, cli/retention.py).

The registry checks every pipeline name and version id; a bad one, like any
RegistryError, prints one line `error: ...` and exits 2."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from ml_pipelines.cli import retention
from ml_pipelines.cli._common import exit_with, fail
from ml_pipelines.settings import Settings

if TYPE_CHECKING:
    from ml_pipelines.core.records import AliasMove
    from ml_pipelines.core.registry import ModelRegistry, VersionRecord

PIPELINE = typer.Argument(help="pipeline name", show_default=False)
VERSION = typer.Argument(help="version, as `registry list` prints it", show_default=False)


class Alias(str, Enum):
    champion = "champion"
    challenger = "challenger"


def _run(verb: Callable[[ModelRegistry], int]) -> None:
    """Run one verb against the registry the settings point at; a RegistryError prints `error: ...`, exit 2."""
    from ml_pipelines.core.layout import registry_for
    from ml_pipelines.core.registry import RegistryError

    settings = Settings.from_env()
    try:
        code = verb(registry_for(settings))
    except RegistryError as exc:
        fail(str(exc), stderr=False)
    exit_with(code)


def _aliases_by_version(registry: ModelRegistry, pipeline: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for alias, version in registry.aliases(pipeline).items():
        found.setdefault(version, []).append(alias)
    return found


def list_lines(registry: ModelRegistry, pipeline: str, versions: list[VersionRecord]) -> list[str]:
    aliases = _aliases_by_version(registry, pipeline)
    lines = [f"{'version':<24} {'created_at':<26} {'model':<12} {'aliases':<12} metrics"]
    for record in versions:
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted(record.metrics.items()))
        lines.append(
            f"{record.version:<24} {record.created_at[:25]:<26} {record.model_name:<12} "
            f"{','.join(aliases.get(record.version, [])) or '-':<12} {metrics}"
        )
    return lines


def show_lines(registry: ModelRegistry, record: VersionRecord) -> list[str]:
    aliases = _aliases_by_version(registry, record.pipeline).get(record.version, [])
    gate = record.extra.get("gate") or {}
    lines = [
        f"pipeline:      {record.pipeline}",
        f"version:       {record.version}  aliases: {', '.join(aliases) or '-'}",
        f"created_at:    {record.created_at}",
        f"model:         {record.model_name} ({record.framework}) params={json.dumps(record.params)}",
        f"task:          {record.task} target={record.target}" + (f" classes={record.classes}" if record.classes else ""),
        "metrics:       " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(record.metrics.items())),
        "lineage:",
        f"  run_id:      {record.trigger.run_id}",
        f"  trigger:     {record.trigger.kind}" + (f" ({record.trigger.name})" if record.trigger.name else ""),
        f"  partitions:  {', '.join(record.partitions) or '-'}",
        f"  data_hash:   {record.data_version}",
        f"  spec_hash:   {record.spec_hash}",
        f"  code:        {record.code_version}",
        f"gate:          {'passed' if gate.get('passed') else 'not passed'}: " + "; ".join(gate.get("reasons", [])),
        "libraries:     " + ", ".join(f"{k} {v}" for k, v in sorted(record.libraries.items())),
        "artifacts:",
        *(f"  {name}  sha256:{digest}" for name, digest in sorted(record.artifacts.items())),
    ]
    if record.snapshot is not None:  # what it was built from (core.snapshots)
        lines.append(f"snapshot:      {record.snapshot.data_rows} rows, {record.snapshot.bytes} bytes "
                     "(`ml-pipelines reproduce` rebuilds from it)")
        lines += [f"  {name:<16} {f.bytes:>10} bytes  sha256:{f.sha256}  {f.key}"
                  for name, f in sorted(record.snapshot.files.items())]
    for suffix in ("html", "md"):
        key = registry.card_key(record.pipeline, record.version, suffix)
        if registry.store.exists(key):
            lines.append(f"model card:    {registry.store.uri(key)}")
    return lines


def list_versions(pipeline: Annotated[str, PIPELINE]) -> None:
    def verb(registry: ModelRegistry) -> int:
        versions = registry.list_versions(pipeline)
        if not versions:
            print(f"{pipeline}: no versions")
            return 1
        print("\n".join(list_lines(registry, pipeline, versions)))
        return 0

    _run(verb)


def show(pipeline: Annotated[str, PIPELINE], version: Annotated[str, VERSION]) -> None:
    def verb(registry: ModelRegistry) -> int:
        print("\n".join(show_lines(registry, registry.get_version(pipeline, version))))
        return 0

    _run(verb)


def promote(
    pipeline: Annotated[str, PIPELINE],
    version: Annotated[str | None, typer.Argument(help="version, as `registry list` prints it (not with "
                                                        "--from-shadow)", show_default=False)] = None,
    reason: Annotated[
        str | None, typer.Option(help="why, for the alias history (default: manual promotion to ALIAS)",
                                 show_default=False)
    ] = None,
    alias: Annotated[Alias, typer.Option(help="the alias to move")] = Alias.champion,
    from_shadow: Annotated[bool, typer.Option(
        "--from-shadow", help="promote the challenger only if it beats the champion by the gate's rule on "
        "labelled production rows neither learned from")] = False,
) -> None:
    if from_shadow:
        if version is not None or alias is not Alias.champion:
            fail("--from-shadow promotes the challenger to champion: give no VERSION and no --alias")
        _run(lambda registry: promote_from_shadow(registry, pipeline))
        return
    if version is None:
        fail("give the VERSION to promote, or --from-shadow")

    def verb(registry: ModelRegistry) -> int:
        move = registry.set_alias(pipeline, alias.value, version, actor=f"cli:{getpass.getuser()}",
                                  reason=reason or f"manual promotion to {alias.value}")
        print(f"{pipeline}: {alias.value} {move.previous or '-'} -> {move.version}")
        return 0

    _run(verb)


def promote_from_shadow(registry: ModelRegistry, pipeline: str) -> int:
    """Judge the challenger on fresh production rows; promote it only when it wins (exit 1 when it does not)."""
    from ml_pipelines.cli._common import load_pipeline_spec
    from ml_pipelines.core.shadow import judge_challenger

    try:
        spec = load_pipeline_spec(pipeline)
    except ValueError as exc:
        fail(str(exc), stderr=False)
    verdict = judge_challenger(registry, spec)
    print(verdict.explain())
    if not verdict.passed:
        print(f"{pipeline}: champion stays {verdict.champion}")
        return 1
    move = registry.set_alias(pipeline, "champion", verdict.challenger, actor=f"cli:{getpass.getuser()}",
                              reason=f"promoted from shadow: {verdict.explain()}")
    print(f"{pipeline}: champion {move.previous or '-'} -> {move.version} (from shadow)")
    return 0


def rollback(pipeline: Annotated[str, PIPELINE]) -> None:
    def verb(registry: ModelRegistry) -> int:
        move = registry.rollback(pipeline, actor=f"cli:{getpass.getuser()}")
        print(f"{pipeline}: champion {move.previous} -> {move.version} (rollback)")
        return 0

    _run(verb)


def move_json(move: AliasMove) -> dict:
    return {
        "sequence": move.sequence, "alias": move.alias, "version": move.version, "previous": move.previous,
        "time": move.moved_at, "actor": move.actor, "reason": move.reason, "rollback": move.rollback,
    }


def history_lines(moves: list[AliasMove]) -> list[str]:
    lines = [f"{'seq':>5} {'time':<32} {'alias':<10} {'previous':<24}    {'version':<24} actor: reason"]
    for move in moves:
        sequence = "-" if move.sequence is None else str(move.sequence)
        kind = " (rollback)" if move.rollback else ""
        lines.append(
            f"{sequence:>5} {move.moved_at:<32} {move.alias:<10} {move.previous or '-':<24} -> "
            f"{move.version or '-':<24} {move.actor}: {move.reason}{kind}"
        )
    return lines


def history(
    pipeline: Annotated[str, PIPELINE],
    alias: Annotated[Alias | None, typer.Option(help="only this alias's moves (default: every alias)",
                                                show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON list of moves, oldest first")] = False,
) -> None:
    def verb(registry: ModelRegistry) -> int:
        moves = registry.alias_history(pipeline, alias.value if alias is not None else None)
        if as_json:
            print(json.dumps([move_json(m) for m in moves], indent=2))
            return 0
        if not moves:
            print(f"{pipeline}: no alias moves")
            return 1
        print("\n".join(history_lines(moves)))
        return 0

    _run(verb)


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
    group.command("list", help="versions, aliases, metrics, created_at")(list_versions)
    group.command("show", help="one version with its lineage")(show)
    group.command("promote", help="make a version the champion (or --alias challenger)")(promote)
    group.command("rollback", help="move the champion back to the previous one")(rollback)
    group.command("history", help="every alias move, oldest first (--json for scripts)")(history)
    group.command("gc", help="remove old versions' snapshots and artifacts (registry.retention); records stay")(
        retention.gc)
    app.add_typer(group, name="registry", help="inspect and move model versions")
