"""Structured-config schemas (one module per entry point) and the Hydra plumbing they share."""

from source.config.core import compose_base, hydra_entry, save_config

__all__ = ["compose_base", "hydra_entry", "save_config"]
