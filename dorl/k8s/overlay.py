"""`dorl k8s submit --overlay DIR`: the rendered objects through a kustomize Component before they are sent.

DIR holds a kustomization.yaml of `kind: Component` (kustomize.config.k8s.io/v1alpha1) with patches, images,
labels...: one Component applies to any run's rendered base, unlike an overlay, which names its base. dorl
renders the run into a temporary base, builds `resources: [base]` + `components: [DIR]` with `kubectl
kustomize`, and submits what comes out (the Jobs, JobSets, ConfigMap, RBAC; the Argo WorkflowTemplate is not
part of the base and is sent as rendered).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from dorl.config.loader import load_yaml_all, read_yaml
from dorl.errors import ConfigError
from dorl.k8s.render import Manifests, write


def apply_overlay(m: Manifests, overlay: str | Path) -> Manifests:
    folder = Path(overlay).resolve()
    kfile = folder / "kustomization.yaml"
    if not kfile.is_file():
        raise ConfigError(f"overlay {overlay}: no kustomization.yaml in that folder")
    kind = read_yaml(kfile).get("kind")  # bounded: size, nesting, aliases (dorl.config.loader)
    if kind != "Component":
        raise ConfigError(
            f"overlay {kfile}: kind is {kind!r}; `submit --overlay` takes a kustomize Component "
            "(apiVersion: kustomize.config.k8s.io/v1alpha1, kind: Component), which applies to any run's base"
        )
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise ConfigError("overlay: kubectl is not installed (needed for `kubectl kustomize`)")
    with tempfile.TemporaryDirectory(prefix="dorl-overlay-") as tmp:
        write(m, Path(tmp) / "base")
        shutil.copytree(folder, Path(tmp) / "component")  # kustomize wants a relative path (files it names come too)
        top = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["base"],
            "components": ["component"],
        }
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(top))
        r = subprocess.run(
            [kubectl, "kustomize", tmp],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if r.returncode != 0:
        raise ConfigError(f"overlay {overlay}: kubectl kustomize failed: {r.stderr.strip()}")
    try:
        docs = [d for d in load_yaml_all(r.stdout) if d]
    except ValueError as e:
        raise ConfigError(f"overlay {overlay}: kubectl kustomize's output is not YAML dorl reads: {e}") from None
    if not all(isinstance(d, dict) and isinstance(d.get("metadata"), dict) for d in docs):
        raise ConfigError(f"overlay {overlay}: kubectl kustomize's output holds something other than objects")
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    [config_map] = by_kind.get("ConfigMap", {}).values()
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    jobs = {n: by_kind["Job"][n] for n in m.jobs}
    jobsets = {n: by_kind["JobSet"][n] for n in m.jobsets}
    return Manifests(config_map, m.steps, jobs, jobsets, rbac, m.workflow_template, m.workflow)
