"""Fault and attack scenarios: a TOML file names a cluster, a load and a timeline of faults; the runner
starts the cluster, drives it, and checks the invariants (:mod:`p2pnode.scenario.invariants`)."""
