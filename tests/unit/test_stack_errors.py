"""The local stack says in one line what to do when a tool is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools import stack

pytestmark = pytest.mark.unit


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> stack.StackSettings:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    return stack.StackSettings(state_dir=tmp_path, cache_dir_override=tmp_path / "cache")


def test_missing_go_is_named_with_the_fix(bare: stack.StackSettings) -> None:
    with pytest.raises(stack.StackError, match=r"`go` was not found on PATH: install Go"):
        stack.ferretdb_binary(bare)


def test_missing_java_is_named_with_the_fix(bare: stack.StackSettings) -> None:
    with pytest.raises(stack.StackError, match=r"`java` was not found on PATH: install a Java"):
        stack.kafka_libs(bare)
