"""The data stage's behaviour on bad input, --skip-bad, layouts, splits and the artifact it writes."""

from __future__ import annotations

import gzip
import json
import shutil

import pandas as pd
import pytest

from dorl.config import load
from dorl.data.simulate import simulate
from dorl.data.splits import seeded_split
from dorl.errors import DataError
from dorl.stages.data import prepare


def _cfg(*sets):
    return load(sets=list(sets))


def test_reference_split_arithmetic():
    """int(n * 0.8) / int(n * 0.9) as the reference; 23,757 = what the HF loader gave the reference."""
    sizes = {s: len(v) for s, v in seeded_split(23757).items()}
    assert sizes == {"train": 19005, "validation": 2376, "test": 2376}
    parts = seeded_split(10)
    assert parts == {"train": [8, 1, 5, 0, 7, 2, 9, 4], "validation": [3], "test": [6]}


def test_malformed_json_names_the_file_and_writes_nothing(tmp_path):
    src = simulate("multiwoz22", 30, 0, tmp_path / "raw")
    (src / "dev" / "dialogues_002.json").write_text('[{"dialogue_id": "A.json", "turns": [}]')
    with pytest.raises(DataError, match=r"dev/dialogues_002.json: malformed JSON at line 1 column 38"):
        prepare(_cfg(), dataset="multiwoz22", source=str(src), out_uri=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_missing_file_is_listed(tmp_path):
    src = simulate("taskmaster3", 30, 0, tmp_path / "raw")
    (src / "data" / "data_07.json").unlink()
    with pytest.raises(DataError, match=r"missing taskmaster3 file\(s\) data/data_07.json"):
        prepare(_cfg(), dataset="taskmaster3", source=str(src), out_uri=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def _break_two(path):
    dialogs = json.loads(path.read_text())
    dialogs[0]["utterances"][3]["text"] = "   "
    dialogs[1]["utterances"][2]["speaker"] = "robot"
    path.write_text(json.dumps(dialogs))
    return dialogs[0]["conversation_id"], dialogs[1]["conversation_id"]


def test_bad_dialogues_fail_or_are_skipped_and_listed(tmp_path):
    clean = simulate("taskmaster3", 100, 3, tmp_path / "clean")
    ref = prepare(_cfg(), dataset="taskmaster3", source=str(clean), out_uri=str(tmp_path / "ref")).artifact
    broken = tmp_path / "broken"
    shutil.copytree(clean, broken)
    first, second = _break_two(broken / "data" / "data_04.json")
    with pytest.raises(DataError) as e:
        prepare(_cfg(), dataset="taskmaster3", source=str(broken), out_uri=str(tmp_path / "out"))
    msg = str(e.value)
    assert "data_04.json" in msg and first in msg and "turn 3" in msg and "field 'text'" in msg and "empty" in msg
    assert not (tmp_path / "out").exists()

    art = prepare(
        _cfg("data.skip_bad=true"), dataset="taskmaster3", source=str(broken), out_uri=str(tmp_path / "out")
    ).artifact
    skipped = art.info["skipped"]
    assert skipped["count"] == 2
    assert [s["dialogue_id"] for s in skipped["dialogues"]] == [first, second]
    assert "unknown speaker 'robot'" in skipped["dialogues"][1]["reason"]
    # the others keep the split they have without the bad ones (bad dialogues keep their place)
    for split in ("train", "validation", "test"):
        want = pd.read_parquet(ref.path(f"conversations/{split}.parquet")).dialogue_id.tolist()
        got = pd.read_parquet(art.path(f"conversations/{split}.parquet")).dialogue_id.tolist()
        assert got == [d for d in want if d not in (first, second)]


def test_duplicate_ids(tmp_path):
    src = simulate("multiwoz22", 40, 1, tmp_path / "raw")
    train = json.loads((src / "train" / "dialogues_001.json").read_text())
    test = json.loads((src / "test" / "dialogues_001.json").read_text())
    (src / "test" / "dialogues_001.json").write_text(json.dumps(test + [train[0]]))
    with pytest.raises(DataError, match=rf"dialogue '{train[0]['dialogue_id']}' .*duplicate id \(first at"):
        prepare(_cfg(), dataset="multiwoz22", source=str(src), out_uri=str(tmp_path / "out"))
    art = prepare(
        _cfg("data.skip_bad=true"), dataset="multiwoz22", source=str(src), out_uri=str(tmp_path / "out")
    ).artifact
    assert art.info["skipped"]["count"] == 1
    assert art.info["counts"]["test"]["dialogues"] == 4  # 40 simulated: 32 / 4 / 4


def test_source_layouts_and_placeholder(tmp_path):
    sim = simulate("abcd", 20, 0, tmp_path / "sim")
    clone = tmp_path / "clone" / "data"  # a clone of asappresearch/abcd, unpacked by the reference's script
    clone.mkdir(parents=True)
    (clone / "abcd_v1.1.json").write_bytes(gzip.decompress((sim / "abcd_v1.1.json.gz").read_bytes()))
    a = prepare(_cfg(), dataset="abcd", source=str(tmp_path / "clone"), out_uri=str(tmp_path / "a")).artifact
    assert a.info["raw_files"]["abcd_v1.1.json.gz"]["file"] == "abcd_v1.1.json"
    shutil.copytree(sim, tmp_path / "abcd-copy")  # data.source with the {dataset} placeholder
    b = prepare(_cfg(f"data.source={tmp_path}/{{dataset}}-copy"), dataset="abcd", out_uri=str(tmp_path / "b")).artifact
    assert b.info["counts"] == a.info["counts"] and b.info["synthetic"] is True


def test_artifact_loads_with_datasets_and_reruns_are_skipped(tmp_path, caplog):
    import datasets

    src = simulate("abcd", 30, 2, tmp_path / "raw")
    out = str(tmp_path / "out")
    art = prepare(_cfg(), dataset="abcd", source=str(src), out_uri=out).artifact
    ds = datasets.load_dataset(
        "parquet",
        data_files={s: str(art.path(f"examples/{s}.parquet")) for s in ("train", "validation", "test")},
        cache_dir=str(tmp_path / "hf"),
    )
    assert ds["train"].features["turn_index"].dtype == "int32"
    assert ds["train"].num_rows == art.info["counts"]["train"]["examples"]
    assert set(ds["train"].column_names) == {"dialogue_id", "turn_index", "context", "response"}
    m = art.manifest
    assert m["metrics"]["dialogues_per_s"] > 0 and m["config"]["raw_sha256"]
    again = prepare(_cfg(), dataset="abcd", source=str(src), out_uri=out).artifact
    assert again.digest == art.digest  # the same inputs: skipped, not rewritten
    other = simulate("abcd", 30, 3, tmp_path / "raw3")
    with pytest.raises(Exception, match="raw_sha256"):
        prepare(_cfg(), dataset="abcd", source=str(other), out_uri=out)
    assert prepare(_cfg(), dataset="abcd", source=str(other), out_uri=out, force=True).artifact.digest != art.digest


def test_prepare_into_s3_and_stats(s3, tmp_path):
    from dorl.data.stats import stats

    src = simulate("multiwoz22", 30, 0, tmp_path / "raw")
    uri = f"s3://{s3}/runs/demo/multiwoz22/data"
    art = prepare(_cfg(), dataset="multiwoz22", source=str(src), out_uri=uri).artifact
    assert art.uri == uri and art.info["counts"]["validation"]["dialogues"] == 3
    result = stats(uri)
    assert result["splits"]["train"]["examples"] == art.info["counts"]["train"]["examples"]
    assert result["splits"]["train"]["response"]["p50"] > 0
