"""Where the local stack leaves its dev API key: the one path the operator CLI and the
development tools (`python -m devtools stack`, not installed with the product) agree on, so
the CLI finds the key without importing them."""

from __future__ import annotations

import os
from pathlib import Path

# The stack's state directory unless `AMENDS_STACK_STATE_DIR` names another: `.amends` at the
# root of the checkout the tools run from.
DEFAULT_STATE_DIR = Path(__file__).resolve().parent.parent / ".amends"
STATE_DIR_ENV = "AMENDS_STACK_STATE_DIR"


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def dev_key_file(state: Path | None = None) -> Path:
    """The dev API key (admin, every tenant) under a state directory (by default the one in
    use)."""
    return (state or state_dir()) / "run" / "dev-api-key"


def trace_dir(state: Path | None = None) -> Path:
    """Where the local stack's services write their spans (OTLP/JSON, a file per service)."""
    return (state or state_dir()) / "traces"
