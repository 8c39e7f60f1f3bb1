"""Connectors: each parses one kind of source into the store's tables. Registered explicitly."""
