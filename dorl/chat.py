"""`dorl chat --model URI [-k K]`: talk to a trained model in the terminal.

You type the customer's turns; the model suggests the agent's reply (k suggestions, as its method
decodes them; ILQL's with their values; DT asks for the top return). Pick one by its number (Enter
picks 1) or type the agent's reply yourself; the conversation goes on from what you chose.
`/reset` starts a new conversation, `/agent TEXT` adds an agent turn (e.g. a greeting first),
`/show` prints it, `/quit` (or end of input) leaves. Works with piped stdin too.
"""

from __future__ import annotations

import sys

import click

from dorl import methods
from dorl.options import config_options

HELP = (
    "type the customer's turn; then a number picks a suggestion (Enter: 1) or type the agent's reply. "
    "/agent TEXT adds an agent turn, /show, /reset, /quit"
)


def ask(label: str) -> str | None:
    """One line from the user (None at end of input). A line that is not UTF-8 or holds a special token of dorl's
    format is one error line, and the question again: the conversation goes on."""
    from dorl.errors import DataError
    from dorl.generate_cli import user_text

    while True:
        click.echo(click.style(label, bold=True), nl=False)  # styled on a terminal only
        try:
            line = input()
        except EOFError:
            click.echo()
            return None
        if not sys.stdin.isatty():  # piped input: the transcript shows what was typed
            click.echo(line.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        try:
            return user_text(line, "that line")
        except DataError as e:
            click.echo(click.style(f"error: {e}; type it again", fg="red"), err=True)


def distinct(suggestions):
    """Beams that decode to the same text are one suggestion to a person (the first, best, kept)."""
    seen: set[str] = set()
    return [s for s in suggestions if not (s.text in seen or seen.add(s.text))]


@click.command("chat")
@click.option(
    "--model", "model_uri", required=True, help="Model artifact (train/<method>) or a folder pulled from one."
)
@click.option("--method", type=click.Choice(methods.names()), help="Must agree with the model's manifest.")
@click.option("-k", "k", type=int, default=3, show_default=True, help="Suggestions per turn.")
@config_options
def chat(model_uri, method, k, cfg) -> None:
    """Chat in the terminal: you are the customer, the model suggests the agent's replies."""
    from dorl.generate_cli import show_suggestions, show_turns
    from dorl.suggest import Suggester
    from dorl.text import render_conversation

    if hasattr(sys.stdin, "reconfigure"):  # bytes that are not UTF-8 reach `ask` (and are refused), never a traceback
        sys.stdin.reconfigure(errors="surrogateescape")
    suggester = Suggester(cfg, model_uri, method, k)
    click.echo(click.style(suggester.describe(), dim=True))
    click.echo(click.style(HELP, dim=True))
    turns: list[tuple[str, str]] = []
    while True:
        line = ask("customer> ")
        if line is None or line.strip() == "/quit":
            return
        line = line.strip()
        if line == "/reset":
            turns = []
            click.echo(click.style("(new conversation)", dim=True))
            continue
        if line == "/show":
            show_turns(render_conversation(turns))
            continue
        if line.startswith("/agent "):
            turns.append(("agent", line[len("/agent ") :].strip()))
            continue
        if line.startswith("/"):
            click.echo(click.style(HELP, dim=True))
            continue
        if line:
            turns.append(("customer", line))
        suggestions = distinct(suggester.suggest([render_conversation(turns)])[0])
        show_suggestions(suggestions)
        choice = ask(f"agent [1-{len(suggestions)}, Enter=1, or type]> ")
        if choice is None or choice.strip() == "/quit":
            return
        choice = choice.strip()
        if choice == "/reset":
            turns = []
            click.echo(click.style("(new conversation)", dim=True))
            continue
        if choice == "" or (choice.isdigit() and 1 <= int(choice) <= len(suggestions)):
            reply = suggestions[int(choice or 1) - 1].text
        else:
            reply = choice
        turns.append(("agent", reply))
        click.echo(click.style("   agent: ", fg="green") + reply)
