"""``p2pnode sim calibrate``: measure the simulator's cost table on this machine.

Each figure is the median of repeated samples, taken in this process:

- crypto: Schnorr and Ed25519 in thread CPU time (:func:`p2pnode.tools.bench_cost.measure_crypto`), and
  Schnorr per proof in a batch of 16 (:func:`p2pnode.crypto.schnorr_batch_verify`);
- the driver's per-frame and per-message work: the node's own :class:`~p2pnode.net.conn.FramedStream` on a
  loopback TCP connection under Trio, each message handed through a memory channel to a writer task as the
  peer writer does, process CPU time per frame; encode and decode are timed apart (per message), the rest
  is split evenly between sending and receiving a frame;
- a log line: a structlog JSON line written to a file, as a node writes its log;
- a commit: :class:`~p2pnode.store.SqliteStore` in a temporary directory behind the node's
  :class:`~p2pnode.store.thread.StoreThread`, awaited from a Trio loop, wall time (the store thread
  waits on fsync, not on the CPU): back to back with 1 and with 32 writes, and after 50 ms pauses
  (``commit_idle``: the first fsync after a pause is two to three times slower on this machine's disk);
- the core's handlers: a small simulation (4 validators, 4 full nodes, LAN) with every handler call
  timed in thread CPU time, crypto excluded (it is charged on its own); the spread of those timings
  (ln(p90/p50) / 1.28, the median over kinds) is the service-time spread ``service_sigma``.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from p2pnode.core.effects import PersistLock
from p2pnode.crypto import SpendingKey, hash256, schnorr_batch_verify
from p2pnode.net.linkmodel import profile_from_dict
from p2pnode.sim.costs import HANDLERS, CostTable
from p2pnode.sim.engine import SimSpec, Simulation
from p2pnode.tools.bench_cost import cpu_samples, measure_crypto

Progress = Callable[[str], None]

LAN = profile_from_dict(
    {"name": "lan", "regions": ["lan"], "delay_ms": {"lan": [0.05]}, "source": "loopback, for calibration"}
)


def _log_spread(values: list[float]) -> float:
    """The log standard deviation of a lognormal with the same p90 / p50 as ``values`` (sorted):
    p90 / p50 = exp(1.2816 sigma)."""
    median = values[len(values) // 2]
    return max(0.0, math.log(values[int(len(values) * 0.9)] / median) / 1.2816) if median > 0 else 0.0


def _schnorr_batch(n: int = 16, runs: int = 7) -> float:
    keys = [SpendingKey.generate() for _ in range(n)]
    items = []
    for i, k in enumerate(keys):
        m = hash256(b"p2pnode/sim/calibrate", bytes([i]))
        items.append((k.public, m, k.prove(m)))
    return cpu_samples(lambda: schnorr_batch_verify(items), runs).median / n


def _frames(count: int = 4000) -> tuple[float, float, float]:
    """(CPU per frame sent and received, encode per message, decode per message), seconds."""
    import trio

    from p2pnode.net.conn import FramedStream
    from p2pnode.wire.messages import Gossip, decode

    msg = Gossip(data=bytes(600), hops=1)
    raw = msg.encode()
    encode = _per_call(msg.encode, 5000)
    dec = _per_call(lambda: decode(raw), 5000)

    async def main() -> float:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        got = trio.Event()

        async def serve(stream: trio.SocketStream) -> None:
            conn = FramedStream(stream, 1 << 20)
            for _ in range(count):
                await conn.receive()
            got.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, serve, listeners)
            client = FramedStream(await trio.open_tcp_stream("127.0.0.1", port), 1 << 20)
            send, recv = trio.open_memory_channel[Gossip](64)

            async def writer() -> None:
                async for m in recv:
                    await client.send(m)

            nursery.start_soon(writer)
            t = time.process_time()
            for _ in range(count):
                await send.send(msg)
            await got.wait()
            spent = time.process_time() - t
            nursery.cancel_scope.cancel()
        return spent / count

    per_frame = statistics.median(trio.run(main) for _ in range(3))
    return per_frame, encode, dec


def _per_call(fn: Callable[[], object], n: int) -> float:
    t = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - t) / n


def _log_line(n: int = 5000) -> float:
    import structlog

    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "node.log").open("w", encoding="utf-8") as sink:
        log = structlog.wrap_logger(
            structlog.PrintLogger(sink),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(key="ts_ns", fmt=None),
                structlog.processors.JSONRenderer(),
            ],
        ).bind(node="node-0", node_id="0" * 16)
        tx = "ab" * 32
        return _per_call(lambda: log.info("certificate_received", tx=tx, hops=2, peer="0" * 16), n)


def _commits() -> tuple[float, float, float, float]:
    """(commit, per write, spread, commit after an idle pause): commits handed to the store thread
    from a Trio loop and awaited, as the node's writer does, in wall time."""
    import trio

    from p2pnode.store import SqliteStore
    from p2pnode.store.thread import StoreThread

    chain = hash256(b"p2pnode/sim/calibrate", b"chain")
    counter = iter(range(10**9))

    def lock() -> PersistLock:
        i = next(counter)
        d = hash256(b"p2pnode/sim/calibrate", i.to_bytes(8, "big"))
        return PersistLock(keys=((d[:20], i),), digest=d, order=bytes(300))  # type: ignore[arg-type]

    async def timed(thread: StoreThread, n: int, writes: int, pause: float) -> list[float]:
        samples = []
        for _ in range(n):
            if pause:
                await trio.sleep(pause)
            batch = [lock() for _ in range(writes)]
            t = time.perf_counter()
            await thread.commit(batch)
            samples.append(time.perf_counter() - t)
        return sorted(samples)

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "node.sqlite", chain)

        async def main() -> tuple[list[float], list[float], list[float]]:
            thread = StoreThread(store)
            try:
                singles = await timed(thread, 60, 1, 0.0)
                many = await timed(thread, 15, 32, 0.0)
                # After a pause longer than the simulator's store_idle_s, as at light load.
                idle = await timed(thread, 20, 1, 0.05)
            finally:
                thread.stop()
            return singles, many, idle

        try:
            singles, many, idle = trio.run(main)
        finally:
            store.close()
    one, sigma = statistics.median(singles), _log_spread(singles)
    per_write = max(0.0, (statistics.median(many) - one) / 31)
    return max(0.0, one - per_write), per_write, sigma, max(0.0, statistics.median(idle) - per_write)


