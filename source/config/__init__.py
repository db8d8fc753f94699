"""Structured-config schemas (one module per entry point) and the Hydra plumbing they share."""

from source.config.core import compose_base, hydra_entry

__all__ = ["compose_base", "hydra_entry"]
