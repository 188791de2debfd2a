"""The ``ftkit`` command: run notebooks in batch (whole or in shards), merge shards, rebuild
reports, list profiles.

Each subcommand is one entry of :data:`COMMANDS`: a help line, a function that adds its
arguments to an argparse parser, and a handler that receives the parsed arguments and returns
the exit status. Adding a subcommand means writing those two functions and one entry.
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import textwrap
from pathlib import Path
from typing import Callable, NamedTuple

import yaml

from ftkit.batch.merge import merge_runs
from ftkit.batch.report import load_run, write_report
from ftkit.batch.runner import run_batch
from ftkit.core.profiles import list_profiles, load_profile, profiles_dir

DEFAULT_PROFILE = "workshop"


class Command(NamedTuple):
    """One subcommand of ``ftkit``."""
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


# ----------------------------------------------------------------- ftkit run


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ftkit run``."""
    parser.add_argument("--profile", default=None,
                        help=f"parameter profile: smoke, workshop or gpu (default "
                             f"{DEFAULT_PROFILE}; when resuming a --run-id, that run's)")
    parser.add_argument("--only", metavar="PATTERN",
                        help="run only notebooks whose stem matches: a glob (03*) or a "
                             "substring (setup)")
    parser.add_argument("--resume", action="store_true",
                        help="rerun only the notebooks that did not pass in the latest run of "
                             "the profile (or in --run-id)")
    parser.add_argument("--run-id", metavar="ID", help="name of the run directory")
    parser.add_argument("--shard", metavar="I/N",
                        help="run only the I-th of N shares of the selected notebooks (one "
                             "per machine or scheduler job); join the run folders with "
                             "'ftkit merge'")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="run N notebooks side by side, each limited to cores/N threads "
                             "(default 1)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="set a parameter in every selected notebook that declares it "
                             "(VALUE read as YAML: 3, 1e-4, [2, 4], true); wins over the "
                             "profile; repeatable")
    parser.add_argument("--notebooks-dir", type=Path, default=Path("notebooks"),
                        help="folder of the notebooks (default: notebooks)")
    parser.add_argument("--runs-dir", type=Path, default=Path("papermill_runs"),
                        help="folder for run directories (default: papermill_runs)")


def _run(args: argparse.Namespace) -> int:
    """Run the batch; exit status 1 if any notebook did not pass."""
    profile = args.profile or _resumed_profile(args) or DEFAULT_PROFILE
    overrides = {name: yaml.safe_load(value) for name, value in args.parameter}
    result = run_batch(profile, only=args.only, resume=args.resume, run_id=args.run_id,
                       notebooks_dir=args.notebooks_dir, runs_dir=args.runs_dir,
                       overrides=overrides, shard=args.shard, jobs=args.jobs)
    passed = sum(r.status == "passed" for r in result.results)
    print(f"{passed}/{len(result.results)} notebooks passed")
    print(f"HTML report: {result.report_html.resolve()}")
    print(f"Report: {result.report.resolve()}")
    return 0 if result.ok else 1


def _resumed_profile(args: argparse.Namespace) -> str | None:
    """The profile of the run named by ``--resume --run-id``, so it need not be repeated."""
    if not (args.resume and args.run_id):
        return None
    try:
        return load_run(args.runs_dir / args.run_id).get("profile")
    except ValueError:
        return None  # run_batch explains the missing run


# -------------------------------------------------------------- ftkit report


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ftkit report``."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="a run directory, e.g. papermill_runs/smoke-20250101-120000")


def _report(args: argparse.Namespace) -> int:
    """Rebuild report.md and report.html from run.json and the metrics files."""
    md, html_path = write_report(args.run_dir)
    print(f"HTML report: {html_path.resolve()}")
    print(f"Report: {md.resolve()}")
    return 0


# --------------------------------------------------------------- ftkit merge


def _add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ftkit merge``."""
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="the run folders of the shards (ftkit run --shard i/n)")
    parser.add_argument("--into", type=Path, required=True, metavar="DIR",
                        help="the new run folder that receives them all")


def _merge(args: argparse.Namespace) -> int:
    """Join the shards' run folders into one run and write its report."""
    folder = merge_runs(args.runs, args.into)
    print(f"merged {len(args.runs)} runs into {folder}")
    print(f"HTML report: {(folder / 'report.html').resolve()}")
    print(f"Report: {(folder / 'report.md').resolve()}")
    return 0


# ------------------------------------------------------------ ftkit profiles


def _add_no_arguments(parser: argparse.ArgumentParser) -> None:
    """For subcommands without options."""


