"""The sans-I/O protocol core: ledger, committee, validator, certificates, gossip and sync rules.

Nothing here performs I/O, reads the clock or logs. Handlers take ``now`` (seconds, float) as an
argument and return effects (:mod:`p2pnode.core.effects`) that the Trio driver performs.
"""
