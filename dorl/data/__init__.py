"""The data stage: raw ABCD / MultiWOZ 2.2 / Taskmaster-3 files -> examples and conversations.

`prepare(cfg, dataset, out_uri)` (dorl.stages.data) runs the stage; `simulate(fmt, n, seed, out)`
(dorl.data.simulate) writes synthetic dialogues in each raw format. Heavy imports stay in those modules.
"""

DATASETS: tuple[str, ...] = ("abcd", "multiwoz22", "taskmaster3")
