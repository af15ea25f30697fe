"""``p2pnode``: the command line (DESIGN.md §8). Scripts and tests rely on these names.

Exit codes: 0 success; 1 the operation was carried out and refused or failed (a refused payment,
insufficient funds or notes, a blocked account slot, a payment not settled in time, an account busy
with another command; :class:`p2pnode.cli.failures.Refused`); 2 bad usage, bad configuration, an
unreachable or silent node or a lost connection; 130 interrupted. An error is printed as one line
``p2pnode: error: <message>`` on stderr, never as a traceback; a cluster failure adds the tails of the
failing node's logs on the lines after it. With ``--json``, a failing command also prints its JSON
object on stdout (``{"settled": false, "error": ...}`` for payments, ``{"error": ...}`` otherwise).

Commands that live in other layers (``run``, ``pay``, ``bench``, ``latency``) are imported only when
they are invoked, so ``p2pnode status`` does not pay for the node driver or the plotting tools.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from p2pnode.errors import P2PNodeError, Terminated

PROG = "p2pnode"
Handler = Callable[[argparse.Namespace], int]


def _cmd_run(args: argparse.Namespace) -> int:
    from p2pnode.config import load_config

    # Load once here so that a broken config fails as one line before the driver is imported.
    cfg = load_config(args.config)
    hooks = None
    if cfg.testing.enabled:  # test-only faults come from the testing layer, never from the driver
        from p2pnode.testing.faults import node_faults

        hooks = node_faults(cfg)
    from p2pnode.net.main import main_run

    return main_run(args.config, hooks)


def _cmd_testnet(args: argparse.Namespace) -> int:
    from p2pnode.cli.testnet import cmd_testnet

    return cmd_testnet(args)


def _cmd_up(args: argparse.Namespace) -> int:
    from p2pnode.cli.cluster import cmd_up

    return cmd_up(args)


def _cmd_down(args: argparse.Namespace) -> int:
    from p2pnode.cli.cluster import cmd_down

    return cmd_down(args)


def _cmd_net_status(args: argparse.Namespace) -> int:
    from p2pnode.cli.cluster import cmd_status

    return cmd_status(args)


def _cmd_status(args: argparse.Namespace) -> int:
    from p2pnode.cli.status import cmd_status

    return cmd_status(args)


def _cmd_pay(args: argparse.Namespace) -> int:
    from p2pnode.cli.pay import cmd_pay

    # `from` is a keyword: the payer is readable as args.from_ or getattr(args, "from").
    setattr(args, "from", args.from_)
    return cmd_pay(args)


def _cmd_balance(args: argparse.Namespace) -> int:
    from p2pnode.cli.balance import cmd_balance

    return cmd_balance(args)


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("p2pnode")
    except PackageNotFoundError:
        import p2pnode

        return str(getattr(p2pnode, "__version__", "unknown"))


def _cmd_bench(args: argparse.Namespace) -> int:
    from p2pnode.cli.bench import cmd_bench

    return cmd_bench(args)


def _cmd_latency(args: argparse.Namespace) -> int:
    from p2pnode.cli.latency import cmd_latency

    return cmd_latency(args)


def _cmd_sim(args: argparse.Namespace) -> int:
    from p2pnode.cli.sim import cmd_sim

    return cmd_sim(args)


def _first_command(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser. The options of ``bench`` and ``latency`` belong to their modules and are only
    added when ``argv`` names that command (so that other commands never import them)."""
    from p2pnode.cli.cluster import add_down_args, add_up_args
    from p2pnode.cli.cluster import add_status_args as add_net_status_args
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
    p = net_sub.add_parser("status", help="every node of a local cluster: pid, memory, peers, applied, root")
    add_net_status_args(p)
    p.set_defaults(handler=_cmd_net_status)

    p = sub.add_parser("status", help="print one node's status: peers, applied count, state root")
    add_status_args(p)
    p.set_defaults(handler=_cmd_status)

    from p2pnode.cli.balance import add_balance_args

    p = sub.add_parser("balance", help="print an account's balance and next seq")
    add_balance_args(p)
    p.set_defaults(handler=_cmd_balance)

    p = sub.add_parser("pay", help="submit a payment and return once it is settled")
    p.add_argument("--node", required=True, metavar="HOST:PORT", help="the node to submit to")
    p.add_argument("--from", dest="from_", required=True, metavar="KEYFILE", help="payer's account file")
    p.add_argument("--to", required=True, metavar="ADDR_OR_ACCOUNTFILE", help="payee: hex address or file")
    p.add_argument("--amount", type=int, required=True, metavar="X", help="amount, in base units")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds the whole command may take, waiting for the account lock and settlement included "
        "(default 30)",
    )
    p.set_defaults(handler=_cmd_pay, failure_doc={"settled": False})

    from p2pnode.cli.shielded import add_shielded_args
    from p2pnode.cli.zk import add_zk_args

    add_shielded_args(sub)
    add_zk_args(sub)

    command = _first_command(argv)
    p = sub.add_parser("bench", help="load a local cluster with payments and measure")
    if command == "bench":
        from p2pnode.cli.bench import add_bench_args

        add_bench_args(p)
    p.set_defaults(handler=_cmd_bench)

    from p2pnode.cli.scenario import add_scenario_args

    add_scenario_args(sub)

    p = sub.add_parser("latency", help="per-stage settlement latency from node logs")
    if command == "latency":
        from p2pnode.cli.latency import add_latency_args

        add_latency_args(p)
    p.set_defaults(handler=_cmd_latency)

    p = sub.add_parser("sim", help="simulate a network: every node's real core on a virtual clock")
    if command == "sim":
        from p2pnode.cli.sim import add_sim_args

        add_sim_args(p)
    p.set_defaults(handler=_cmd_sim)
    return parser


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _trio_connection_error(exc: BaseException) -> bool:
    """A trio stream error that escaped the client (trio is only looked at if a command loaded it)."""
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError)


