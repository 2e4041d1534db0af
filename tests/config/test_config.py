import pytest

from dorl import config
from dorl.errors import ConfigError
from tests.conftest import run_dorl


def test_defaults_are_the_reference_values():
    cfg = config.load()
    assert cfg.model.name == "distilgpt2"
    assert (cfg.tf.lr, cfg.tf.batch_size, cfg.tf.epochs, cfg.tf.max_length) == (5e-4, 16, 10, 1024)
    assert (cfg.finetune.batch_size, cfg.finetune.epochs, cfg.finetune.max_length) == (32, 5, 512)
    assert (cfg.relabel.num_beams, cfg.relabel.num_candidates, cfg.relabel.max_new_tokens) == (5, 5, 32)
    assert (cfg.relabel.prompt_tokens, cfg.relabel.threshold) == (96, 0.6)
    assert (cfg.metrics.bertscore_model, cfg.metrics.bertscore_layers) == ("roberta-large", 17)
    assert (cfg.ilql.tau, cfg.ilql.gamma, cfg.ilql.polyak_every) == (0.7, 0.99, 5)
    # dorl's own defaults where the reference's did no RL at dorl's run sizes (issue 29): the Polyak rate scaled to
    # the run (trlx's 0.001 at 100,000 steps) and the decoding beta chosen on validation (the reference: 0)
    assert (cfg.ilql.polyak_alpha, cfg.ilql.beta) == ("auto", "auto")
    assert (cfg.eval.n_examples, cfg.eval.sample_seed) == (1000, 1)


def test_order_defaults_preset_file_sets(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("preset: tiny\ntf:\n  lr: 2e-4\n  epochs: 7\nrun: mine\n")
    cfg = config.load(file=f, sets=["tf.epochs=9", "pipeline.methods=[dt, ilql]"])
    assert cfg.model.source == "config"  # from the tiny preset named in the file
    assert cfg.tf.lr == 2e-4  # file over preset ("2e-4" is a string to PyYAML: coerced)
    assert cfg.tf.epochs == 9  # --set over file
    assert cfg.run == "mine"
    assert cfg.pipeline.methods == ["dt", "ilql"]


@pytest.mark.parametrize(
    "sets, message",
    [
        (["tf.lrr=1"], "unknown config key 'tf.lrr'; allowed keys here: batch_size"),
        (["nope=1"], "unknown config key 'nope'"),
        (["tf.epochs=ten"], "config key 'tf.epochs': expected int, got str 'ten'"),
        (["tf.epochs=1.5"], "config key 'tf.epochs': expected int, got float 1.5"),
        (["ilql.heads=big"], "'big' is not allowed; choose one of 'efficient', 'reference'"),
        (["pipeline.datasets=[abcd, woz]"], "config key 'pipeline.datasets[1]'"),
        (["tf=3"], "tf: expected a mapping"),
        (["tf.lr"], "--set expects key=value"),
    ],
)
def test_bad_keys_and_types_are_named(sets, message):
    with pytest.raises(ConfigError) as e:
        config.load(sets=sets)
    assert message in str(e.value)


def test_unknown_preset_and_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'huge'; choose one of"):
        config.load(preset="huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tf: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        config.load(file=bad)
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(file=tmp_path / "missing.yaml")


def test_cli_reports_config_errors_without_traceback():
    r = run_dorl("config", "show", "--set", "tf.lr=fast")
    assert r.returncode == 2
    assert "config key 'tf.lr': expected float, got str 'fast'" in r.stderr
    assert "Traceback" not in r.stderr
    ok = run_dorl("config", "show", "--preset", "demo", "--set", "tf.epochs=4")
    assert ok.returncode == 0, ok.stderr
    assert "epochs: 4" in ok.stdout and "simulate: 300" in ok.stdout


def test_config_keys_lists_help():
    r = run_dorl("config", "keys", "ilql.")
    assert r.returncode == 0
    assert "ilql.tau" in r.stdout and "Expectile" in r.stdout


def test_set_a_str_field_to_digits_keeps_the_text():
    cfg = config.load(sets=["run=001", "data.source=null", "k8s.namespace=true", "tf.epochs=3", "tf.lr=5e-4"])
    assert cfg.run == "001" and cfg.data.source is None and cfg.k8s.namespace == "true"
    assert cfg.tf.epochs == 3 and cfg.tf.lr == 5e-4
    with pytest.raises(ConfigError, match="config key 'tf.epochs': expected int, got str '001x'"):
        config.load(sets=["tf.epochs=001x"])


def test_config_keys_json():
    import json

    r = run_dorl("config", "keys", "--json", "report.")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [x["key"] for x in rows] == [
        "report.k",
        "report.bootstrap",
        "report.test",
        "report.resamples",
        "report.confidence",
        "report.seed",
        "report.baseline",
        "report.control",
    ]
    assert rows[4] == {
        "key": "report.confidence",
        "type": "float",
        "default": 0.95,
        "help": "Confidence level of the intervals; 1 - confidence is the tests' alpha.",
    }


def test_a_renamed_key_names_its_new_name():
    with pytest.raises(ConfigError, match="config key 'methods' was renamed to 'finetune'"):
        config.load(sets=["methods.lr=1e-4"])
    r = run_dorl("config", "show", "--set", "methods.epochs=2")
    assert r.returncode == 2 and "renamed to 'finetune'" in r.stderr and "Traceback" not in r.stderr
