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
    assert row["messages"] == [dict(m, train_detail=None) for m in msgs + [{"role": "assistant", "content": text}]]
    assert (row["policy"], row["prefix_chars"], row["cut_fraction"]) == ("off_policy", 0, None)
    assert (row["response_id"], row["domain"], row["selector"], row["teacher_sentences"]) == ("r1", "math", "das", 3)


def test_stage3_marks_the_student_prefix_and_draws_off_policy_rows(tmp_path):
    msgs = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "2+2?"}]
    tables.write_parquet(pa.Table.from_pylist([dict(question_id="q", domain="math", messages=msgs)]),
                         tmp_path / "questions" / "q.parquet")
    prefix, cont = "<think>\n2 + 2", " = 4.\n</think>\n\nThe answer is 4."
    row = dict(sample_id="s1", rollout_id="r1", question_id="q", cut_token=5, cut_fraction=0.625,
               prefix_chars=len(prefix), boundary="ok", seed=1, teacher_model="t", backend="vllm", text=prefix + cont,
               finish_reason="stop", teacher_token_count=3, token_ids=[], token_logprobs=[], token_starts=[],
               token_ends=[], raw_output="")
    tables.write_parquet(pa.Table.from_pylist([row, dict(row, sample_id="s2")], schema=tables.CONTINUATIONS),
                         tmp_path / "continue" / "part-00000.parquet")
    tables.write_parquet(pa.table({"response_id": ["s1"], "question_id": ["q"]}), tmp_path / "mixed_filter" / "kept.parquet")
    off = [dict(messages=[dict(m, train_detail=None) for m in msgs + [{"role": "assistant", "content": f"a{k}"}]],
                response_id=f"t{k}", question_id="q", domain="math", temperature=0.6, selector="das", score=1.0,
                teacher_sentences=1, sentences=1, policy="off_policy", prefix_chars=0, cut_fraction=None)
           for k in range(5)]
    for stage, part in (("stage1", off[:2]), ("stage2", off[2:])):
        tables.write_parquet(pa.Table.from_pylist(part, schema=tables.EXPORT), tmp_path / "export" / stage / "train.parquet")
    mp = export.MixedExportParams(off_policy_samples=3)
    report = export.run_mixed(mp, 1.0, tmp_path / "mixed_filter" / "kept.parquet", tmp_path / "continue",
                              tmp_path / "questions", tmp_path / "export", tmp_path / "m.json")
    assert (report["mixed"], report["off_policy"], report["examples"]) == (1, 3, 4)  # s2 was not kept
    assert report["funnel"] == {"rollouts": 0, "truncated": 0, "continued": 2, "kept": 1, "exported": 1}
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "export" / "stage3" / "train.parquet"), split="train")
    mixed = ds[0]
    assert (mixed["policy"], mixed["response_id"], mixed["prefix_chars"], mixed["cut_fraction"]) == ("mixed", "s1", len(prefix), 0.625)
    turn = mixed["messages"][-1]
    assert turn["content"] == prefix + cont and turn["role"] == "assistant"
    n = len(prefix + cont)
    assert turn["train_detail"] == [{"begin_offset": 0, "end_offset": len(prefix) - 1, "train": False},
                                    {"begin_offset": len(prefix), "end_offset": n - 1, "train": True}]
    assert all(m["train_detail"] is None for m in mixed["messages"][:-1])
    drawn = ds["response_id"][1:]
    assert len(set(drawn)) == 3 and set(drawn) <= {f"t{k}" for k in range(5)}
    again = export.run_mixed(mp, 1.0, tmp_path / "mixed_filter" / "kept.parquet", tmp_path / "continue",
                             tmp_path / "questions", tmp_path / "export", tmp_path / "m.json")
    assert again == report and datasets.load_dataset("parquet", data_files=str(tmp_path / "export" / "stage3" / "train.parquet"),
                                                     split="train")["response_id"][1:] == drawn
