"""Print fulfilment's OpenAPI document. Regenerate the committed copy with
`.venv/bin/python -m services.fulfilment.openapi > docs/api/fulfilment.openapi.json`.

The committed copy is checked against this output by tests/unit/test_fulfilment_openapi.py."""

from __future__ import annotations

import json
import sys
from typing import Any

from services.fulfilment.app import create_app
from services.fulfilment.settings import FulfilmentSettings


def document() -> dict[str, Any]:
    """The document as served, for the default settings (no broker or database needed)."""
    spec: dict[str, Any] = create_app(FulfilmentSettings()).openapi()
    return spec


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
