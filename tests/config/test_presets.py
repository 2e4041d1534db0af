"""The presets' method lists: `paper` runs the paper's methods (the registry's `paper` entries), `compare` and the
demo add the control tf_human and the baselines (KTO, DPO, AWR), each a registered method trained on the relabelled
data."""

from dorl import config, methods
from dorl.config.presets import BASELINES


def test_paper_runs_the_papers_methods_and_compare_and_demo_add_the_baselines():
    assert config.load(preset="paper").pipeline.methods == methods.paper()
    for preset in ("compare", "demo"):
        assert config.load(preset=preset).pipeline.methods == ["tf_human", *methods.paper(), *BASELINES]
    assert set(BASELINES) <= set(methods.relabelled()) and not set(BASELINES) & set(methods.paper())
