"""The training engine every method runs on: DeepSpeed loop (`trainer`), checkpoints, processes (`dist`),
token sequences and their order (`data`), loss and throughput logs (`monitor`, `tracking`), model loading
(`models`, `causal_lm`) and the multi-process launcher (`launch`).

Heavy libraries (torch, transformers, deepspeed) are imported by the modules that need them.
"""
