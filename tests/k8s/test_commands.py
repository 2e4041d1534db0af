"""Every command line the manifests run is one the real `dorl` CLI accepts (options, choices, arity)."""

import re

import pytest

from dorl import config
from dorl.cli import cli
from dorl.k8s.render import render
from dorl.k8s.workflow import workflow_template
from tests.conftest import REPO

VARIANTS = {
    "default": [],
    "shards + simulate": ["k8s.relabel_shards=3", "data.simulate=40"],
    "multi-gpu": ["k8s.gpus=4"],
    "multi-node": ["k8s.gpus=2", "k8s.nodes=2"],
}


def _load(*sets):
    return config.load(file=REPO / "k8s/examples/run.yaml", sets=list(sets))


def _concrete(arg: str) -> str:
    """Fill in what Kubernetes / Argo substitute at run time."""
    arg = re.sub(r"\$\((\w+)\)", "0", arg)
    values = {"dataset": "abcd", "method": "dt", "shard": "0/4", "seed": "0"}
    return re.sub(r"\{\{inputs\.parameters\.(\w+)\}\}", lambda m: values.get(m.group(1), "s3://b/x"), arg)


def _dorl_args(container: dict) -> list[str]:
    command = container.get("command")
    args = [_concrete(a) for a in container.get("args", [])]
    if command:  # a launcher: torchrun … -m dorl / deepspeed … --module dorl
        assert command[-1] == "dorl" and command[-2] in ("-m", "--module"), command
    return args


def _parse(args: list[str]) -> None:
    ctx = cli.make_context("dorl", list(args))
    group, rest = cli, ctx.protected_args + ctx.args
    while rest:
        name, rest = rest[0], rest[1:]
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"unknown command {name!r} in {args}"
        ctx = cmd.make_context(name, list(rest), parent=ctx)  # raises on a bad option or choice
        if not hasattr(cmd, "get_command"):
            assert not ctx.args, f"unexpected arguments {ctx.args} in {args}"
            return
        group, rest = cmd, ctx.protected_args + ctx.args


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_job_commands_parse(variant):
    m = render(_load(*VARIANTS[variant]))
    assert m.jobs
    for job in m.jobs.values():
        for c in job["spec"]["template"]["spec"]["containers"]:
            _parse(_dorl_args(c))


@pytest.mark.parametrize("variant", ["default", "shards + simulate", "multi-gpu"])
def test_workflow_commands_parse(variant):
    wt = workflow_template(_load(*VARIANTS[variant]))
    containers = [t["container"] for t in wt["spec"]["templates"] if "container" in t]
    assert len(containers) >= 5
    for c in containers:
        _parse(_dorl_args(c))


def test_parse_rejects_a_bad_option():
    with pytest.raises(Exception, match="No such option"):
        _parse(["relabel", "--data", "x", "--model", "y", "--out", "z", "--shards", "2"])
