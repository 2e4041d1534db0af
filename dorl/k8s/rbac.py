"""The identities a run needs, least privilege, in the run's namespace:

- the Argo Workflow's pods (`workflow_service_account`): Argo's executor records each step's outputs in
  `workflowtaskresults` (create, patch: required since Argo 3.4), and the multi-node steps create and watch
  their JobSet (a resource template);
- `dorl k8s submit` and its preflight (Role `dorl-<run>-submit`, bound to the ServiceAccount of the same name,
  for CI or an in-cluster submitter; bind a user or group to the Role instead to submit from a laptop): what
  submit creates and watches, and reading (not listing) the Secrets and ServiceAccounts the run names, so the
  preflight can say one is missing.

The stage pods themselves need no Kubernetes API access (automountServiceAccountToken: false); their S3
identity, if not a Secret, is `k8s.service_account` (IRSA / workload identity), which the user owns.
"""

from __future__ import annotations

from dorl.config import RunConfig
from dorl.k8s import pod

RBAC = "rbac.authorization.k8s.io"


def workflow_service_account(cfg: RunConfig) -> str:
    k = cfg.k8s
    return k.argo_service_account or k.service_account or f"dorl-{cfg.run}-workflow"


def submit_name(cfg: RunConfig) -> str:
    return f"dorl-{cfg.run}-submit"


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


WORKFLOW_RULES = [
    _rule(["argoproj.io"], ["workflowtaskresults"], ["create", "patch"]),
    _rule(["jobset.x-k8s.io"], ["jobsets"], ["create", "get", "list", "watch", "patch", "delete"]),
]

SUBMIT_RULES = [
    _rule([""], ["configmaps"], ["create", "get"]),
    _rule([""], ["pods", "pods/log"], ["get", "list"]),
    _rule([""], ["serviceaccounts"], ["get"]),
    _rule(["batch"], ["jobs"], ["create", "get", "list", "delete"]),
    _rule(["jobset.x-k8s.io"], ["jobsets"], ["create", "get", "list", "delete"]),
    _rule(["argoproj.io"], ["workflowtemplates"], ["create", "get", "update"]),
    _rule(["argoproj.io"], ["workflows"], ["create", "get", "list"]),
    _rule(["kueue.x-k8s.io"], ["localqueues"], ["get"]),
]


def submit_rules(cfg: RunConfig) -> list[dict]:
    """SUBMIT_RULES, and `get` on the Secrets the run names (by name: their contents stay unreadable otherwise)."""
    names = [n for n in [cfg.k8s.s3_secret, *cfg.k8s.image_pull_secrets] if n]
    secrets = [{**_rule([""], ["secrets"], ["get"]), "resourceNames": names}] if names else []
    return [*SUBMIT_RULES, *secrets]


def _meta(cfg: RunConfig, name: str) -> dict:
    return {"name": name, "namespace": cfg.k8s.namespace, "labels": pod.labels(cfg, "rbac")}


def _role(cfg: RunConfig, name: str, rules: list[dict], account: str) -> list[dict]:
    role = {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": _meta(cfg, name), "rules": rules}
    binding = {
        "apiVersion": f"{RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": _meta(cfg, name),
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": cfg.k8s.namespace}],
    }
    return [role, binding]


def _account(cfg: RunConfig, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(cfg, name)}


def objects(cfg: RunConfig) -> list[dict]:
    k = cfg.k8s
    out = []
    wf = workflow_service_account(cfg)
    if not (k.argo_service_account or k.service_account):  # ours to create; a named one is the user's
        out.append(_account(cfg, wf))
    out += _role(cfg, f"dorl-{cfg.run}-workflow", WORKFLOW_RULES, wf)
    out.append(_account(cfg, submit_name(cfg)))
    out += _role(cfg, submit_name(cfg), submit_rules(cfg), submit_name(cfg))
    return out
