"""Stage `score`: the student's teacher-forced logprobs and ranks of teacher responses."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import normalizers

from conftest import _model
from engine import score, tables
from engine.backends import ModelParams, ScoreRequest, make_backend
from engine.errors import StageError
from engine.generate import GenerateParams
from engine.score import ScoreParams


def forward(model_dir, tok, messages, ids):
    prompt = list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"])
    with torch.no_grad():
        logits = _model(str(model_dir))(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1].float()
    chosen = logits.gather(-1, torch.tensor(ids).unsqueeze(-1))
    lp = (chosen.squeeze(-1) - torch.logsumexp(logits, -1)).tolist()
    return lp, (1 + (logits > chosen).sum(-1)).tolist()


@pytest.fixture(scope="module")
def responses_text(mini):
    # real teacher-style responses: the task family's own solutions
    return [p.solution for p in mini["problems"][:6]] + ["<think>\nÜmlaut 😀 and 数学.\n</think>\n\nThe answer is 7."]


@pytest.mark.parametrize("backend_name", ["transformers", pytest.param("vllm", marks=pytest.mark.slow)])
def test_score_matches_forward_pass_and_ranks(mini, prompts, responses_text, backend_name):
    b = make_backend(backend_name, str(mini["student"]), dtype="float32", max_model_len=512) \
        if backend_name == "vllm" else make_backend(backend_name, str(mini["student"]))
    try:
        reqs, expected = [], []
        for msgs, text in zip(prompts, responses_text):
            ids, starts, ends = score.tokenize_response(b.tokenizer, text)
            assert starts[0] == 0 and ends[-1] == len(text)
            assert all(e == s for e, s in zip(ends[:-1], starts[1:]))
            reqs.append(ScoreRequest("r", msgs, ids))
            expected.append(forward(mini["student"], b.tokenizer, msgs, ids))
        for got, (lp, ranks) in zip(b.score(reqs), expected):
            np.testing.assert_allclose(got.logprobs, lp, atol=2e-4)
            assert got.ranks == ranks
    finally:
        b.close()


def test_tokenize_response_refuses_a_lossy_tokenizer(mini):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(mini["student"])
    tok.backend_tokenizer.normalizer = normalizers.Lowercase()
    with pytest.raises(StageError, match="does not round-trip"):
        score.tokenize_response(tok, "<think>\nAna has 5.\n</think>\n\nThe answer is 5.")


def test_score_stage_rows(tmp_path, mini):
    from test_generate import make_project
    from engine import generate

    root = make_project(tmp_path, mini, 5)
    teacher = ModelParams(model=str(mini["teacher"]), backend="transformers")
    gp = GenerateParams(temperatures=[1.0], n=2, max_tokens=16, shard_questions=2)
    gen_dir = root / "data" / "generations" / "T=1.0"
    generated = generate.run(gp, teacher, 1.0, root / "data" / "questions", gen_dir, root / "g.json", progress=False)
    student = ModelParams(model=str(mini["student"]), backend="transformers")
    out = root / "data" / "student_scores" / "T=1.0"
    report = score.run(ScoreParams(shard_responses=3), student, 1.0, gen_dir, root / "data" / "questions", out,
                       root / "s.json", progress=False)
    t = tables.read_table(out)
    assert t.schema.equals(tables.STUDENT_SCORES) and t.num_rows == 10 == report["responses"]
    gens = {r["response_id"]: r for r in tables.read_table(gen_dir).to_pylist()}
    assert set(t.column("response_id").to_pylist()) == set(gens)
    for r in t.to_pylist():
        text = gens[r["response_id"]]["text"]
        n = r["student_token_count"]
        assert len(r["token_ids"]) == len(r["student_logprobs"]) == len(r["student_ranks"]) == n
        if n:
            assert r["token_starts"][0] == 0 and r["token_ends"][-1] == len(text)
        assert all(rank >= 1 for rank in r["student_ranks"]) and all(lp <= 0 for lp in r["student_logprobs"])
    # the reports' averages of doubles: the rows' means, rounded (engine/sql.steady: DuckDB sums in no fixed
    # order, and a DVC output must not change with it)
    rows = t.to_pylist()
    for got, values in ((report["mean_student_logprob"], [r["student_logprobs"] for r in rows]),
                        (report["mean_student_rank"], [r["student_ranks"] for r in rows]),
                        (generated["mean_token_logprob"], [g["token_logprobs"] for g in gens.values()])):
        assert got == round(got, 9) and got == pytest.approx(np.mean([np.mean(v) for v in values if v]), abs=2e-9)
