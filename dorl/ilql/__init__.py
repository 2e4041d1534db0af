"""ILQL (implicit language Q-learning) for dialogue responses, on any HF causal LM.

heads.py   V, Q and target-Q heads: `reference` (d->2d->|V| MLPs) or `efficient` (tied to the LM's embedding)
model.py   ILQLModel: the LM plus heads, evaluated only at the positions that need them
data.py    relabel's ilql split -> token ids, action states, standardised returns
loss.py    Q regression, expectile V regression, CQL, (advantage-weighted) LM cross-entropy
polyak.py  target-Q <- (1 - alpha) target-Q + alpha Q
decode.py  KV-cached advantage-guided decoding, value re-ranking of samples (ilql_scorer)
io.py      save/load: a plain HF model folder + ilql_heads.safetensors + ilql_config.json
method.py  `dorl train --method ilql`: data, loss module, Polyak hook and saving for the training engine
"""
