"""Backward-compatibility check between a released JSON Schema and the current one.

A consumer built on the released contract must still accept what producers send under the
current one, and a producer on the released contract must still be accepted. So, for every
object the released schema defines: no property may disappear or change type, no property
may become required, and no enumerated value may be dropped.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def _resolve(schema: Schema, root: Schema) -> Schema:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(root.get("$defs", {}).get(ref.split("/")[-1], {}), root)
    return schema


def _types(schema: Schema, root: Schema) -> set[str]:
    """The JSON types a schema allows (a `$ref` resolves to its target's name and types)."""
    schema = _resolve(schema, root)
    found: set[str] = set()
    if "type" in schema:
        kind = schema["type"]
        found |= set(kind) if isinstance(kind, list) else {kind}
    if "const" in schema:
        found.add(type(schema["const"]).__name__)
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key, []):
            found |= _types(option, root)
    return found


def _compare(path: str, old: Schema, new: Schema,  # noqa: PLR0917 - a private recursion
             old_root: Schema, new_root: Schema, problems: list[str],
             seen: set[tuple[int, int]]) -> None:
    old = _resolve(old, old_root)
    new = _resolve(new, new_root)
    marker = (id(old), id(new))
    if marker in seen:
        return
    seen.add(marker)
    old_types, new_types = _types(old, old_root), _types(new, new_root)
    if old_types and new_types and not old_types <= new_types:
        problems.append(f"{path}: type changed from {sorted(old_types)} to {sorted(new_types)}")
    if "enum" in old:
        kept: list[Any] = new["enum"] if "enum" in new else old["enum"]
        dropped = [v for v in old["enum"] if v not in kept]
        if dropped:
            problems.append(f"{path}: enumerated values removed: {dropped}")
    if "const" in old and "const" in new and old["const"] != new["const"]:
        problems.append(f"{path}: constant changed from {old['const']!r} to {new['const']!r}")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_prop in old_props.items():
        if name not in new_props:
            problems.append(f"{path}.{name}: property removed")
            continue
        _compare(f"{path}.{name}", old_prop, new_props[name], old_root, new_root, problems,
                 seen)
    newly_required = set(new.get("required", [])) - set(old.get("required", []))
    problems.extend(f"{path}.{name}: became required" for name in sorted(newly_required))
    for key in ("items",):
        if key in old and key in new:
            _compare(f"{path}[]", old[key], new[key], old_root, new_root, problems, seen)
    for key in ("anyOf", "oneOf"):
        old_options, new_options = old.get(key, []), new.get(key, [])
        for index, raw_option in enumerate(old_options):
            option = _resolve(raw_option, old_root)
            title = option.get("title")
            match = next((n for n in new_options if _resolve(n, new_root).get("title") == title),
                         None) if title else None
            if match is not None:
                _compare(f"{path}<{title}>", option, match, old_root, new_root, problems, seen)
            elif title:
                problems.append(f"{path}: alternative {title!r} removed")
            elif index >= len(new_options):
                problems.append(f"{path}: alternative {index} removed")


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """What in `new` breaks users of `old`; empty when `new` is backward compatible."""
    problems: list[str] = []
    _compare("$", old, new, old, new, problems, set())
    return problems
