"""The default profile's own world: a procedural task family and small models built on CPU.

No model can be downloaded on the project's machines, so `make repro` builds a small teacher and a
smaller student (different tokenizers, as in the paper's gpt-oss -> Qwen3 pair) from scratch.
"""
