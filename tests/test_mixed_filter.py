"""Stage `mixed_filter`: the filter's own rules on joined mixed-policy responses, plus the boundary rule."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from engine import filter as rules
from engine import mixed_filter, tables
from engine.params import ModelParams

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
