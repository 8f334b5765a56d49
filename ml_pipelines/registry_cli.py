"""`ml-pipelines registry ...`: list, show, promote and roll back versions."""

from __future__ import annotations

import argparse
import getpass
import json

from ml_pipelines.core.registry import ModelRegistry, RegistryError


def _registry() -> ModelRegistry:
    from ml_pipelines.core.layout import registry_for
    from ml_pipelines.settings import Settings

    return registry_for(Settings.from_env())


def _aliases_by_version(registry: ModelRegistry, pipeline: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for alias, version in registry.aliases(pipeline).items():
        found.setdefault(version, []).append(alias)
    return found


def cmd_list(registry: ModelRegistry, args: argparse.Namespace) -> int:
    versions = registry.list_versions(args.pipeline)
    if not versions:
        print(f"{args.pipeline}: no versions")
        return 1
    aliases = _aliases_by_version(registry, args.pipeline)
    print(f"{'version':<24} {'created_at':<26} {'model':<12} {'aliases':<12} metrics")
    for record in versions:
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted(record.metrics.items()))
        print(
            f"{record.version:<24} {record.created_at[:25]:<26} {record.model_name:<12} "
            f"{','.join(aliases.get(record.version, [])) or '-':<12} {metrics}"
        )
    return 0


def cmd_show(registry: ModelRegistry, args: argparse.Namespace) -> int:
    record = registry.get_version(args.pipeline, args.version)
    aliases = _aliases_by_version(registry, args.pipeline).get(record.version, [])
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
    for suffix in ("html", "md"):
        key = registry.card_key(record.pipeline, record.version, suffix)
        if registry.store.exists(key):
            lines.append(f"model card:    {registry.store.uri(key)}")
    print("\n".join(lines))
    return 0


def cmd_promote(registry: ModelRegistry, args: argparse.Namespace) -> int:
    move = registry.set_alias(
        args.pipeline, args.alias, args.version, actor=f"cli:{getpass.getuser()}",
        reason=args.reason or f"manual promotion to {args.alias}",
    )
    print(f"{args.pipeline}: {args.alias} {move.previous or '-'} -> {move.version}")
    return 0


def cmd_rollback(registry: ModelRegistry, args: argparse.Namespace) -> int:
    move = registry.rollback(args.pipeline, actor=f"cli:{getpass.getuser()}")
    print(f"{args.pipeline}: champion {move.previous} -> {move.version} (rollback)")
    return 0


def add_parser(commands) -> None:
    registry = commands.add_parser("registry", help="inspect and move model versions")
    verbs = registry.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="versions, aliases, metrics, created_at")
    listing.add_argument("pipeline")
    listing.set_defaults(registry_func=cmd_list)
    show = verbs.add_parser("show", help="one version with its lineage")
    show.add_argument("pipeline")
    show.add_argument("version")
    show.set_defaults(registry_func=cmd_show)
    promote = verbs.add_parser("promote", help="make a version the champion")
    promote.add_argument("pipeline")
    promote.add_argument("version")
    promote.add_argument("--reason")
    promote.add_argument("--alias", choices=["champion", "challenger"], default="champion")
    promote.set_defaults(registry_func=cmd_promote)
    rollback = verbs.add_parser("rollback", help="move the champion back to the previous one")
    rollback.add_argument("pipeline")
    rollback.set_defaults(registry_func=cmd_rollback)
    registry.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return args.registry_func(_registry(), args)
    except RegistryError as exc:
        print(f"error: {exc}")
        return 2
