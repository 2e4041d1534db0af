"""The server-side checks of `dorl k8s preflight` (dorl.k8s.preflight), when a cluster is reachable:

- the caller may do what submit does: a SelfSubjectAccessReview per verb of Role dorl-<run>-submit that the mode uses;
- the CRDs the run needs are installed, at versions with what it uses: JobSet >= v0.10 (read from its schema:
  failurePolicy.rules[].onJobFailureMessagePatterns, restartStrategy BlockingRecreate), Argo's Workflow and
  WorkflowTemplate (--mode argo), Kueue's LocalQueue (k8s.queue), and the LocalQueue itself;
- the Secret (with its two AWS keys), the image pull Secrets and the ServiceAccounts the run names exist;
- every object submit would create passes the API server's dry run (dryRun=All, fieldValidation=Strict: the
  schemas, admission webhooks, quotas, and a field an older CRD would silently drop).

Each problem goes to the preflight's report as one line naming the object and the fix; what cannot be read
(CRDs are cluster-scoped: no namespaced Role grants reading them) becomes a note.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dorl.config import RunConfig
from dorl.k8s import rbac
from dorl.k8s.cluster import ARGO_GROUP, ARGO_VERSION, Clients, api_errors, message
from dorl.k8s.jobset import GROUP as JS_GROUP
from dorl.k8s.jobset import PLURAL as JS_PLURAL
from dorl.k8s.jobset import VERSION as JS_VERSION
from dorl.k8s.render import Manifests

if TYPE_CHECKING:
    from dorl.k8s.preflight import Report

JOBSET_CRD, JOBSET_MIN = f"{JS_PLURAL}.{JS_GROUP}", "v0.10"
JOBSET_INSTALL = (
    "kubectl apply --server-side -f https://github.com/kubernetes-sigs/jobset/releases/download/v0.10.1/manifests.yaml"
)
KUEUE_GROUP = "kueue.x-k8s.io"


def server(cfg: RunConfig, m: Manifests, mode: str, c: Clients, r: Report) -> None:
    r.server = True
    denied = access(cfg, m, mode, c, r)
    crds(cfg, m, mode, c, r)
    exists(cfg, mode, c, r, denied)
    dry_run(cfg, m, mode, c, r)


def _needed_rules(cfg: RunConfig, m: Manifests, mode: str) -> list[dict]:
    """The rules of the submit Role that this mode uses."""
    used = {"configmaps", "pods", "pods/log", "serviceaccounts", "secrets"}
    used |= {"workflowtemplates", "workflows"} if mode == "argo" else {"jobs"}
    if m.jobsets and mode == "jobs":
        used.add("jobsets")
    if cfg.k8s.queue:
        used.add("localqueues")
    return [rule for rule in rbac.submit_rules(cfg) if set(rule["resources"]) & used]


def access(cfg: RunConfig, m: Manifests, mode: str, c: Clients, r: Report) -> set[str]:
    """SelfSubjectAccessReviews for every verb submit needs; returns the resources something is denied on."""
    from kubernetes import client

    api = client.AuthorizationV1Api(c.api)
    ns = cfg.k8s.namespace
    denied: dict[str, list[str]] = {}
    for rule in _needed_rules(cfg, m, mode):
        group = rule["apiGroups"][0]
        for resource in rule["resources"]:
            plural, _, sub = resource.partition("/")
            for name in rule.get("resourceNames") or [None]:
                for verb in rule["verbs"]:
                    attrs = {"namespace": ns, "verb": verb, "group": group, "resource": plural}
                    attrs.update({k: v for k, v in (("subresource", sub), ("name", name)) if v})
                    body = {
                        "apiVersion": "authorization.k8s.io/v1",
                        "kind": "SelfSubjectAccessReview",
                        "spec": {"resourceAttributes": attrs},
                    }
                    with api_errors(f"asking whether you may {verb} {resource}"):
                        allowed = api.create_self_subject_access_review(body).status.allowed
                    if not allowed:
                        what = f"{resource}{'.' + group if group else ''}" + (f" {name}" if name else "")
                        denied.setdefault(what, []).append(verb)
    for what, verbs in denied.items():
        r.add(
            f"RBAC ({what} in namespace {ns})",
            f"you may not {', '.join(verbs)} it, which dorl k8s submit does",
            f"apply the rendered rbac.yaml (dorl k8s render) and bind yourself to Role {rbac.submit_name(cfg)}: "
            f"kubectl -n {ns} create rolebinding {rbac.submit_name(cfg)}-me --role {rbac.submit_name(cfg)} "
            "--user <you>",
        )
    return {w.split(" ")[0].split(".")[0] for w in denied}


def _crd(c: Clients, name: str) -> tuple[dict | None, int]:
    """(the CRD as a dict, 200), or (None, the HTTP status)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.ApiextensionsV1Api(c.api)
    with api_errors(f"reading CustomResourceDefinition {name}"):
        try:
            got = api.read_custom_resource_definition(name)
        except ApiException as e:
            if e.status in (403, 404):
                return None, e.status
            raise
    return c.api.sanitize_for_serialization(got), 200


