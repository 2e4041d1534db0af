"""`dorl k8s preflight`: what would stop a run on a real cluster, found before anything is created, one line per
problem naming the object and the fix (exit 2): offline from the config, server-side against the fake API server
(which answers SelfSubjectAccessReviews from its RBAC rules, serves CRDs and dry-runs creates strictly)."""

from __future__ import annotations

import pytest

from dorl import config
from dorl.k8s import rbac
from tests.k8s.conftest import EXAMPLE, SMALL_RUN, dorl_main, write_run
from tests.k8s.fake_api import FakeCluster, default_crds, old_jobset_crd


def preflight(monkeypatch, capsys, config_file, *args):
    return dorl_main(monkeypatch, capsys, "k8s", "preflight", "--config", str(config_file), *args)


def errors(err: str) -> list[str]:
    """The problem lines: the first after `error:`, then one per line."""
    lines = [line for line in err.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith("error:"))
    return [lines[start].removeprefix("error: "), *lines[start + 1 :]]


def run_file(tmp_path, **k8s):
    data = {**SMALL_RUN, "k8s": {**SMALL_RUN["k8s"], **k8s}}
    return write_run(tmp_path, {key: value for key, value in data.items() if value is not None})


# ---------------------------------------------------------------- the shipped example, offline


def test_the_example_without_a_model_source_fails_with_one_line(monkeypatch, capsys, tmp_path):
    """The audit's finding: preset paper (distilgpt2 + roberta-large) on offline pods, no model source."""
    code, out, err = preflight(monkeypatch, capsys, EXAMPLE, "--offline", "--set", "k8s.models_uri=null")
    assert code == 2, (out, err)
    [line] = errors(err)
    assert "distilgpt2 (model.name)" in line and "roberta-large (metrics.bertscore_model)" in line
    assert "HF_HUB_OFFLINE=1" in line and "k8s.models_uri: s3://dorl-example/models" in line
    assert "dorl models mirror distilgpt2 roberta-large --out s3://dorl-example/models" in line


def test_the_example_as_shipped_preflights_clean(monkeypatch, capsys):
    code, out, err = preflight(monkeypatch, capsys, EXAMPLE, "--offline")
    assert code == 0, err
    assert "preflight: no problem found (offline checks" in err


@pytest.mark.parametrize(
    "sets",
    [
        ["k8s.models_pvc=hf-models"],
        ["k8s.env={HF_HUB_CACHE: /opt/hf/hub, AWS_REGION: us-east-1}"],  # baked into the image
        ["model.source=config", "model.tokenizer=gpt2", "metrics.bertscore_model=minilm", "metrics.bertscore_layers=6"],
        ["model.name=/opt/models/distilgpt2", "metrics.bertscore_model=/opt/models/roberta-large"],  # folders
    ],
)
def test_every_model_source_is_accepted(monkeypatch, capsys, sets):
    args = ["--offline", "--set", "k8s.models_uri=null"] + [x for s in sets for x in ("--set", s)]
    code, out, err = preflight(monkeypatch, capsys, EXAMPLE, *args)
    assert code == 0, err


def test_the_example_renders_and_preflights_clean_against_a_ready_cluster(fake, monkeypatch, capsys):
    code, out, err = preflight(monkeypatch, capsys, EXAMPLE)
    assert code == 0, err
    assert "no problem found (offline and server-side checks)" in err
    dry = [p for m, p, b, st in fake.requests if m == "POST" and b.get("_dry")]
    assert sum(p.endswith("/jobs") for p in dry) == 14 and sum(p.endswith("/configmaps") for p in dry) == 1
    assert fake.writes() == [w for w in fake.writes() if "selfsubjectaccessreviews" in w[1]]  # nothing created


# ---------------------------------------------------------------- offline: credentials, node shape, JobSet settings


def test_pods_without_s3_credentials_are_refused(monkeypatch, capsys, tmp_path):
    code, out, err = preflight(monkeypatch, capsys, run_file(tmp_path, s3_secret=None), "--offline")
    assert code == 2
    [line] = errors(err)
    assert line.startswith("config keys 'k8s.s3_secret' and 'k8s.service_account': both unset")
    assert "IRSA or EKS Pod Identity" in line
    path = run_file(tmp_path, s3_secret=None, service_account="dorl-irsa")
    assert preflight(monkeypatch, capsys, path, "--offline")[0] == 0


