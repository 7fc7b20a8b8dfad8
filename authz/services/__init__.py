"""Use cases: one plain function each; every write is one unit of work."""
