"""`dorl k8s submit|status|logs` through the real kubernetes client against a fake API server over HTTP."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import run_dorl
from tests.k8s.conftest import SMALL_RUN, dorl_main, write_run


def expected_after(ds: str) -> dict[str, set[str]]:
    """The dependencies of one dataset's Jobs in SMALL_RUN, written out by hand."""
    p = f"dorl-t1-{ds}-"
    return {
        p + "data": set(),
        p + "train-tf": {p + "data"},
        p + "relabel": {p + "train-tf"},
        p + "relabel-assemble": {p + "relabel"},
        p + "eval-tf": {p + "train-tf"},
        p + "train-dt": {p + "relabel-assemble"},
        p + "train-ilql": {p + "relabel-assemble"},
        p + "eval-dt": {p + "train-dt"},
        p + "eval-ilql": {p + "train-ilql"},
    }


def all_expected() -> dict[str, set[str]]:
    out = {**expected_after("abcd"), **expected_after("multiwoz22")}
    out["dorl-t1-report"] = {n for n in out if "-eval-" in n}
    return out


def test_jobs_are_created_only_once_their_inputs_succeeded(fake, small_run):
    r = run_dorl("k8s", "submit", "--config", str(small_run))
    assert r.returncode == 0, r.stderr
    expected = all_expected()
    created = fake.created("jobs")
    assert sorted(created) == sorted(expected)  # every Job, once
    for name in created:
        assert expected[name] <= fake.complete_when_created[name], name  # its inputs had succeeded
    # and as early as possible: with data done, both datasets' tf started before either relabel
    first_tf = min(created.index("dorl-t1-abcd-train-tf"), created.index("dorl-t1-multiwoz22-train-tf"))
    assert created.index("dorl-t1-multiwoz22-data") < first_tf
    [cm_name] = fake.created("configmaps")
    assert cm_name.startswith("dorl-t1-config-")  # named by the hash of the config it holds
    assert created[-1] == "dorl-t1-report"
    assert "run t1: 19 Jobs succeeded" in r.stderr
    assert "dorl artifacts ls s3://bucket/runs/t1/report" in r.stderr
    # what was sent is the rendered Job: the relabel shards as an Indexed Job of 2
    job = fake.objects[("jobs", "dorl-t1-abcd-relabel")]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    cm = fake.objects[("configmaps", cm_name)]
    assert cm["immutable"] is True
    assert yaml.safe_load(cm["data"]["run.yaml"])["pipeline"]["methods"] == ["dt", "ilql"]


def test_a_failed_job_stops_the_run_with_a_clear_message(fake, small_run):
    why = "Container dorl for pod dorl/dorl-t1-abcd-train-tf-x failed with exit code 2 matching FailJob rule at index 0"
    fake.fail = {"dorl-t1-abcd-train-tf": ("PodFailurePolicy", why)}
    r = run_dorl("k8s", "submit", "--config", str(small_run))
    assert r.returncode == 1
    err = " ".join((r.stdout + r.stderr).split())
    assert "Job dorl-t1-abcd-train-tf failed: PodFailurePolicy: Container dorl" in err
    assert "dorl k8s logs --config <run.yaml> --stage train --dataset abcd --method tf" in err
    assert "a user error" in err and "kubectl -n dorl delete job dorl-t1-abcd-train-tf" in err
    assert "Traceback" not in r.stderr
    created = fake.created("jobs")
    assert not [n for n in created if "relabel" in n or "report" in n]  # nothing downstream was started


def test_submitting_again_watches_existing_jobs_instead_of_recreating(fake, small_run):
    assert run_dorl("k8s", "submit", "--config", str(small_run)).returncode == 0
    first = fake.created("jobs")
    r = run_dorl("k8s", "submit", "--config", str(small_run))
    assert r.returncode == 0, r.stderr
    assert fake.created("jobs") == first  # the second submit created no Job (each POST got 409)
    assert not [w for w in fake.writes() if w[0] == "PUT" and "configmaps" in w[1]]  # immutable: never replaced
    assert "already exists: watching it" in r.stderr


def test_a_resubmit_after_an_edit_is_refused_naming_what_changed(fake, small_run, tmp_path):
    assert run_dorl("k8s", "submit", "--config", str(small_run)).returncode == 0
    jobs = fake.created("jobs")
    edited = write_run(tmp_path, {**SMALL_RUN, "tf": {"lr": 1.0e-4}}, "edited.yaml")
    r = run_dorl("k8s", "submit", "--config", str(edited))
    assert r.returncode == 2, r.stderr
    err = " ".join(r.stderr.split())
    assert "were made from another config (changed keys: tf.lr)" in err and "new 'run'" in err
    assert fake.created("jobs") == jobs and len(fake.created("configmaps")) == 1  # nothing created
    # the same edit as a new run is a new run
    renamed = write_run(tmp_path, {**SMALL_RUN, "run": "t2", "tf": {"lr": 1.0e-4}}, "renamed.yaml")
    assert run_dorl("k8s", "submit", "--config", str(renamed)).returncode == 0


