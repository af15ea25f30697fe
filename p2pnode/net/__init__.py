"""Trio networking: transports, peers, the node driver and the client."""
