"""Validators from the official schemas in tests/k8s/official (gzipped unmodified copies of ../shared/schemas):
Argo's api/jsonschema/schema.json and the JobSet CRD's OpenAPI v3 schema, both closed (additionalProperties:
false on every object with declared properties) so that a misspelled key fails; kubernetes-validate (strict,
1.32) for core kinds."""

from __future__ import annotations

import copy
import functools
import gzip
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = Path(__file__).parent / "official"  # gzipped copies of ../shared/schemas (see its README.md)
K8S_VERSION = "1.32.0"
ARGO = "io.argoproj.workflow.v1alpha1."


def _close(node):
    if isinstance(node, dict):
        open_ = node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node
        if "properties" in node and not open_:
            node["additionalProperties"] = False
        for v in node.values():
            _close(v)
    elif isinstance(node, list):
        for v in node:
            _close(v)
    return node


@functools.cache
def _argo_validator(kind: str) -> jsonschema.Draft202012Validator:
    full = json.loads(gzip.decompress((SCHEMAS / "argo-workflows-schema.json.gz").read_bytes()))
    root = {
        "$schema": full["$schema"],
        "definitions": _close(full["definitions"]),
        "$ref": f"#/definitions/{ARGO}{kind}",
    }
    return jsonschema.Draft202012Validator(root)


@functools.cache
def _jobset_validator() -> jsonschema.Draft7Validator:
    crd = yaml.load(gzip.decompress((SCHEMAS / "jobset-crd.yaml.gz").read_bytes()), Loader=yaml.CSafeLoader)
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha2"]
    return jsonschema.Draft7Validator(_close(copy.deepcopy(version["schema"]["openAPIV3Schema"])))


def _leaves(e) -> list[str]:
    return [m for c in e.context for m in _leaves(c)] if e.context else [f"{'/'.join(map(str, e.path))}: {e.message}"]


def errors(doc: dict) -> list[str]:
    """Every schema violation of one object (empty: valid)."""
    kind = doc["kind"]
    if kind in ("Workflow", "WorkflowTemplate"):
        return [m for e in _argo_validator(kind).iter_errors(doc) for m in _leaves(e)]
    if kind == "JobSet":
        out = [m for e in _jobset_validator().iter_errors(doc) for m in _leaves(e)]
        for rj in doc["spec"]["replicatedJobs"]:  # the child Job, pods included, against the core schema
            meta = {**rj["template"].get("metadata", {}), "name": rj["name"]}
            job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": rj["template"]["spec"]}
            out += errors(job)
        return out
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [str(e)]
    return []
