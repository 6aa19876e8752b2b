"""Generate the committed contract documents: JSON Schema per contract and an AsyncAPI
document per service. `python -m schemas.generate` writes them; `--check` fails on drift."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from schemas.registry import CONTRACTS, TOPIC_CONTRACTS, json_schema

SCHEMAS_DIR = Path(__file__).resolve().parent
JSONSCHEMA_DIR = SCHEMAS_DIR / "jsonschema"
ASYNCAPI_DIR = SCHEMAS_DIR / "asyncapi"
RELEASED_DIR = SCHEMAS_DIR / "released"


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def asyncapi_documents() -> dict[str, dict[str, Any]]:
    """FastStream's AsyncAPI 3.0 document of each service, with each channel's payload set to
    the contract's JSON Schema (subscribers take raw bytes so bad messages can be
    dead-lettered, so FastStream cannot see the payload type by itself)."""
    from faststream.specification import AsyncAPI  # noqa: PLC0415 - heavy, only here

    from services.decision.app import create_app as decision_app  # noqa: PLC0415
    from services.fulfilment.app import create_app as fulfilment_app  # noqa: PLC0415
    from services.intake.app import create_app as intake_app  # noqa: PLC0415

    documents = {}
    for name, factory in (("intake", intake_app), ("decision", decision_app),
                          ("fulfilment", fulfilment_app)):
        app = factory()
        spec = AsyncAPI(app.state.runtime.broker, title=f"Amends {name}", version="1",
                        description=f"Messages consumed and produced by Amends {name}.")
        document: dict[str, Any] = spec.to_specification().to_jsonable()
        document["servers"] = {"local": {"host": "127.0.0.1:9092", "protocol": "kafka",
                                         "description": "the local stack"}}
        for channel in document.get("channels", {}).values():
            channel["servers"] = [{"$ref": "#/servers/local"}]
        for key, message in document.get("components", {}).get("messages", {}).items():
            topic = key.split(":", 1)[0]
            contract = TOPIC_CONTRACTS.get(topic)
            if contract is not None:
                message["payload"] = {"$ref": f"../jsonschema/{contract}.schema.json"}
                message["contentType"] = "application/cloudevents+json"
        document.get("components", {}).pop("schemas", None)
        documents[name] = document
    return documents


def expected_files() -> dict[Path, str]:
    files = {JSONSCHEMA_DIR / f"{name}.schema.json": _dump(json_schema(name))
             for name in CONTRACTS}
    files |= {ASYNCAPI_DIR / f"{name}.json": _dump(doc)
              for name, doc in asyncapi_documents().items()}
    return files


def stale_files() -> list[Path]:
    return [path for path, text in expected_files().items()
            if not path.exists() or path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(SCHEMAS_DIR.parent)}", file=sys.stderr)  # noqa: T201
        return 1 if stale else 0
    for path, text in expected_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(SCHEMAS_DIR.parent)}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
