"""The product is `amends` (the operator CLI), `schemas` and `services`; the development tools
(`devtools`: the local stack, bench, demo, the fake gateway) stay out of it: not imported by
the product, not installed, not copied into the image."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("amends", "schemas", "services")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_product_never_imports_the_development_tools() -> None:
    offenders = sorted(
        str(path.relative_to(ROOT)) for package in PRODUCT
        for path in (ROOT / package).rglob("*.py")
        if any(name == "devtools" or name.startswith("devtools.") for name in _imports(path)))
    assert offenders == []


def test_the_operator_cli_holds_no_development_tool() -> None:
    modules = {path.stem for path in (ROOT / "amends").glob("*.py")}
    assert not modules & {"stack", "demo", "gateway_peer", "cli_bench"}
    assert not any(name.startswith("bench") for name in modules)


def test_the_package_and_the_image_leave_the_development_tools_out() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(include) == ["amends*", "schemas*", "services*"]
    copied = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ") and "--from" not in line]
    assert "devtools" not in " ".join(copied)
    assert {"amends", "schemas", "services"} <= set(copied)
