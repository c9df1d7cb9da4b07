"""A small JSON Schema validator for the keywords ``LiteMedSAMLib/models.schema.json`` uses
(type, enum, required, properties, additionalProperties, minProperties, items, minItems,
minimum, minLength, pattern), so that the manifest test needs no extra package; the
``jsonschema`` package, where installed, checks the same schema too."""

from __future__ import annotations

import json
import re
from pathlib import Path

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "LiteMedSAMLib" / "models.schema.json"
_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
          "boolean": bool, "null": type(None)}
KNOWN = {"$schema", "$id", "title", "description", "type", "enum", "required", "properties",
         "additionalProperties", "minProperties", "items", "minItems", "minimum", "minLength", "pattern"}


def _is(value, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[name])


def errors(value, schema: dict, where: str = "$") -> list[str]:
    """Every violation of ``schema`` by ``value``, as ``"path: problem"``."""
    unknown = set(schema) - KNOWN
    if unknown:
        raise ValueError(f"{where}: the validator does not know {sorted(unknown)}")
    found = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_is(value, t) for t in types):
            return [f"{where}: {type(value).__name__} is not {' or '.join(types)}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        found += [f"{where}: {key!r} is required" for key in schema.get("required", []) if key not in value]
        if len(value) < schema.get("minProperties", 0):
            found.append(f"{where}: fewer than {schema['minProperties']} properties")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                found += errors(item, properties[key], f"{where}.{key}")
            elif extra is False:
                found.append(f"{where}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                found += errors(item, extra, f"{where}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            found.append(f"{where}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                found += errors(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            found.append(f"{where}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if _is(value, "number") and "minimum" in schema and value < schema["minimum"]:
        found.append(f"{where}: {value} < {schema['minimum']}")
    return found


def manifest_errors(manifest: dict) -> list[str]:
    """Violations of the manifest schema, plus the one rule a schema cannot say: the default
    model is one of the models."""
    found = errors(manifest, json.loads(SCHEMA_PATH.read_text()))
    default = manifest.get("default")
    if default is not None and default not in manifest.get("models", {}):
        found.append(f"$.default: {default!r} is not a model of the manifest")
    return found
