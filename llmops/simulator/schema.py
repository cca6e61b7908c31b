"""A small valid instance of a JSON schema, deterministically: what the simulator answers for structured output
(``response_format`` / ``text.format`` ``json_schema``) and for tool-call arguments nobody scripted.

Rules: ``const`` and the first of ``enum``; objects carry their ``required`` properties (all properties when
``required`` is absent and ``additionalProperties`` is false, as OpenAI's strict mode requires; otherwise only the
required ones); arrays have ``minItems`` items (at least one, at most ``maxItems``; ``prefixItems`` first); strings are
lorem-ipsum words named after their property (respecting ``minLength``/``maxLength``) or a sample of their ``format``
(``date-time``, ``date``, ``time``, ``email``, ``uri``, ``uuid``, ``ipv4``, ...); integers and numbers are the
smallest allowed value at or above 0 (``minimum``, ``exclusiveMinimum``, ``maximum``, ``multipleOf``); booleans are
``true``. ``anyOf``/``oneOf`` take their first branch that is not ``null``, ``allOf`` is merged, a list of types takes
its first non-null type, ``$ref`` to ``#/$defs/...`` or ``#/definitions/...`` is followed; past a nesting depth of 8 a
nullable value is ``null`` and anything else its emptiest form. ``pattern`` is not honoured.
"""

from __future__ import annotations

import math
from typing import Any

_MAX_DEPTH = 8
_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "iri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet")


def instance(schema: Any, root: Any = None) -> Any:
    """A small instance of ``schema`` (a JSON schema as a dict; ``True``/``{}`` allow anything)."""
    return _value(schema, schema if root is None else root, "value", 0)


def _resolve(schema: Any, root: Any) -> Any:
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
        ref = schema["$ref"]
        target: Any = root
        if ref.startswith("#"):
            for part in ref.lstrip("#").split("/"):
                if part and isinstance(target, dict):
                    target = target.get(part.replace("~1", "/").replace("~0", "~"))
        else:
            target = None
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        schema = {**target, **siblings} if isinstance(target, dict) else siblings
        seen += 1
    return schema


def _merge(schema: dict[str, Any], root: Any) -> dict[str, Any]:
    merged = {key: value for key, value in schema.items() if key != "allOf"}
    for part in schema.get("allOf") or []:
        part = _resolve(part, root)
        if isinstance(part, dict):
            for key, value in _merge(part, root).items():
                if key == "properties" and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                elif key == "required" and isinstance(merged.get(key), list):
                    merged[key] = [*merged[key], *value]
                else:
                    merged.setdefault(key, value)
    return merged


