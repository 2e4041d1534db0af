"""dorl's ILQL model in plain transformers: the code an ILQL model folder ships (`trust_remote_code`).

dorl copies this file into every ILQL model folder it saves and names it in config.json's `auto_map`
(`dorl.ilql.io.save`), the Hugging Face convention for custom models. Then

    model = AutoModelForCausalLM.from_pretrained(FOLDER, trust_remote_code=True)
    out = model.generate(**inputs)                                    # greedy, beta from ilql_config.json
    out = model.generate(**inputs, beta=4.0)                          # another beta
    out = model.generate(**inputs, do_sample=True, num_return_sequences=4, seed=0, top_k=20, temperature=1.0)

decodes as dorl does (`dorl.generate` with `dorl.ilql.decode.Advantage`), token for token:

    greedy:   argmax  log_softmax(LM logits) + beta * (min target-Q(s, .) - V(s))
    sampling: draw from softmax(top-k(log_softmax(LM logits / temperature) + beta * (min target-Q - V)))
              with a torch.Generator seeded by `seed`, each prompt num_return_sequences times in a row

beta, top_k, temperature and seed default to ilql_config.json's `decoding` (what the training run's
`ilql.*` said); beta = 0 skips the heads (the policy's own greedy decoding). The model is the policy's
own transformers class (GPT2LMHeadModel, LlamaForCausalLM, ...) with this `generate` mixed in and the
V and target-Q heads (`ilql_heads.safetensors`) as `model.ilql_heads`; its forward is the policy's.
Without `trust_remote_code` the folder loads as that plain class: the behaviour policy, which
decodes without the heads.

Self-contained on purpose (transformers copies only this file): it imports torch, transformers and
safetensors (a transformers dependency), never dorl. dorl's tests check it decodes dorl's tokens.
"""

from __future__ import annotations

import copy
import json

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import DynamicCache, GenerationMixin, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING
from transformers.utils import cached_file

FORMAT = "dorl-ilql/1"
HEADS_FILE = "ilql_heads.safetensors"
CONFIG_FILE = "ilql_config.json"
DEFAULTS = {"beta": 0.0, "top_k": 20, "temperature": 1.0, "seed": 0}  # dorl's, for a folder that records none
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "subfolder", "token")
GENERATION_KWARGS = ("do_sample", "max_new_tokens", "num_return_sequences", "eos_token_id", "pad_token_id")


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class TiedQ(nn.Module):
    """An efficient Q head: Q(s, a) = mlp(h) . E_target[a] + bias[a]."""

    def __init__(self, d: int, vocab: int):
        super().__init__()
        self.mlp = mlp(d, 2 * d, d)
        self.bias = nn.Parameter(torch.zeros(vocab))


