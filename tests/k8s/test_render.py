"""`dorl k8s render`: every object validates against the official Kubernetes 1.32 schemas (strict), and the
Jobs carry the agreed commands, policies, security settings, resources and labels."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from dorl import config
from dorl.errors import ConfigError
from dorl.k8s.render import render
from tests.conftest import run_dorl
from tests.k8s.conftest import EXAMPLE
from tests.k8s.schemas import errors

K8S_VERSION = "1.32.0"

VARIANTS = {
    "example": [],
    "multi-node": ["k8s.nodes=2", "k8s.gpus=4"],
    "cpu + simulate": ["k8s.device=cpu", "data.simulate=50", "k8s.relabel_shards=1"],
    "everything set": [
        "k8s.relabel_shards=1",
        "k8s.gpus=2",
        "k8s.launcher=deepspeed",
        "k8s.s3_secret=null",
        "k8s.service_account=dorl-runner",
        "k8s.image_pull_secrets=[regcred]",
        "k8s.node_selector={pool: ml}",
        "k8s.gpu_node_selector={gpu: h100}",
        "k8s.priority_class=batch-low",
        "k8s.endpoint_url=http://minio.minio:9000",
        "pipeline.datasets=[abcd, multiwoz22, taskmaster3]",
        "pipeline.methods=[ilql]",
        "k8s.queue=team-a",
        "k8s.scheduler_name=volcano",
        "k8s.labels={team: nlp}",
        "k8s.annotations={owner: nlp}",
        "k8s.tolerations=[{key: dedicated, operator: Equal, value: ml, effect: NoSchedule}]",
        "k8s.extra_resources={vpc.amazonaws.com/efa: '4'}",
        "k8s.models_uri=s3://models/hub",
        "k8s.models_pvc=hf-models",
    ],
    "multi-node, queue": ["k8s.nodes=4", "k8s.gpus=8", "k8s.queue=team-a", "k8s.extra_resources={rdma/ib: '8'}"],
}


def load(*sets: str):
    return config.load(file=EXAMPLE, sets=sets)


def objects(m):
    return [m.config_map, *m.rbac, *m.jobs.values(), *m.jobsets.values()]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_rendered_object_validates_strictly(variant):
    """Core kinds: kubernetes-validate strict 1.32; JobSets: the JobSet CRD's schema (closed) and their Job."""
    m = render(load(*VARIANTS[variant]))
    for obj in objects(m):
        assert errors(obj) == [], obj["metadata"]["name"]
    assert len(m.jobs) + len(m.jobsets) == len(m.steps)
    assert {o["kind"] for o in m.rbac} == {"ServiceAccount", "Role", "RoleBinding"}


