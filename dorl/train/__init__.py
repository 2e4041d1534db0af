"""Training on DeepSpeed: one engine (`engine`), methods that plug into it (`method`), the stage (`stage`).

Heavy libraries (torch, transformers, deepspeed) are imported by the modules that need them, so
importing this package or its CLI stays fast.
"""
