"""Nothing loops on GPUs: the rendered Jobs and JobSets, run by the fake API server's Job and JobSet controllers
(tests/k8s/fake_controllers.py: podFailurePolicy and failurePolicy decided as the real controllers decide), end
in a bounded number of attempts whatever their pods exit with: a transient fault (75) that never clears, a
rendezvous that never forms (a partly scheduled group exits 75), a crash, an attempt past its deadline."""

from __future__ import annotations

import copy

import pytest

from dorl import config
from dorl.k8s.render import render
from tests.k8s.conftest import S3_SECRET
from tests.k8s.fake_api import FakeCluster, default_crds, old_jobset_crd

JOBS = "/apis/batch/v1/namespaces/dorl/jobs"
JOBSETS = "/apis/jobset.x-k8s.io/v1alpha2/namespaces/dorl/jobsets"


def manifests(**k8s):
    cfg = config.load(sets=[f"{k}={v}" for k, v in {"run": "t1", "root": "s3://bucket/runs"}.items()]
                      + [f"k8s.{k}={v}" for k, v in {"models_uri": "s3://bucket/models", **k8s}.items()])  # fmt: skip
    return render(cfg)


@pytest.fixture
def cluster():
    with FakeCluster(finish_after=1) as fake:
        fake.add(dict(S3_SECRET))
        yield fake


def run(fake, path: str, obj: dict, ticks: int = 60) -> dict:
    code, body, _ = fake.handle("POST", path, copy.deepcopy(obj))
    assert code == 201, body
    fake.tick(ticks)
    plural = path.rsplit("/", 1)[1]
    return fake.objects[(plural, obj["metadata"]["name"])]


def attempts(fake, job: str) -> int:
    return sum(1 for (k, _), p in fake.objects.items() if k == "pods" and p["metadata"]["labels"]["job-name"] == job)


def condition(obj: dict) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["status"] == "True")


# ---------------------------------------------------------------- Jobs


def test_a_transient_fault_that_never_clears_ends_within_the_backoff_limit(cluster):
    """The audit's finding: 75 was `Ignore`d, retried without count for 48 h. Counted, it ends after 1 + 6."""
    job = manifests().jobs["dorl-t1-abcd-data"]
    cluster.exits[job["metadata"]["name"]] = [75] * 100
    got = run(cluster, JOBS, job)
    assert condition(got)["type"] == "Failed" and condition(got)["reason"] == "BackoffLimitExceeded"
    assert attempts(cluster, "dorl-t1-abcd-data") == 1 + 6


def test_a_user_error_fails_the_job_at_once_and_a_disruption_is_not_counted(cluster):
    m = manifests()
    cluster.exits["dorl-t1-abcd-data"] = [2]
    got = run(cluster, JOBS, m.jobs["dorl-t1-abcd-data"])
    assert (
        condition(got)["reason"] == "PodFailurePolicy" and "exit code 2 matching FailJob" in condition(got)["message"]
    )
    assert attempts(cluster, "dorl-t1-abcd-data") == 1
    cluster.exits["dorl-t1-abcd-train-tf"] = ["disrupted"] * 8 + [75] * 3  # preempted 8 times, then 3 blips
    got = run(cluster, JOBS, m.jobs["dorl-t1-abcd-train-tf"])
    assert condition(got)["type"] == "Complete" and attempts(cluster, "dorl-t1-abcd-train-tf") == 12


def test_relabel_shards_are_bounded_each(cluster):
    job = manifests(relabel_shards=2).jobs["dorl-t1-abcd-relabel"]
    cluster.exits["dorl-t1-abcd-relabel"] = [75] * 100
    got = run(cluster, JOBS, job)
    assert condition(got)["type"] == "Failed" and condition(got)["reason"] == "FailedIndexes"


# ---------------------------------------------------------------- JobSets


def jobset(m) -> dict:
    return m.jobsets["dorl-t1-abcd-train-tf"]


CHILD = "dorl-t1-abcd-train-tf-n-0"


def test_a_group_that_exits_75_forever_fails_after_max_restarts(cluster):
    """The audit's finding: RestartJobSetAndIgnoreMaxRestarts restarted a JobSet on 75 without bound, and a
    partly scheduled group (no Kueue) times out its rendezvous with 75 again and again."""
    cluster.exits[CHILD] = [75] * 1000
    got = run(cluster, JOBSETS, jobset(manifests(nodes=2, max_restarts=4)), ticks=100)
    assert got["status"]["terminalState"] == "Failed"
    assert condition(got)["reason"] == "ReachedMaxRestarts" and got["status"]["restarts"] == 4


def test_a_user_error_fails_the_jobset_at_once(cluster):
    cluster.exits[CHILD] = [0, 2]  # pod 0 fine, pod 1 a user error
    got = run(cluster, JOBSETS, jobset(manifests(nodes=2)))
    assert got["status"]["terminalState"] == "Failed" and got["status"]["restarts"] == 0
    assert "failure policy rule UserError" in condition(got)["message"]


def test_an_attempt_past_its_deadline_is_not_restarted(cluster):
    cluster.fail[CHILD] = ("DeadlineExceeded", "Job was active longer than specified deadline")
    got = run(cluster, JOBSETS, jobset(manifests(nodes=2)))
    assert got["status"]["terminalState"] == "Failed" and got["status"]["restarts"] == 0
    assert "failure policy rule DeadlineExceeded" in condition(got)["message"]


def test_a_crash_or_a_lost_pod_restarts_the_group_counted_and_it_resumes(cluster):
    cluster.exits[CHILD] = [1, 0, "disrupted", 0]  # a crash, then a preempted pod, then success
    got = run(cluster, JOBSETS, jobset(manifests(nodes=2)))
    assert got["status"]["terminalState"] == "Completed"
    assert got["status"]["restarts"] == got["status"]["restartsCountTowardsMax"] == 2
    child = cluster.objects[("jobs", CHILD)]
    assert child["metadata"]["labels"]["jobset.sigs.k8s.io/restart-attempt"] == "2"  # recreated each time


def test_before_jobset_v0_10_a_transient_fault_fails_like_a_user_error():
    """Why preflight requires JobSet >= v0.10: an older CRD drops onJobFailureMessagePatterns, and the
    user-error rule then matches every pod failure (its reason is PodFailurePolicy for 75 as for 2)."""
    others = [c for c in default_crds() if c["metadata"]["name"] != "jobsets.jobset.x-k8s.io"]
    crds = [old_jobset_crd(blocking_recreate=True), *others]
    with FakeCluster(finish_after=1, crds=crds) as fake:
        fake.add(dict(S3_SECRET))
        fake.exits[CHILD] = [75]
        got = run(fake, JOBSETS, jobset(manifests(nodes=2)))
        assert "onJobFailureMessagePatterns" not in str(got)  # pruned by the API server
        assert got["status"]["terminalState"] == "Failed" and got["status"]["restarts"] == 0
