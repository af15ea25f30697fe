"""The ``p2pnode`` command line: one module per command, wired together in :mod:`p2pnode.cli.main`.

The CLI sits on top of every other layer and nothing imports it except ``p2pnode.__main__`` and tests.
:mod:`p2pnode.cli.cluster` doubles as the Python API that system tests use to drive local clusters.
"""
