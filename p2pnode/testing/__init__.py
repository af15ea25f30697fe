"""Test support for p2pnode: what integration tests and fault scenarios use, above the node itself.

Every test-only fault (Byzantine roles, link faults, the fault-control request) lives in
:mod:`p2pnode.testing.faults` and is injected into a node at construction; nothing below this
package branches on it.
"""
