"""The simulator: every node's real core in one process, on a virtual clock, with a link model and a
CPU cost model (``p2pnode sim``; ``docs/simulator.md``)."""

from p2pnode.sim.costs import CostTable, default_costs, load_costs
from p2pnode.sim.engine import SimSpec, Simulation, summarize
from p2pnode.sim.run import SimRun, render_summary, simulate

__all__ = [
    "CostTable",
    "SimRun",
    "SimSpec",
    "Simulation",
    "default_costs",
    "load_costs",
    "render_summary",
    "simulate",
    "summarize",
]