def _trio_timeout(exc: BaseException) -> bool:
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(exc, trio.TooSlowError)


def _expected(exc: BaseException) -> bool:
    """An error the command line reports as one line (anything else is a bug and keeps its traceback)."""
    return isinstance(exc, P2PNodeError | OSError) or _trio_connection_error(exc) or _trio_timeout(exc)


def _describe(exc: BaseException) -> str:
    if _trio_connection_error(exc):
        cause = exc.__cause__ or exc.__context__
        detail = (cause.strerror if isinstance(cause, OSError) else None) or str(cause or exc) or "closed"
        return f"connection to the node lost: {detail}"
    if _trio_timeout(exc):
        return "timed out"
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


def _exit_code(exc: BaseException) -> int:
    code = getattr(exc, "exit_code", 2)
    return code if isinstance(code, int) else 2


def _report(exc: BaseException, args: argparse.Namespace | None = None) -> int:
    """Print ``exc`` (one line on stderr; with --json also the command's failure object on stdout)
    and return its exit code."""
    lines = _describe(exc).splitlines() or [type(exc).__name__]
    if args is not None and getattr(args, "json", False) is True:
        doc: dict[str, object] = {**getattr(args, "failure_doc", {}), "error": lines[0]}
        facts = getattr(exc, "facts", None)
        if isinstance(facts, dict):
            doc.update(facts)
        doc["exit_code"] = _exit_code(exc)
        print(json.dumps(doc), flush=True)
    print(f"{PROG}: error: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(line, file=sys.stderr)
    return _exit_code(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (the console script passes it to ``sys.exit``)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | None = None
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
    except Terminated:
        return 143
    except BaseExceptionGroup as group:
        # Errors raised inside a Trio nursery arrive grouped; report them like bare ones.
        leaves = _leaves(group)
        if any(isinstance(e, KeyboardInterrupt) for e in leaves):
            return 130
        if leaves and all(_expected(e) for e in leaves):
            return _report(leaves[0], args)
        raise
    except Exception as exc:
        if _expected(exc):
            return _report(exc, args)
        raise


if __name__ == "__main__":
    sys.exit(main())
