"""`dorl k8s render|preflight|submit|status|logs`: one run config -> Kubernetes Jobs or an Argo Workflow."""

from __future__ import annotations

import click

from dorl.options import config_options

STAGES = ("data", "train", "relabel", "relabel-assemble", "evaluate", "report")
context_option = click.option("--context", default=None, help="kubeconfig context (default: the current one).")
mode_option = click.option(
    "--mode",
    type=click.Choice(["jobs", "argo"]),
    default="jobs",
    show_default=True,
    help="argo (recommended): create an Argo Workflow, the DAG runs on the cluster; jobs (no Argo): create the "
    "Jobs in dependency order from this process, which must stay up until the run ends.",
)
overlay_option = click.option(
    "--overlay",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A kustomize Component folder applied to the rendered Jobs before they are sent (default k8s.overlay).",
)


def _manifests(cfg, overlay: str | None):
    """The rendered objects (every config check happens here, before any API call), through the overlay."""
    from dorl.k8s.render import render

    m = render(cfg)
    overlay = overlay or cfg.k8s.overlay
    if overlay:
        from dorl.k8s.overlay import apply_overlay

        m = apply_overlay(m, overlay)
    return m


def _preflight(cfg, m, mode: str, clients) -> None:
    """Run the preflight, print its notes (also when it finds problems: PreflightError, exit 2)."""
    from rich.markup import escape

    from dorl.k8s.preflight import PreflightError, preflight
    from dorl.log import console

    def notes(report) -> None:
        for note in report.notes:
            console.print(f"note: {escape(note)}", soft_wrap=True, highlight=False)

    try:
        report = preflight(cfg, m, mode, clients)
    except PreflightError as e:
        notes(e.report)
        raise
    notes(report)
    checked = "offline and server-side checks" if report.server else "offline checks (no cluster reached)"
    console.print(f"preflight: no problem found ({checked})")


@click.group("k8s")
def k8s() -> None:
    """Run the pipeline on Kubernetes: every stage a Job (or an Argo Workflow step), artifacts in S3.

    The run config must name an s3:// root; its `k8s` section sets the image, namespace, GPUs,
    nodes, relabel shards, resources and the S3 Secret (`dorl config keys k8s`).
    """


@k8s.command("render")
@config_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the manifests.")
def render_cmd(cfg, out_dir: str) -> None:
    """Write the run's manifests: a kustomize base of Jobs in dependency order, and the Argo Workflow."""
    from dorl.k8s.render import render, write
    from dorl.log import console

    m = render(cfg)
    files = write(m, out_dir)
    console.print(
        f"{len(m.jobs)} Jobs, {len(m.jobsets)} JobSets, {len(m.rbac)} RBAC objects, 1 ConfigMap -> {out_dir} "
        f"({len(files)} files)"
    )
    console.print("  check first: dorl k8s preflight --config <run.yaml> [--mode argo]   (submit runs it too)")
    console.print(
        f"  Argo (recommended): dorl k8s submit --config <run.yaml> --mode argo   (namespace {cfg.k8s.namespace})"
    )
    console.print(
        f"  or: kubectl apply -f {out_dir}/configmap.yaml -f {out_dir}/rbac.yaml "
        f"-f {out_dir}/argo/workflowtemplate.yaml"
    )
    console.print(f"      argo submit -n {cfg.k8s.namespace} --from workflowtemplate/dorl-{cfg.run}")
    console.print("  no Argo: dorl k8s submit --config <run.yaml> --mode jobs   (the client waits for every Job)")


@k8s.command("preflight")
@config_options
@mode_option
@overlay_option
@click.option("--offline", is_flag=True, help="Only the checks that need no cluster.")
@context_option
def preflight_cmd(cfg, mode: str, overlay: str | None, offline: bool, context: str | None) -> None:
    """Check that the run can start on the cluster, creating nothing: each problem one line naming the object
    and the fix (exit 2). Offline: model sources, S3 credentials, pods fitting a node (k8s.node), JobSet settings;
    with a cluster: RBAC, CRD versions (JobSet >= v0.10, Argo, Kueue), the Secret, ServiceAccounts and LocalQueue,
    and a server-side dry run of every object. `dorl k8s submit` runs it first."""
    from dorl.errors import ConfigError
    from dorl.k8s.cluster import connect
    from dorl.log import console

    m = _manifests(cfg, overlay)
    clients = None
    if not offline:
        try:
            clients = connect(context, cfg.k8s.api_retries)
        except ConfigError as e:  # no credentials at all: the offline checks still tell something
            console.print(f"note: {e}; server-side checks skipped", soft_wrap=True, highlight=False)
    _preflight(cfg, m, mode, clients)


