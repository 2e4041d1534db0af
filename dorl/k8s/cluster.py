"""The Kubernetes API through the official client: credentials, retries, errors, a Job's state, a stuck pod.

Every call goes through urllib3's Retry (configured on the client): an answer of 429 or 5xx, or a connection
cut off, is retried with exponential backoff (1 s doubling, jittered, Retry-After honoured), k8s.api_retries
times; then `api_errors` raises ClusterUnavailable (a TransientError: exit 75, submit again later). Retrying a
create is safe here: every create dorl makes treats 409 AlreadyExists as "made by the earlier attempt".
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import click

from dorl.errors import ConfigError, TransientError

ARGO_GROUP, ARGO_VERSION = "argoproj.io", "v1alpha1"
RETRY_STATUSES = (429, 500, 502, 503, 504)
BACKOFF_SECONDS = 0.5  # urllib3 sleeps backoff * 2**(n-1) before retry n > 1: 1 s, 2 s, 4 s... (cap 120 s)


class ClusterError(click.ClickException):
    """The cluster refused or failed something (exit 1): API errors, a failed Job."""


class ClusterUnavailable(TransientError):
    """The API server kept answering 429/5xx or could not be reached after the retries (exit 75)."""


@dataclass
class Clients:
    batch: object
    core: object
    custom: object
    api: object = None  # the ApiClient: for the APIs only preflight reads (CRDs, access reviews)


def connect(context: str | None = None, retries: int = 8) -> Clients:
    """Clients from the kubeconfig (KUBECONFIG, ~/.kube/config) or, inside a pod, the service account."""
    from kubernetes import client, config
    from urllib3.util.retry import Retry

    try:  # KUBECONFIG read now: the client reads it once, at import
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), context=context)
    except (config.ConfigException, FileNotFoundError, TypeError) as e:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise ConfigError(f"no Kubernetes credentials ({e}): set KUBECONFIG, or run inside a cluster") from None
    conf = client.Configuration.get_default_copy()
    conf.retries = Retry(
        total=retries,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # every verb: dorl's creates are idempotent (409 = made by the earlier attempt)
        backoff_factor=BACKOFF_SECONDS,
        backoff_jitter=BACKOFF_SECONDS,
        respect_retry_after_header=True,
        raise_on_status=True,
    )
    api = client.ApiClient(conf)
    return Clients(client.BatchV1Api(api), client.CoreV1Api(api), client.CustomObjectsApi(api), api)


@contextmanager
def api_errors(doing: str):
    """Turn client exceptions into one clear line naming what was being done."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except ApiException as e:
        raise ClusterError(f"Kubernetes API: {e.status} {e.reason} while {doing}: {message(e)}") from None
    except urllib3.exceptions.MaxRetryError as e:
        raise ClusterUnavailable(
            f"Kubernetes API: no answer but errors while {doing}, after the retries ({e.reason}); "
            "try again later (k8s.api_retries)"
        ) from None
    except urllib3.exceptions.HTTPError as e:
        raise ClusterUnavailable(f"cannot reach the Kubernetes API while {doing}: {e}; try again later") from None


def message(e) -> str:
    import json

    try:
        return json.loads(e.body).get("message", e.body)
    except (TypeError, ValueError, AttributeError):
        return str(e.body)


def selector(**labels: str | None) -> str:
    """`dorl.dev/run=R,dorl.dev/stage=S`, from keyword arguments (None values left out)."""
    return ",".join(f"dorl.dev/{k}={v}" for k, v in labels.items() if v is not None)


def job_state(job) -> tuple[str, str]:
    """(Succeeded | Failed | Running | Pending | Suspended, why) of a V1Job."""
    status = job.status
    true = {c.type: c for c in (status.conditions or []) if c.status == "True"} if status else {}
    for kind in ("Complete", "SuccessCriteriaMet"):
        if kind in true:
            return "Succeeded", ""
    for kind in ("Failed", "FailureTarget"):
        if kind in true:
            c = true[kind]
            return "Failed", ": ".join(x for x in (c.reason, c.message) if x)
    if job.spec is not None and job.spec.suspend:
        return "Suspended", ""
    if status and status.active:
        return "Running", ""
    return "Pending", ""


# ---------------------------------------------------------------- pods that cannot start by themselves

# Waiting reasons a pod does not leave without a person: a missing Secret/ConfigMap or key, an image that cannot
# be pulled (wrong name or tag, no pull secret), a container the runtime cannot create.
STUCK = {
    "CreateContainerConfigError": "create the Secret or ConfigMap it names (k8s.s3_secret), or fix the name",
    "CreateContainerError": "see `kubectl describe pod`; often a bad volume mount or security setting",
    "ImagePullBackOff": "check k8s.image (name, tag) and k8s.image_pull_secrets",
    "ErrImagePull": "check k8s.image (name, tag) and k8s.image_pull_secrets",
    "InvalidImageName": "fix k8s.image",
}


@dataclass
class Stuck:
    pod: str
    owner: str  # the Job (or, for a JobSet's pods, the JobSet) it belongs to
    reason: str
    message: str

    def line(self) -> str:
        return f"pod {self.pod} ({self.owner}) cannot start: {self.reason}: {self.message}; {STUCK[self.reason]}"


def owner(pod) -> str:
    """The JobSet, Job or Argo Workflow a pod belongs to, from the labels their controllers set."""
    labels = pod.metadata.labels or {}
    for key in ("jobset.sigs.k8s.io/jobset-name", "batch.kubernetes.io/job-name", "job-name"):
        if key in labels:
            return labels[key]
    return labels.get("workflows.argoproj.io/workflow", "")


def stuck(pod) -> Stuck | None:
    """A pod waiting in one of the STUCK states (its init containers' or containers')."""
    status = pod.status
    if status is None or status.phase not in (None, "Pending", "Running"):
        return None
    for cs in [*(status.init_container_statuses or []), *(status.container_statuses or [])]:
        waiting = cs.state.waiting if cs.state else None
        if waiting is not None and waiting.reason in STUCK:
            return Stuck(pod.metadata.name, owner(pod), waiting.reason, (waiting.message or "").strip())
    return None
