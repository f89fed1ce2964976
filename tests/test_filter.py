"""Stage `filter`: every rule has a case that passes and one that fails; kept + rejected = input."""
from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO, shared
from engine import filter as F
from engine import tables
from engine.params import StageError
from test_sentences import gen_table, score_table

GOOD = "<think>\nWe add 3 and 4 to get 7. Then we double it: 14.\n</think>\n\nThe answer is 14."
LONG_GOOD = json.loads(open(shared("traces", "traces_math500_r1_and_distill.jsonl")).readline())["response"]

# rule -> (text, finish_reason, student tokens) that must fail it
FAILING = {
    "length": (GOOD, "stop", 70000),
    "truncated": (GOOD[:30], "length", 10),
    "tool_call": ("<think>\nNeed the weather.", "tool_call", 10),
    "missing_reasoning": ("The answer is 14.", "stop", 10),
    "unclosed_reasoning": ("<think>\nWe add 3 and 4 to get 7. The answer is 7.", "stop", 10),
    "empty_answer": ("<think>\nWe add 3 and 4.\n</think>\n\n  ", "stop", 10),
    "dup_line_frac": ("<think>\n" + "Check again.\nHmm.\n" * 8 + "Next line here.\n</think>\n\nOk.", "stop", 10),
    "dup_para_frac": ("<think>\n" + "We try again now.\n\n" * 4 + "Done.\n</think>\n\nOk.", "stop", 10),
    "dup_sentence_frac": ("<think>\n" + "Let me check. " * 6 + "Then some other words here. Fine.\n</think>\n\nOk.", "stop", 10),
    "top_2gram_char_frac": ("<think>\n" + "so so " * 60 + "\n</think>\n\nOk.", "stop", 10),
    "dup_5gram_char_frac": ("<think>\n" + " ".join(["the value of x is one"] * 40) + "\n</think>\n\nOk.", "stop", 10),
    "runaway_repeats": (GOOD + " I will check it again." * 12, "stop", 10),
}


@pytest.mark.parametrize("rule", sorted(FAILING))
def test_each_rule_fails_its_case_and_passes_the_good_one(rule):
    th = F.FilterParams().thresholds()
    text, finish, n = FAILING[rule]
    assert F.measure(text, finish, n)[rule] > th[rule]
    for good in (GOOD, LONG_GOOD):
        assert F.measure(good, "stop", 1000)[rule] <= th[rule], rule