@k8s.command("submit")
@config_options
@mode_option
@overlay_option
@click.option("--poll", type=float, default=None, help="Seconds between looks at the Jobs (default k8s.poll_seconds).")
@click.option("--skip-preflight", is_flag=True, help="Submit without the preflight checks (not recommended).")
@context_option
def submit_cmd(
    cfg, mode: str, overlay: str | None, poll: float | None, skip_preflight: bool, context: str | None
) -> None:
    """Submit the run: nothing is created unless the whole config checks out and the preflight finds no problem
    (`dorl k8s preflight`)."""
    from dorl import layout
    from dorl.k8s.cluster import connect
    from dorl.k8s.submit import submit_argo, submit_jobs, took
    from dorl.log import console

    m = _manifests(cfg, overlay)
    clients = connect(context, cfg.k8s.api_retries)
    if not skip_preflight:
        _preflight(cfg, m, mode, clients)
    if mode == "argo":
        name = submit_argo(cfg, m, clients)
        console.print(f"Workflow {name} created in namespace {cfg.k8s.namespace}")
        console.print(f"  watch: argo watch -n {cfg.k8s.namespace} {name}   or   dorl k8s status --config <run.yaml>")
        return
    outcome = submit_jobs(cfg, m, clients, poll=poll)
    console.print(f"run {cfg.run}: {len(outcome.succeeded)} Jobs succeeded in {took(outcome.seconds)}")
    console.print(f"  results: dorl artifacts ls {layout.report_uri(cfg)}")


@k8s.command("status")
@config_options
@context_option
def status_cmd(cfg, context: str | None) -> None:
    """The run's Jobs (state, pods active/succeeded/failed) and Argo Workflows."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from dorl.k8s.cluster import connect
    from dorl.k8s.render import render
    from dorl.k8s.status import attention, jobs, workflows

    render(cfg)
    clients = connect(context, cfg.k8s.api_retries)
    out = Console()
    rows = jobs(cfg, clients)
    colour = {"Succeeded": "green", "Failed": "red", "Running": "yellow"}
    table = Table(title=f"run {cfg.run}: Jobs in namespace {cfg.k8s.namespace}")
    for col in ("job", "stage", "dataset", "method", "state", "pods a/s/f", "age", "why"):
        table.add_column(col)
    for r in rows:
        state = f"[{colour[r.state]}]{r.state}[/]" if r.state in colour else r.state
        table.add_row(r.name, r.stage, r.dataset, r.method, state, r.pods, r.age, r.why)
    out.print(table if rows else f"no Jobs of run {cfg.run} in namespace {cfg.k8s.namespace}")
    for w in workflows(cfg, clients):
        out.print(f"Workflow {w['name']}: {w['phase']} {w['progress']} {w['message']}".rstrip())
    for line in attention(cfg, clients):
        out.print(f"[red]{escape(line)}[/]", soft_wrap=True)


@k8s.command("logs")
@config_options
@click.option("--stage", required=True, type=click.Choice(STAGES), help="Stage whose pods to show.")
@click.option("--dataset", default=None, help="Only this dataset's pods.")
@click.option("--method", default=None, help="Only this method's pods (train, evaluate; tf is the base model).")
@click.option("--tail", type=int, default=None, help="Only the last N lines of each pod.")
@context_option
def logs_cmd(cfg, stage: str, dataset: str | None, method: str | None, tail: int | None, context: str | None) -> None:
    """Print the logs of a stage's pods (every shard, node and retry)."""
    from dorl.k8s.cluster import connect
    from dorl.k8s.status import logs

    clients = connect(context, cfg.k8s.api_retries)
    for pod_name, text in logs(cfg, clients, stage, dataset, method, tail):
        click.echo(f"==> {pod_name} <==")
        click.echo(text, nl=not text.endswith("\n"))