def test_requests_must_fit_the_configured_node(monkeypatch, capsys, tmp_path):
    node = {"cpu": "190", "memory": "1900Gi", "gpus": 8, "ephemeral_storage": "400Gi"}
    assert preflight(monkeypatch, capsys, run_file(tmp_path, gpus=8, node=node), "--offline")[0] == 0
    small = {"cpu": "48", "memory": "256Gi", "gpus": 4, "ephemeral_storage": "15Gi"}
    code, out, err = preflight(monkeypatch, capsys, run_file(tmp_path, gpus=8, node=small), "--offline")
    assert code == 2
    lines = errors(err)
    train = [line for line in lines if "(train pods)" in line]
    assert {line.split(" requests ")[1].split(",")[0] for line in train} == {
        "cpu 64", "memory 512Gi", "nvidia.com/gpu 8", "ephemeral-storage 20Gi",
    }  # fmt: skip
    memory = next(line for line in train if "memory 512Gi" in line)
    assert memory.startswith("Job dorl-t1-abcd-train-tf (train pods): requests memory 512Gi, more than one node")
    assert "(k8s.node.memory: 256Gi)" in memory and "fix: lower k8s.train_pod.memory (per GPU" in memory
    storage = next(line for line in lines if "(cpu pods)" in line)
    assert "ephemeral-storage 20Gi" in storage and "fix: lower k8s.scratch_size" in storage
    assert len(lines) == 6  # one line per pool and resource, not one per Job


def test_unset_node_keys_are_not_checked(monkeypatch, capsys, tmp_path):
    path = run_file(tmp_path, gpus=8, node={"gpus": 8})
    assert preflight(monkeypatch, capsys, path, "--offline")[0] == 0


def test_a_rendezvous_longer_than_the_deadline_is_refused(monkeypatch, capsys, tmp_path):
    path = run_file(tmp_path, nodes=2, rendezvous_timeout=7200, active_deadline_seconds=3600, queue="q")
    code, out, err = preflight(monkeypatch, capsys, path, "--offline")
    assert code == 2
    [line] = errors(err)
    assert line.startswith("config key 'k8s.rendezvous_timeout': 7200 s is not below k8s.active_deadline_seconds")


def test_multi_node_without_gang_admission_is_a_note(monkeypatch, capsys, tmp_path):
    code, out, err = preflight(monkeypatch, capsys, run_file(tmp_path, nodes=2), "--offline")
    assert code == 0
    assert "note: k8s.nodes=2 without k8s.queue (Kueue) or k8s.scheduler_name" in " ".join(err.split())


# ---------------------------------------------------------------- server-side, against the fake API server


def test_a_missing_secret_is_named_with_the_command_that_creates_it(monkeypatch, capsys, tmp_path):
    with FakeCluster() as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
        code, out, err = preflight(monkeypatch, capsys, run_file(tmp_path))
        assert code == 2
        [line] = errors(err)
        assert line.startswith("Secret dorl/dorl-s3: not found (k8s.s3_secret)")
        assert "kubectl -n dorl create secret generic dorl-s3 --from-literal=AWS_ACCESS_KEY_ID=" in line
        cluster.add({"kind": "Secret", "metadata": {"name": "dorl-s3"}, "data": {"AWS_ACCESS_KEY_ID": "eA=="}})
        code, out, err = preflight(monkeypatch, capsys, run_file(tmp_path))
        [line] = errors(err)
        assert line.startswith("Secret dorl/dorl-s3: has no AWS_SECRET_ACCESS_KEY key")


def test_jobset_must_be_installed_and_at_least_v0_10(monkeypatch, capsys, tmp_path):
    path = run_file(tmp_path, nodes=2, queue="team-a")
    crds = [c for c in default_crds() if not c["metadata"]["name"].startswith("jobsets.")]
    with FakeCluster(crds=crds) as cluster:
        cluster.add({"kind": "Secret", "metadata": {"name": "dorl-s3"}, "data": _keys()})
        cluster.add({"kind": "LocalQueue", "metadata": {"name": "team-a"}})
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
        code, out, err = preflight(monkeypatch, capsys, path)
        assert code == 2
        [line] = errors(err)
        assert line.startswith("CustomResourceDefinition jobsets.jobset.x-k8s.io: JobSet (>= v0.10) is not installed")
        assert "jobset/releases/download/v0.10.1/manifests.yaml" in line
    with FakeCluster(crds=[old_jobset_crd(), *crds]) as cluster:  # JobSet v0.8: the field would be dropped
        cluster.add({"kind": "Secret", "metadata": {"name": "dorl-s3"}, "data": _keys()})
        cluster.add({"kind": "LocalQueue", "metadata": {"name": "team-a"}})
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
        code, out, err = preflight(monkeypatch, capsys, path)
        assert code == 2
        lines = errors(err)
        assert lines[0].startswith("CustomResourceDefinition jobsets.jobset.x-k8s.io: JobSet is older than v0.10")
        assert "onJobFailureMessagePatterns" in lines[0] and "BlockingRecreate" in lines[0]
        # and the dry runs of the JobSets say what the server refuses (one line per JobSet)
        refused = [line for line in lines[1:] if line.startswith("JobSet dorl-t1-")]
        assert len(refused) == 6
        assert all('dry run (400): strict decoding error: unknown field "spec.failurePolicy' in r for r in refused)


