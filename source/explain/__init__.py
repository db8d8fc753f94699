"""Explanations of trained slide models: what moved a prediction (exact leave-one-out contributions)."""
