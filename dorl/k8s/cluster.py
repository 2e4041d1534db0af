"""The Kubernetes API through the official client: credentials, errors, and a Job's state."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import click

from dorl.errors import ConfigError

ARGO_GROUP, ARGO_VERSION = "argoproj.io", "v1alpha1"


class ClusterError(click.ClickException):
    """The cluster refused or failed something (exit 1): API errors, a failed Job."""


@dataclass
class Clients:
    batch: object
    core: object
    custom: object


def connect(context: str | None = None) -> Clients:
    """Clients from the kubeconfig (KUBECONFIG, ~/.kube/config) or, inside a pod, the service account."""
    from kubernetes import client, config

    try:  # KUBECONFIG read now: the client reads it once, at import
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), context=context)
    except (config.ConfigException, FileNotFoundError, TypeError) as e:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise ConfigError(f"no Kubernetes credentials ({e}): set KUBECONFIG, or run inside a cluster") from None
    api = client.ApiClient()
    return Clients(client.BatchV1Api(api), client.CoreV1Api(api), client.CustomObjectsApi(api))


@contextmanager
def api_errors(doing: str):
    """Turn client exceptions into one clear line naming what was being done."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except ApiException as e:
        raise ClusterError(f"Kubernetes API: {e.status} {e.reason} while {doing}: {_message(e)}") from None
    except urllib3.exceptions.HTTPError as e:
        raise ClusterError(f"cannot reach the Kubernetes API while {doing}: {e}") from None


def _message(e) -> str:
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
