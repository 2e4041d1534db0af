"""ilql_scorer: the reference's second ILQL evaluation, which trains nothing:

    dorl evaluate --method ilql_scorer --model <train/ilql> --candidates-from <train/dt (or tf, tf_top, tf_all)> ...

The candidate model answers each test context as it would in its own evaluation (its prompt: DT asks
for its top return; response 1 greedy, 2..N beam search), and the ILQL model's V at each candidate's
last state (`dorl.ilql.ranking`: after its text, where `<_rep_end_>` is the action) orders them:
response 1 is the top-valued candidate, so best-of-k and bert_click mean what they mean for every
other method. The reference ran it on DT's candidates (`generate_ilql_scorer_on_tf` calls
`generate_dt`); `ilql.scorer_candidates` says which for `pipeline.scorers`.
"""

from __future__ import annotations

import time

from dorl import methods
from dorl.generate import DecodeConfig
from dorl.methods.base import Method, device, load_tokenizer
from dorl.prompts import PromptFormat


class ILQLScorer(Method):
    scores = "ilql"
    candidate_methods = ("tf", "tf_top", "tf_all", "dt")

    def pipeline_inputs(self) -> tuple[str, str]:
        """(the scoring method, the candidates' method) of its node in `pipeline.scorers`."""
        return self.scores, self.cfg.ilql.scorer_candidates

    def respond_to(self, model, contexts, decode: DecodeConfig, num_responses: int, candidates=None):
        from dorl.engine.models import compute_dtype, inference_kwargs
        from dorl.ilql import io as ilql_io
        from dorl.ilql.ranking import order_by_value, score_texts

        cm = methods.get(candidates.stage.split("/", 1)[1], self.cfg)
        cand_fmt = PromptFormat.of(load_tokenizer(candidates.local_dir()))
        cand_prompts = [cm.prompt(c, candidates.info, cand_fmt) for c in contexts]
        texts, cand_stats = cm.respond(candidates.local_dir(), cand_prompts, decode.but(**cm.decoding()), num_responses)
        started = time.perf_counter()
        model_dir = model.local_dir()
        tok = load_tokenizer(model_dir)
        dtype = compute_dtype(self.cfg.model, device())
        ilql = ilql_io.load(model_dir, device=device(), dtype=dtype, **inference_kwargs(self.cfg.model))
        k = len(texts[0]) if texts else 0
        fmt = PromptFormat.of(tok)
        flat_prompts = [fmt.prompt(c) for c in contexts for _ in range(k)]
        flat_texts = [t for row in texts for t in row]
        values = score_texts(ilql, tok, flat_prompts, flat_texts, decode.prompt_tokens, decode.batch_size)
        out, kept = [], 0
        for i, row in enumerate(texts):
            order = order_by_value(values[i * k : (i + 1) * k])
            out.append([row[j] for j in order])
            kept += order[0] == 0
        seconds = time.perf_counter() - started
        stats = {
            "candidates": {"method": cm.name, "model": candidates.uri, **cand_stats},
            "scoring": {
                "seconds": round(seconds, 3),
                "responses_per_s": round(len(flat_texts) / max(seconds, 1e-9), 1),
                "greedy_kept_first": round(kept / max(len(texts), 1), 4),  # share whose top-valued is the greedy one
            },
        }
        return out, stats