def test_multi_node_training_is_submitted_as_jobsets(fake, tmp_path):
    run = write_run(tmp_path, {**SMALL_RUN, "k8s": {**SMALL_RUN["k8s"], "nodes": 2}})
    r = run_dorl("k8s", "submit", "--config", str(run))
    assert r.returncode == 0, r.stderr
    jobsets = fake.created("jobsets")
    assert sorted(jobsets) == sorted(n for n in all_expected() if "-train-" in n)
    assert not [n for n in fake.created("jobs") if "-train-" in n]
    assert fake.objects[("jobsets", "dorl-t1-abcd-train-tf")]["apiVersion"] == "jobset.x-k8s.io/v1alpha2"


@pytest.mark.skipif(__import__("shutil").which("kubectl") is None, reason="kubectl is not installed")
def test_submit_applies_the_named_kustomize_component(fake, small_run, tmp_path):
    comp = tmp_path / "gpu-nodes"
    comp.mkdir()
    (comp / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
        "commonAnnotations: {team: nlp}\n"
        "images: [{name: ghcr.io/dorl/dorl, newTag: '9.9'}]\n"
    )
    r = run_dorl("k8s", "submit", "--config", str(small_run), "--overlay", str(comp))
    assert r.returncode == 0, r.stderr
    job = fake.objects[("jobs", "dorl-t1-abcd-data")]
    assert job["metadata"]["annotations"]["team"] == "nlp"
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/dorl/dorl:9.9"
    not_component = tmp_path / "plain"
    not_component.mkdir()
    (not_component / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
    )
    r = run_dorl("k8s", "submit", "--config", str(small_run), "--overlay", str(not_component))
    assert r.returncode == 2 and "takes a kustomize Component" in " ".join(r.stderr.split())


def test_argo_mode_creates_the_template_and_a_workflow(fake, small_run):
    from dorl import config
    from dorl.k8s.workflow import workflow_template

    fake.add({"kind": "ServiceAccount", "metadata": {"name": "dorl-t1-workflow"}})  # from rbac.yaml
    r = run_dorl("k8s", "submit", "--config", str(small_run), "--mode", "argo")
    assert r.returncode == 0, r.stderr
    assert fake.created("workflowtemplates") == ["dorl-t1"]
    [wf] = fake.created("workflows")
    assert wf.startswith("dorl-t1-") and f"Workflow {wf} created" in r.stderr
    sent = fake.objects[("workflowtemplates", "dorl-t1")]
    assert sent["spec"] == workflow_template(config.load(file=small_run))["spec"]
    assert fake.objects[("workflows", wf)]["spec"] == {"workflowTemplateRef": {"name": "dorl-t1"}}
    # again: the template is replaced (PUT with its resourceVersion), a second Workflow is created
    assert run_dorl("k8s", "submit", "--config", str(small_run), "--mode", "argo").returncode == 0
    assert ("PUT", "/apis/argoproj.io/v1alpha1/namespaces/dorl/workflowtemplates/dorl-t1") in fake.writes()
    assert len(fake.created("workflows")) == 2


def test_status_and_logs(fake, small_run, monkeypatch, capsys):
    assert run_dorl("k8s", "submit", "--config", str(small_run)).returncode == 0
    monkeypatch.setenv("COLUMNS", "250")
    code, out, err = dorl_main(monkeypatch, capsys, "k8s", "status", "--config", str(small_run))
    assert code == 0, err
    rows = [line for line in out.splitlines() if "dorl-t1-" in line]
    assert len(rows) == 19 and all("Succeeded" in line for line in rows)
    assert any("relabel-assemble" in line and "multiwoz22" in line for line in rows)

    args = ["k8s", "logs", "--config", str(small_run), "--stage", "relabel", "--dataset", "abcd", "--tail", "2"]
    code, out, err = dorl_main(monkeypatch, capsys, *args)
    assert code == 0, err
    headers = [line for line in out.splitlines() if line.startswith("==> ")]
    assert headers == ["==> dorl-t1-abcd-relabel-0-x0000 <==", "==> dorl-t1-abcd-relabel-1-x0001 <=="]
    assert out.count("(container dorl)") == 4  # 2 shards x --tail 2

    args = ["k8s", "logs", "--config", str(small_run), "--stage", "train", "--method", "nope"]
    code, out, err = dorl_main(monkeypatch, capsys, *args)
    assert code == 1 and "no pod in namespace dorl matches" in err


