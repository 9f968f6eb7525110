"""Can a consumer still read an event after its contract changed?

:func:`breaking_changes` compares a contract's schema as last published with its schema
now. A consumer built on either one must read the other's events, so these break it:
a field removed or renamed, a field whose type changed (nested objects are compared
field by field), a new required field, a field that was optional becoming required.
Adding an optional field, changing a description or a default is compatible.
"""

from __future__ import annotations

from typing import Any

from contracts.schemas import JsonSchema

ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "omitIfUnset", "x-ce-type", "x-topic"}
)


def breaking_changes(published: JsonSchema, current: JsonSchema) -> list[str]:
    """What in ``current`` a reader of ``published`` (or the reverse) could not read."""
    return _compare(_inline(published, published), _inline(current, current), "")


def _inline(node: Any, root: JsonSchema) -> Any:
    """``node`` with every local ``$ref`` replaced by what it points at (no cycles here)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target[part]
            return _inline(target, root)
        return {k: _inline(v, root) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, root) for v in node]
    return node


def _shape(node: Any) -> Any:
    """``node`` without the keys that do not change what a value may be."""
    if isinstance(node, dict):
        return {k: _shape(v) for k, v in node.items() if k not in ANNOTATIONS}
    if isinstance(node, list):
        return [_shape(v) for v in node]
    return node


def _compare(old: Any, new: Any, path: str) -> list[str]:
    where = path or "the value"
    if isinstance(old, dict) and isinstance(new, dict):
        if "properties" in old and "properties" in new:
            return _compare_objects(old, new, path)
        old_any, new_any = old.get("anyOf"), new.get("anyOf")
        if isinstance(old_any, list) and isinstance(new_any, list) and len(old_any) == len(new_any):
            problems: list[str] = []
            for o, n in zip(old_any, new_any, strict=True):
                problems += _compare(o, n, path)
            return problems
    if _shape(old) != _shape(new):
        return [f"{where}: type changed from {_brief(old)} to {_brief(new)}"]
    return []


def _compare_objects(old: JsonSchema, new: JsonSchema, path: str) -> list[str]:
    problems: list[str] = []
    old_props, new_props = old["properties"], new["properties"]
    for name, schema in old_props.items():
        field = f"{path}.{name}" if path else name
        if name not in new_props:
            problems.append(f"{field}: removed (or renamed)")
        else:
            problems += _compare(schema, new_props[name], field)
    old_required = set(old.get("required", ()))
    for name in new.get("required", ()):
        if name not in old_required:
            field = f"{path}.{name}" if path else name
            kind = "became required" if name in old_props else "new required field"
            problems.append(f"{field}: {kind}")
    return problems


def _brief(schema: Any) -> str:
    shape = _shape(schema)
    if isinstance(shape, dict) and set(shape) == {"type"}:
        return str(shape["type"])
    return str(shape)
