"""Exact-match accuracy of a miniature model on held-out problems of the task family: greedy, or the mean
over `samples` sampled answers per problem (avg@k, as benchmarks report reasoning models)."""
from __future__ import annotations

from pathlib import Path

from . import tasks


def accuracy(model_dir: Path, problems: list[tasks.Problem], system_prompt: str | None,
             max_new_tokens: int = 192, batch_size: int = 64, samples: int = 1, temperature: float = 0.0,
             seed: int = 0) -> dict:
    """{'accuracy': overall, 'by_level': {level: accuracy}, 'well_formed': share with think + answer}
    over every answer: one greedy answer per problem (temperature 0), else `samples` sampled ones."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    by_level: dict[int, list[bool]] = {}
    formed = 0
    for i in range(0, len(problems), batch_size):
        batch = problems[i:i + batch_size]
        prompts = [tok.apply_chat_template(([{"role": "system", "content": system_prompt}] if system_prompt else [])
                                           + [{"role": "user", "content": p.question}],
                                           add_generation_prompt=True, tokenize=False) for p in batch]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        sampled = temperature > 0
        torch.manual_seed(seed + i)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=sampled,
                                 temperature=temperature if sampled else None, top_p=None, top_k=0 if sampled else None,
                                 num_return_sequences=samples if sampled else 1,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        each = [p for p in batch for _ in range(samples if sampled else 1)]  # generate repeats each prompt in place
        for p, seq in zip(each, out[:, enc.input_ids.shape[1]:]):
            text = tok.decode(seq, skip_special_tokens=True)
            formed += text.lstrip().startswith("<think>") and "</think>" in text and \
                tasks.extract_answer(text) is not None
            by_level.setdefault(p.level, []).append(tasks.extract_answer(text) == p.answer)
    n = sum(len(v) for v in by_level.values())
    return {"accuracy": sum(sum(v) for v in by_level.values()) / n,
            "by_level": {str(k): sum(v) / len(v) for k, v in sorted(by_level.items())},
            "well_formed": formed / n, "problems": len(problems), "answers": n}