BAD = {
    "unknown dataset": ({"pipeline": {"datasets": ["abcd", "dstc8"]}}, "pipeline.datasets[1]"),
    "gpus zero": ({"k8s": {"gpus": 0}}, "k8s.gpus': 0 is out of range; allowed: >= 1"),
    "gpus negative": ({"k8s": {"gpus": -2}}, "k8s.gpus': -2 is out of range; allowed: >= 1"),
    "gpus not an int": ({"k8s": {"gpus": 1.5}}, "k8s.gpus': expected int"),
    "gpus a word": ({"k8s": {"gpus": "two"}}, "k8s.gpus': expected int"),
    "bucket missing": ({"root": None}, "root must be s3://bucket/prefix, got 'runs'"),
    "local root": ({"root": "/data/runs"}, "root must be s3://bucket/prefix"),
    "no bucket": ({"root": "s3:///runs"}, "s3:///runs: an S3 URI needs a bucket"),
}


CASES = [(case, "jobs") for case in BAD] + [("unknown dataset", "argo"), ("bucket missing", "argo")]


@pytest.mark.parametrize(("case", "mode"), CASES)
def test_bad_run_configs_submit_nothing(fake, tmp_path, monkeypatch, capsys, case, mode):
    change, message = BAD[case]
    data = {**SMALL_RUN, **{k: v for k, v in change.items() if k != "k8s" and k != "pipeline"}}
    if "k8s" in change:
        data["k8s"] = {**SMALL_RUN["k8s"], **change["k8s"]}
    if "pipeline" in change:
        data["pipeline"] = {**SMALL_RUN["pipeline"], **change["pipeline"]}
    if data.get("root") is None:
        del data["root"]  # the default, ./runs: no bucket at all
    code, out, err = dorl_main(monkeypatch, capsys, "k8s", "submit", "--config", str(write_run(tmp_path, data)),
                               "--mode", mode)  # fmt: skip
    assert code == 2, (out, err)
    assert message in " ".join(err.split())
    assert "Traceback" not in err
    assert fake.requests == []  # not one request reached the API server


# ---------------------------------------------------------------- what a real cluster does that the old fake hid


def test_an_unchanged_multi_node_config_can_be_submitted_again(fake, tmp_path, monkeypatch, capsys):
    """The audit's finding: JobSets lacked the config-hash annotation, so a resubmit was refused as 'another
    config'."""
    run = write_run(tmp_path, {**SMALL_RUN, "k8s": {**SMALL_RUN["k8s"], "nodes": 2, "queue": "q"}})
    fake.add({"kind": "LocalQueue", "metadata": {"name": "q"}})
    assert dorl_main(monkeypatch, capsys, "k8s", "submit", "--config", str(run))[0] == 0
    first = fake.created("jobsets")
    code, out, err = dorl_main(monkeypatch, capsys, "k8s", "submit", "--config", str(run))
    assert code == 0, err
    assert fake.created("jobsets") == first  # each watched, none created again


def test_api_errors_are_retried_and_a_persistent_one_exits_75(fake, small_run, monkeypatch, capsys):
    """The audit's finding: one 503 or 429 ended `submit --mode jobs`."""
    fake.script("POST", r"/jobs$", 503, 429, 500, retry_after=0)
    fake.script("GET", r"/jobs$", 503)
    code, out, err = dorl_main(monkeypatch, capsys, "k8s", "submit", "--config", str(small_run))
    assert code == 0, err
    assert [st for m, p, b, st in fake.requests if m == "POST" and p.endswith("/jobs")][:4] == [503, 429, 500, 201]
    # an API server that stays down: the retries (k8s.api_retries) run out, exit 75 (submit again later)
    fake.script("GET", r"/jobs$", *[503] * 3)
    args = ["k8s", "submit", "--config", str(small_run), "--set", "k8s.api_retries=2", "--skip-preflight"]
    code, out, err = dorl_main(monkeypatch, capsys, *args)
    assert code == 75, err
    assert "no answer but errors while listing the Jobs of run t1, after the retries" in " ".join(err.split())


def test_a_create_retried_after_a_lost_answer_is_not_made_twice(fake, small_run, monkeypatch, capsys):
    """The Workflow is named by submit, not by the server's generateName: a create whose answer was lost (stored,
    but answered 503) and retried gets 409 for that name instead of starting the run twice."""
    fake.add({"kind": "ServiceAccount", "metadata": {"name": "dorl-t1-workflow"}})
    real, lost = fake._create, []

    def create_then_lose_the_answer(ns, plural, body, crd, query):
        code, payload, headers = real(ns, plural, body, crd, query)
        if plural == "workflows" and code == 201 and query.get("dryRun") != ["All"] and not lost:
            lost.append(body["metadata"]["name"])
            return 503, {"kind": "Status", "code": 503}, {}
        return code, payload, headers

    monkeypatch.setattr(fake, "_create", create_then_lose_the_answer)
    code, out, err = dorl_main(monkeypatch, capsys, "k8s", "submit", "--config", str(small_run), "--mode", "argo")
    assert code == 0, err
    assert [n for (p, n) in fake.objects if p == "workflows"] == lost  # one Workflow, not two


