"""Stage `questions` on the real benchmark files of ../shared/data, and every bad-input case."""
from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SYSTEM, shared
from engine import questions
from engine.questions import QuestionsParams

MMLU_TEMPLATE = "{question}\n\nA. {A}\nB. {B}\nC. {C}\nD. {D}"


def run(tmp_path, sources, on_error="raise"):
    qp = QuestionsParams(sources=sources, on_error=on_error)
    report = questions.run(qp, SYSTEM, tmp_path, tmp_path / "out", tmp_path / "quarantine.parquet",
                           tmp_path / "report.json")
    return report, pq.read_table(tmp_path / "out" / "questions.parquet"), pq.read_table(tmp_path / "quarantine.parquet")


def test_real_sources_in_every_format(tmp_path):
    import datasets

    # a Parquet copy, a JSON array, a save_to_disk folder and a plain JSON-files dataset folder,
    # all made from real rows
    rows = [json.loads(line) for line in open(shared("math", "math500.jsonl"))][:40]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "math500.parquet")
    (tmp_path / "aime.json").write_text(json.dumps([json.loads(line) for line in open(shared("math", "aime24.jsonl"))]))
    ifeval = [json.loads(line) for line in open(shared("orig", "google-research_ifeval", "input_data.jsonl"))]
    datasets.Dataset.from_list([{"key": r["key"], "prompt": r["prompt"]} for r in ifeval[:50]]).save_to_disk(
        str(tmp_path / "ifeval_disk"))
    (tmp_path / "mbpp_folder").mkdir()
    (tmp_path / "mbpp_folder" / "train.jsonl").write_text(open(shared("code", "mbpp.jsonl")).read())

    sources = [
        dict(name="gsm8k", path=str(shared("orig", "openai_grade-school-math", "test.jsonl")), domain="math",
             fields={"question": "question", "answer": "answer"}, license="MIT"),
        dict(name="math500", path=str(tmp_path / "math500.parquet"), domain="math",
             fields={"question": "question", "answer": "answer", "id": "id"}),
        dict(name="aime24", path=str(tmp_path / "aime.json"), domain="math",
             fields={"question": "question", "answer": "answer", "id": "id"}),
        dict(name="humaneval", path=str(shared("orig", "openai_human-eval", "HumanEval.jsonl.gz")), domain="code",
             fields={"question": "prompt", "answer": "canonical_solution", "id": "task_id"}),
        dict(name="mbpp", path=str(tmp_path / "mbpp_folder"), domain="code", split="train",
             fields={"question": "question", "id": "id"}),
        dict(name="mmlu_astronomy", path=str(shared("orig", "hendrycks_mmlu", "astronomy_test.csv")),
             domain="science", columns=["question", "A", "B", "C", "D", "answer"], template=MMLU_TEMPLATE,
             fields={"answer": "answer"}),
        dict(name="ifeval", path=str(tmp_path / "ifeval_disk"), domain="instruction",
             fields={"question": "prompt", "id": "key"}),
    ]
    report, out, quarantine = run(tmp_path, sources)
    by = report["by_source"]
    assert by["gsm8k"]["rows"] == 1319 and by["humaneval"]["rows"] == 164 and by["mmlu_astronomy"]["rows"] == 152
    assert by["math500"]["rows"] == 40 and by["aime24"]["rows"] == 30 and by["mbpp"]["rows"] == 974
    assert by["ifeval"]["rows"] == 50 and quarantine.num_rows == 0
    assert report["rows"] == report["staged"] + report["quarantined"]
    assert report["staged"] == report["questions"] + report["duplicates_collapsed"]
    assert set(report["by_domain"]) == {"math", "code", "science", "instruction"}
    assert out.num_rows == report["questions"] and len(set(out.column("question_id").to_pylist())) == out.num_rows

    rows = {r["source_id"]: r for r in out.to_pylist()}
    he = rows["HumanEval/0"]
    assert he["domain"] == "code" and he["messages"][0] == {"role": "system", "content": SYSTEM}
    assert he["messages"][1]["content"].startswith("from typing import List")
    assert "entry_point" in json.loads(he["metadata"])
    mmlu = next(r for r in out.to_pylist() if r["source"] == "mmlu_astronomy")
    assert "\n\nA. " in mmlu["messages"][1]["content"] and mmlu["reference_answer"] in "ABCD"
    assert mmlu["source_id"].endswith("astronomy_test.csv:1")
    gsm = next(r for r in out.to_pylist() if r["source"] == "gsm8k")
    assert "####" in gsm["reference_answer"] and gsm["license"] == "MIT"


