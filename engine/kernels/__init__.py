"""Compiled hot loops (numba) that SQL cannot express, each beside a plain reference definition that
tests compare it against: texts as code points (`text`), the sentence splitter (`split`), the filter's
measures (`measures`, built on `repetition`), MinHash signatures (`minhash`), token-to-sentence
alignment (`align`)."""