def _version(crd: dict, name: str) -> dict | None:
    return next((v for v in crd["spec"]["versions"] if v["name"] == name and v.get("served")), None)


def crds(cfg: RunConfig, m: Manifests, mode: str, c: Clients, r: Report) -> None:
    wanted = []
    if m.jobsets:
        wanted.append((JOBSET_CRD, JS_VERSION, f"JobSet (>= {JOBSET_MIN}) is not installed", JOBSET_INSTALL))
    if mode == "argo":
        for plural in ("workflows", "workflowtemplates"):
            wanted.append(
                (
                    f"{plural}.{ARGO_GROUP}",
                    ARGO_VERSION,
                    "Argo Workflows is not installed",
                    "install it (https://argo-workflows.readthedocs.io/en/latest/installation/), or use --mode jobs",
                )
            )
    if cfg.k8s.queue:
        wanted.append(
            (f"localqueues.{KUEUE_GROUP}", None, "Kueue is not installed", "install Kueue, or unset k8s.queue")
        )
    for name, version, missing, fix in wanted:
        crd, status = _crd(c, name)
        if status == 403:
            r.notes.append(f"CustomResourceDefinition {name}: not readable (forbidden), its version not checked")
            continue
        if crd is None or (version and _version(crd, version) is None):
            r.add(f"CustomResourceDefinition {name}", missing + (f" (no served {version})" if crd else ""), fix)
            continue
        if name == JOBSET_CRD:
            _jobset_features(crd, r)
        if name.startswith("localqueues."):
            _local_queue(cfg, crd, c, r)


def _jobset_features(crd: dict, r: Report) -> None:
    """JobSet >= v0.10, read from what its schema has (the CRD names no controller version)."""
    schema = _version(crd, JS_VERSION).get("schema", {}).get("openAPIV3Schema", {})
    policy = schema.get("properties", {}).get("spec", {}).get("properties", {}).get("failurePolicy", {})
    props = policy.get("properties", {})
    rule = props.get("rules", {}).get("items", {}).get("properties", {})
    lacks = []
    if "onJobFailureMessagePatterns" not in rule:
        lacks.append("failurePolicy.rules[].onJobFailureMessagePatterns (v0.10)")
    if "BlockingRecreate" not in props.get("restartStrategy", {}).get("enum", []):
        lacks.append("failurePolicy.restartStrategy BlockingRecreate")
    if lacks:
        r.add(
            f"CustomResourceDefinition {JOBSET_CRD}",
            f"JobSet is older than {JOBSET_MIN}: its schema has no {' and no '.join(lacks)}, which the API server "
            "would drop (a transient failure would then fail the JobSet like a user error)",
            f"upgrade JobSet: {JOBSET_INSTALL}",
        )


def _local_queue(cfg: RunConfig, crd: dict, c: Clients, r: Report) -> None:
    from kubernetes.client.exceptions import ApiException

    served = [v["name"] for v in crd["spec"]["versions"] if v.get("served")]
    storage = next((v["name"] for v in crd["spec"]["versions"] if v.get("storage")), served[0])
    ns, queue = cfg.k8s.namespace, cfg.k8s.queue
    with api_errors(f"reading LocalQueue {ns}/{queue}"):
        try:
            c.custom.get_namespaced_custom_object(KUEUE_GROUP, storage, ns, "localqueues", queue)
        except ApiException as e:
            if e.status == 404:
                r.add(
                    f"LocalQueue {ns}/{queue}",
                    "not found: Kueue would leave every Job and JobSet suspended",
                    "create the LocalQueue (pointing at a ClusterQueue with GPU quota), or correct k8s.queue",
                )
            elif e.status == 403:
                r.notes.append(f"LocalQueue {ns}/{queue}: not readable (forbidden), not checked")
            else:
                raise


def _get(read, what: str) -> int:
    """The HTTP status of reading one object (200 when it exists)."""
    from kubernetes.client.exceptions import ApiException

    with api_errors(f"reading {what}"):
        try:
            read()
        except ApiException as e:
            if e.status in (403, 404):
                return e.status
            raise
    return 200