def _keys() -> dict:
    return {"AWS_ACCESS_KEY_ID": "eA==", "AWS_SECRET_ACCESS_KEY": "eA=="}


def test_kueue_queue_and_argo_must_exist(monkeypatch, capsys, tmp_path):
    path = run_file(tmp_path, queue="team-a")
    argo_less = [c for c in default_crds() if "argoproj" not in c["metadata"]["name"]]
    with FakeCluster(crds=argo_less) as cluster:
        cluster.add({"kind": "Secret", "metadata": {"name": "dorl-s3"}, "data": _keys()})
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
        code, out, err = preflight(monkeypatch, capsys, path, "--mode", "argo")
        assert code == 2
        lines = errors(err)
        assert lines[0].startswith("CustomResourceDefinition workflows.argoproj.io: Argo Workflows is not installed")
        assert lines[1].startswith("CustomResourceDefinition workflowtemplates.argoproj.io: Argo Workflows")
        assert lines[2].startswith("LocalQueue dorl/team-a: not found")
        assert lines[3].startswith("ServiceAccount dorl/dorl-t1-workflow: not found")
        assert len(lines) == 4
        assert "Kueue admits only with its `pod` integration" in " ".join(err.split())


def test_the_rendered_submit_role_is_enough_and_a_missing_verb_is_named(monkeypatch, capsys, tmp_path):
    path = run_file(tmp_path)
    rules = rbac.submit_rules(config.load(file=path))
    with FakeCluster(rules=rules) as cluster:
        cluster.add({"kind": "Secret", "metadata": {"name": "dorl-s3"}, "data": _keys()})
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
        code, out, err = preflight(monkeypatch, capsys, path)
        assert code == 0, err
        cluster.rules = [r for r in rules if r["resources"] != ["jobs"]] + [
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list"]}
        ]
        code, out, err = preflight(monkeypatch, capsys, path)
        assert code == 2
        [line] = errors(err)
        assert line.startswith("RBAC (jobs.batch in namespace dorl): you may not create, delete it")
        assert "--role dorl-t1-submit" in line


def test_a_missing_namespace_is_named(monkeypatch, capsys, tmp_path):
    with FakeCluster(namespaces=("other",)) as cluster:
        cluster.add({"kind": "Secret", "metadata": {"name": "dorl-s3"}, "data": _keys()})
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
        code, out, err = preflight(monkeypatch, capsys, run_file(tmp_path))
        assert code == 2
        assert errors(err) == [
            "Namespace dorl: not found; fix: kubectl create namespace dorl, or correct k8s.namespace"
        ]


def test_submit_runs_the_preflight_first_and_creates_nothing(monkeypatch, capsys, tmp_path):
    with FakeCluster() as cluster:  # no Secret
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
        code, out, err = dorl_main(monkeypatch, capsys, "k8s", "submit", "--config", str(run_file(tmp_path)))
        assert code == 2
        [line] = errors(err)
        assert line.startswith("Secret dorl/dorl-s3: not found")
        assert [w for w in cluster.writes() if "selfsubjectaccessreviews" not in w[1]] == []


def test_an_s3_compatible_store_gets_a_note_on_boto3_checksums(monkeypatch, capsys, tmp_path):
    path = run_file(tmp_path, endpoint_url="https://storage.googleapis.com")
    code, out, err = preflight(monkeypatch, capsys, path, "--offline")
    assert code == 0 and "AWS_REQUEST_CHECKSUM_CALCULATION: when_required" in " ".join(err.split())
    env = {"AWS_REQUEST_CHECKSUM_CALCULATION": "when_required", "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"}
    path = run_file(tmp_path, endpoint_url="https://storage.googleapis.com", env=env)
    code, out, err = preflight(monkeypatch, capsys, path, "--offline")
    assert code == 0 and "checksum" not in err


def test_every_page_names_the_jobset_version_preflight_requires():
    """The audit's finding: the docs said JobSet v0.8, which drops the failure rules' message patterns."""
    import re

    from dorl.k8s.server_checks import JOBSET_MIN
    from tests.conftest import REPO

    pages = [REPO / "README.md", *(REPO / "docs").glob("*.md"), REPO / "k8s/README.md", REPO / "k8s/argo/README.md"]
    versions = {
        (page.name, m.group(1))
        for page in pages
        for m in re.finditer(r"JobSet[^.\n]{0,40}?\bv(\d+\.\d+)", page.read_text())
    }
    assert versions and {v for _, v in versions} == {JOBSET_MIN.removeprefix("v")}, versions
    assert "JobSet v0.10 or newer" in (REPO / "docs/kubernetes.md").read_text()
