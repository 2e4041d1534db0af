"""Relabelling's parts below the stage: candidates and their rewards for a chunk of contexts (`candidates`),
rewards cut into returns (`returns`). The stage is `dorl.stages.relabel`."""
