"""Registries: one entry per incident type and per remedy kind, holding every part the
product needs of it (pure data and functions)."""