def _handlers(base: CostTable, progress: Progress) -> tuple[dict[str, float], float]:
    sim = Simulation(SimSpec(nodes=8, validators=4, payments=200, rate=40.0, seed=7), LAN, base, measure=True)
    sim.run()
    samples: dict[str, list[float]] = {}
    for node in sim.nodes:
        for kind, values in node.measured.items():
            samples.setdefault(kind, []).extend(values)
    out = dict(base.handler)
    spreads = []
    for kind in HANDLERS:
        values = sorted(samples.get(kind, []))
        if values:
            out[kind] = statistics.median(values)
        if len(values) >= 50:
            spreads.append(_log_spread(values))
    sigma = statistics.median(spreads) if spreads else 0.0
    progress("handlers: " + ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in sorted(out.items())))
    progress(f"service time spread: sigma {sigma:.2f} (median over kinds of ln(p90/p50) / 1.28)")
    return out, sigma


def saturation(
    table: CostTable, *, nodes: int = 4, validators: int = 4, cores: int = 2, payments: int = 300
) -> float:
    """Settled/s of a closed loop (window 64) on LAN, the nodes sharing ``cores`` cores."""
    spec = SimSpec(
        nodes=nodes, validators=validators, payments=payments, rate=None, window=64, cores=cores, seed=1
    )
    s = Simulation(spec, LAN, table).run().summary()
    return float(s["settled_per_s"] or 0.0)


def fit_overhead(
    table: CostTable, target: float, *, cores: int = 2, progress: Progress = lambda _: None
) -> tuple[CostTable, float]:
    """The factor on the table's non-crypto costs (:meth:`CostTable.scaled`) with which the simulated
    saturation throughput of 4 validators on ``cores`` cores equals ``target`` settled/s (measured on a
    real local cluster: ``p2pnode bench --window 64``), found by bisection on a log scale. The measured
    pieces (frames on loopback, handlers in-process) miss what a real node also spends per message
    (scheduling between its tasks, its verifier and store threads, system calls): one factor, fitted at
    one point, checked at the others (``scripts/sim_compare.py``)."""
    lo, hi = 0.25, 16.0
    for _ in range(12):
        mid = (lo * hi) ** 0.5
        got = saturation(table.scaled(mid), cores=cores)
        progress(f"overhead x{mid:.3f}: {got:.1f} settled/s (target {target:.1f})")
        if got > target:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1.02:
            break
    factor = (lo * hi) ** 0.5
    return table.scaled(
        factor, machine=f"{table.machine}, overhead x{factor:.2f} fitted to {target:g}/s"
    ), factor


def light_p50_ms(table: CostTable, *, cores: int = 2, accounts: int = 16, payments: int = 200) -> float:
    """Client p50 latency (ms, from the scheduled send) of 4 validators on LAN sharing ``cores`` cores,
    open loop at 5/s: ``p2pnode bench --rate 5`` on ``configs/local-4.toml``."""
    spec = SimSpec(nodes=4, validators=4, payments=payments, rate=5.0, accounts=accounts, cores=cores, seed=1)
    s = Simulation(spec, LAN, table).run().summary()
    return float(s["latency"]["client"]["p50_ms"])


