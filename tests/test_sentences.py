"""Stage `sentences`: splitting rules, cross-tokenizer alignment on real traces, sentence typing."""
from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest
from transformers import AutoTokenizer

from conftest import shared
from engine import sentences, tables
from engine.params import StageError
from engine.score import tokenize_response
from engine.sentences import SentencesParams, split


def texts_of(spans, text):
    return [text[a:b] for a, b in spans]


def test_split_rules():
    text = ("<think>\nWe have x = 3.5 apples, e.g. two bags. Then we add 2. So x = 5.5!\n\n"
            "Code:\n```python\ndef f(x):\n    return x + 1\n```\nDone. The answer is 5.\n</think>\n\nThe answer is 5.5.")
    spans = split(text)
    assert spans[0][0] == 0 and spans[-1][1] == len(text) and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    parts = texts_of(spans, text)
    assert parts[0] == "<think>\nWe have x = 3.5 apples, e.g. two bags. "  # "<think>" joins; 3.5 and e.g. stay
    assert parts[1:3] == ["Then we add 2. ", "So x = 5.5!\n\nCode:\n"]  # "Code:" is too short alone
    assert any(p.startswith("```python\ndef f(x):\n    return x + 1\n```") for p in parts)  # code block whole
    assert parts[-1] == "The answer is 5.5."
    assert split("") == [(0, 0)]


@pytest.mark.parametrize("path", ["traces_math500_r1_and_distill.jsonl", "traces_qwen25math_cot_rm_example.jsonl"])
def test_real_traces_do_not_explode(path):
    for line in list(open(shared("traces", path)))[:40]:
        text = json.loads(line)["response"]
        spans = split(text)
        assert spans[0][0] == 0 and spans[-1][1] == len(text)
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(spans, spans[1:]))
        # a sentence per line at most, plus sentence ends inside lines: never thousands of fragments
        assert len(spans) <= text.count("\n") + text.count(". ") + text.count("? ") + text.count("! ") + 1
        assert sum(len(text[a:b].strip()) < 8 for a, b in spans[1:]) == 0  # no tiny fragments


def write(table, folder):
    tables.write_parquet(table, folder / "part-00000.parquet")


def gen_table(rows):
    full = [dict(dict.fromkeys(tables.GENERATIONS.names), **r) for r in rows]
    return pa.Table.from_pylist(full, schema=tables.GENERATIONS)


def score_table(rows):
    full = [dict(dict.fromkeys(tables.STUDENT_SCORES.names), **r) for r in rows]
    return pa.Table.from_pylist(full, schema=tables.STUDENT_SCORES)


def run(tmp_path, gens, scores, beta=0.1):
    write(gens, tmp_path / "g")
    write(scores, tmp_path / "s")
    report = sentences.run(SentencesParams(beta=beta), 1.0, tmp_path / "g", tmp_path / "s", tmp_path / "out",
                           tmp_path / "m.json")
    return report, tables.read_table(tmp_path / "out").to_pylist()


def test_every_token_of_both_tokenizers_lands_in_one_sentence(tmp_path, mini):
    teacher, student = (AutoTokenizer.from_pretrained(mini[k]) for k in ("teacher", "student"))
    rows = [json.loads(line) for line in open(shared("traces", "traces_math500_r1_and_distill.jsonl"))][:8]
    g, s = [], []
    for k, r in enumerate(rows):
        text = r["response"][:6000]
        t_ids, t_starts, t_ends = tokenize_response(teacher, text)
        s_ids, s_starts, s_ends = tokenize_response(student, text)
        assert t_ids != s_ids  # the tokenizers really differ
        g.append(dict(response_id=f"r{k}", question_id=f"q{k}", temperature=1.0, text=text, token_ids=t_ids,
                      token_logprobs=[-0.05] * len(t_ids), token_starts=t_starts, token_ends=t_ends))
        s.append(dict(response_id=f"r{k}", token_ids=s_ids, student_logprobs=[-2.0] * len(s_ids),
                      token_starts=s_starts, token_ends=s_ends, student_ranks=[1] * len(s_ids)))
    report, out = run(tmp_path, gen_table(g), score_table(s))
    for k, (gr, sr) in enumerate(zip(g, s)):
        mine = [o for o in out if o["response_id"] == f"r{k}"]
        assert sum(o["teacher_tokens"] for o in mine) == len(gr["token_ids"])
        assert sum(o["student_tokens"] for o in mine) == len(sr["token_ids"])
        assert [(o["char_start"], o["char_end"]) for o in mine] == split(gr["text"])
    assert report["sentences"] == len(out) and sum(report["by_type"].values()) == len(out)
    assert all(o["type"] == "teacher" for o in out if o["student_tokens"] and o["teacher_tokens"])


