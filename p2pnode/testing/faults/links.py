"""Link faults as a transport wrapper: now :mod:`p2pnode.net.links` (production nodes run it for a
``[network]`` profile). The names stay importable from here for tests and scenarios."""

from __future__ import annotations

from p2pnode.net.links import MAX_BUFFER, FaultyStream, FaultyTransport, LinkCut

__all__ = ["FaultyTransport", "FaultyStream", "LinkCut", "MAX_BUFFER"]
