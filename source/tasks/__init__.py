"""Per-task pieces of the generic training loop: loss, logits -> predictions, metrics, plots."""
