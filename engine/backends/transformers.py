"""transformers `generate`, for models vLLM cannot serve and for small runs without an engine.

`generate(output_scores=True)` returns *processed* scores and silently applies top_k=50; the logprobs
here come from `output_logits=True` (the raw logits) with `top_k=0`, so raw_logprobs match a
teacher-forced forward pass of the same model.
"""
from __future__ import annotations

from .base import Backend, Request, Sample, Sampling, Scored, ScoreRequest


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, model, revision=None, *, dtype="float32", device="cpu", logprobs_mode="raw_logprobs",
                 stop_token_ids=None, **options):
        super().__init__(model, revision, **options)
        import torch
        from transformers import AutoModelForCausalLM

        self.torch, self.device, self.logprobs_mode = torch, device, logprobs_mode
        self.lm = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=getattr(torch, dtype))
        self.lm.to(device).eval()
        self.stop_ids = set(stop_token_ids or []) | {self.tokenizer.eos_token_id}

    def context_length(self) -> int | None:
        return getattr(self.lm.config, "max_position_embeddings", None)

    def generate(self, requests: list[Request], sampling: Sampling) -> list[list[Sample]]:
        torch = self.torch
        results = []
        for req in requests:  # one request at a time: its seed alone decides its samples
            ids = torch.tensor([self.prompt_ids(req.messages, req.prefill)], device=self.device)
            torch.manual_seed(req.seed)
            greedy = sampling.temperature == 0
            with torch.no_grad():
                out = self.lm.generate(
                    ids, do_sample=not greedy, temperature=None if greedy else sampling.temperature,
                    top_p=None if greedy else sampling.top_p, top_k=0 if not greedy else None,
                    max_new_tokens=req.max_tokens or sampling.max_tokens, num_return_sequences=sampling.n,
                    output_logits=True, return_dict_in_generate=True, eos_token_id=sorted(self.stop_ids),
                    pad_token_id=self.tokenizer.pad_token_id)
            logits = torch.stack(out.logits, dim=1).float()  # (n, steps, vocab), raw
            if self.logprobs_mode == "processed_logprobs" and not greedy:
                logits = logits / sampling.temperature
            logprobs = torch.log_softmax(logits, dim=-1)
            new = out.sequences[:, ids.shape[1]:]
            picked = logprobs.gather(-1, new.unsqueeze(-1)).squeeze(-1)
            samples = []
            for row, lp in zip(new.tolist(), picked.tolist()):
                end = next((i + 1 for i, t in enumerate(row) if t in self.stop_ids), None)
                samples.append(Sample(token_ids=row[:end] if end else row, logprobs=lp[:end] if end else lp,
                                      finish_reason="stop" if end else "length"))
            results.append(samples)
        return results

    def score(self, requests: list[ScoreRequest], batch_size: int = 8) -> list[Scored]:
        """Batched teacher-forced forward passes (right padding); rank = 1 + tokens with higher logits."""
        torch = self.torch
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        out = []
        for i in range(0, len(requests), batch_size):
            batch = requests[i:i + batch_size]
            seqs = [(self.prompt_ids(r.messages), list(r.completion_ids)) for r in batch]
            width = max(len(p) + len(c) for p, c in seqs)
            ids = torch.full((len(batch), width), pad, device=self.device)
            mask = torch.zeros_like(ids)
            for k, (p, c) in enumerate(seqs):
                ids[k, :len(p) + len(c)] = torch.tensor(p + c)
                mask[k, :len(p) + len(c)] = 1
            with torch.no_grad():
                logits = self.lm(input_ids=ids, attention_mask=mask).logits.float()
            for k, (p, c) in enumerate(seqs):
                if not c:
                    out.append(Scored(logprobs=[], ranks=[]))
                    continue
                step = logits[k, len(p) - 1:len(p) + len(c) - 1]
                target = torch.tensor(c, device=self.device)
                chosen = step.gather(-1, target.unsqueeze(-1))
                lp = (chosen.squeeze(-1) - torch.logsumexp(step, dim=-1)).tolist()
                ranks = (1 + (step > chosen).sum(-1)).tolist()
                out.append(Scored(logprobs=lp, ranks=ranks))
        return out