def test_a_pod_that_cannot_start_stops_submit_within_seconds_naming_it(fake, small_run, monkeypatch, capsys):
    """The audit's finding: a missing Secret left pods in CreateContainerConfigError for 48 h while submit
    reported Running. (The preflight would have named the Secret: skipped here to see what submit does.)"""
    del fake.objects[("secrets", "dorl-s3")]
    args = ["k8s", "submit", "--config", str(small_run), "--skip-preflight", "--set", "k8s.stuck_seconds=0.1"]
    code, out, err = dorl_main(monkeypatch, capsys, *args)
    assert code == 2, err
    err = " ".join(err.split())
    assert "pod dorl-t1-abcd-data-0-x0000 (dorl-t1-abcd-data) cannot start: CreateContainerConfigError: " in err
    assert 'secret "dorl-s3" not found; create the Secret or ConfigMap it names (k8s.s3_secret)' in err
    # `status` names it as well, and a pod whose image cannot be pulled
    fake.bad_images["ghcr.io/dorl/dorl:9.9"] = "ImagePullBackOff"
    image = {**SMALL_RUN["k8s"], "image": "ghcr.io/dorl/dorl:9.9"}
    bad = write_run(small_run.parent, {**SMALL_RUN, "run": "t3", "k8s": image}, "bad.yaml")
    fake.handle("POST", "/apis/batch/v1/namespaces/dorl/jobs", _job(bad, "dorl-t3-abcd-data"))
    monkeypatch.setenv("COLUMNS", "250")
    code, out, err = dorl_main(monkeypatch, capsys, "k8s", "status", "--config", str(bad))
    assert code == 0, err
    assert "pod dorl-t3-abcd-data-0-x0000 (dorl-t3-abcd-data) cannot start: ImagePullBackOff" in " ".join(out.split())


def _job(path, name: str) -> dict:
    from dorl import config
    from dorl.k8s.render import render

    return render(config.load(file=path)).jobs[name]


def test_status_and_logs_see_the_pods_of_a_jobset(fake, tmp_path, monkeypatch, capsys):
    run = write_run(tmp_path, {**SMALL_RUN, "k8s": {**SMALL_RUN["k8s"], "nodes": 2, "queue": "q"}})
    fake.add({"kind": "LocalQueue", "metadata": {"name": "q"}})
    assert dorl_main(monkeypatch, capsys, "k8s", "submit", "--config", str(run))[0] == 0
    args = ["k8s", "logs", "--config", str(run), "--stage", "train", "--dataset", "abcd", "--method", "dt"]
    code, out, err = dorl_main(monkeypatch, capsys, *args)
    assert code == 0, err
    headers = [line for line in out.splitlines() if line.startswith("==> ")]
    assert headers == ["==> dorl-t1-abcd-train-dt-n-0-0-x0000 <==", "==> dorl-t1-abcd-train-dt-n-0-1-x0001 <=="]


@pytest.mark.parametrize("mode", ["jobs", "argo"])
def test_submit_needs_no_more_than_the_rendered_submit_role(tmp_path, monkeypatch, capsys, mode):
    """The fake enforces RBAC: a whole submit (preflight included) under exactly Role dorl-<run>-submit."""
    from dorl import config
    from dorl.k8s import rbac
    from tests.k8s.conftest import S3_SECRET
    from tests.k8s.fake_api import FakeCluster

    run = write_run(tmp_path, {**SMALL_RUN, "k8s": {**SMALL_RUN["k8s"], "nodes": 2, "queue": "q"}})
    with FakeCluster(finish_after=1, rules=rbac.submit_rules(config.load(file=run))) as cluster:
        cluster.add(dict(S3_SECRET))
        cluster.add({"kind": "LocalQueue", "metadata": {"name": "q"}})
        cluster.add({"kind": "ServiceAccount", "metadata": {"name": "dorl-t1-workflow"}})
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
        code, out, err = dorl_main(monkeypatch, capsys, "k8s", "submit", "--config", str(run), "--mode", mode)
        assert code == 0, err
        # nothing refused but reading CRDs, which no namespaced Role can grant (preflight notes it)
        assert {r[1].rsplit("/", 2)[-2] for r in cluster.requests if r[3] == 403} <= {"customresourcedefinitions"}
        assert "not readable (forbidden), its version not checked" in err
        cluster.rules = [r for r in cluster.rules if r["resources"] != ["configmaps"]]  # and it is enforced
        code, out, err = dorl_main(monkeypatch, capsys, "k8s", "submit", "--config", str(run), "--mode", mode)
        assert code == 2 and "RBAC (configmaps in namespace dorl): you may not create, get it" in err
