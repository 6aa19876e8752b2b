"""Write the services' OpenAPI documents to docs/api/ (`python -m services.openapi`), as
served with the default settings; tests/unit/test_openapi_documents.py fails when a committed
copy is stale."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api"


def _decision() -> dict[str, Any]:
    from services.decision.app import create_app  # noqa: PLC0415 - one service at a time
    from services.decision.settings import DecisionSettings  # noqa: PLC0415

    spec: dict[str, Any] = create_app(DecisionSettings()).openapi()
    return spec


def _fulfilment() -> dict[str, Any]:
    from services.fulfilment.app import create_app  # noqa: PLC0415
    from services.fulfilment.settings import FulfilmentSettings  # noqa: PLC0415

    spec: dict[str, Any] = create_app(FulfilmentSettings()).openapi()
    return spec


def _intake() -> dict[str, Any]:
    from services.intake.openapi import document  # noqa: PLC0415

    return document()


DOCUMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "intake": _intake, "decision": _decision, "fulfilment": _fulfilment}


def path(service: str) -> Path:
    return DOCS / f"{service}.openapi.json"


def render(service: str) -> str:
    return json.dumps(DOCUMENTS[service](), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    for name in DOCUMENTS:
        path(name).write_text(render(name))
        sys.stdout.write(f"wrote {path(name).relative_to(DOCS.parents[1])}\n")
