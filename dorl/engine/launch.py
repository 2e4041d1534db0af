"""`dorl launch torchrun|deepspeed ARGS`: a launcher that keeps the exit-code contract (dorl/errors.py).

torchrun ends with 1 whatever its workers' codes were, so a user error (2) would be retried like a crash
and a transient fault (75) could not be told apart. This runs torchrun in-process (its own `main`) or the
DeepSpeed launcher as a child, has each worker record its exit code in DORL_EXIT_DIR (dorl.cli), and exits
with the contract's code for the group: 2 if any worker had a user error, else 75 if any had a transient
fault or the rendezvous timed out (a peer not up yet: a slow image pull, a node still starting), else 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from dorl.errors import EXIT_TRANSIENT, exit_code_of


def _recorded(folder: Path) -> list[int]:
    out = []
    for f in folder.glob("rank-*"):
        try:
            out.append(int(f.read_text().strip()))
        except ValueError:
            continue
    return out


def run_torchrun(args: list[str], folder: Path) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import main

    try:
        main(args)
    except ChildFailedError as e:  # the failed workers' own codes (signals are negative), plus recorded ones
        return exit_code_of([f.exitcode for f in e.failures.values()] + _recorded(folder))
    except RendezvousError as e:  # timeout, closed, connection: the group may form on a later attempt
        click.echo(f"dorl launch: rendezvous failed ({type(e).__name__}: {e}): exit {EXIT_TRANSIENT}", err=True)
        return EXIT_TRANSIENT
    except SignalException as e:  # SIGTERM from the kubelet (pod deleted, preempted, drained): retry, 75
        # torchrun forwarded it to the workers, which exit 75 (dorl.cli) unless one had a user error (2)
        code = exit_code_of(_recorded(folder) + [EXIT_TRANSIENT])
        click.echo(f"dorl launch: stopped by signal {int(e.sigval)}: exit {code}", err=True)
        return code
    codes = _recorded(folder)
    return exit_code_of(codes) if codes else 0


def run_deepspeed(args: list[str], folder: Path) -> int:
    rc = subprocess.call(["deepspeed", *args])
    codes = _recorded(folder)
    return exit_code_of(codes + [rc]) if rc or codes else 0


@click.command(
    "launch", context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}
)
@click.argument("launcher", type=click.Choice(["torchrun", "deepspeed"]))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def launch(launcher: str, args: tuple[str, ...]) -> None:
    """Run torchrun or the DeepSpeed launcher with ARGS, exiting 0, 2, 75 or 1 by the exit-code contract."""
    with tempfile.TemporaryDirectory(prefix="dorl-exit-") as tmp:
        os.environ["DORL_EXIT_DIR"] = tmp  # the workers inherit it
        folder = Path(tmp)
        code = run_torchrun(list(args), folder) if launcher == "torchrun" else run_deepspeed(list(args), folder)
        del os.environ["DORL_EXIT_DIR"]
    sys.stdout.flush()
    sys.exit(code)
