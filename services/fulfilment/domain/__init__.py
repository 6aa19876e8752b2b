"""Fulfilment's domain: what a decision revision asks to be carried out, as pure functions
over the contracts (no I/O; nothing here imports a driver, a broker client or an HTTP
client)."""
