"""The layers keep their places: the domain is pure, and only adapters touch documents.

- No module under `services/*/domain/` (nor the registries) imports a driver or a framework:
  pymongo, bson, aiokafka, faststream, fastapi, httpx.
- No module outside an `adapters/` package imports pymongo or bson, or uses the adapters'
  document helpers (`Doc`, `stored`): services, HTTP handlers and the CLI see contracts.
  `ALLOWED` names the few exceptions and why.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = ("pymongo", "bson", "motor")
FRAMEWORKS = ("aiokafka", "faststream", "fastapi", "httpx", "starlette", "uvicorn")
DOCUMENT_HELPERS = {"Doc", "stored"}
ALLOWED = {
    # The runtime opens the client and hands the database to the adapters app.py builds.
    "services/common/app.py": "the composition root's client",
    # They tell the driver's errors apart (an unreachable database waits, never dead-letters
    # a record; a driver's message, which may quote a document, is redacted): errors only.
    "services/common/errors.py": "driver errors, redacted",
    "services/common/messaging.py": "driver errors, classified as outages",
}


def test_the_exceptions_still_exist() -> None:
    assert all((ROOT / name).is_file() for name in ALLOWED)


def _modules(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[int, str, set[str]]]:
    """(line, module, names) of each import in `path`."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, set()
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module, {alias.name for alias in node.names}


def _within(module: str, roots: tuple[str, ...]) -> bool:
    return any(module == root or module.startswith(f"{root}.") for root in roots)


def _is_adapter(path: Path) -> bool:
    return "adapters" in path.relative_to(ROOT).parts


def test_the_domain_imports_no_driver_and_no_framework() -> None:
    pure = [p for p in _modules("services") if "domain" in p.relative_to(ROOT).parts]
    pure += list(_modules("services/registry"))
    assert pure, "no domain modules found"
    found = [f"{p.relative_to(ROOT)}:{line} imports {module}"
             for p in pure for line, module, _ in _imports(p)
             if _within(module, DRIVERS + FRAMEWORKS)]
    assert not found, "\n".join(found)


def test_only_adapters_touch_documents() -> None:
    found = []
    for path in _modules("services", "amends"):
        if _is_adapter(path) or str(path.relative_to(ROOT)) in ALLOWED:
            continue
        for line, module, names in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if _within(module, DRIVERS):
                found.append(f"{where} imports {module}")
            elif module.endswith(".adapters.mongo") and names & DOCUMENT_HELPERS:
                found.append(f"{where} uses {', '.join(sorted(names & DOCUMENT_HELPERS))}")
    assert not found, "\n".join(found)
