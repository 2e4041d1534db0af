"""Writing a data artifact's tables: examples and whole conversations per split, as parquet.

    examples/{split}.parquet       dialogue_id, turn_index (int32), context, response
    conversations/{split}.parquet  dialogue_id, text

Rendering follows `dorl.text` (one example per agent turn; the conversation in the special-token scheme).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dorl.data.dialogue import Dialogue
from dorl.text import examples, render_conversation

EXAMPLES = pa.schema(
    [("dialogue_id", pa.string()), ("turn_index", pa.int32()), ("context", pa.string()), ("response", pa.string())]
)
CONVERSATIONS = pa.schema([("dialogue_id", pa.string()), ("text", pa.string())])
BATCH = 1000  # dialogues per parquet row group: bounds memory on the full datasets


def write_split(dialogues: list[Dialogue], examples_path: Path, conversations_path: Path, advance=None) -> int:
    """Render and write one split in row groups of BATCH dialogues; returns the number of examples."""
    n_examples = 0
    with (
        pq.ParquetWriter(examples_path, EXAMPLES, compression="zstd") as ex_writer,
        pq.ParquetWriter(conversations_path, CONVERSATIONS, compression="zstd") as conv_writer,
    ):
        for start in range(0, max(len(dialogues), 1), BATCH):
            batch = dialogues[start : start + BATCH]
            ex = {name: [] for name in EXAMPLES.names}
            for d in batch:
                for turn_index, context, response in examples(d.turns):
                    ex["dialogue_id"].append(d.id)
                    ex["turn_index"].append(turn_index)
                    ex["context"].append(context)
                    ex["response"].append(response)
            n_examples += len(ex["dialogue_id"])
            ex_writer.write_table(pa.table(ex, schema=EXAMPLES))
            conv = {"dialogue_id": [d.id for d in batch], "text": [render_conversation(d.turns) for d in batch]}
            conv_writer.write_table(pa.table(conv, schema=CONVERSATIONS))
            if advance:
                advance(len(batch))
    return n_examples
