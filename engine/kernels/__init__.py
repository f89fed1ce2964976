"""Compiled hot loops (numba) that SQL cannot express, each beside a plain reference definition that
tests compare it against: MinHash signatures (`minhash`), token-to-sentence alignment (`align`)."""
