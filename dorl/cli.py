"""The `dorl` command: one subcommand per pipeline stage, each importing its module only when run."""

from __future__ import annotations

import importlib
import sys

import click

from dorl import __version__
from dorl.errors import EXIT_TRANSIENT, EXIT_USER_ERROR, Stopped, TransientError, UserError

# name -> "module:attribute". Modules import heavy libraries (torch, …) inside their functions, so
# `dorl --help` stays fast.
COMMANDS = {
    "artifacts": "dorl.commands.artifacts:artifacts",
    "chat": "dorl.chat:chat",
    "config": "dorl.commands.config:config",
    "data": "dorl.stages.data:data",
    "evaluate": "dorl.stages.evaluate:evaluate_cmd",
    "export": "dorl.commands.export:export_cmd",
    "generate": "dorl.generate_cli:generate",
    "k8s": "dorl.k8s.cli:k8s",
    "launch": "dorl.engine.launch:launch",
    "models": "dorl.commands.models:models",
    "pipeline": "dorl.stages.pipeline:pipeline_cmd",
    "relabel": "dorl.stages.relabel:relabel_cmd",
    "report": "dorl.stages.report:report_cmd",
    "train": "dorl.stages.train:train_cmd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="dorl")
@click.option("--log-level", default=None, help="DEBUG, INFO (default), WARNING.")
# The DeepSpeed launcher inserts --local_rank=N right after the module name; LOCAL_RANK carries the same.
@click.option("--local_rank", "--local-rank", "local_rank", type=int, default=None, hidden=True)
def cli(log_level: str | None, local_rank: int | None) -> None:
    """dorl: offline RL for dialogue response generation.

    Each command runs one stage and writes one artifact (a local folder or s3://bucket/prefix)
    whose manifest.json, written last, marks it complete. `dorl pipeline` runs them all.
    """
    from dorl import log

    log.setup(log_level)


def _stop(signum, frame) -> None:
    raise Stopped(f"stopped by signal {signum} (the pod is being deleted, preempted or drained)")


def main() -> None:
    import signal

    # Python as a container's PID 1 ignores SIGTERM unless it handles it: without this a pod waits out its whole
    # grace period and is killed. torchrun's agent installs its own handler and forwards the signal to us.
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        rv = cli.main(standalone_mode=False)
    except Stopped as e:
        click.echo(f"error (transient, exit {EXIT_TRANSIENT}): {e}; the next attempt resumes", err=True)
        _exit(EXIT_TRANSIENT)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        _exit(e.exit_code)
    except TransientError as e:  # before UserError: a transient StoreError is retried, not failed fast
        click.echo(f"error (transient, exit {EXIT_TRANSIENT}: retrying later may succeed): {e}", err=True)
        _exit(EXIT_TRANSIENT)
    except UserError as e:
        from rich.markup import escape

        from dorl.log import console

        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        _exit(EXIT_USER_ERROR)
    finally:
        signal.signal(signal.SIGTERM, previous)  # main() called in-process (tests) leaves no handler behind
    _exit(rv if isinstance(rv, int) else 0)


def _exit(code: int) -> None:
    """Exit, first recording the code where `dorl launch` looks for its workers' codes (DORL_EXIT_DIR)."""
    import os

    folder = os.environ.get("DORL_EXIT_DIR")
    if folder and code:
        from pathlib import Path

        rank = os.environ.get("RANK", str(os.getpid()))
        Path(folder).mkdir(parents=True, exist_ok=True)
        Path(folder, f"rank-{rank}").write_text(str(code))
    sys.exit(code)


if __name__ == "__main__":
    main()
