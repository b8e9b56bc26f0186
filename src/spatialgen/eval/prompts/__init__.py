"""Prompt sets and reading prompts back: the benchmarks' prompt sets (with their data in ``prompt_data/``),
the scene world's held-out prompts, and the (A, relation, B) an evaluated image was asked for."""