def test_strict_validation_would_catch_a_misspelled_or_mistyped_key():
    job = next(iter(render(load()).jobs.values()))
    bad = copy.deepcopy(job)
    bad["spec"]["template"]["spec"]["restartPolicyy"] = "Never"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = copy.deepcopy(job)
    bad["spec"]["backoffLimit"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_jobs_fail_fast_on_user_errors_and_run_locked_down():
    m = render(load())
    for name, job in m.jobs.items():
        spec = job["spec"]
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        assert (
            spec.get("backoffLimit", spec.get("backoffLimitPerIndex")) == 6 and spec["activeDeadlineSeconds"] == 172800
        )
        assert spec["ttlSecondsAfterFinished"] == 259200
        fail, transient, ignore = spec["podFailurePolicy"]["rules"]  # the exit-code contract
        assert fail == {"action": "FailJob", "onExitCodes": {"containerName": "dorl", "operator": "In", "values": [2]}}
        assert transient == {  # counted: a transient fault that never clears ends within backoffLimit
            "action": "Count",
            "onExitCodes": {"containerName": "dorl", "operator": "In", "values": [75]},
        }
        assert ignore["action"] == "Ignore" and ignore["onPodConditions"][0]["type"] == "DisruptionTarget"
        sec = pod["securityContext"]
        assert sec["runAsNonRoot"] is True and sec["runAsUser"] == 10001
        assert sec["seccompProfile"] == {"type": "RuntimeDefault"}
        [c] = pod["containers"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory"
        assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
        assert {"name": "config", "mountPath": "/etc/dorl", "readOnly": True} in c["volumeMounts"]
        # credentials only by reference: the Secret's keys become env, no value in the manifest
        assert c["envFrom"] == [{"secretRef": {"name": "dorl-s3"}}]
        assert not [e for e in c["env"] if e["name"].startswith("AWS_") and e["name"] not in ("AWS_REGION",)]
        assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
        assert c["args"][-2:] == ["--config", "/etc/dorl/run.yaml"] or c["command"] == ["/bin/sh", "-c"]
        assert name == job["metadata"]["name"] and len(name) <= 63


def test_labels_name_run_dataset_stage_and_method():
    m = render(load())
    job = m.jobs["dorl-example-abcd-train-tf-top"]
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["dorl.dev/run"] == "example" and labels["app.kubernetes.io/instance"] == "example"
        assert labels["dorl.dev/dataset"] == "abcd"
        assert labels["dorl.dev/stage"] == "train" and labels["app.kubernetes.io/component"] == "train"
        assert labels["dorl.dev/method"] == "tf_top"
        assert labels["app.kubernetes.io/name"] == "dorl" and labels["app.kubernetes.io/part-of"] == "dorl"
    report = m.jobs["dorl-example-report"]["metadata"]["labels"]
    assert report["dorl.dev/stage"] == "report" and "dorl.dev/dataset" not in report


def test_gpus_go_to_training_relabel_and_evaluate_pods_only():
    m = render(load())
    gpus = {}
    for name, job in m.jobs.items():
        pod = job["spec"]["template"]["spec"]
        limits = pod["containers"][0]["resources"]["limits"]
        gpus[name.removeprefix("dorl-example-").removeprefix("abcd-")] = limits.get("nvidia.com/gpu")
        assert ("tolerations" in pod) == ("nvidia.com/gpu" in limits)
    assert gpus == {
        "data": None,
        "train-tf": "1",
        "relabel": "1",
        "relabel-assemble": None,
        "eval-tf": "1",
        **{f"train-{m}": "1" for m in ("tf-top", "tf-all", "dt", "ilql")},
        **{f"eval-{m}": "1" for m in ("tf-top", "tf-all", "dt", "ilql")},
        "report": None,
    }
    cpu = render(load("k8s.device=cpu"))
    for job in cpu.jobs.values():
        pod = job["spec"]["template"]["spec"]
        assert "nvidia.com/gpu" not in str(pod) and "tolerations" not in pod


def test_commands_are_the_agreed_command_lines():
    m = render(load())
    run = "s3://dorl-example/runs/example/abcd"
    cfg = ["--config", "/etc/dorl/run.yaml"]

    def args(name):
        return m.jobs[f"dorl-example-{name}"]["spec"]["template"]["spec"]["containers"][0]["args"]

    assert args("abcd-data") == ["data", "prepare", "--dataset", "abcd", "--out", f"{run}/data", *cfg]
    assert args("abcd-train-tf") == ["train", "--method", "tf", "--data", f"{run}/data", "--out", f"{run}/tf", *cfg]
    assert args("abcd-relabel") == [
        "relabel", "--data", f"{run}/data", "--base", f"{run}/tf", "--out", f"{run}/relabel",
        "--shard", "$(JOB_COMPLETION_INDEX)/4", *cfg,
    ]  # fmt: skip
    assert args("abcd-relabel-assemble") == [
        "relabel", "--data", f"{run}/data", "--base", f"{run}/tf", "--out", f"{run}/relabel", "--assemble", "4", *cfg,
    ]  # fmt: skip
    assert args("abcd-train-tf-top") == [
        "train", "--method", "tf_top", "--data", f"{run}/relabel", "--base", f"{run}/tf", "--out", f"{run}/tf_top",
        *cfg,
    ]  # fmt: skip
    assert args("abcd-eval-dt") == [
        "evaluate", "--method", "dt", "--model", f"{run}/dt", "--data", f"{run}/data", "--out", f"{run}/eval/dt", *cfg,
    ]  # fmt: skip
    assert args("abcd-eval-tf") == [
        "evaluate", "--method", "tf", "--model", f"{run}/tf", "--data", f"{run}/data", "--out", f"{run}/eval/tf", *cfg,
    ]  # fmt: skip
    evals = [f"{run}/eval/{x}" for x in ("tf", "tf_all", "tf_top", "dt", "ilql")]
    expected = ["report"] + [w for e in evals for w in ("--eval", e)]
    assert args("report") == expected + ["--out", "s3://dorl-example/runs/example/report", *cfg]
    # the relabel shards: one Indexed Job whose pods read their index from the annotation
    relabel = m.jobs["dorl-example-abcd-relabel"]
    assert relabel["spec"]["completionMode"] == "Indexed" and relabel["spec"]["parallelism"] == 4
    env = relabel["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}} in env  # fmt: skip
    one = render(load("k8s.relabel_shards=1"))
    assert "dorl-example-abcd-relabel-assemble" not in one.jobs
    assert "--shard" not in str(one.jobs["dorl-example-abcd-relabel"])


def test_simulated_data_is_prepared_by_the_data_stage_itself():
    m = render(load("data.simulate=300", "data.seed=7"))
    c = m.jobs["dorl-example-abcd-data"]["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["data", "prepare", "--dataset", "abcd", "--out", "s3://dorl-example/runs/example/abcd/data",
                         "--config", "/etc/dorl/run.yaml"]  # fmt: skip
    run_yaml = m.config_map["data"]["run.yaml"]
    assert "simulate: 300" in run_yaml and "seed: 7" in run_yaml


def test_multi_gpu_training_uses_a_launcher_in_one_pod():
    def command(*sets):
        job = render(load(*sets)).jobs["dorl-example-abcd-train-dt"]
        return job["spec"]["template"]["spec"]["containers"][0].get("command")

    assert command() is None  # one GPU: the image's entrypoint, `dorl`
    # `dorl launch` keeps the exit-code contract through the launcher
    assert command("k8s.gpus=4") == ["dorl", "launch", "torchrun", "--standalone", "--nproc_per_node=4", "-m", "dorl"]
    assert command("k8s.gpus=8", "k8s.launcher=deepspeed") == [
        "dorl", "launch", "deepspeed", "--num_gpus=8", "--no_local_rank", "--module", "dorl"
    ]  # fmt: skip
    m = render(load("k8s.gpus=4"))
    limits = m.jobs["dorl-example-abcd-train-dt"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "4"
    eval_limits = m.jobs["dorl-example-abcd-eval-dt"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert eval_limits["limits"]["nvidia.com/gpu"] == "1"


def test_multi_node_training_is_a_jobset_restarted_as_a_group():
    m = render(load("k8s.nodes=3", "k8s.gpus=8", "k8s.queue=team-a", "k8s.scheduler_name=kueue-gang"))
    name = "dorl-example-abcd-train-ilql"
    js = m.jobsets[name]
    assert set(m.jobsets) == {s.name for s in m.steps if s.stage == "train"} and name not in m.jobs
    assert js["apiVersion"] == "jobset.x-k8s.io/v1alpha2"
    assert js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"  # gang admission by Kueue
    spec = js["spec"]
    assert spec["network"] == {"enableDNSHostnames": True, "publishNotReadyAddresses": True}  # its own Service
    policy = spec["failurePolicy"]
    # every restart counted (no RestartJobSetAndIgnoreMaxRestarts); new pods only once the old ones are gone
    assert policy["maxRestarts"] == 6 and policy["restartStrategy"] == "BlockingRecreate"
    user, deadline = policy["rules"]
    assert user["action"] == "FailJobSet" and user["onJobFailureMessagePatterns"] == [
        "failed with exit code 2 matching"
    ]
    assert deadline == {"name": "DeadlineExceeded", "action": "FailJobSet", "onJobFailureReasons": ["DeadlineExceeded"]}
    assert "IgnoreMaxRestarts" not in str(js)
    assert (
        js["metadata"]["annotations"]["dorl.dev/config-hash"]
        == m.config_map["metadata"]["annotations"]["dorl.dev/config-hash"]
    )
    [rj] = spec["replicatedJobs"]
    job = rj["template"]["spec"]
    assert rj["replicas"] == 1 and job["completions"] == job["parallelism"] == 3 and job["backoffLimit"] == 0
    assert job["activeDeadlineSeconds"] == 172800  # each attempt; the JobSet: (6 + 1) x this at most
    codes = [r["onExitCodes"]["values"] for r in job["podFailurePolicy"]["rules"] if "onExitCodes" in r]
    assert codes == [[2], [75]]
    pod = job["template"]["spec"]
    assert pod["schedulerName"] == "kueue-gang"
    c = pod["containers"][0]
    assert c["command"] == [
        "dorl", "launch", "torchrun", "--nnodes=3", "--nproc_per_node=8", "--rdzv_backend=c10d",
        f"--rdzv_endpoint={name}-n-0-0.{name}:29500", f"--rdzv_id={name}", "--rdzv_conf=join_timeout=1800",
        "--max_restarts=0", "-m", "dorl",
    ]  # fmt: skip
    assert c["args"][:2] == ["train", "--method"]
    assert c["ports"] == [{"name": "rendezvous", "containerPort": 29500, "protocol": "TCP"}]
    # cpu, memory and /dev/shm scale with the GPUs of the pod (8 x the per-GPU train_pod figures)
    assert c["resources"]["requests"]["cpu"] == "64" and c["resources"]["limits"]["memory"] == "512Gi"
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["sizeLimit"] == "128Gi"
    assert len(f"{name}-n-0-2") <= 63
    assert m.workflow_template is not None  # Argo creates the JobSets (resource templates)


def test_relabel_shards_have_their_own_retries():
    job = render(load()).jobs["dorl-example-abcd-relabel"]["spec"]
    assert job["backoffLimitPerIndex"] == 6 and job["maxFailedIndexes"] == 0 and "backoffLimit" not in job
    assert job["completions"] == 4 and job["completionMode"] == "Indexed"


def test_cluster_specifics_come_from_the_run_config():
    m = render(load(
        "k8s.labels={team: nlp}", "k8s.annotations={owner: nlp}", "k8s.priority_class=batch-low",
        "k8s.tolerations=[{key: dedicated, operator: Equal, value: ml, effect: NoSchedule}]",
        "k8s.extra_resources={vpc.amazonaws.com/efa: '4'}", "k8s.scheduler_name=volcano", "k8s.queue=q",
        "k8s.train_pod.cpu='6'", "k8s.gpus=2",
    ))  # fmt: skip
    train = m.jobs["dorl-example-abcd-train-dt"]
    pod = train["spec"]["template"]
    assert train["metadata"]["labels"]["team"] == "nlp" and pod["metadata"]["labels"]["team"] == "nlp"
    assert train["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "q"
    assert pod["metadata"]["annotations"] == {"owner": "nlp"}
    spec = pod["spec"]
    assert spec["schedulerName"] == "volcano" and spec["priorityClassName"] == "batch-low"
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in spec["tolerations"]
    res = spec["containers"][0]["resources"]
    assert res["limits"]["vpc.amazonaws.com/efa"] == "4" and res["requests"]["cpu"] == "12"
    assert "vpc.amazonaws.com/efa" not in str(m.jobs["dorl-example-abcd-eval-dt"])  # training pods only


def test_names_fit_kubernetes_limits_and_bad_names_are_refused():
    run = "a" * 24
    m = render(load(f"run={run}", "pipeline.datasets=[taskmaster3]", "k8s.nodes=16"))
    for name in m.jobsets:
        assert len(name) + len("-n-0-15") <= 63, name  # the hostname of the last node's pod
    with pytest.raises(ConfigError, match="config key 'run'"):
        render(load("run=" + "a" * 25))
    with pytest.raises(ConfigError, match="config key 'run'"):
        render(load("run=My_Run"))
    with pytest.raises(ConfigError, match="k8s.namespace"):
        render(load("k8s.namespace=Bad_NS"))
    with pytest.raises(ConfigError, match="k8s.train_pod.memory"):
        render(load("k8s.train_pod.memory=lots"))
    with pytest.raises(ConfigError, match="k8s.launcher"):
        render(load("k8s.nodes=2", "k8s.launcher=deepspeed"))
    with pytest.raises(ConfigError, match="'tf_top' is listed twice"):
        render(load("pipeline.methods=[tf_top, tf_top]"))


def test_endpoint_and_extra_env_reach_every_pod():
    m = render(load("k8s.endpoint_url=http://minio.minio.svc:9000", "k8s.env={HF_ENDPOINT: http://hf.local}"))
    for job in m.jobs.values():
        env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["AWS_ENDPOINT_URL"] == "http://minio.minio.svc:9000"
        assert env["HF_ENDPOINT"] == "http://hf.local" and env["AWS_REGION"] == "us-east-1"
        assert env["HOME"] == "/work"  # writable: the root filesystem is read-only


def test_the_config_map_holds_the_same_run_config(tmp_path):
    cfg = load("tf.lr=1e-4", "data.simulate=20", "pipeline.methods=[dt]", "k8s.env={A: b}")
    m = render(cfg)
    path = tmp_path / "run.yaml"
    path.write_text(m.config_map["data"]["run.yaml"])
    assert config.to_dict(config.load(file=path)) == config.to_dict(cfg)


def test_render_cli_writes_a_kustomize_base_in_dependency_order(tmp_path):
    r = run_dorl("k8s", "render", "--config", str(EXAMPLE), "--set", "k8s.nodes=2", "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    files = sorted((out / "jobs").iterdir())
    assert len(files) == 14
    seen: set[str] = set()
    for f in files:  # each Job file comes after the Jobs it waits for
        [obj] = list(yaml.safe_load_all(f.read_text()))
        after = obj["metadata"].get("annotations", {}).get("dorl.dev/after", "")
        assert set(filter(None, after.split(","))) <= seen, f.name
        seen.add(obj["metadata"]["name"])
        assert obj["kind"] == ("JobSet" if "-train-" in f.name else "Job")
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["configmap.yaml", "rbac.yaml"] + [f"jobs/{f.name}" for f in files]
    assert (out / "argo" / "workflowtemplate.yaml").exists()  # multi-node too: JobSet resource templates


def test_pods_ask_for_a_few_gigabytes_of_scratch_not_100():
    """The audit's finding: 100Gi of ephemeral storage per pod (800Gi for eight relabel shards on a node) left
    pods Pending on stock root volumes; the scratch (HF cache, checkpoints before upload) needs a few GB."""
    m = render(load("k8s.relabel_shards=8"))
    for obj in [*m.jobs.values(), *render(load("k8s.nodes=2")).jobsets.values()]:
        spec = obj["spec"]["replicatedJobs"][0]["template"]["spec"] if obj["kind"] == "JobSet" else obj["spec"]
        pod = spec["template"]["spec"]
        assert pod["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "20Gi"
        scratch = next(v for v in pod["volumes"] if v["name"] == "scratch")
        assert scratch["emptyDir"]["sizeLimit"] == "20Gi"
    custom = render(load("k8s.scratch_size=50Gi")).jobs["dorl-example-abcd-data"]["spec"]["template"]["spec"]
    assert custom["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "50Gi"


def test_the_models_init_container_names_the_models_the_run_needs():
    [init] = render(load()).jobs["dorl-example-abcd-data"]["spec"]["template"]["spec"]["initContainers"]
    assert init["args"] == [
        "models", "fetch", "--from", "s3://dorl-example/models", "--need", "distilgpt2", "--need", "roberta-large",
    ]  # fmt: skip
