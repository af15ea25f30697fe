"""``p2pnode``: the command line (DESIGN.md §8). Scripts and tests rely on these names.

Exit codes: 0 success; 1 the operation was carried out and failed (e.g. a refused payment; decided by
the command); 2 bad usage, bad configuration or an unreachable node; 130 interrupted. An error is
printed as one line ``p2pnode: error: <message>`` on stderr, never as a traceback; a cluster failure
adds the tails of the failing node's logs on the lines after it.

Commands that live in other layers (``run``, ``pay``, ``bench``, ``latency``) are imported only when
they are invoked, so ``p2pnode status`` does not pay for the node driver or the plotting tools.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from p2pnode.errors import P2PNodeError

PROG = "p2pnode"
Handler = Callable[[argparse.Namespace], int]


def _cmd_run(args: argparse.Namespace) -> int:
    from p2pnode.config import load_config

    # Load once here so that a broken config fails as one line before the driver is imported.
    load_config(args.config)
    from p2pnode.net.main import main_run

    return main_run(args.config)


def _cmd_testnet(args: argparse.Namespace) -> int:
    from p2pnode.cli.testnet import cmd_testnet

    return cmd_testnet(args)


def _cmd_up(args: argparse.Namespace) -> int:
    from p2pnode.cli.cluster import cmd_up

    return cmd_up(args)


def _cmd_down(args: argparse.Namespace) -> int:
    from p2pnode.cli.cluster import cmd_down

    return cmd_down(args)


def _cmd_status(args: argparse.Namespace) -> int:
    from p2pnode.cli.status import cmd_status

    return cmd_status(args)


def _cmd_pay(args: argparse.Namespace) -> int:
    from p2pnode.cli.pay import cmd_pay

    # `from` is a keyword: the payer is readable as args.from_ or getattr(args, "from").
    setattr(args, "from", args.from_)
    return cmd_pay(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from p2pnode.tools.bench import cmd_bench

    return cmd_bench(args)


def _cmd_latency(args: argparse.Namespace) -> int:
    from p2pnode.tools.latency import cmd_latency

    return cmd_latency(args)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PROG)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _first_command(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser. The options of ``bench`` and ``latency`` belong to their modules and are only
    added when ``argv`` names that command (so that other commands never import them)."""
    from p2pnode.cli.cluster import add_down_args, add_up_args
    from p2pnode.cli.status import add_status_args
    from p2pnode.cli.testnet import add_testnet_args

    parser = argparse.ArgumentParser(
        prog=PROG, description="A peer-to-peer network of settlement nodes: local clusters, payments, tools."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("testnet", help="write keys, genesis and one config per node for a local cluster")
    add_testnet_args(p)
    p.set_defaults(handler=_cmd_testnet)

    p = sub.add_parser("run", help="run one node in the foreground")
    p.add_argument("--config", type=Path, required=True, metavar="NODE.toml", help="the node's config")
    p.set_defaults(handler=_cmd_run)

    net = sub.add_parser("net", help="start or stop a local cluster")
    net_sub = net.add_subparsers(dest="net_command", metavar="ACTION", required=True)
    p = net_sub.add_parser("up", help="start a local cluster (creating it if needed) and wait until ready")
    add_up_args(p)
    p.set_defaults(handler=_cmd_up)
    p = net_sub.add_parser("down", help="stop every node of a local cluster")
    add_down_args(p)
    p.set_defaults(handler=_cmd_down)

    p = sub.add_parser("status", help="print one node's status: peers, applied count, state root")
    add_status_args(p)
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser("pay", help="submit a payment and return once it is settled")
    p.add_argument("--node", required=True, metavar="HOST:PORT", help="the node to submit to")
    p.add_argument("--from", dest="from_", required=True, metavar="KEYFILE", help="payer's account file")
    p.add_argument("--to", required=True, metavar="ADDR_OR_ACCOUNTFILE", help="payee: hex address or file")
    p.add_argument("--amount", type=int, required=True, metavar="X", help="amount, in base units")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for settlement (default 30)"
    )
    p.set_defaults(handler=_cmd_pay)

    from p2pnode.cli.shielded import add_shielded_args
    from p2pnode.cli.zk import add_zk_args

    add_shielded_args(sub)
    add_zk_args(sub)

    command = _first_command(argv)
    p = sub.add_parser("bench", help="load a local cluster with payments and measure")
    if command == "bench":
        from p2pnode.tools.bench import add_bench_args

        add_bench_args(p)
    p.set_defaults(handler=_cmd_bench)

    from p2pnode.cli.scenario import add_scenario_args

    add_scenario_args(sub)

    p = sub.add_parser("latency", help="per-stage settlement latency from node logs")
    if command == "latency":
        from p2pnode.tools.latency import add_latency_args

        add_latency_args(p)
    p.set_defaults(handler=_cmd_latency)
    return parser


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, P2PNodeError):
        text = exc.strerror or str(exc) or type(exc).__name__
        if exc.filename is not None:
            text = f"{exc.filename}: {text}"
        # trio's "all attempts to connect to H:P failed" keeps the reasons in its cause.
        causes = _leaves(exc.__cause__) if exc.__cause__ is not None else []
        reasons = sorted({c.strerror for c in causes if isinstance(c, OSError) and c.strerror})
        if reasons:
            text = f"{text}: {'; '.join(reasons)}"
        return text
    return str(exc) or type(exc).__name__


def _report(exc: BaseException) -> None:
    lines = _describe(exc).splitlines() or [type(exc).__name__]
    print(f"{PROG}: error: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(line, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (the console script passes it to ``sys.exit``)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            parser = build_parser(args_list)
            args = parser.parse_args(args_list)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2, already printed)
            return exc.code if isinstance(exc.code, int) else 2
        handler: Handler = args.handler
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except (P2PNodeError, OSError) as exc:
        _report(exc)
        return 2
    except BaseExceptionGroup as group:
        # Errors raised inside a Trio nursery arrive grouped; report them like bare ones.
        leaves = _leaves(group)
        if any(isinstance(e, KeyboardInterrupt) for e in leaves):
            return 130
        if leaves and all(isinstance(e, P2PNodeError | OSError) for e in leaves):
            _report(leaves[0])
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
