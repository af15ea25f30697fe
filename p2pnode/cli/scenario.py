"""``p2pnode scenario run FILE.toml``: run one fault or attack scenario and check the invariants.
``p2pnode scenario bench [FILE.toml ...]``: run several (default: all) one after another, one table.

Exit codes: 0 every invariant held; 1 a violation was found (also when the scenario expects one:
``[expect] violation = true`` marks a scenario built to be caught); 2 a bad scenario file or a cluster
that could not start. The report (``report.json``, ``report.txt``) is written into the directory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


def add_scenario_args(subparsers: Any) -> None:
    """Register ``scenario run`` on the top-level subparsers."""
    sc = subparsers.add_parser("scenario", help="run fault and attack scenarios and check the invariants")
    sc_sub = sc.add_subparsers(dest="scenario_command", metavar="ACTION", required=True)
    p = sc_sub.add_parser("run", help="run one scenario file (configs/scenarios/*.toml)")
    p.add_argument("file", type=Path, metavar="FILE.toml", help="the scenario")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="cluster directory to create (default: a temporary one, removed after a passing run)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary cluster directory")
    p.add_argument(
        "--no-shielded",
        action="store_true",
        help="no shielded pool in the genesis (the scenarios do not use it; needs no Node.js toolchain)",
    )
    from p2pnode.zk.paths import add_zk_path_args

    add_zk_path_args(p)
    p.set_defaults(handler=cmd_scenario_run)

    b = sc_sub.add_parser(
        "bench", help="run scenario files one after another and print one table (default: all of them)"
    )
    b.add_argument(
        "files",
        type=Path,
        nargs="*",
        metavar="FILE.toml",
        help="scenarios to run (default: every configs/scenarios/*.toml)",
    )
    b.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    b.add_argument("--no-shielded", action="store_true", help="no shielded pool in the genesis")
    add_zk_path_args(b)
    b.set_defaults(handler=cmd_scenario_bench)


def cmd_scenario_run(args: argparse.Namespace) -> int:
    from p2pnode.cli.failures import run_terminable
    from p2pnode.scenario.runner import exit_code, render_report, run_scenario
    from p2pnode.scenario.spec import load_scenario
    from p2pnode.zk.paths import zk_paths_from_args

    scenario = load_scenario(args.file)  # a bad file fails here, as one line, before anything starts
    temporary = args.dir is None
    directory = Path(tempfile.mkdtemp(prefix=f"p2pnode-scenario-{scenario.name}-")) if temporary else args.dir
    shielded = not args.no_shielded
    zk = zk_paths_from_args(args) if shielded else None
    report = run_terminable(lambda: run_scenario(scenario, directory, shielded=shielded, zk=zk))
    code = exit_code(report)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render_report(report))
    if temporary and code == 0 and not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f"report: {Path(directory) / 'report.txt'}", file=sys.stderr)
    return code


def cmd_scenario_bench(args: argparse.Namespace) -> int:
    """Exit 0 when every scenario went as expected (built-to-fail ones caught), 1 otherwise, 2 for a
    bad file (checked before anything starts)."""
    from p2pnode.cli.failures import run_terminable
    from p2pnode.scenario.bench import default_files, render_bench, run_bench
    from p2pnode.scenario.spec import load_scenario
    from p2pnode.zk.paths import zk_paths_from_args

    files = list(args.files) or default_files()
    if not files:
        print("no scenario files", file=sys.stderr)
        return 2
    for f in files:
        load_scenario(f)  # every file must parse before the first cluster starts
    shielded = not args.no_shielded
    zk = zk_paths_from_args(args) if shielded else None

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def on_row(row: Any) -> None:
        state = "passed" if row.passed else "FAILED"
        print(f"== {row.scenario}: {state} in {row.wall_s:.0f}s", file=sys.stderr, flush=True)

    rows = run_terminable(lambda: run_bench(files, progress, shielded=shielded, zk=zk, on_row=on_row))
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        print(render_bench(rows))
    return 0 if all(r.passed for r in rows) else 1