def test_types_at_the_beta_edges_and_unaligned(tmp_path):
    # four sentences, one token per model each, probabilities chosen around beta = 0.1
    text = "First sentence here. Second sentence here. Third sentence here. Fourth one here."
    spans = split(text)
    assert len(spans) == 4
    starts = [a for a, _ in spans]
    p_t = [0.80, 0.50, 0.50, 0.90]
    p_s = [0.69, 0.61, 0.45, None]  # teacher +0.11, student +0.11, shared +0.05, no student token
    g = [dict(response_id="r", question_id="q", temperature=1.0, text=text, token_ids=[1, 2, 3, 4],
              token_logprobs=[math.log(p) for p in p_t], token_starts=starts, token_ends=[b for _, b in spans])]
    s_starts = starts[:3]
    s = [dict(response_id="r", token_ids=[1, 2, 3], student_logprobs=[math.log(p) for p in p_s[:3]],
              student_ranks=[1, 1, 1], token_starts=s_starts, token_ends=[b for _, b in spans][:3])]
    _, out = run(tmp_path, gen_table(g), score_table(s))
    assert [o["type"] for o in out] == ["teacher", "student", "shared", "unaligned"]
    assert out[0]["p_teacher"] == pytest.approx(0.80, abs=1e-6) and out[3]["student_tokens"] == 0
    # a larger margin turns the first two into shared
    _, out = run(tmp_path, gen_table(g), score_table(s), beta=0.15)
    assert [o["type"] for o in out] == ["shared", "shared", "shared", "unaligned"]


def test_a_run_that_fails_midway_leaves_the_old_sentences(tmp_path):
    """New shards are written beside the old ones and swapped in at the end: a run that fails after some
    of its shards are on disk (here: scores that stop matching the generations in the third batch)
    leaves the earlier output whole, and no half-written folder."""
    text = "First sentence here. Second sentence here."
    spans = split(text)
    g = [dict(response_id=f"r{k}", question_id=f"q{k}", temperature=1.0, text=text, token_ids=[1, 2],
              token_logprobs=[-0.1, -0.2], token_starts=[a for a, _ in spans], token_ends=[b for _, b in spans])
         for k in range(6)]
    s = [dict(response_id=f"r{k}", token_ids=[1, 2], student_logprobs=[-0.3, -0.1], student_ranks=[1, 1],
              token_starts=[a for a, _ in spans], token_ends=[b for _, b in spans]) for k in range(6)]
    write(gen_table(g), tmp_path / "g")
    write(score_table(s), tmp_path / "s")
    args = (SentencesParams(), 1.0, tmp_path / "g", tmp_path / "s", tmp_path / "out", tmp_path / "m.json")
    sentences.run(*args, batch_rows=2)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert len(before) == 3
    write(score_table(s[:4] + [dict(s[4], response_id="other"), s[5]]), tmp_path / "s")
    with pytest.raises(StageError, match="not in the generations' order"):
        sentences.run(*args, batch_rows=2)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "m.json", "out", "s"]  # no temp folder, no lock
    # a good run replaces the engine's shards (one fewer now) and keeps what the engine did not write
    (tmp_path / "out" / "NOTES.md").write_text("mine")
    write(score_table(s[:4]), tmp_path / "s")
    write(gen_table(g[:4]), tmp_path / "g")
    sentences.run(*args, batch_rows=2)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["NOTES.md", "part-00000.parquet", "part-00001.parquet"]
    assert (tmp_path / "out" / "NOTES.md").read_text() == "mine"


def test_inputs_out_of_step_are_one_line_at_the_cli(tmp_path, monkeypatch, capsys):
    """Scores that no longer match the generations are the user's to fix (rerun `dasd score`): one line,
    exit 2, no traceback."""
    import yaml

    from engine import cli

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"generate": {"temperatures": [1.0]}, "sentences": {}}))
    text = "One sentence here. Another one here."
    spans = split(text)
    g = [dict(response_id=f"r{k}", question_id="q", temperature=1.0, text=text, token_ids=[1, 2],
              token_logprobs=[-0.1, -0.2], token_starts=[a for a, _ in spans], token_ends=[b for _, b in spans])
         for k in range(2)]
    s = [dict(response_id="r0", token_ids=[1], student_logprobs=[-0.3], student_ranks=[1], token_starts=[0],
              token_ends=[len(text)])]
    write(gen_table(g), tmp_path / "data" / "generations" / "T=1.0")
    write(score_table(s), tmp_path / "data" / "student_scores" / "T=1.0")
    monkeypatch.setenv("DASD_ROOT", str(tmp_path))
    assert cli.main(["sentences"]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.replace("\r", "\n").splitlines() if "error" in x]  # (the progress bar shares stderr)
    assert "Traceback" not in err and lines == [f"dasd sentences: error: {tmp_path}/data/student_scores/T=1.0: "
                                                "fewer student scores than generations; rerun `dasd score`"]