def exists(cfg: RunConfig, mode: str, c: Clients, r: Report, denied: set[str]) -> None:
    k, ns = cfg.k8s, cfg.k8s.namespace
    if k.s3_secret:
        _secret(cfg, c, r, denied)
    for name in k.image_pull_secrets:
        if _get(lambda n=name: c.core.read_namespaced_secret(n, ns), f"Secret {ns}/{name}") == 404:
            r.add(f"Secret {ns}/{name}", "not found (k8s.image_pull_secrets)", "create it, or correct the name")
    accounts = {k.service_account: "k8s.service_account"} if k.service_account else {}
    if mode == "argo":
        accounts.setdefault(rbac.workflow_service_account(cfg), "the Workflow's pods run as it")
    for name, why in accounts.items():
        status = _get(lambda n=name: c.core.read_namespaced_service_account(n, ns), f"ServiceAccount {ns}/{name}")
        if status == 404:
            r.add(
                f"ServiceAccount {ns}/{name}",
                f"not found ({why})",
                "kubectl apply -f the rendered rbac.yaml (dorl k8s render), or create it",
            )


def _secret(cfg: RunConfig, c: Clients, r: Report, denied: set[str]) -> None:
    from kubernetes.client.exceptions import ApiException

    ns, name = cfg.k8s.namespace, cfg.k8s.s3_secret
    with api_errors(f"reading Secret {ns}/{name}"):
        try:
            secret = c.core.read_namespaced_secret(name, ns)
        except ApiException as e:
            if e.status == 404:
                r.add(
                    f"Secret {ns}/{name}",
                    "not found (k8s.s3_secret): every pod would wait in CreateContainerConfigError",
                    f"kubectl -n {ns} create secret generic {name} --from-literal=AWS_ACCESS_KEY_ID=... "
                    "--from-literal=AWS_SECRET_ACCESS_KEY=...; or set k8s.s3_secret: null and k8s.service_account",
                )
                return
            if e.status == 403:
                if "secrets" not in denied:
                    r.notes.append(f"Secret {ns}/{name}: not readable (forbidden), not checked")
                return
            raise
    keys = set(secret.data or {}) | set(secret.string_data or {})
    missing = [key for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if key not in keys]
    if missing:
        r.add(
            f"Secret {ns}/{name}",
            f"has no {' and no '.join(missing)} key (its keys become the pods' environment; boto3 reads these)",
            "add them (kubectl -n NS create secret generic ... --from-literal=AWS_ACCESS_KEY_ID=...)",
        )


def _objects(m: Manifests, mode: str) -> list[dict]:
    """What submit creates (with Argo, the JobSets its resource steps apply), RBAC aside (applied by someone
    allowed to create Roles)."""
    out = [m.config_map]
    if mode == "argo":
        out += [m.workflow_template, m.workflow]
    else:
        out += list(m.jobs.values())
    return out + list(m.jobsets.values())


def _create(c: Clients, obj: dict, **kw):
    ns = obj["metadata"]["namespace"]
    kind = obj["kind"]
    if kind == "ConfigMap":
        return c.core.create_namespaced_config_map(ns, obj, **kw)
    if kind == "Job":
        return c.batch.create_namespaced_job(ns, obj, **kw)
    group, version = obj["apiVersion"].split("/")
    plural = {"JobSet": JS_PLURAL, "WorkflowTemplate": "workflowtemplates", "Workflow": "workflows"}[kind]
    return c.custom.create_namespaced_custom_object(group, version, ns, plural, obj, **kw)


def dry_run(cfg: RunConfig, m: Manifests, mode: str, c: Clients, r: Report) -> None:
    """Each object through the API server's dry run, strict about unknown fields. An object that exists
    already passes (a resubmit adopts it); a refusal RBAC or a missing CRD explains is reported there."""
    from kubernetes.client.exceptions import ApiException

    ns = cfg.k8s.namespace
    for obj in _objects(m, mode):
        name = obj["metadata"].get("name") or obj["metadata"]["generateName"] + "…"
        what = f"{obj['kind']} {name}"
        with api_errors(f"dry-running {what}"):
            try:
                _create(c, obj, dry_run="All", field_validation="Strict")
            except ApiException as e:
                text = message(e)
                if e.status in (403, 409):
                    continue
                if e.status == 404 and f'namespaces "{ns}" not found' in text:
                    r.add(f"Namespace {ns}", "not found", f"kubectl create namespace {ns}, or correct k8s.namespace")
                    return
                if e.status == 404:
                    continue  # its CRD is missing: reported by crds()
                text = " ".join(text.split())  # one line
                r.add(what, f"refused by the API server's dry run ({e.status}): {text}", _fix(obj, text))


def _fix(obj: dict, text: str) -> str:
    if "unknown field" in text and obj["kind"] == "JobSet":
        return f"upgrade JobSet to {JOBSET_MIN} or newer: {JOBSET_INSTALL}"
    if "exceeded quota" in text:
        return "lower the pods' requests (k8s.*_pod, k8s.gpus) or ask for more quota in the namespace"
    return "change the setting it names in the run config, or ask the cluster's admins about the policy that refused it"
