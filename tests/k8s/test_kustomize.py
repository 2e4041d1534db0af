"""k8s/: the committed base and Argo files are what `dorl k8s render` makes of k8s/examples/run.yaml, and
`kubectl kustomize` builds every overlay into objects valid against the Kubernetes 1.32 schemas (strict)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from dorl import config
from dorl.k8s.render import render
from tests.conftest import REPO

K8S = REPO / "k8s"
OVERLAYS = ["cpu-dev", "gpu", "multi-gpu"]
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def build(path) -> list[dict]:
    r = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def jobs(docs) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}


def container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_committed_manifests_are_current(tmp_path):
    spec = importlib.util.spec_from_file_location("render_examples", REPO / "scripts" / "render_k8s_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.render_examples(tmp_path / "base", tmp_path / "argo")
    fresh = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*.yaml")}
    committed = {p.relative_to(K8S): p.read_text() for d in ("base", "argo") for p in (K8S / d).rglob("*.yaml")}
    stale = sorted(str(p) for p in set(fresh) | set(committed) if fresh.get(p) != committed.get(p))
    assert not stale, f"re-render with `python scripts/render_k8s_examples.py`: {stale}"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_builds_into_valid_objects(overlay):
    docs = build(K8S / "overlays" / overlay)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap"] + ["Job"] * 14 + ["Role"] * 2 + ["RoleBinding"] * 2 + ["ServiceAccount"] * 2
    for d in docs:
        kubernetes_validate.validate(d, "1.32.0", strict=True)
    for job in jobs(docs).values():  # the overlays keep the base's policies
        assert job["spec"]["podFailurePolicy"]["rules"][0]["action"] == "FailJob"
        assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


@needs_kubectl
def test_the_base_builds_as_rendered():
    docs = build(K8S / "base")
    expected = render(config.load(file=K8S / "examples" / "run.yaml"))
    assert jobs(docs) == expected.jobs


@needs_kubectl
def test_gpu_overlay_schedules_gpu_pods_on_gpu_nodes():
    for name, job in jobs(build(K8S / "overlays" / "gpu")).items():
        pod = job["spec"]["template"]["spec"]
        has_gpu = "nvidia.com/gpu" in container(job)["resources"]["limits"]
        assert (pod.get("nodeSelector") == {"nvidia.com/gpu.present": "true"}) == has_gpu, name


@needs_kubectl
def test_multi_gpu_overlay_matches_what_render_makes_for_four_gpus():
    built = jobs(build(K8S / "overlays" / "multi-gpu"))
    rendered = render(config.load(file=K8S / "examples" / "run.yaml", sets=["k8s.gpus=4"])).jobs
    for name, job in built.items():
        c, r = container(job), container(rendered[name])
        assert c.get("command") == r.get("command"), name  # torchrun --nproc_per_node=4 on training Jobs only
        assert c["args"] == r["args"]
        assert c["resources"]["limits"].get("nvidia.com/gpu") == r["resources"]["limits"].get("nvidia.com/gpu")
    assert container(built["dorl-example-abcd-train-tf"])["command"][:5] == [
        "dorl",
        "launch",
        "torchrun",
        "--standalone",
        "--nproc_per_node=4",
    ]


@needs_kubectl
def test_cpu_dev_overlay_has_no_gpu_and_runs_its_own_config(tmp_path):
    docs = build(K8S / "overlays" / "cpu-dev")
    assert "nvidia.com/gpu" not in yaml.safe_dump_all(docs)
    assert {d["metadata"]["namespace"] for d in docs} == {"dorl-dev"}
    [cm] = [d for d in docs if d["kind"] == "ConfigMap"]
    path = tmp_path / "run.yaml"
    path.write_text(cm["data"]["run.yaml"])
    cfg = config.load(file=path)  # a valid run config: the tiny preset on simulated data, CPU only
    assert cfg.k8s.device == "cpu" and cfg.data.simulate == 300 and cfg.model.source == "config"
    rendered = render(cfg).jobs
    built = jobs(docs)
    for name, job in built.items():
        assert "tolerations" not in job["spec"]["template"]["spec"]
        c, r = container(job), container(rendered[name])
        assert c.get("command") == r.get("command") and c["args"] == r["args"], name  # same commands as render
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["AWS_ENDPOINT_URL"] == cfg.k8s.endpoint_url