def _profiles(args: argparse.Namespace) -> int:
    """Print each profile with its limits and description."""
    names = list_profiles()
    if not names:
        print(f"no profiles in {profiles_dir()}")
        return 1
    for name in names:
        prof = load_profile(name)
        print(f"{name}  ({prof.timeout_s:g} s per notebook, {prof.cell_timeout_s:g} s per cell)")
        print(textwrap.fill(prof.description, width=88, initial_indent="    ",
                            subsequent_indent="    "))
    return 0


# ---------------------------------------------------------------- ftkit packs


def _add_packs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["status", "fetch", "verify"],
                        help="status: show the cache; fetch: download, verify and convert; "
                             "verify: fetch, then run each pack's behaviour check")
    parser.add_argument("names", nargs="*", help="pack names (default: all)")


def _packs(args: argparse.Namespace) -> int:
    """Show, build or check the offline model packs."""
    from ftkit.batch import packcheck
    from ftkit.models import packs

    names = args.names or list(packs.PACKS)
    if args.action == "fetch":
        for name in names:
            print(f"{name}: {packs.ensure(name)}")
    if args.action == "verify":
        rows = packcheck.run_checks(names)
        for row in rows:
            print(f"{'ok  ' if row['ok'] else 'FAIL'} {row['pack']}: {row['detail']}")
        return 0 if all(r["ok"] for r in rows) else 1
    print(f"cache: {packs.cache_root()}")
    for row in packs.status_rows():
        if row["pack"] in names:
            print(f"  {row['pack']:<24} {row['state']:<10} {row['size_mb']:>7.1f} MB  "
                  f"{row['description']}")
    return 0


# ---------------------------------------------------------------- ftkit serve


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an exported model folder (config.json + safetensors)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="listen address (default 127.0.0.1: this machine only)")
    parser.add_argument("--continuous-batching", action="store_true",
                        help="transformers' continuous batching (paged attention)")
    parser.add_argument("--key", default="",
                        help="API key clients must send (default: $FTKIT_API_KEY or a new one)")
    parser.add_argument("--adapter", default="",
                        help="a LoRA adapter export served on top of MODEL (the base), unmerged")
    parser.add_argument("--weights", default="auto", choices=("auto", "int8", "int4"),
                        help="int8/int4: torchao weight-only quantisation (default: as saved)")
    parser.add_argument("--engine", default="transformers", choices=("transformers", "vllm",
                                                                     "auto"),
                        help="transformers serve (default), vLLM's server (a CUDA GPU with "
                        "vllm installed), or auto")


def _serve(args: argparse.Namespace) -> int:
    """Serve a model behind the OpenAI-compatible API until interrupted."""
    from ftkit.deploy import engines, server

    server.check_model_dir(args.model)
    if args.adapter:
        server.check_adapter_dir(args.adapter)
    engine = engines.resolve(args.engine)
    engines.check_weights(engine, args.weights)
    key = args.key or os.environ.get(server.KEY_ENV) or f"ftkit-{secrets.token_urlsafe(24)}"
    os.environ[server.KEY_ENV if engine == "transformers" else engines.VLLM_KEY_ENV] = key
    port = args.port or server.free_port(args.host)
    named = engines.ADAPTER_NAME if engine == "vllm" and args.adapter else args.model
    print(f"base_url: http://{args.host}:{port}/v1  ({engine})")
    print(f"API key:  {key}  (header 'Authorization: Bearer <key>'; openai.OpenAI(api_key=...))")
    print(f"model:    {named}", flush=True)
    if engine == "vllm":
        return engines.main(engines.vllm_args(args.model, args.host, port,
                                              adapter=args.adapter or None))
    argv = [args.model, "--host", args.host, "--port", str(port), "--weights", args.weights]
    argv += ["--adapter", args.adapter] if args.adapter else []
    return server.main(argv + (["--continuous-batching"] if args.continuous_batching else []))


# ---------------------------------------------------------------- registry

COMMANDS: dict[str, Command] = {
    "run": Command("run the notebooks with papermill and write a report", _add_run_arguments,
                   _run),
    "report": Command("rebuild the report of a run directory", _add_report_arguments, _report),
    "merge": Command("join the run folders of a sharded batch into one run and report",
                     _add_merge_arguments, _merge),
    "profiles": Command("list the parameter profiles", _add_no_arguments, _profiles),
    "packs": Command("show, fetch or verify the offline model packs", _add_packs_arguments,
                     _packs),
    "serve": Command("serve an exported model behind an OpenAI-compatible API (127.0.0.1, "
                     "API key)", _add_serve_arguments, _serve),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per entry of COMMANDS."""
    parser = argparse.ArgumentParser(
        prog="ftkit", description="Notebook-first fine-tuning kit: batch runs and reports.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        child = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(child)
        child.set_defaults(handler=command.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ftkit`` command; returns the exit status.

    Expected problems (unknown profile, no notebooks, nothing to resume) print one line to
    stderr and return 2 instead of a traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as exc:
        print(f"ftkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ftkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
