"""The fake API server answers as the real one does where dorl depends on it (the tests of dorl's behaviour
against it are only as good as this): 409, 404, 403 with RBAC, dry runs stored nowhere, strict field
validation against a CRD's schema, pruning without it, scripted errors with Retry-After."""

from __future__ import annotations

import pytest

from tests.k8s.fake_api import FakeCluster, old_jobset_crd

CMS = "/api/v1/namespaces/dorl/configmaps"
JOBSETS = "/apis/jobset.x-k8s.io/v1alpha2/namespaces/dorl/jobsets"


def cm(name: str = "a") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


def js(extra: dict) -> dict:
    rj = {"name": "n", "replicas": 1, "template": {"spec": {"template": {"spec": {"containers": []}}}}}
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "j"},
            "spec": {"replicatedJobs": [rj], "failurePolicy": extra}}  # fmt: skip


@pytest.fixture
def fake():
    with FakeCluster() as f:
        yield f


def test_create_get_conflict_and_not_found(fake):
    assert fake.handle("POST", CMS, cm())[0] == 201
    code, body, _ = fake.handle("POST", CMS, cm())
    assert code == 409 and body["reason"] == "AlreadyExists"
    assert fake.handle("GET", CMS + "/a", None)[0] == 200
    assert fake.handle("GET", CMS + "/b", None)[0] == 404
    assert (
        fake.handle("POST", "/api/v1/namespaces/nope/configmaps", cm())[1]["message"] == 'namespaces "nope" not found'
    )
    assert fake.handle("POST", "/apis/example.com/v1/namespaces/dorl/widgets", cm())[0] == 404  # no such CRD


def test_rbac_is_enforced_and_reviewed(fake):
    fake.rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    code, body, _ = fake.handle("POST", CMS, cm())
    assert code == 403
    assert body["message"] == (
        'configmaps is forbidden: User "fake" cannot create resource "configmaps" in API group "" '
        'in the namespace "dorl"'
    )
    review = {
        "spec": {"resourceAttributes": {"verb": "get", "group": "", "resource": "configmaps", "namespace": "dorl"}}
    }
    assert fake.handle("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)[1]["status"] == {
        "allowed": True
    }
    review["spec"]["resourceAttributes"]["verb"] = "delete"
    assert not fake.handle("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)[1]["status"][
        "allowed"
    ]


def test_dry_runs_store_nothing_and_strict_validation_names_unknown_fields():
    with FakeCluster(crds=[old_jobset_crd(blocking_recreate=True)]) as fake:
        new_field = {"rules": [{"name": "r", "action": "FailJobSet", "onJobFailureMessagePatterns": ["x"]}]}
        code, body, _ = fake.handle("POST", JOBSETS + "?dryRun=All&fieldValidation=Strict", js(new_field))
        assert code == 400
        assert body["message"] == (
            'strict decoding error: unknown field "spec.failurePolicy.rules[0].onJobFailureMessagePatterns"'
        )
        assert fake.handle("POST", JOBSETS + "?dryRun=All", js({}))[0] == 201 and not fake.objects.get(("jobsets", "j"))
        code, body, _ = fake.handle("POST", JOBSETS, js(new_field))  # stored, the unknown field pruned
        assert code == 201 and "onJobFailureMessagePatterns" not in str(fake.objects[("jobsets", "j")]["spec"])
        code, body, _ = fake.handle("POST", JOBSETS + "?dryRun=All", js({"restartStrategy": "Nope"}))
        assert code == 422 and 'Unsupported value: "Nope"' in body["message"]


def test_scripted_errors_come_first_then_the_real_answer(fake):
    fake.script("POST", r"/configmaps$", 503, 429, retry_after=3)
    assert [fake.handle("POST", CMS, cm())[0] for _ in range(3)] == [503, 429, 201]
    fake.script("GET", r"/configmaps/a$", 500, retry_after=1)
    code, _, headers = fake.handle("GET", CMS + "/a", None)
    assert code == 500 and headers == {"Retry-After": "1"}
