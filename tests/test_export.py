"""Stage `export`: the SFT sets load with `datasets` and carry what the trainers need."""
from __future__ import annotations

import datasets
import pyarrow as pa

from engine import export, tables


def test_export_loads_with_datasets(tmp_path):
    msgs = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "2+2?"}]
    tables.write_parquet(pa.Table.from_pylist([dict(question_id="q", domain="math", messages=msgs)]),
                         tmp_path / "questions" / "q.parquet")
    text = "<think>\n2 + 2 = 4.\n</think>\n\nThe answer is 4."
    tables.write_parquet(pa.table({"response_id": ["r1", "r2"], "question_id": ["q", "q"], "text": [text, "x"]}),
                         tmp_path / "gen" / "p.parquet")
    sel = [dict(response_id="r1", question_id="q", temperature=0.6, selector="das", score=3.0, rank=1,
                teacher_sentences=3, student_sentences=0, shared_sentences=1, sentences=4)]
    tables.write_parquet(pa.Table.from_pylist(sel, schema=tables.SELECTED), tmp_path / "sel" / "selected.parquet")
    report = export.run("stage1", 0.6, tmp_path / "sel", tmp_path / "gen", tmp_path / "questions", tmp_path / "out",
                        tmp_path / "m.json")
    assert report == {"stage": "stage1", "temperature": 0.6, "examples": 1, "by_domain": {"math": 1}}
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "train.parquet"), split="train")
    row = ds[0]
    assert row["messages"] == msgs + [{"role": "assistant", "content": text}]
    assert (row["response_id"], row["domain"], row["selector"], row["teacher_sentences"]) == ("r1", "math", "das", 3)