def fit_wake(
    table: CostTable,
    target_ms: float,
    *,
    cores: int = 2,
    payments: int = 200,
    progress: Progress = lambda _: None,
) -> tuple[CostTable, float]:
    """The wake-up cost (:attr:`CostTable.wake`) with which the simulated light-load client p50 of
    4 validators (:func:`light_p50_ms`) equals ``target_ms``, measured on a real local cluster at
    5 payments/s; by bisection between 0 and 5 ms. At light load a real node takes each message
    from idle: the event loop wakes, caches are cold, and (measured by its metrics) a signature check
    costs two to three times its tight-loop CPU time; the per-job table, timed warm, does not see
    that. Nodes that are never idle (saturation) do not pay it, so it moves throughput little."""
    lo, hi = 0.0, 5e-3
    if light_p50_ms(replace(table, wake=0.0), cores=cores, payments=payments) >= target_ms:
        return replace(table, wake=0.0), 0.0
    for _ in range(14):
        mid = (lo + hi) / 2
        got = light_p50_ms(replace(table, wake=mid), cores=cores, payments=payments)
        progress(f"wake {mid * 1e6:.0f} us: client p50 {got:.2f} ms (target {target_ms:.2f})")
        if got < target_ms:
            lo = mid
        else:
            hi = mid
        if hi - lo < 5e-6:
            break
    return replace(table, wake=(lo + hi) / 2), (lo + hi) / 2


def fit(
    table: CostTable,
    *,
    settled_per_s: float | None = None,
    light_p50_ms_target: float | None = None,
    cores: int = 2,
    progress: Progress = lambda _: None,
) -> CostTable:
    """Fit the overhead factor to a real 4-validator cluster's saturation and/or the wake-up cost to
    its light-load p50; with both, alternately twice (each barely moves the other's figure)."""
    factor, wake = 1.0, table.wake
    rounds = 2 if settled_per_s is not None and light_p50_ms_target is not None else 1
    for _ in range(rounds):
        if settled_per_s is not None:
            _, f = fit_overhead(
                replace(table.scaled(factor), wake=wake), settled_per_s, cores=cores, progress=progress
            )
            factor *= f
        if light_p50_ms_target is not None:
            _, wake = fit_wake(table.scaled(factor), light_p50_ms_target, cores=cores, progress=progress)
    notes = [table.machine]
    if settled_per_s is not None:
        notes.append(f"overhead x{factor:.2f} fitted to {settled_per_s:g}/s")
    if light_p50_ms_target is not None:
        notes.append(f"wake {wake * 1e6:.0f} us fitted to p50 {light_p50_ms_target:g} ms at 5/s")
    return replace(table.scaled(factor), wake=wake, machine=", ".join(notes))


def calibrate(progress: Progress = lambda _: None) -> CostTable:
    """Measure every figure of the table (see the module docstring); takes about a minute."""
    progress("timing crypto (thread CPU time)")
    crypto = measure_crypto()
    batch = _schnorr_batch()
    progress(
        f"schnorr {crypto.schnorr_verify * 1e3:.3f} ms alone, {batch * 1e3:.3f} ms per proof in a batch; "
        f"ed25519 verify {crypto.ed25519_verify * 1e6:.0f} us, sign {crypto.ed25519_sign * 1e6:.0f} us"
    )
    progress("timing frames over loopback TCP")
    per_frame, encode, dec = _frames()
    rest = max(0.0, per_frame - encode - dec)
    progress(
        f"frame {per_frame * 1e6:.0f} us sent+received (encode {encode * 1e6:.1f}, decode {dec * 1e6:.1f})"
    )
    log_line = _log_line()
    commit, commit_write, commit_sigma, commit_idle = _commits()
    progress(
        f"log line {log_line * 1e6:.1f} us; commit {commit * 1e3:.3f} ms + {commit_write * 1e6:.0f} us/write,"
        f" {commit_idle * 1e3:.3f} ms after a pause"
    )
    table = dataclasses.replace(
        CostTable(),
        schnorr_verify=crypto.schnorr_verify,
        schnorr_batch=batch,
        ed25519_verify=crypto.ed25519_verify,
        ed25519_sign=crypto.ed25519_sign,
        rx_frame=rest / 2,
        tx_frame=rest / 2,
        rx_message=dec,
        tx_message=encode,
        log_line=log_line,
        commit=commit,
        commit_write=commit_write,
        commit_sigma=commit_sigma,
        commit_idle=commit_idle,
        machine=f"calibrated {time.strftime('%Y-%m-%d')}",
    )
    progress("timing the core's handlers in a small simulation")
    handler, sigma = _handlers(table, progress)
    return dataclasses.replace(table, handler=handler, service_sigma=sigma)


__all__ = ["calibrate", "fit", "fit_overhead", "fit_wake", "light_p50_ms", "saturation"]
