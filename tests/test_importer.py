"""`dasd import`: a released SFT dataset with teacher token logprobs (the DASD authors' layout, built here from
real gpt-oss harmony outputs and real R1 traces) becomes the engine's question and generation tables."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from conftest import shared, write_release
from engine import cli, tables
from engine.backends import harmony


def harmony_rows() -> list[dict]:
    rows = []
    for line in open(shared("harmony", "gptoss_rft_notebook_outputs.jsonl")):
        d = json.loads(line)
        raw = d["response"].removeprefix("<|start|>assistant")  # what the model sampled after the prompt
        rows.append({"uuid": d["id"], "input": d["question"], "raw": raw, "output": harmony.to_student(raw).text,
                     "domain": "code"})
    traces = [json.loads(x) for x in open(shared("traces", "traces_math500_r1_and_distill.jsonl"))]
    for d in sorted(traces, key=lambda d: len(d["response"]))[:6]:
        if "</think>" in d["response"]:
            rows.append({"uuid": f"r1-{d['id']}", "input": d["question"], "output": d["response"],
                         "raw": harmony.from_student(d["response"]) + "<|return|>", "domain": "math"})
    return rows


@pytest.fixture()
def project(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("system_prompt: You are a helpful assistant.\n"
                                          "teacher: {model: openai/gpt-oss-120b, backend: vllm, format: harmony}\n")
    monkeypatch.setenv("DASD_ROOT", str(tmp_path))
    return tmp_path


def import_cli(project, sft, lp, tokenizer, *extra) -> dict:
    assert cli.main(["import", str(sft), "--logprobs", str(lp), "--tokenizer", str(tokenizer), "--license",
                     "Apache-2.0", "--no-progress", *extra]) == 0
    t = extra[extra.index("--temperature") + 1] if "--temperature" in extra else "1.0"
    return json.loads((project / "metrics" / "import" / f"T={t}.json").read_text())


def test_harmony_release_imports_like_a_generation(project, harmony_teacher):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(harmony_teacher)
    rows = harmony_rows()
    assert len(rows) >= 6
    sft, lp = write_release(project / "release", rows, tok)
    report = import_cli(project, sft, lp, harmony_teacher)
    assert report["rows"] == len(rows) == report["imported"] and report["quarantined"] == 0
    gen = tables.read_table(project / "data" / "generations" / "T=1.0")
    released = pq.read_table(lp / "train-00000-of-00001.parquet").to_pylist()
    by_uuid = {r["uuid"]: r for r in rows}
    for g in gen.to_pylist():
        src = next(r for r in released if tables.content_hash("import", r["sample_uuid"]) == g["response_id"])
        # the response as the student sees it: the released text, rebuilt from the released tokens
        assert g["text"] == by_uuid[src["sample_uuid"]]["output"]
        assert g["finish_reason"] == "stop" and g["backend"] == "import" and g["teacher_model"] == "openai/gpt-oss-120b"
        assert g["teacher_token_count"] == len(src["token_ids"])
        # kept tokens: the content tokens (harmony headers dropped), in order, each with its own released logprob
        # (the released logprobs are distinct random floats: an (id, logprob) pair names its position)
        released_pairs, j = list(zip(src["token_ids"], src["logprobs"])), 0
        for i, x in zip(g["token_ids"], g["token_logprobs"]):
            while not (released_pairs[j][0] == i and abs(released_pairs[j][1] - x) < 1e-6):
                j += 1  # IndexError: a kept token that is not the next released one
            j += 1
        assert len(g["token_ids"]) < len(src["token_ids"])
        headers = {tok.convert_tokens_to_ids(s) for s in ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>")}
        assert not headers & set(g["token_ids"])
        for i, s, e in zip(g["token_ids"], g["token_starts"], g["token_ends"]):
            piece = tok.decode([i])
            if "\ufffd" not in piece:
                assert g["text"][s:e] == piece
    q = tables.read_table(project / "data" / "questions")
    assert set(q.column("question_id").to_pylist()) == set(gen.column("question_id").to_pylist())
    assert set(q.column("license").to_pylist()) == {"Apache-2.0"}
    assert all("output" not in json.loads(m) for m in q.column("metadata").to_pylist())  # not copied as metadata

    # a rerun with the same inputs keeps every shard (resumable, nothing duplicated)
    before = {p.name: p.read_bytes() for p in (project / "data" / "generations" / "T=1.0").glob("part-*.parquet")}
    import_cli(project, sft, lp, harmony_teacher)
    after = {p.name: p.read_bytes() for p in (project / "data" / "generations" / "T=1.0").glob("part-*.parquet")}
    assert before == after
    # a re-released logprob file under the same name starts clean: no stale shard survives
    released[0]["logprobs"] = [x - 0.25 for x in released[0]["logprobs"]]
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(released), lp / "train-00000-of-00001.parquet")
    import_cli(project, sft, lp, harmony_teacher)
    again = tables.read_table(project / "data" / "generations" / "T=1.0").to_pylist()
    rid = tables.content_hash("import", released[0]["sample_uuid"])
    was = next(g for g in gen.to_pylist() if g["response_id"] == rid)["token_logprobs"]
    now = next(g for g in again if g["response_id"] == rid)["token_logprobs"]
    assert now == pytest.approx([x - 0.25 for x in was], abs=1e-5)

    # another temperature's import adds its questions to those already there
    extra = [dict(rows[0], uuid="other", input="A question only the low-temperature set has")]
    sft2, lp2 = write_release(project / "release2", extra, tok)
    import_cli(project, sft2, lp2, harmony_teacher, "--temperature", "0.6")
    q2 = tables.read_table(project / "data" / "questions")
    assert q2.num_rows == q.num_rows + 1 and len(set(q2.column("question_id").to_pylist())) == q2.num_rows


def test_bad_rows_are_quarantined_with_file_line_and_field(project, harmony_teacher):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(harmony_teacher)
    rows = harmony_rows()[:6]
    rows[1] = dict(rows[1], output=rows[1]["output"].replace("need", "wanted", 1))  # text edited after sampling
    rows[2] = dict(rows[2], domain="astrology")
    sft, lp = write_release(project / "release", rows, tok)
    table = pq.read_table(lp / "train-00000-of-00001.parquet").to_pylist()
    table[3]["logprobs"] = [0.5] + table[3]["logprobs"][1:]           # not a log probability
    table[4]["logprobs"] = table[4]["logprobs"][:-1]                   # one short
    del table[5]                                                       # no logprob row at all
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table), lp / "train-00000-of-00001.parquet")
    report = import_cli(project, sft, lp, harmony_teacher)
    assert report["imported"] == 1 and report["quarantined"] == 5 and report["rows"] == 6
    rejected = pq.read_table(project / "data" / "quarantine" / "import-T=1.0.parquet").to_pylist()
    bad = {r["field"]: r for r in rejected}
    assert bad["output"]["file"].endswith("sft.jsonl") and bad["output"]["line"] == 2
    assert "differs from what its token ids decode to" in bad["output"]["reason"]
    assert bad["domain"]["line"] == 3 and "astrology" in bad["domain"]["reason"]
    lp_file = [r for r in rejected if r["field"] == "logprobs"]
    assert {r["line"] for r in lp_file} == {4, 5} and all(r["file"].endswith("logprobs") for r in lp_file)
    assert "is not a log probability" in " ".join(r["reason"] for r in lp_file)
    assert "no logprob row for id" in bad["sample_uuid"]["reason"]
    # with --on-error raise the first bad row stops the import with one line naming it
    assert cli.main(["import", str(sft), "--logprobs", str(lp), "--tokenizer", str(harmony_teacher),
                     "--on-error", "raise", "--no-progress"]) == 2


def test_a_failing_import_leaves_the_earlier_tables_as_they_were(project, harmony_teacher, capsys):
    """New generations are written beside the old ones and take their place only when the import is
    complete and imported something; the questions table changes only then too."""
    import pyarrow as pa
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(harmony_teacher)
    rows = harmony_rows()
    sft, lp = write_release(project / "good", rows[:3], tok)
    import_cli(project, sft, lp, harmony_teacher)
    gen = project / "data" / "generations" / "T=1.0"

    def snapshot():
        return {p.relative_to(project / "data"): p.read_bytes() for p in (project / "data").rglob("*")
                if p.is_file() and not {"quarantine", ".import"} & set(p.parts)}  # the tables, not the staging

    before = snapshot()
    # every row of another release fails (logprobs that are no log probabilities): an error, nothing changes
    sft2, lp2 = write_release(project / "bad", rows[3:7], tok)
    table = pq.read_table(lp2 / "train-00000-of-00001.parquet").to_pylist()
    for r in table:
        r["logprobs"] = [0.5] * len(r["logprobs"])
    pq.write_table(pa.Table.from_pylist(table), lp2 / "train-00000-of-00001.parquet")
    capsys.readouterr()
    assert cli.main(["import", str(sft2), "--logprobs", str(lp2), "--tokenizer", str(harmony_teacher),
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("dasd import: error:")]
    assert len(line) == 1 and "4 of 4 rows failed" in line[0] and "is not a log probability" in line[0]
    assert snapshot() == before
    # with --on-error raise the first bad row stops it, the same way
    assert cli.main(["import", str(sft2), "--logprobs", str(lp2), "--tokenizer", str(harmony_teacher),
                     "--on-error", "raise", "--no-progress"]) == 2
    assert snapshot() == before
    # a good import of that other release replaces the generations whole, and adds its questions
    sft3, lp3 = write_release(project / "good2", rows[3:7], tok)
    import_cli(project, sft3, lp3, harmony_teacher)
    ids = {r["question_id"] for r in tables.read_table(gen).to_pylist()}
    assert len(ids) == len({r["input"] for r in rows[3:7]}) and tables.read_table(project / "data" / "questions").num_rows == len({r["input"] for r in rows[:7]})
    assert not list((project / "data").glob(".import/*/part-*.parquet"))  # the staged import moved into place
