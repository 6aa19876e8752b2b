"""Intake's OpenAPI document as served with the default settings; `python -m
services.openapi` writes it (with the other services') to docs/api/."""

from __future__ import annotations

from typing import Any

from services.intake.app import create_app
from services.intake.settings import IntakeSettings


def document() -> dict[str, Any]:
    """The document as served, for the default settings (no broker or database needed)."""
    batch = IntakeSettings.model_fields["max_batch_events"].default
    app = create_app(IntakeSettings(hmac_secrets={}, sources={}, max_batch_events=batch))
    spec: dict[str, Any] = app.openapi()
    return spec
