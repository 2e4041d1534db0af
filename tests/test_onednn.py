"""The vocabulary projection through oneDNN: used only in inference on a CPU fp32 linear head, equal to
torch's matmul to fp32 rounding, the model restored afterwards."""

import pytest
import torch

from dorl import onednn
from dorl.generate import DecodeConfig, generate
from dorl.text import examples, prompt
from tests.fixtures import dialogues

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch without oneDNN")


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.fixtures import make_tiny_model_dir

    path = tmp_path_factory.mktemp("onednn-model")
    make_tiny_model_dir(path, seed=4)
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


@needs_onednn
def test_head_is_packed_inside_and_restored_after(lm):
    model, _ = lm
    head = model.get_output_embeddings()
    ids = torch.randint(0, model.config.vocab_size, (3, 7))
    with torch.inference_mode():
        want = model(input_ids=ids).logits
        with onednn.lm_head(model):
            assert isinstance(model.get_output_embeddings(), onednn.PackedLinear)
            got = model(input_ids=ids).logits
    assert model.get_output_embeddings() is head
    assert set(model.state_dict()) == set(type(model)(model.config).state_dict())  # nothing added for good
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_left_alone_with_autograd_or_kernel_torch(lm):
    model, _ = lm
    head = model.get_output_embeddings()
    with onednn.lm_head(model):  # autograd on: training must see its own parameters
        assert model.get_output_embeddings() is head
    with torch.inference_mode(), onednn.lm_head(model, "torch"):
        assert model.get_output_embeddings() is head


def test_generation_gives_the_same_responses_with_either_kernel(lm):
    model, tok = lm
    prompts = list(dict.fromkeys(prompt(c) for _, turns in dialogues(4, seed=9) for _, c, _ in examples(turns)))[:8]
    for beams in (1, 4):
        dc = DecodeConfig(num_beams=beams, num_return=beams, max_new_tokens=12, batch_size=3)
        fast = generate(model, tok, prompts, dc, progress=False).texts
        assert fast == generate(model, tok, prompts, dc.but(lm_head="torch"), progress=False).texts


def test_an_unknown_kernel_is_refused(lm):
    from dorl.errors import ConfigError

    model, tok = lm
    with pytest.raises(ConfigError, match="lm_head kernel 'mkl'"):
        generate(model, tok, ["hi"], DecodeConfig(lm_head="mkl"), progress=False)


@needs_onednn
def test_generate_projects_through_onednn_only_when_asked(lm, monkeypatch):
    model, tok = lm
    calls = []
    forward = onednn.PackedLinear.forward
    monkeypatch.setattr(onednn.PackedLinear, "forward", lambda self, x: calls.append(1) or forward(self, x))
    dc = DecodeConfig(num_beams=2, num_return=2, max_new_tokens=4, batch_size=2)
    for settings, used in (({}, True), ({"lm_head": "torch"}, False), ({"engine": "hf"}, False)):
        calls.clear()
        generate(model, tok, ["hello there", "hi"], dc.but(**settings), progress=False)
        assert bool(calls) == used, settings
        assert isinstance(model.get_output_embeddings(), torch.nn.Linear)  # restored


def test_relabel_and_eval_pass_their_lm_head_setting():
    from dorl import config, methods
    from dorl.relabel.candidates import decode_config as relabel_decode
    from dorl.stages.evaluate import decode_config as eval_decode

    cfg = config.load(preset="tiny", sets=["relabel.lm_head=torch", "eval.lm_head=torch"])
    assert relabel_decode(cfg.relabel).lm_head == "torch"
    assert eval_decode(cfg, methods.get("tf", cfg)).lm_head == "torch"
    assert relabel_decode(config.load(preset="tiny").relabel).lm_head == "auto"
