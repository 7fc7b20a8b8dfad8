"""The HTTP layer: parses, authenticates, calls one service function, maps errors."""
