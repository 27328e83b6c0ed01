"""Requests drawn from an OpenAPI description, for schema-based fuzzing with hypothesis (no extra package).

Each operation gets path parameters, query parameters and a JSON body drawn from its schemas, mixed with values
of the wrong type, huge numbers, odd strings and missing or extra fields: a service must answer every one of them
with a 2xx, 3xx or 4xx, never a 5xx.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from hypothesis import strategies as st

ODD_TEXT = st.sampled_from(["", " ", "0", "-1", "null", "ñandú €", "../../etc/passwd", "%00", "' OR 1=1 --",
                            "9" * 40, "x" * 5000, "\u202e", "1e309", "NaN"])
ANY_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=30), ODD_TEXT)
ANY_JSON = st.recursive(ANY_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                        max_leaves=10)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    parameters: List[Dict[str, Any]]
    body_schema: Optional[Dict[str, Any]]

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


def operations(spec: Dict[str, Any]) -> List[Operation]:
    found = []
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            found.append(Operation(method, path, operation.get("parameters", []), body))
    return found


def _resolve(schema: Dict[str, Any], spec: Dict[str, Any]) -> Dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def from_schema(schema: Dict[str, Any], spec: Dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that fit ``schema`` most of the time, and anything at all sometimes."""
    schema = _resolve(schema or {}, spec)
    if depth > 4:
        return ANY_SCALAR
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return st.one_of([from_schema(option, spec, depth + 1) for option in schema[key]])
    if "enum" in schema:
        fitting: st.SearchStrategy[Any] = st.sampled_from(schema["enum"])
    elif schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        fitting = st.fixed_dictionaries(
            {name: from_schema(sub, spec, depth + 1) for name, sub in properties.items() if name in required},
            optional={name: from_schema(sub, spec, depth + 1) for name, sub in properties.items()
                      if name not in required},
        )
    elif schema.get("type") == "array":
        fitting = st.lists(from_schema(schema.get("items", {}), spec, depth + 1), max_size=4)
    elif schema.get("type") == "integer":
        fitting = st.one_of(st.integers(min_value=-5, max_value=100), st.integers())
    elif schema.get("type") == "number":
        fitting = st.one_of(st.integers(min_value=0, max_value=100000),
                            st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(["12.50", "1e400"]))
    elif schema.get("type") == "boolean":
        fitting = st.booleans()
    elif schema.get("type") == "string":
        fitting = st.one_of(st.text(max_size=40), ODD_TEXT, st.sampled_from(["2026-12-07", "2026-12-07T10:00:00Z",
                                                                             "45879632", "+51987654321"]))
    else:
        fitting = ANY_JSON
    return st.one_of(fitting, fitting, fitting, ANY_JSON) if depth == 0 else st.one_of(fitting, fitting, ANY_SCALAR)


def _as_text(value: Any) -> str:
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


@st.composite
def requests_for(draw: Any, operation: Operation, spec: Dict[str, Any]) -> Dict[str, Any]:
    """Method, concrete path, query and body of one request to ``operation``."""
    path, query = operation.path, {}
    for parameter in operation.parameters:
        parameter = _resolve(parameter, spec)
        value = draw(from_schema(parameter.get("schema", {}), spec, depth=1))
        if parameter["in"] == "path":
            text = re.sub(r"[/?#]", "_", _as_text(value)) or "0"
            path = path.replace("{" + parameter["name"] + "}", text)
        elif parameter["in"] == "query" and (parameter.get("required") or draw(st.booleans())):
            query[parameter["name"]] = _as_text(value)
    body = draw(from_schema(operation.body_schema, spec)) if operation.body_schema else None
    return {"method": operation.method, "path": path, "params": query, "json": body}
