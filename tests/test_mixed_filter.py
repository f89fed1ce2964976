"""Stage `mixed_filter`: the filter's own rules on joined mixed-policy responses, plus the boundary rule."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from engine import filter as rules
from engine import mixed_filter, tables
from engine.backends import ModelParams

GOOD = "<think>\nFirst, 12 + 7 = 19. Then 19 - 4 = 15.\n</think>\n\nThe answer is 15."


def sample(sid: str, text: str, finish: str = "stop", boundary: str = "ok") -> dict:
    return dict(sample_id=sid, rollout_id="r" + sid, question_id="q", cut_token=10, cut_fraction=0.6,
                prefix_chars=12, boundary=boundary, seed=1, teacher_model="t", backend="vllm", text=text,
                finish_reason=finish, teacher_token_count=5, token_ids=[1], token_logprobs=[-1.0],
                token_starts=[12], token_ends=[13], raw_output=text)


def test_rules_and_boundary_account_for_every_sample(tmp_path, mini):
    rows = [sample("good", GOOD), sample("cut", GOOD, finish="length"), sample("split", GOOD, boundary="mismatch"),
            sample("open", "<think>\nFirst, 12 + 7 = 19. Then 19 - 4 = 15."),
            sample("long", GOOD + " 15." * 300)]
    tables.write_parquet(pa.Table.from_pylist(rows, schema=tables.CONTINUATIONS), tmp_path / "continue" / "part-00000.parquet")
    tables.write_parquet(pa.table({"question_id": ["q"], "domain": ["math"]}), tmp_path / "questions" / "q.parquet")
    fp = rules.FilterParams(rules={"length": 400})
    report = mixed_filter.run(fp, ModelParams(model=str(mini["student"])), tmp_path / "continue", tmp_path / "questions",
                              tmp_path / "out", tmp_path / "m.json")
    assert report["input"] == 5 and report["kept"] + report["rejected"] == 5
    assert pq.read_table(tmp_path / "out" / "kept.parquet").column("response_id").to_pylist() == ["good"]
    failed = {}
    for r in pq.read_table(tmp_path / "out" / "rejections.parquet").to_pylist():
        assert r["stage"] == "mixed_filter"
        failed.setdefault(r["response_id"], set()).add(r["rule"])
    assert failed["cut"] == {"truncated"} and failed["split"] == {"boundary"}
    assert {"unclosed_reasoning", "empty_answer"} <= failed["open"]
    assert "length" in failed["long"]  # measured in student tokens of the joined text
    assert report["by_domain"] == {"math": {"input": 5, "kept": 1}}


def test_optional_dedup_keeps_the_smallest_id_of_each_cluster(tmp_path, mini):
    from engine.dedup import DedupParams

    other = "<think>\nStart with 5 apples and eat 2 of them, 3 are left over now.\n</think>\n\nThe answer is 3."
    rows = [sample("b", GOOD), sample("a", GOOD + " "), sample("c", other)]
    rows = [dict(r, question_id=q) for r, q in zip(rows, ["q1", "q2", "q3"])]
    tables.write_parquet(pa.Table.from_pylist(rows, schema=tables.CONTINUATIONS), tmp_path / "continue" / "part-00000.parquet")
    tables.write_parquet(pa.table({"question_id": ["q1", "q2", "q3"], "domain": ["math"] * 3}),
                         tmp_path / "questions" / "q.parquet")
    args = (rules.FilterParams(), ModelParams(model=str(mini["student"])), tmp_path / "continue", tmp_path / "questions")
    # one sample per question: within-question scope finds nothing, the pool finds the pair
    r = mixed_filter.run(*args, tmp_path / "q", tmp_path / "q.json", mixed_filter.MixedFilterParams(dedup=True),
                         DedupParams(scope="question"))
    assert r["kept"] == 3
    r = mixed_filter.run(*args, tmp_path / "p", tmp_path / "p.json", mixed_filter.MixedFilterParams(dedup=True),
                         DedupParams(scope="pool"))
    assert (r["input"], r["kept"], r["rejected"], r["rejections_by_rule"]) == (3, 2, 1, {"near_duplicate": 1})
    assert sorted(pq.read_table(tmp_path / "p" / "kept.parquet").column("response_id").to_pylist()) == ["a", "c"]
    [dup] = pq.read_table(tmp_path / "p" / "rejections.parquet").to_pylist()
    assert dup["response_id"] == "b" and dup["detail"] == "survivor a" and dup["value"] >= 0.8


def test_no_continuation_at_all_gives_an_empty_accounted_stage(tmp_path, mini):
    (tmp_path / "continue").mkdir()  # `continue` ran (its manifest is there) and nothing was cut
    (tmp_path / "continue" / tables.ShardedOutput.MANIFEST).write_text("{}")
    tables.write_parquet(pa.table({"question_id": ["q"], "domain": ["math"], "reference_answer": ["15"]}),
                         tmp_path / "questions" / "q.parquet")
    report = mixed_filter.run(rules.FilterParams(rules={"wrong_answer": 0}), ModelParams(model=str(mini["student"])),
                              tmp_path / "continue", tmp_path / "questions", tmp_path / "out", tmp_path / "m.json")
    assert (report["input"], report["kept"], report["rejected"]) == (0, 0, 0)
    assert pq.read_table(tmp_path / "out" / "kept.parquet").num_rows == 0
