"""The model manifest (LiteMedSAMLib/models.json) against its JSON schema, and the schema's
own teeth: the mistakes a user editing the manifest makes are caught."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from manifest_schema import SCHEMA_PATH, manifest_errors

MANIFEST = Path(__file__).resolve().parents[2] / "LiteMedSAMLib" / "models.json"


def test_the_shipped_manifest_follows_its_schema():
    assert manifest_errors(json.loads(MANIFEST.read_text())) == []


def test_the_schema_is_valid_json_schema_and_agrees_with_jsonschema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(MANIFEST.read_text()), schema)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["models"]["litemedsam"].pop("weights"), "'weights' is required"),
    (lambda m: m["models"]["litemedsam"]["weights"].update(sha256="79d8c9"), "does not match"),
    (lambda m: m["models"]["litemedsam"]["architecture"]["encoder"].update(name="vit_h"), "is not one of"),
    (lambda m: m["models"]["litemedsam"]["architecture"].update(image_size="256"), "str is not integer"),
    (lambda m: m["models"]["litemedsam"].update(weigths={}), "unexpected property 'weigths'"),
    (lambda m: m.update(default="nosuchmodel"), "'nosuchmodel' is not a model"),
])
def test_the_schema_catches_editing_mistakes(edit, message):
    manifest = copy.deepcopy(json.loads(MANIFEST.read_text()))
    edit(manifest)
    assert any(message in e for e in manifest_errors(manifest)), manifest_errors(manifest)
