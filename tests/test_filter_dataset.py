"""`dasd filter --input`: the filter's rules on a dataset the pipeline did not produce, outside any project,
in every common reasoning format (real traces: DeepSeek-R1, R1-distill, gpt-oss harmony, the same
traces re-marked as OpenThoughts' thought/solution), truncated ones included."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from conftest import shared
from engine import cli, reasoning


def r1_rows(n: int = 6) -> list[dict]:
    return [json.loads(line) for line in open(shared("traces", "traces_math500_r1_and_distill.jsonl"))][:n]


def as_thought(think_text: str) -> str:
    body, answer = think_text.replace("<think>", "", 1).split("</think>", 1)
    return (f"<|begin_of_thought|>\n\n{body.strip()}\n\n<|end_of_thought|>\n\n"
            f"<|begin_of_solution|>\n\n{answer.strip()}\n\n<|end_of_solution|>")


def test_each_format_maps_to_think_and_an_open_marker_without_close_is_unclosed():
    r1 = r1_rows(1)[0]["response"]
    mapped, fmt = reasoning.to_think(r1)
    assert fmt == "think" and mapped == r1
    distill = next(json.loads(line)["response"] for line in open(shared("traces", "traces_math500_r1_and_distill.jsonl"))
                   if "Distill" in line and "</think>" in line)
    assert "<think>" not in distill.split("</think>")[0]
    mapped, fmt = reasoning.to_think(distill)
    assert fmt == "think" and mapped.startswith("<think>\n") and mapped.count("</think>") == 1
    thought = as_thought(r1)
    mapped, fmt = reasoning.to_think(thought)
    body, answer = r1.replace("<think>", "", 1).split("</think>", 1)
    assert fmt == "thought" and mapped == f"<think>\n{body.strip()}\n</think>\n\n{answer.strip()}"
    for row in map(json.loads, open(shared("harmony", "gptoss_rft_notebook_outputs.jsonl"))):
        mapped, fmt = reasoning.to_think(row["response"])
        assert fmt == "harmony" and mapped.startswith("<think>\n") and "</think>\n\n```python" in mapped
        cut, _ = reasoning.to_think(row["response"][:80])  # inside the analysis channel
        assert cut.startswith("<think>\n") and "</think>" not in cut
    assert "</think>" not in reasoning.to_think(thought[:500])[0]
    assert reasoning.to_think("Just an answer: 4.") == ("Just an answer: 4.", None)
    with pytest.raises(ValueError, match="reasoning format 'xml'"):
        reasoning.to_think("x", "xml")


def dataset(tmp_path) -> tuple:
    rows = r1_rows(6)
    harmony = [json.loads(line) for line in open(shared("harmony", "gptoss_rft_notebook_outputs.jsonl"))]
    out = []
    for r in rows[:3]:
        out.append({"uid": r["id"], "problem": r["question"], "text": r["response"]})
    for r in rows[3:5]:
        out.append({"uid": r["id"] + "-thought", "problem": r["question"], "text": as_thought(r["response"])})
    out += [{"uid": h["id"], "problem": h["question"], "text": h["response"]} for h in harmony]
    truncated = {"cut-think": rows[5]["response"][:len(rows[5]["response"]) // 2],
                 "cut-thought": as_thought(rows[0]["response"])[:len(rows[0]["response"]) // 2],
                 "cut-harmony": harmony[0]["response"][:120]}
    out += [{"uid": k, "problem": "q", "text": v} for k, v in truncated.items()]
    path = tmp_path / "released.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path, out, set(truncated)


def test_any_dataset_outside_a_project(tmp_path, monkeypatch, capsys):
    path, rows, truncated = dataset(tmp_path)
    monkeypatch.delenv("DASD_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)  # no dvc.yaml here: the defaults apply
    out = tmp_path / "out"
    assert cli.main(["filter", "--input", str(path), "--out", str(out), "--text-field", "text", "--id-field", "uid",
                     "--question-field", "problem"]) == 0
    said = capsys.readouterr().out
    assert "skipped length" in said
    report = json.loads((out / "report.json").read_text())
    kept = pq.read_table(out / "kept.parquet").to_pylist()
    rej = pq.read_table(out / "rejections.parquet").to_pylist()
    assert report["input"] == len(rows) == report["kept"] + report["rejected"]
    assert report["formats"] == {"harmony": 3, "think": 4, "thought": 3}
    assert "length" in report["skipped"] and "length" not in report["thresholds"]
    # every truncated trace is rejected as unclosed, and every complete one kept
    unclosed = {r["response_id"] for r in rej if r["rule"] == "unclosed_reasoning"}
    assert unclosed == truncated
    assert {k["id"] for k in kept} == {r["uid"] for r in rows} - truncated
    assert all(k["text"].startswith("<think>\n") and "</think>" in k["text"] for k in kept)
    assert {r["response_id"] for r in rej} <= {r["uid"] for r in rows}


def test_a_project_s_thresholds_a_tokenizer_and_a_dataset_folder(tmp_path, monkeypatch, mini):
    import datasets

    rows = r1_rows(4)
    folder = tmp_path / "hubcopy"
    datasets.Dataset.from_list([{"conversations": [{"from": "user", "value": r["question"]},
                                                   {"from": "assistant", "value": r["response"]}]} for r in rows]
                               ).save_to_disk(str(folder))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text("filter:\n  rules: {length: 2000}\n")
    monkeypatch.setenv("DASD_ROOT", str(tmp_path))
    out = tmp_path / "out"
    assert cli.main(["filter", "--input", str(folder), "--out", str(out), "--text-field", "conversations[-1].value",
                     "--tokenizer", str(mini["student"])]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["skipped"] == {} and report["thresholds"]["length"] == 2000
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(mini["student"])
    long = {f"{folder}:{i + 1}" for i, r in enumerate(rows) if len(tok.encode(r["response"], add_special_tokens=False)) > 2000}
    assert long and {r["response_id"] for r in pq.read_table(out / "rejections.parquet").to_pylist()
                     if r["rule"] == "length"} == long


def test_bad_input_names_file_line_and_field(tmp_path, monkeypatch, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"response": "<think>\nx\n</think>\n\nok"}) + "\n" + json.dumps({"answer": 1}) + "\n")
    monkeypatch.delenv("DASD_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["filter", "--input", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "bad.jsonl:2: field 'response': missing" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert cli.main(["filter", "--input", str(tmp_path / "nope" / "x.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
