"""Operator tools that sit on top of a running cluster: ``latency`` (read logs) and ``bench`` (load).

They use the node only through its public surfaces: the JSON log schema (``docs/logs.md``) and the client
port (:mod:`p2pnode.client`). Nothing here is imported by the node itself.
"""
