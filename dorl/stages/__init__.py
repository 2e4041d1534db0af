"""The pipeline's stages, each an entry function and its `dorl` command, top of the layers:

    data.py      `dorl data prepare|simulate|stats`   raw files -> examples and conversations
    train.py     `dorl train --method M`              a data or relabel artifact -> a model
    relabel.py   `dorl relabel`                       base model candidates, scored -> rewards and returns
    evaluate.py  `dorl evaluate --method M`           test responses scored -> predictions and metrics
    report.py    `dorl report`                        evaluations -> tables, plot, page
    pipeline.py  `dorl pipeline`                      every stage of `graph.nodes(cfg)`, in order
    graph.py     the stage graph, declared once (the pipeline, the Jobs and Argo read it)

A stage reads methods (`dorl.methods`), the engine and decoder, and the store; nothing below imports it.
"""