class ILQLHeads(nn.Module):
    """What decoding reads of dorl's heads (`dorl.ilql.heads`, same tensor names): V and the target-Q heads
    (efficient: MLP d -> 2d -> d scored against the target copy of E plus a bias; reference: d -> 2d -> |V|)."""

    def __init__(self, kind: str, d: int, vocab: int, two_qs: bool):
        super().__init__()
        if kind not in ("efficient", "reference"):
            raise ValueError(f"{CONFIG_FILE}: unknown heads {kind!r}")
        self.kind = kind
        self.v_head = mlp(d, 2 * d, 1)
        make = (lambda: TiedQ(d, vocab)) if kind == "efficient" else (lambda: mlp(d, 2 * d, vocab))
        self.target_q_heads = nn.ModuleList(make() for _ in range(2 if two_qs else 1))
        if kind == "efficient":
            self.register_buffer("target_emb", torch.zeros(vocab, d))

    def advantage(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """min target-Q(s, .) - V(s) (B, |V|) at hidden states h (B, d), in dorl's order of operations."""
        v = self.v_head(h).squeeze(-1).unsqueeze(-1)
        if self.kind == "efficient":  # the target heads' queries in one matmul against the target copy of E
            te = self.target_emb if self.target_emb is not None else emb
            th = h.to(te.dtype)
            scores = (torch.cat([head.mlp(th) for head in self.target_q_heads]) @ te.T).split(h.shape[0])
            qs = [s + head.bias for s, head in zip(scores, self.target_q_heads)]
        else:
            th = h.to(next(self.target_q_heads.parameters()).dtype)
            qs = [head(th) for head in self.target_q_heads]
        q = qs[0] if len(qs) == 1 else torch.minimum(*qs)
        return q - v


def load_heads(path, hub: dict, embedding: torch.Tensor) -> tuple[ILQLHeads, dict]:
    """The heads and the decoding settings of the ILQL folder (or Hub repository) `path`."""
    with open(cached_file(path, CONFIG_FILE, **hub), encoding="utf-8") as f:
        info = json.load(f)
    if info.get("format") != FORMAT:
        raise ValueError(f"{CONFIG_FILE}: field 'format' is {info.get('format')!r}, expected {FORMAT!r}")
    vocab, d = embedding.shape
    if (info.get("hidden_size"), info.get("vocab_size")) != (d, vocab):
        size = f"{info.get('hidden_size')}x{info.get('vocab_size')}"
        raise ValueError(f"{CONFIG_FILE}: heads of {size} do not fit the model's {d}x{vocab}")
    heads = ILQLHeads(info.get("heads", "efficient"), d, vocab, bool(info.get("two_qs", True)))
    state = load_file(cached_file(path, HEADS_FILE, **hub))
    state = {k: v for k, v in state.items() if not k.startswith("q_heads.")}  # the trained Q heads: not decoded
    missing, unexpected = heads.load_state_dict(state, strict=False)
    if missing == ["target_emb"]:  # saved before efficient heads kept a target copy of E: they score against E
        heads.target_emb, missing = None, []
    if missing or unexpected:
        raise ValueError(f"{HEADS_FILE}: tensors do not fit {heads.kind} heads (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]})")  # fmt: skip
    heads.requires_grad_(False)
    decoding = {**DEFAULTS, **{k: v for k, v in info.get("decoding", {}).items() if k in DEFAULTS}}
    return heads.to(device=embedding.device, dtype=embedding.dtype).eval(), decoding


class ILQLDecoding:
    """Mixed into the policy's class: `generate` decodes with the heads, as dorl does."""

    ilql_heads: ILQLHeads
    ilql_decoding: dict

    @torch.no_grad()
    def generate(self, inputs=None, generation_config=None, **kwargs):
        """(B * num_return_sequences, prompt + new tokens): each row its prompt (left-padded, as the
        tokenizer pads) then its new tokens up to and including its stop token, then pad tokens."""
        ids = kwargs.pop("input_ids", inputs)
        mask = kwargs.pop("attention_mask", None)
        mask = torch.ones_like(ids) if mask is None else mask
        ilql = {k: kwargs.pop(k, None) for k in DEFAULTS}
        ilql = {k: self.ilql_decoding[k] if v is None else v for k, v in ilql.items()}
        gc = copy.deepcopy(generation_config or self.generation_config)
        gc.update(**{k: kwargs.pop(k) for k in GENERATION_KWARGS if k in kwargs})
        if kwargs.pop("num_beams", 1) != 1 or (gc.num_beams or 1) != 1:
            raise ValueError("ILQL decoding is greedy or sampling (do_sample=True), not beam search")
        if kwargs:
            raise ValueError(f"ILQL decoding does not take {sorted(kwargs)}")
        if ilql["temperature"] <= 0 or ilql["top_k"] < 0:
            raise ValueError(f"ILQL decoding needs temperature > 0 and top_k >= 0, got {ilql}")
        if gc.max_new_tokens is None:
            raise ValueError("ILQL decoding needs max_new_tokens (the folder's generation_config.json sets it)")
        n = gc.num_return_sequences or 1
        if n > 1 and not gc.do_sample:
            raise ValueError("greedy decoding gives one sequence per prompt: num_return_sequences > 1 needs do_sample")
        eos = gc.eos_token_id if isinstance(gc.eos_token_id, list) else [gc.eos_token_id]
        eos = [e for e in eos if e is not None]
        pad = gc.pad_token_id if gc.pad_token_id is not None else eos[-1]
        if n > 1:  # each prompt n times in a row: the seeded draws follow the rows, as dorl's
            ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        generator = torch.Generator(ids.device).manual_seed(int(ilql["seed"])) if gc.do_sample else None
        seqs = self._ilql_decode(ids, mask, gc, ilql, eos, generator)
        width = max(len(s) for s in seqs)
        new = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], dtype=ids.dtype, device=ids.device)
        return torch.cat([ids, new], 1)

    def _ilql_forward(self, ids, mask, positions, cache, hidden: bool):
        """The last position's logits (fp32), its final hidden states when `hidden`, the KV cache."""
        if not hidden:
            out = self(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                       logits_to_keep=1)  # fmt: skip
            return out.logits[:, -1, :].float(), None, out.cache
        out = self.base_model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        h = out.last_hidden_state[:, -1]
        return self.get_output_embeddings()(h).float(), h, out.cache

    def _ilql_choose(self, logits, h, sample: bool, ilql: dict, generator, rows, width: int):
        scores = None if sample else logits
        if sample:
            scores = torch.log_softmax(logits / ilql["temperature"], -1)
        elif h is not None:
            scores = torch.log_softmax(logits, -1)
        if h is not None:
            scores = scores + ilql["beta"] * self.ilql_heads.advantage(h, self.get_output_embeddings().weight).float()
        if not sample:
            return scores.argmax(-1)
        if 0 < ilql["top_k"] < scores.shape[-1]:
            kth = scores.topk(ilql["top_k"], dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        probs = scores.softmax(-1)
        if probs.shape[0] == width:
            return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        # rows have finished: draw for the whole batch all the same, so a row's draws do not depend on the others
        full = probs.new_zeros((width, probs.shape[1]))
        full[:, 0] = 1.0
        full[rows] = probs
        return torch.multinomial(full, 1, generator=generator).squeeze(-1)[rows]

    def _ilql_decode(self, ids, mask, gc, ilql: dict, eos: list, generator) -> list[list[int]]:
        """One token per live row and step over the KV cache; a row that emits a stop token leaves the batch."""
        hidden = ilql["beta"] != 0
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        logits, h, cache = self._ilql_forward(ids, mask, positions, DynamicCache(config=self.config), hidden)
        pos = positions[:, -1:] + 1
        width = ids.shape[0]
        eos_t = torch.tensor(eos, dtype=torch.long, device=ids.device)
        rows = torch.arange(width, device=ids.device)
        seqs: list[list[int]] = [[] for _ in range(width)]
        for t in range(gc.max_new_tokens):
            tok = self._ilql_choose(logits, h, bool(gc.do_sample), ilql, generator, rows, width)
            for r, v in zip(rows.tolist(), tok.tolist()):
                seqs[r].append(v)
            keep = ~torch.isin(tok, eos_t)
            if t + 1 == gc.max_new_tokens or not keep.any():
                break
            if not keep.all():
                idx = keep.nonzero().squeeze(1)
                cache.batch_select_indices(idx)
                rows, tok, mask, pos = rows[idx], tok[idx], mask[idx], pos[idx]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            logits, h, cache = self._ilql_forward(tok[:, None], mask, pos, cache, hidden)
            pos = pos + 1
        return seqs


class DorlILQLForCausalLM(PreTrainedModel, GenerationMixin):
    """What config.json's `auto_map` names: `from_pretrained` loads the policy as its own transformers class
    with `ILQLDecoding` mixed in, and the heads from `ilql_heads.safetensors`."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, **kwargs):
        from transformers import AutoConfig

        hub = {k: kwargs[k] for k in HUB_KWARGS if kwargs.get(k) is not None}
        if config is None:
            config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub)
        policy = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
        # the policy's name (pipelines check it against their supported classes), this module's code
        with_heads = type(policy.__name__, (ILQLDecoding, policy), {"__module__": __name__})
        model = with_heads.from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)
        heads, decoding = load_heads(pretrained_model_name_or_path, hub, model.get_output_embeddings().weight)
        model.ilql_heads, model.ilql_decoding = heads, decoding
        return model