def _nullable(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(
        isinstance(b, dict) and b.get("type") == "null" for b in schema.get("anyOf") or schema.get("oneOf") or []
    )


def _value(schema: Any, root: Any, name: str, depth: int) -> Any:
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return f"{name} value"  # True or an unusable schema: anything goes
    schema = _merge(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if depth > _MAX_DEPTH and _nullable(schema):
        return None
    branches = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(branches, list) and branches:
        resolved = [_resolve(branch, root) for branch in branches]
        chosen = next((b for b in resolved if not (isinstance(b, dict) and b.get("type") == "null")), resolved[0])
        rest = {key: value for key, value in schema.items() if key not in ("anyOf", "oneOf")}
        return _value({**rest, **chosen} if isinstance(chosen, dict) else chosen, root, name, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = _guess_type(schema)
    if kind == "object":
        return _object(schema, root, depth)
    if kind == "array":
        return _array(schema, root, name, depth)
    if kind == "string":
        return _string(schema, name)
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"{name} value"


def _guess_type(schema: dict[str, Any]) -> str | None:
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(key in schema for key in ("minLength", "maxLength", "format", "pattern")):
        return "string"
    if any(key in schema for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return None


def _int(schema: dict[str, Any], key: str) -> int | None:
    value = schema.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _object(schema: dict[str, Any], root: Any, depth: int) -> dict[str, Any]:
    found = schema.get("properties")
    properties: dict[str, Any] = found if isinstance(found, dict) else {}
    required = schema.get("required")
    if isinstance(required, list):
        names = [name for name in required if isinstance(name, str)]
    elif schema.get("additionalProperties") is False:
        names = list(properties)
    else:
        names = []
    if depth >= _MAX_DEPTH:
        names = [name for name in names if not _nullable(_resolve(properties.get(name, {}), root) or {})]
    out: dict[str, Any] = {}
    for name in names:
        out[name] = _value(properties.get(name, True), root, name, depth + 1)
    minimum = _int(schema, "minProperties")
    if minimum is not None and len(out) < minimum:
        for name, sub in properties.items():
            if len(out) >= minimum:
                break
            out.setdefault(name, _value(sub, root, name, depth + 1))
        filler = 0
        while len(out) < minimum:
            out.setdefault(f"key{filler}", "value")
            filler += 1
    return out


def _array(schema: dict[str, Any], root: Any, name: str, depth: int) -> list[Any]:
    found = schema.get("prefixItems")
    prefix: list[Any] = found if isinstance(found, list) else []
    minimum = _int(schema, "minItems") or 0
    maximum = _int(schema, "maxItems")
    count = max(minimum, len(prefix), 0 if depth >= _MAX_DEPTH else 1)
    if maximum is not None:
        count = min(count, maximum)
    items = schema.get("items", True)
    out = []
    for index in range(count):
        sub = prefix[index] if index < len(prefix) else items
        if sub is False:
            break
        out.append(_value(sub, root, name, depth + 1))
    if schema.get("uniqueItems") and len(out) > 1 and all(isinstance(item, str) for item in out):
        out = [f"{item} {index}" if index else item for index, item in enumerate(out)]
    return out


def _string(schema: dict[str, Any], name: str) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt]
    text = name.replace("_", " ").strip() or "text"
    minimum = _int(schema, "minLength") or 0
    maximum = _int(schema, "maxLength")
    words = iter(_WORDS * (minimum // 2 + 1))
    while len(text) < minimum:
        text += " " + next(words)
    if maximum is not None and len(text) > maximum:
        text = text[:maximum].rstrip() if maximum >= minimum else text[:maximum]
        if len(text) < minimum:
            text = text.ljust(minimum, "x")
    return text


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    low, low_open = _bound(schema, "minimum", "exclusiveMinimum", max)
    high, high_open = _bound(schema, "maximum", "exclusiveMaximum", min)
    step = schema.get("multipleOf")
    step = float(step) if isinstance(step, int | float) and not isinstance(step, bool) and step > 0 else None
    unit = step or 1.0
    value = 0.0 if low is None else max(low, 0.0)
    if high is not None and value > high:
        value = high if low is None else max(low, high - unit)
    if low is not None and low_open and value <= low:
        value = low + (unit if integer or step else min(unit, ((high - low) / 2) if high is not None else unit))
    if high is not None and high_open and value >= high and low is None:
        value = high - unit
    if step:
        value = math.ceil(value / step - 1e-9) * step
    if integer:
        value = math.ceil(value - 1e-9)
        return int(value)
    return value


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, pick: Any) -> tuple[float | None, bool]:
    """The tightest bound of ``inclusive``/``exclusive`` (draft 4's boolean ``exclusive*`` flags included)."""
    bounds: list[tuple[float, bool]] = []
    flag = schema.get(exclusive) is True
    value = schema.get(inclusive)
    if isinstance(value, int | float) and not isinstance(value, bool):
        bounds.append((float(value), flag))
    value = schema.get(exclusive)
    if isinstance(value, int | float) and not isinstance(value, bool):
        bounds.append((float(value), True))
    if not bounds:
        return None, False
    best = pick(bound for bound, _ in bounds)
    return best, any(is_open for bound, is_open in bounds if bound == best)
