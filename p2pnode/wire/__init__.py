"""Wire types: identifiers, messages and the frame codec. Imports nothing from the rest of p2pnode."""
