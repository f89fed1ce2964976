"""Small seeded causal LMs with their own byte-level BPE tokenizers, saved as Hugging Face folders.

Both load in vLLM (CPU attention needs head_dim >= 32, hence hidden/heads below), transformers and any
trainer. Teacher and student get tokenizers trained with different vocabulary sizes, so their token
boundaries differ and the pipeline's cross-tokenizer alignment is exercised for real.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ParamsError

# ChatML-style template; `{% generation %}` marks what assistant-only losses train on (TRL).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class ModelSpec:
    """Shape of one miniature model; `arch` is a transformers architecture family."""
    arch: str = "qwen2"  # qwen2 | llama
    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 2
    num_kv_heads: int = 1
    max_positions: int = 1024

    def __post_init__(self):
        if self.hidden_size // self.num_heads < 32:
            raise ParamsError(f"head_dim {self.hidden_size // self.num_heads} < 32: vLLM's CPU attention "
                             "rejects it (hidden_size / num_heads must be >= 32)")


def train_tokenizer(corpus: list[str], vocab_size: int, out_dir: Path):
    """Byte-level BPE trained on `corpus`, saved with a chat template; returns the fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # digits stay single tokens, so arithmetic is learnable digit by digit (as in Llama/Qwen tokenizers)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 1_000_000
    fast.save_pretrained(out_dir)
    return fast


def build_model(spec: ModelSpec, tokenizer, seed: int, out_dir: Path):
    """A randomly initialised (seeded) model matching `tokenizer`, saved in float32 safetensors."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        spec.arch, vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_positions, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None, torch_dtype="float32",
    )
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out_dir, safe_serialization=True)
    return model


def build(out_dir: Path, spec: ModelSpec, corpus: list[str], seed: int, name: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(corpus, spec.vocab_size, out_dir)
    build_model(spec, tok, seed, out_dir)
    (out_dir / "miniature.json").write_text(json.dumps({"name": name, "seed": seed, **spec.__dict__}, indent=2))
    return out_dir
