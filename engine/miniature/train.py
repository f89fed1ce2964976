"""Causal-LM fine-tuning of a miniature model on chat examples, on CPU, in a plain PyTorch loop.

Used to make the default profile's teacher competent on its task family and to give the student a
weak starting point. Loss on the assistant turn only (the prompt is masked), AdamW with warmup and
cosine decay, seeded; batches are grouped by length (`length_batches`) to waste little padding.
"""
from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path

from tqdm import tqdm


def encode_examples(tokenizer, examples: list[tuple[list[dict], str]]) -> list[tuple[list[int], int]]:
    """(prompt messages, assistant text) -> (ids of prompt + answer + end token, prompt length)."""
    out = []
    for messages, answer in examples:
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        p_ids = tokenizer.encode(prompt, add_special_tokens=False)
        a_ids = tokenizer.encode(answer, add_special_tokens=False) + [tokenizer.eos_token_id]
        out.append((p_ids + a_ids, len(p_ids)))
    return out


def length_batches(data: list[tuple[list[int], int]], batch_size: int, rng: random.Random, group: int = 8):
    """Endless batches of `batch_size` examples: `group` batches' worth drawn at random (no repeats within
    them), sorted by length, cut into batches, the batches shuffled. Random batches of 32 were 14% (teacher)
    and 19% (student) padding in the default profile, and the stage's time is its tokens: grouped, about 3%."""
    size = min(len(data), batch_size * max(1, min(group, len(data) // batch_size)))
    while True:
        drawn = sorted(rng.sample(data, size), key=lambda example: len(example[0]))
        batches = [drawn[i:i + batch_size] for i in range(0, size, batch_size)]
        rng.shuffle(batches)
        yield from batches


def train(model_dir: Path, examples: list[tuple[list[dict], str]], steps: int, batch_size: int = 32,
          lr: float = 3e-3, warmup: float = 0.05, seed: int = 0, threads: int | None = None,
          progress: bool = True) -> dict:
    """Train the model saved in `model_dir` in place; returns {'loss': last-50-step mean, 'seconds'}."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    data = encode_examples(tok, examples)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    n_warm = max(1, int(warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / n_warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    pad = tok.pad_token_id
    losses, t0 = [], time.time()
    bar = tqdm(range(steps), desc=f"train {Path(model_dir).name}", disable=not progress, file=sys.stderr)
    batches = length_batches(data, batch_size, rng)
    for _ in bar:
        batch = next(batches)
        width = max(len(ids) for ids, _ in batch)
        x = torch.full((len(batch), width), pad)
        y = torch.full((len(batch), width), -100)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, n_prompt) in enumerate(batch):
            x[i, :len(ids)] = torch.tensor(ids)
            y[i, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
            att[i, :len(ids)] = 1
        loss = model(input_ids=x, attention_mask=att, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if len(losses) % 20 == 0:
            bar.set_postfix_str(f"loss {sum(losses[-20:]) / 20:.3f}")
    model.save_pretrained(model_dir, safe_serialization=True)
    return {"loss": sum(losses[-50:]) / len(losses[-50:]), "seconds": time.time() - t0, "steps": steps}
