"""Plain domain types, identifiers and errors; imports nothing from the rest of authz."""
