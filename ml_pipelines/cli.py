"""The `ml-pipelines` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PIPELINES_DIR = Path(__file__).resolve().parent / "defs" / "pipelines"


def _cmd_demo(args: argparse.Namespace) -> int:
    from ml_pipelines.demo import run_demo

    return run_demo(args.pipelines)


def _cmd_init(args: argparse.Namespace) -> int:
    from ml_pipelines.scaffold import write_starter_spec

    try:
        path = write_starter_spec(
            args.name,
            Path(args.source),
            args.target,
            task=args.task,
            pipelines_dir=Path(args.out) if args.out else PIPELINES_DIR,
            project_root=Path.cwd(),
            force=args.force,
        )
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}\nreview the inferred schema, then materialize `{args.name}_retrain_job`.")
    return 0


def _load_pipeline_spec(name: str):
    import yaml

    from ml_pipelines.spec import PipelineSpec

    path = PIPELINES_DIR / name / "defs.yaml"
    if not path.exists():
        raise ValueError(f"no pipeline {name!r} at {path}")
    return PipelineSpec.model_validate(yaml.safe_load(path.read_text())["attributes"])


def _cmd_land(args: argparse.Namespace) -> int:
    import os

    from ml_pipelines.core.landing import land_batch
    from ml_pipelines.settings import Settings

    os.environ.setdefault("ML_PIPELINES_HOME", str(Settings.from_env().home))
    try:
        path = land_batch(_load_pipeline_spec(args.name), drift=args.drift, rows=args.rows, seed=args.seed,
                          base_dir=PROJECT_ROOT)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"landed {path}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from ml_pipelines.settings import Settings

    local_home = lambda: Settings.from_env().home  # noqa: E731
    env = {
        **os.environ,
        "ML_PIPELINES_SERVE_PIPELINE": args.pipeline,
        "ML_PIPELINES_HOME": os.environ.get("ML_PIPELINES_HOME", str(local_home())),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    if args.version:
        env["ML_PIPELINES_SERVE_VERSION"] = args.version
    env.setdefault("BENTOML_HOME", str(Path(env["ML_PIPELINES_HOME"]) / "bentoml"))
    # uvicorn closes a keep-alive connection after 5 s idle by default, the same as httpx's and many
    # clients' pool expiry: a request sent on a connection the server is closing fails with a
    # reset. Servers keep connections longer than their clients and load balancers (60 s) do.
    command = [sys.executable, "-m", "bentoml", "serve", "ml_pipelines.serving.service:ModelService",
               "--host", args.host, "--port", str(args.port), "--timeout-keep-alive", str(args.keep_alive)]
    os.execvpe(command[0], command, env)
    return 0  # not reached


def _cmd_audit(args: argparse.Namespace) -> int:
    from ml_pipelines.serving.audit_cli import print_audit

    return print_audit(args.pipeline, since=args.since, limit=args.limit)


def _cmd_trace(args: argparse.Namespace) -> int:
    import os

    from ml_pipelines.core.layout import registry_for
    from ml_pipelines.settings import Settings

    local_home = lambda: Settings.from_env().home  # noqa: E731
    registry_from_env = lambda: registry_for(Settings.from_env())  # noqa: E731
    from ml_pipelines.trace import print_trace

    home = Path(os.environ.get("ML_PIPELINES_HOME", str(local_home())))
    return print_trace(args.request_id, home, registry_from_env())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-pipelines", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="materialize every demo pipeline end to end and print a summary")
    demo.add_argument("--pipelines", nargs="*", help="only these pipelines (default: all)")
    demo.set_defaults(func=_cmd_demo)

    init = commands.add_parser("init", help="write a starter spec whose schema is inferred from a CSV")
    init.add_argument("name", help="pipeline name ([a-z][a-z0-9_]*)")
    init.add_argument("--from", dest="source", required=True, help="CSV file to infer from")
    init.add_argument("--target", required=True, help="column to predict")
    init.add_argument("--task", choices=["auto", "classification", "regression"], default="auto")
    init.add_argument("--out", help=f"pipelines folder (default: {PIPELINES_DIR})")
    init.add_argument("--force", action="store_true", help="overwrite an existing spec")
    init.set_defaults(func=_cmd_init)

    land = commands.add_parser("land", help="write a production batch into a pipeline's landing folder")
    land.add_argument("name")
    land.add_argument("--drift", type=float, default=0.0, help="0 = like training data, 1 = strongly drifted")
    land.add_argument("--rows", type=int, default=2000)
    land.add_argument("--seed", type=int, default=None)
    land.set_defaults(func=_cmd_land)

    serve = commands.add_parser("serve", help="serve a pipeline's champion (or --version) with bentoml serve")
    serve.add_argument("pipeline")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--version", help="serve this version instead of following the champion")
    serve.add_argument("--keep-alive", type=int, default=75, metavar="SECONDS",
                       help="close idle client connections after this long (default: 75)")
    serve.set_defaults(func=_cmd_serve)

    audit = commands.add_parser("audit", help="print the audit trail, one line per prediction")
    audit.add_argument("pipeline")
    audit.add_argument("--since", help="ISO date or time (UTC)")
    audit.add_argument("--limit", type=int, default=None)
    audit.set_defaults(func=_cmd_audit)

    trace = commands.add_parser("trace", help="trace a prediction back to its model, run, data and gate")
    trace.add_argument("request_id")
    trace.set_defaults(func=_cmd_trace)

    from ml_pipelines import registry_cli

    registry_cli.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
