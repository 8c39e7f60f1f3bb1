"""Every OCSF object pamcorr writes (findings and detections, sequences too) is valid against
the published OCSF schema of the version it declares: the schema.ocsf.io export that the
ocsf-json-schema package ships, turned into a JSON Schema (draft 2020-12, no additional
properties) for class detection_finding with the profiles the objects list in metadata.profiles."""

from __future__ import annotations

import copy
import io
import json

import pytest
from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

import export_world
from connectors.base import Options
from connectors.registry import get_connector
from correlate import queries
from correlate.cli import SAMPLE_FILES, sample_dir
from correlate.engine import correlate
from correlate.ingest import ingest
from correlate.store import Store
from reports import detections as det
from reports.ocsf import CLASS_UID, OCSF_VERSION, PROFILES
from reports.ocsf_sql import write_findings_ocsf


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=OCSF_VERSION))
    name = schema.lookup_class_name_from_uid(CLASS_UID)
    assert name == "detection_finding"
    return Draft202012Validator(schema.get_class_schema(name, PROFILES))


def exported(store: Store) -> list[dict]:
    run = queries.resolve_run(store)
    out = io.StringIO()
    write_findings_ocsf(store, out, queries.run_info(store, run)["finished"],
                        det.detections(store, run))
    return json.loads(out.getvalue())


def problems(validator, objects: list[dict]) -> list[str]:
    found = []
    for i, obj in enumerate(objects):
        if not validator.is_valid(obj):
            found += [f"object {i} ({obj.get('metadata', {}).get('uid')}): {e.json_path}: "
                      f"{e.message}" for e in validator.iter_errors(obj)]
            if len(found) > 20:
                break
    return found


def test_sample_week_ocsf_is_valid_against_the_published_schema(validator):
    store = Store(":memory:")
    for kind, name in SAMPLE_FILES:
        list(ingest(store, get_connector("generic"), kind, [str(sample_dir() / name)], Options()))
    correlate(store)
    objects = exported(store)
    store.close()
    detections = [o for o in objects if "rule_id" in o["unmapped"]]
    assert len(objects) > 30000 and len(detections) > 100
    assert any(o["unmapped"]["sequence_id"] for o in detections)
    assert all(o["metadata"]["version"] == OCSF_VERSION and o["metadata"]["profiles"] == PROFILES
               for o in objects)
    assert problems(validator, objects) == []


def test_hostile_ocsf_is_valid_against_the_published_schema(validator, world):
    export_world.build(world)
    store = world.store()
    export_world.correlate_world(store)
    objects = exported(store)
    store.close()
    assert {o["status_code"] for o in objects} >= {"FAIL", "PASS", "needs_review", "MUTED"}
    assert problems(validator, objects) == []


@pytest.mark.parametrize("path", [("finding_info", "uid"), ("finding_info", "title"),
                                  ("metadata", "version"), ("metadata", "product"),
                                  ("severity_id",), ("time",), ("type_uid",), ("class_uid",)])
def test_an_object_without_a_required_attribute_is_refused(validator, world, path):
    """The check has teeth: drop a required attribute and the object is invalid."""
    world.action("e1", "2026-11-16T11:00:00Z", detail="ls")
    store = world.store()
    correlate(store)
    (obj,) = exported(store)
    store.close()
    assert validator.is_valid(obj)
    broken = copy.deepcopy(obj)
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    assert not validator.is_valid(broken)