def test_exact_duplicates_collapse_after_whitespace_normalisation(tmp_path):
    src = [json.loads(line) for line in open(shared("math", "gsm8k_test.jsonl"))][:20]
    dup = dict(src[3], id="copy", question="  " + src[3]["question"].replace(" ", "  \n") + "\t")
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in src + [dup]) + "\n")
    # the same file twice: every row of the second copy collapses too
    s = dict(path=str(path), domain="math", fields={"question": "question", "answer": "answer", "id": "id"})
    report, out, _ = run(tmp_path, [dict(s, name="a"), dict(s, name="b")])
    assert report["staged"] == 42 and report["questions"] == 20 and report["duplicates_collapsed"] == 22
    first = out.to_pylist()[3]
    assert first["source"] == "a" and first["source_id"] == src[3]["id"] and first["duplicates"] == 4
    assert out.column("source_id").to_pylist() == [r["id"] for r in src]  # source order kept


BAD = [
    ('{"question": "ok", "answer": "1"}\n{"question": "broken"\n', 2, None, "invalid JSON"),
    ('{"question": "ok", "answer": "1"}\n{"answer": "2"}\n', 2, "question", "missing"),
    ('{"question": "ok", "answer": "1"}\n{"question": "   ", "answer": "2"}\n', 2, "question", "empty text"),
    ('{"question": "ok", "answer": "1"}\n{"question": "x", "answer": "2"}\n[1, 2]\n', 3, None, "not a JSON object"),
    (b'{"question": "ok", "answer": "1"}\n{"question": "caf\xe9", "answer": "2"}\n', 2, None, "invalid UTF-8"),
]


@pytest.mark.parametrize("content,line,field,reason", BAD, ids=["json", "missing", "empty", "not-object", "utf8"])
def test_bad_input_raises_with_file_line_field(tmp_path, content, line, field, reason):
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(content.encode() if isinstance(content, str) else content))
    src = [dict(name="bad", path=str(path), domain="math", fields={"question": "question", "answer": "answer"})]
    with pytest.raises(questions.InputError) as err:
        run(tmp_path, src)
    e = err.value
    assert (e.file, e.line, e.field) == (str(path), line, field) and reason in e.reason
    assert f"{path}:{line}" in str(e)

    report, out, quarantine = run(tmp_path, src, on_error="quarantine")
    q = quarantine.to_pylist()
    assert len(q) == 1 and q[0]["line"] == line and q[0]["field"] == field and reason in q[0]["reason"]
    assert q[0]["stage"] == "questions" and q[0]["source"] == "bad"
    assert report["rows"] == report["staged"] + report["quarantined"] and report["quarantined"] == 1


def test_csv_invalid_utf8_and_short_rows(tmp_path):
    path = tmp_path / "mmlu.csv"
    good = open(shared("orig", "hendrycks_mmlu", "college_physics_test.csv"), "rb").read().split(b"\n")[:5]
    path.write_bytes(b"\n".join(good[:2] + [b"What\xff is it?,a,b,c,d,A", b"Too short,a,b"] + good[2:]) + b"\n")
    src = [dict(name="mmlu", path=str(path), domain="science", columns=["question", "A", "B", "C", "D", "answer"],
                template=MMLU_TEMPLATE, fields={"answer": "answer"})]
    with pytest.raises(questions.InputError, match=r"mmlu.csv:3: invalid UTF-8"):
        run(tmp_path, src)
    report, out, quarantine = run(tmp_path, src, on_error="quarantine")
    assert sorted((r["line"], r["reason"].split(" ")[0]) for r in quarantine.to_pylist()) == [(3, "invalid"), (4, "wrong")]
    assert out.num_rows == 5 and report["rows"] == 7


