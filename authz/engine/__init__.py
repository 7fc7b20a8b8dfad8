"""The in-memory decision engine: rules compiled into dicts and sets, kept at a known revision."""
