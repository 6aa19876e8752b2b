"""Print intake's OpenAPI document. Regenerate the committed copy with
`.venv/bin/python -m services.intake.openapi > docs/api/intake.openapi.json`.

The committed copy is checked against this output by tests/unit/intake/test_openapi.py."""

from __future__ import annotations

import json
import sys
from typing import Any

from services.intake.app import create_app
from services.intake.settings import IntakeSettings


def document() -> dict[str, Any]:
    """The document as served, for the default settings (no broker or database needed)."""
    batch = IntakeSettings.model_fields["max_batch_events"].default
    app = create_app(IntakeSettings(hmac_secrets={}, sources={}, max_batch_events=batch))
    spec: dict[str, Any] = app.openapi()
    return spec


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
