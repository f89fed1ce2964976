"""Stage `rollout`: the student answers questions of an exported set, capped per question at 1.5x the
teacher response's length in student tokens; resumable like generation."""
from __future__ import annotations

import math

import pyarrow as pa
import pytest

from conftest import SYSTEM
from engine import rollout, tables
from engine.params import ParamsError


@pytest.fixture(scope="module")
def source(mini, tmp_path_factory):
    """An exported off-policy set: 6 questions, teacher responses of different lengths (one question twice)."""
    rows = []
    for k, p in enumerate(mini["problems"][:6]):
        answer = "<think>\n" + p.solution[: 20 + 15 * k] + "\n</think>\n\nThe answer is " + str(p.answer)
        msgs = [{"role": "system", "content": SYSTEM, "train_detail": None},
                {"role": "user", "content": p.question, "train_detail": None},
                {"role": "assistant", "content": answer, "train_detail": None}]
        rows.append(dict(messages=msgs, response_id=f"t{k}", question_id=f"q{k}", domain="math", temperature=1.0,
                         selector="das", score=1.0, teacher_sentences=1, sentences=2, policy="off_policy",
                         prefix_chars=0, cut_fraction=None))
    rows.append(dict(rows[2], response_id="t2b"))  # top_k 2: the question's first response sets the cap
    folder = tmp_path_factory.mktemp("export")
    tables.write_parquet(pa.Table.from_pylist(rows, schema=tables.EXPORT), folder / "train.parquet")
    return folder, rows


def params(mini, **kw) -> rollout.RolloutParams:
    return rollout.RolloutParams(student={"model": str(mini["student"]), "backend": "transformers"},
                                 **{"questions": 5, "shard_questions": 2, "seed": 7, **kw})


def test_caps_are_one_and_a_half_teacher_lengths_in_student_tokens(tmp_path, mini, source):
    from transformers import AutoTokenizer

    folder, rows = source
    report = rollout.run(params(mini), folder, tmp_path / "out", tmp_path / "m.json", progress=False)
    out = tables.read_table(tmp_path / "out").to_pylist()
    assert report["rollouts"] == len(out) == 5 and report["questions_available"] == 6
    assert len({r["question_id"] for r in out}) == 5
    tok = AutoTokenizer.from_pretrained(mini["student"])
    teacher = {r["question_id"]: r for r in reversed(rows)}  # the first row of each question
    for r in out:
        t = teacher[r["question_id"]]
        n = len(tok.encode(t["messages"][-1]["content"], add_special_tokens=False))
        assert r["source_response_id"] == t["response_id"] and r["teacher_student_tokens"] == n
        assert r["max_tokens"] == math.ceil(1.5 * n)
        assert r["student_token_count"] <= r["max_tokens"]
        assert (r["finish_reason"] == "length") == (r["student_token_count"] == r["max_tokens"])
        assert r["text"] == tok.decode(r["token_ids"]) or r["finish_reason"] == "stop"
    assert report["hit_cap"] == sum(r["finish_reason"] == "length" for r in out)
    # the draw follows a hash of (seed, question), not the file's order
    table = tables.read_table(folder)
    flipped = table.take(list(range(table.num_rows))[::-1])
    assert rollout.draw(flipped, 5, seed=7).column("question_id").to_pylist() == [r["question_id"] for r in out]


def test_resume_after_a_lost_shard_equals_the_whole_run(tmp_path, mini, source):
    folder, _ = source
    rollout.run(params(mini), folder, tmp_path / "out", tmp_path / "m.json", progress=False)
    first = tables.read_table(tmp_path / "out")
    (tmp_path / "out" / "part-00001.parquet").unlink()
    rollout.run(params(mini), folder, tmp_path / "out", tmp_path / "m.json", progress=False)
    assert tables.read_table(tmp_path / "out").equals(first)
    # another cap factor changes outputs: the folder starts clean
    rollout.run(params(mini, length_factor=1.0), folder, tmp_path / "out", tmp_path / "m.json", progress=False)
    again = tables.read_table(tmp_path / "out").to_pylist()
    assert all(r["max_tokens"] == r["teacher_student_tokens"] for r in again)


def test_bad_params_are_refused(mini):
    with pytest.raises(ParamsError, match="length_factor: Input should be greater than 0"):
        params(mini, length_factor=0)
