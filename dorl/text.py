"""The reference text format: 15 special tokens, rendered conversations, one example per agent turn.

conversation = <_soc_> + turns, each <_cus_start_>TEXT<_cus_end_> or <_rep_start_>TEXT<_rep_end_>
example      = (context = the rendered history before an agent turn, response = its raw text)
training line = context <_rep_start_> response <_rep_end_>

A system message (your own conversations' `system` role; the public datasets have none) is context only:
<_sos_>TEXT<_eos_>, where it stands in the conversation (usually first, right after <_soc_>). The two tokens are
among the reference's 15 but unused by its text format, so every dorl tokenizer and model already has them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

SOS, EOS_, UNK, PAD_ = "<_sos_>", "<_eos_>", "<_unk_>", "<_pad_>"
SOC, EOC = "<_soc_>", "<_eoc_>"
CUS_START, CUS_END = "<_cus_start_>", "<_cus_end_>"
REP_START, REP_END = "<_rep_start_>", "<_rep_end_>"
REP_ACTION_START, REP_ACTION_END = "<_rep_action_start_>", "<_rep_action_end_>"
REWARD_ONE, REWARD_ZERO = "<_reward_one_>", "<_reward_zero_>"
RESPONSE_PLACEHOLDER = "<_response_placeholder_>"

# The reference's order: token ids are len(base vocab) + index.
SPECIAL_TOKENS: tuple[str, ...] = (
    SOS,
    EOS_,
    UNK,
    PAD_,
    SOC,
    EOC,
    CUS_START,
    CUS_END,
    REP_START,
    REP_END,
    REP_ACTION_START,
    REP_ACTION_END,
    REWARD_ONE,
    REWARD_ZERO,
    RESPONSE_PLACEHOLDER,
)

SYS_START, SYS_END = SOS, EOS_  # a system message: context only, never a response

Speaker = Literal["customer", "agent", "system"]
Turn = tuple[Speaker, str]
MARKS = {"customer": (CUS_START, CUS_END), "agent": (REP_START, REP_END), "system": (SYS_START, SYS_END)}


def render_turn(speaker: Speaker, text: str) -> str:
    if speaker == "customer":
        return f"{CUS_START}{text}{CUS_END}"
    if speaker == "agent":
        return f"{REP_START}{text}{REP_END}"
    if speaker == "system":
        return f"{SYS_START}{text}{SYS_END}"
    raise ValueError(f"unknown speaker {speaker!r}")


def parse_context(context: str) -> list[Turn]:
    """The turns of a rendered context (the inverse of `render_conversation`); ValueError if it is not one."""
    if not context.startswith(SOC):
        raise ValueError(f"a context starts with {SOC}: {context[:60]!r}")
    out: list[Turn] = []
    i = len(SOC)
    ends = {start: (speaker, end) for speaker, (start, end) in MARKS.items()}
    while i < len(context):
        start = next((s for s in ends if context.startswith(s, i)), None)
        if start is None:
            raise ValueError(f"unexpected text at character {i} of a context: {context[i : i + 40]!r}")
        speaker, end = ends[start]
        j = context.find(end, i + len(start))
        if j < 0:
            raise ValueError(f"a {speaker} turn without {end} at character {i} of a context")
        out.append((speaker, context[i + len(start) : j]))
        i = j + len(end)
    return out


def render_conversation(turns: Iterable[Turn]) -> str:
    return SOC + "".join(render_turn(s, t) for s, t in turns)


def examples(turns: Sequence[Turn]) -> list[tuple[int, str, str]]:
    """(turn index, context, response) for every agent turn; consecutive agent turns each count."""
    out = []
    context = SOC
    for i, (speaker, text) in enumerate(turns):
        if speaker == "agent":
            out.append((i, context, text))
        context += render_turn(speaker, text)
    return out


def prompt(context: str) -> str:
    """What the model continues to produce a response."""
    return context + REP_START


def line(context: str, response: str) -> str:
    """One training line of tf_top / tf_all: loss falls on `response` and `<_rep_end_>`."""
    return f"{context}{REP_START}{response}{REP_END}"