def test_default_thresholds_by_family_on_every_real_trace():
    """benchmarks/filter_families.py's figures (the README table): at most 2% of each family's complete
    traces rejected, every truncated one rejected by the structure rules alone, loops still rejected."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("filter_families", REPO / "benchmarks" / "filter_families.py")
    families = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(families)
    figs = families.figures()
    assert {n: f["complete"] for n, f in figs.items()} == {
        "DeepSeek-R1 (API)": 30, "R1-Distill-Qwen-7B": 19, "R1-Distill-Llama-8B": 20, "gpt-oss-20b (harmony)": 2,
        "Qwen2.5-Math CoT (no markers)": 800}
    for name, f in figs.items():
        assert f["complete_rejected"] <= 0.02 * f["complete"], (name, f["rejected_by_rule"])
        if f["truncated"]:
            assert f["truncated_rejected_by_structure"] == f["truncated"], name
    # the same real traces looping at the end (a paragraph, a 236-character piece) are rejected
    trace = families.family_texts("DeepSeek-R1 (API)")[0]
    reasoning, answer = trace.split("</think>", 1)
    paragraph = reasoning.split("\n\n")[3] + "\n\n"
    looping = [reasoning + paragraph * 20 + "</think>" + answer, reasoning + (paragraph * 4)[:236] * 32]
    table, th = families.measured(looping)
    assert families.rejected(table, th, list(th)).all()
    assert all(v > th["runaway_repeats"] for v in table.column("runaway_repeats").to_pylist())


def test_stage_accounting_and_rejection_rows(tmp_path):
    texts = [GOOD] + [FAILING[r][0] for r in sorted(FAILING)]
    finishes = ["stop"] + [FAILING[r][1] for r in sorted(FAILING)]
    n_tokens = [100] + [FAILING[r][2] for r in sorted(FAILING)]
    g = [dict(response_id=f"r{i}", question_id=f"q{i % 3}", temperature=1.0, text=t, finish_reason=f)
         for i, (t, f) in enumerate(zip(texts, finishes))]
    s = [dict(response_id=f"r{i}", student_token_count=n) for i, n in enumerate(n_tokens)]
    for folder, table in (("g", gen_table(g)), ("s", score_table(s))):
        tables.write_parquet(table, tmp_path / folder / "part-00000.parquet")
    qs = pa.table({"question_id": ["q0", "q1", "q2"], "domain": ["math", "code", "math"]})
    tables.write_parquet(qs, tmp_path / "questions" / "questions.parquet")
    report = F.run(F.FilterParams(), 1.0, tmp_path / "g", tmp_path / "s", tmp_path / "questions",
                   tmp_path / "out", tmp_path / "m.json")
    rej = pq.read_table(tmp_path / "out" / "rejections.parquet").to_pylist()
    kept = pq.read_table(tmp_path / "out" / "kept.parquet")
    assert report["input"] == len(texts) == report["kept"] + report["rejected"]
    assert kept.column("response_id").to_pylist() == ["r0"]
    assert {r["response_id"] for r in rej} == {f"r{i}" for i in range(1, len(texts))}
    by_rule = Counter(r["rule"] for r in rej)
    for i, rule in enumerate(sorted(FAILING), 1):  # each planted case is rejected by (at least) its rule
        assert any(r["response_id"] == f"r{i}" and r["rule"] == rule for r in rej), rule
    assert report["rejections_by_rule"] == dict(sorted(by_rule.items()))
    assert all(r["value"] > r["threshold"] and r["stage"] == "filter" for r in rej)
    assert sum(d["input"] for d in report["by_domain"].values()) == len(texts)


def test_unknown_rule_is_a_params_error():
    from engine.params import ParamsError

    with pytest.raises(ParamsError, match="unknown rule"):
        F.FilterParams(rules={"lenght": 10}).thresholds()


def test_wrong_answer_rule_is_off_by_default_and_agrees_with_graded_traces():
    assert "wrong_answer" not in F.FilterParams().thresholds()
    on = F.FilterParams(rules={"wrong_answer": 0})
    assert on.thresholds()["wrong_answer"] == 0
    assert F.wrong_answer(GOOD, "14") == 0 and F.wrong_answer(GOOD, "15") == 1
    assert F.wrong_answer("<think>\nhalf\n</think>\n\n$\\boxed{0.5}$", "\\frac{1}{2}") == 0
    assert F.wrong_answer("<think>\nthe answer is 14\n", "14") == 1  # reasoning never closed: no answer
    # real graded samples (Qwen2.5-Math, each with the benchmark's verdict; chain of thought without think
    # tags, so given as the final section): the checker agrees on most
    rows = [json.loads(line) for line in open(shared("traces", "traces_qwen25math_cot_rm_example.jsonl"))][:120]
    agree = sum(F.wrong_answer("<think>\n</think>\n\n" + r["response"], r["reference_answer"]) == (0 if r["score"] else 1)
                for r in rows)
    assert agree >= 0.9 * len(rows)


def test_wrong_answer_in_the_stage_only_for_math_with_a_reference():
    gens = gen_table([dict(response_id=r, question_id=q, text=GOOD, finish_reason="stop")
                      for r, q in (("a", "q1"), ("b", "q2"), ("c", "q3"))])
    scores = score_table([dict(response_id=r, student_token_count=10) for r in "abc"])
    refs = {q: {"domain": d, "reference_answer": a} for q, d, a in (("q1", "math", "14"), ("q2", "math", "15"),
                                                                     ("q3", "code", "15"))}
    m = F.measures(gens, scores, F.FilterParams(rules={"wrong_answer": 0}), refs).to_pylist()
    assert [r["wrong_answer"] for r in m] == [0, 1, 0]
    assert "wrong_answer" not in F.measures(gens, scores, F.FilterParams(), refs).column_names


def test_a_response_without_a_student_score_is_named():
    gens = gen_table([dict(response_id=r, question_id="q", text=GOOD, finish_reason="stop") for r in ("a", "b")])
    scores = score_table([dict(response_id="a", student_token_count=12)])
    with pytest.raises(StageError, match="response b has no student score"):
        F.measures(gens, scores, F.FilterParams())
    assert F.measures(gens.slice(0, 1), scores, F.FilterParams()).column("length").to_pylist() == [12]


def test_every_rule_is_measured_once_and_every_measure_is_a_rule():
    """The registry (engine/rules.py) and the code that measures agree: each kernel column is a rule, each
    rule has one source, and the stage's measures table holds exactly the rules that are on."""
    from engine import rules
    from engine.kernels.measures import COLUMNS

    by = {kind: {r.name for r in rules.RULES if r.by == kind} for kind in ("response", "kernel", "python")}
    assert by["kernel"] == set(COLUMNS)
    assert all(r.measure for r in rules.RULES if r.by == "python")
    gens = gen_table([dict(response_id="a", question_id="q", text=GOOD, finish_reason="stop")])
    scores = score_table([dict(response_id="a", student_token_count=10)])
    every_on = F.FilterParams(rules={r.name: 1 for r in rules.RULES})
    cols = set(F.measures(gens, scores, every_on, {"q": {"domain": "math", "reference_answer": "1"}}).column_names)
    assert cols - {"response_id", "question_id"} == set(rules.BY_NAME)
    default = set(F.measures(gens, scores, F.FilterParams()).column_names) - {"response_id", "question_id"}
    assert default == {r.name for r in rules.RULES if r.by != "python" or r.default is not None}


def test_a_python_rule_is_one_registry_entry(monkeypatch):
    """What the README promises: a rule measured in Python is one entry in engine/rules.py; params know
    it, the stage measures it and rejects by it."""
    from engine import rules

    short = rules.Rule("too_short", None, "fewer than 50 characters after </think>", "python",
                       lambda text, q: float(len(text.rsplit("</think>", 1)[-1].strip()) < 50))
    monkeypatch.setattr(rules, "RULES", rules.RULES + (short,))
    monkeypatch.setattr(rules, "BY_NAME", {**rules.BY_NAME, "too_short": short})
    monkeypatch.setitem(F.DEFAULT_RULES, "too_short", None)
    gens = gen_table([dict(response_id="a", question_id="q", text=GOOD, finish_reason="stop")])
    scores = score_table([dict(response_id="a", student_token_count=10)])
    fp = F.FilterParams(rules={"too_short": 0})
    _, rejections, kept = F.decide(F.measures(gens, scores, fp), fp.thresholds(), "filter")
    assert rejections.column("rule").to_pylist() == ["too_short"] and kept.num_rows == 0
