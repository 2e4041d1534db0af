"""Every method's saved folder, loaded with plain transformers and prompted by its chat template, answers
what `dorl generate` answers (ILQL at beta 0: its policy's greedy decoding, which is dorl's ILQL at beta 0);
`dorl artifacts pull` copies a verified folder; `dorl chat` runs on piped stdin through the real CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dorl import config, methods
from dorl.cli import cli
from dorl.model_folder import SAMPLE
from tests.fixtures import make_relabel_artifact

STEPS = ["tf.max_steps=2", "tf.max_length=128", "tf.batch_size=8", "tf.micro_batch_size=8"] + [
    f"{s}.{k}"
    for s in ("finetune", "ilql.train", "kto.train", "dpo.train", "awr.train")
    for k in ("max_steps=2", "batch_size=8", "micro_batch_size=8")
]
DECODE = ["eval.max_new_tokens=8", "ilql.beta=0"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory, data_artifact):
    """Each method trained 2 steps on the tiny model (DT with 3 return bins: its own return tokens)."""
    from dorl.stages.train import train

    root = tmp_path_factory.mktemp("trained")
    cfg = config.load(preset="tiny", sets=STEPS + DECODE)
    tf = train(cfg, method="tf", data_uri=data_artifact.uri, out_uri=str(root / "tf")).artifact
    relabel = make_relabel_artifact(str(root / "relabel"), data_artifact, return_bins=3)
    out = {"tf": tf}
    for m in methods.relabelled():
        out[m] = train(cfg, method=m, data_uri=relabel.uri, base_uri=tf.uri, out_uri=str(root / m)).artifact
    return out


def dorl_generate(*args: str) -> list[dict]:
    sets = [a for s in DECODE for a in ("--set", s)]
    res = CliRunner().invoke(cli, ["generate", *args, "--json", "-k", "1", "--preset", "tiny", *sets])
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("method", methods.names())
def test_plain_transformers_answers_as_dorl_generate(trained, tmp_path, method):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path / "pulled"
    res = CliRunner().invoke(cli, ["artifacts", "pull", trained[method].uri, str(folder)])
    assert res.exit_code == 0, res.output
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    messages = [{"role": "user" if s == "customer" else "assistant", "content": t} for s, t in SAMPLE]
    inputs = tok.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", truncation=True, max_length=96
    )
    out = model.generate(**inputs)  # every setting from the folder's generation_config.json
    plain = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    from dorl.text import render_conversation

    [row] = dorl_generate("--model", str(folder), "--context", render_conversation(SAMPLE))
    assert tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == row["prompt"]
    assert plain == row["responses"][0]
    assert tok.model_max_length == model.config.n_positions
    card = (folder / "README.md").read_text()
    assert f"dorl `{method}` model" in card and "## Prompt format" in card
    if method == "dt":
        assert row["prompt"].endswith("<_return_2_><_rep_start_>")  # the top of 3 return bins
    if method == "ilql":
        assert "ilql_heads.safetensors" in card and all(isinstance(v, float) for v in row["values"])


def test_both_selections_are_finished(trained):
    """The `last` weights (tf) and the `best` checkpoint's (the methods) both get the folder's extras."""
    assert trained["tf"].info["selected"] == "last" and trained["dt"].info["selected"] == "best"
    for art in trained.values():
        assert {"README.md", "generation_config.json", "tokenizer_config.json"} <= set(art.files)


# Outside dorl (no PYTHONPATH, `dorl` blocked): the folder's own code, its chat template, generate with beta.
REMOTE = """
import sys
sys.modules["dorl"] = None
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)
messages = [{"role": "user", "content": sys.argv[2]}]
inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = model.generate(**inputs, beta=float(sys.argv[3]))
print(tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
chat = pipeline("text-generation", model=sys.argv[1], trust_remote_code=True)
print(chat(messages, beta=float(sys.argv[3]))[0]["generated_text"][-1]["content"].strip())
"""


def test_an_ilql_folder_decodes_with_its_heads_outside_dorl(trained, tmp_path):
    """The train stage ships `modeling_dorl_ilql.py`: with trust_remote_code, plain transformers (generate and the
    text-generation pipeline) answers what `dorl generate` answers at the same beta."""
    import os
    import subprocess
    import sys

    art = trained["ilql"]
    assert "modeling_dorl_ilql.py" in art.files and json.loads(art.read_bytes("ilql_config.json"))["decoding"] == {
        "beta": 0.0, "top_k": 20, "temperature": 1.0, "seed": 0}  # fmt: skip
    text, beta = "hi, my jeans arrived broken", "1.5"
    res = CliRunner().invoke(cli, ["generate", "--model", art.uri, "--context", text, "--json", "-k", "1", "--preset",
                                   "tiny", "--set", "eval.max_new_tokens=8", "--set", f"ilql.beta={beta}"])  # fmt: skip
    assert res.exit_code == 0, res.output
    [want] = [json.loads(line)["responses"][0] for line in res.output.splitlines() if line.startswith("{")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_MODULES_CACHE": str(tmp_path / "mod")}
    r = subprocess.run([sys.executable, "-c", REMOTE, str(art.local_dir()), text, beta], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-2:] == [want, want]  # generate, and the text-generation pipeline


def test_pull_verifies_and_adds_an_evaluations_metrics(trained, tmp_path, data_artifact):
    from dorl.store import run_stage

    tf = trained["tf"]

    def body(ctx):  # an evaluation's outputs, as the evaluate stage writes them
        summary = {"dataset": "abcd", "n_examples": 4, "best_of_k": {"bertscore": [0.5, 0.6]}, "bert_click": [0.25]}
        ctx.out.path("metrics.json").write_text(json.dumps(summary))

    ev = run_stage("evaluate", str(tmp_path / "eval"), {"x": 1}, {"model": tf, "data": data_artifact}, body).artifact
    res = CliRunner().invoke(cli, ["artifacts", "pull", tf.uri, str(tmp_path / "copy"), "--eval", ev.uri])
    assert res.exit_code == 0, res.output
    card = (tmp_path / "copy" / "README.md").read_text()
    assert "## Evaluation" in card and "bertscore (response 1): 0.5" in card and "bertscore (best of 2): 0.6" in card
    dorl_generate("--model", str(tmp_path / "copy"), "--context", "hi")  # the copy verifies against its manifest

    # an evaluation of another model is refused; a tampered file is refused, and nothing is left behind
    other = run_stage("evaluate", str(tmp_path / "eval2"), {"x": 2}, {"model": trained["dt"]}, body).artifact
    res = CliRunner().invoke(cli, ["artifacts", "pull", tf.uri, str(tmp_path / "c2"), "--eval", other.uri])
    assert res.exit_code != 0 and not (tmp_path / "c2").exists()
    bad = tmp_path / "bad"
    res = CliRunner().invoke(cli, ["artifacts", "pull", tf.uri, str(bad)])
    (bad / "config.json").write_text("{}")
    res = CliRunner().invoke(cli, ["artifacts", "pull", str(bad), str(tmp_path / "c3")])
    assert res.exit_code != 0 and not (tmp_path / "c3").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_chat_on_piped_stdin(trained):
    """The real CLI in a subprocess: pick a suggestion, type a reply, show, reset, quit."""
    import subprocess
    import sys

    script = "hi, my jeans arrived broken\n1\nAna Li\nThanks Ana.\n/show\n/reset\n/quit\n"
    args = ["chat", "--model", trained["ilql"].uri, "-k", "2", "--preset", "tiny", "--set", "eval.max_new_tokens=4"]
    res = subprocess.run([sys.executable, "-m", "dorl", *args], input=script, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "ilql model" in out and out.count("customer> ") == 5
    assert "(value " in out  # ILQL's suggestions carry their values
    assert "agent: Thanks Ana." in out and "(new conversation)" in out
    shown = out.split("customer> /show")[1].split("customer> /reset")[0]
    assert shown.count("customer:") == 2 and shown.count("agent:") == 2


def test_generate_refuses_a_method_that_disagrees(trained):
    from dorl.errors import ConfigError

    res = CliRunner().invoke(cli, ["generate", "--model", trained["dt"].uri, "--method", "tf", "--context", "hi"])
    assert isinstance(res.exception, ConfigError) and "is a 'dt' model but --method is 'tf'" in str(res.exception)
    res = CliRunner().invoke(cli, ["generate", "--model", trained["dt"].uri])
    assert isinstance(res.exception, ConfigError) and "either --context" in str(res.exception)