def test_params_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="give exactly one of 'path' or 'hf'"):
        run(tmp_path, [dict(name="x", domain="math", fields={"question": "q"})])
    with pytest.raises(ValueError, match=r"sources\[0\]\.domain: Input should be 'math', .* \(got 'maths'\)"):
        run(tmp_path, [dict(name="x", path="a.jsonl", domain="maths", fields={"question": "q"})])
    with pytest.raises(questions.InputError, match="file not found"):
        run(tmp_path, [dict(name="x", path="nope.jsonl", domain="math", fields={"question": "q"})])


def test_values_that_are_not_text_are_errors_not_conversions(tmp_path):
    """Parquet keeps types: an int, a bool, NaN or bytes where the question belongs is no question
    (`b'What is 1+1?'` must not become a prompt). A U+FFFD that the data really holds is kept."""
    rows = [{"question": "A real question with a \ufffd in it", "answer": "1"},
            {"question": 7, "answer": "2"}, {"question": True, "answer": "3"}, {"question": float("nan"), "answer": "4"},
            {"question": b"What is 1+1?", "answer": "5"}, {"question": "Answer is a bool", "answer": False},
            {"question": "Numeric answer", "answer": 42}]
    # one Parquet file per row, since a column has one type: each its own source
    sources = []
    for k, r in enumerate(rows):
        pq.write_table(pa.Table.from_pylist([r]), tmp_path / f"row{k}.parquet")
        sources.append(dict(name=f"r{k}", path=str(tmp_path / f"row{k}.parquet"), domain="math",
                            fields={"question": "question", "answer": "answer"}))
    report, out, quarantine = run(tmp_path, sources, on_error="quarantine")
    reasons = {q["source"]: q["reason"] for q in quarantine.to_pylist()}
    assert reasons == {"r1": "expected text, got int 7", "r2": "expected text, got bool True",
                       "r3": "expected text, got float nan", "r4": "expected text, got bytes b'What is 1+1?'",
                       "r5": "expected text or a number, got bool False"}
    kept = {m[-1]["content"]: a for m, a in zip(out.column("messages").to_pylist(),
                                                 out.column("reference_answer").to_pylist())}
    assert kept == {"A real question with a \ufffd in it": "1", "Numeric answer": "42"}


def test_a_source_whose_every_row_fails_is_an_error_and_keeps_the_old_table(tmp_path):
    good = tmp_path / "q.jsonl"
    good.write_text('{"question": "What is 2+2?", "answer": "4"}\n{"question": "What is 3+3?", "answer": "6"}\n')
    src = dict(name="q", path=str(good), domain="math", fields={"question": "question", "answer": "answer"})
    run(tmp_path, [src], on_error="quarantine")
    before = (tmp_path / "out" / "questions.parquet").read_bytes()
    from engine.params import StageError

    wrong = dict(src, fields={"question": "prompt", "answer": "answer"})  # a mapping to no column
    with pytest.raises(StageError, match=r"2 of 2 rows failed, the first .*q.jsonl:1 field 'prompt': missing"):
        run(tmp_path, [wrong], on_error="quarantine")
    assert (tmp_path / "out" / "questions.parquet").read_bytes() == before
    # a configured share: more than half of the rows failing stops it too
    half = tmp_path / "half.jsonl"
    half.write_text('{"question": "What is 2+2?"}\n{"question": ""}\n{"question": " "}\n')
    qp = QuestionsParams(sources=[dict(src, path=str(half), fields={"question": "question"})], on_error="quarantine",
                         max_quarantined=0.5)
    with pytest.raises(StageError, match="raise max_quarantined"):
        questions.run(qp, SYSTEM, tmp_path, tmp_path / "out", tmp_path / "quarantine.parquet", tmp_path / "r.json")
    assert (tmp_path / "out" / "questions.parquet").read_bytes() == before
