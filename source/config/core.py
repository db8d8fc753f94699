"""Hydra plumbing shared by every entry script: schema + documented defaults, argv defaults, saving."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from source.io import atomic_write_text

HYDRA_DEFAULTS = (
    "hydra.run.dir=.",
    "hydra.output_subdir=null",
    "hydra/job_logging=none",
    "hydra/hydra_logging=none",
)
"""Overrides that keep Hydra from creating ``outputs/`` folders or touching logging: runs write to
``output_dir/<experiment_name>/<run_id>/`` themselves and configure their own logging."""


class ConfigError(ValueError):
    """A user configuration is invalid; the message names the key and the fix."""


def compose_base(schema: type, documented_yaml: Path) -> DictConfig:
    """Merge a dataclass schema with the documented defaults file, checking the file against it.

    Args:
        schema: the structured-config dataclass (types and defaults).
        documented_yaml: YAML file holding every key with a comment (``config/default.yaml``).

    Returns:
        A typed config (unknown keys and wrong types raise on merge).
    """
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.load(documented_yaml))
    except OmegaConfBaseException as error:
        raise ConfigError(f"{documented_yaml}: {error}") from error


def register_base(name: str, schema: type, documented_yaml: Path) -> None:
    """Register ``schema`` + ``documented_yaml`` in Hydra's ConfigStore as ``name`` (for ``defaults:``)."""
    ConfigStore.instance().store(name=name, node=compose_base(schema, documented_yaml))


def hydra_entry(main: Callable[[DictConfig], Any], config_path: Path, config_name: str) -> None:
    """Run ``main`` under ``hydra.main`` with :data:`HYDRA_DEFAULTS` (unless given on the command line)."""
    import hydra

    given = {arg.split("=", 1)[0].lstrip("+~") for arg in sys.argv[1:] if "=" in arg}
    sys.argv.extend(item for item in HYDRA_DEFAULTS if item.split("=", 1)[0] not in given)
    hydra.main(config_path=str(config_path), config_name=config_name, version_base=None)(main)()


def save_config(cfg: DictConfig, path: Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, OmegaConf.to_yaml(cfg, resolve=True))


def register_schema(name: str, schema: type) -> None:
    """Register a dataclass schema in Hydra's ConfigStore as ``name`` (YAMLs list it in ``defaults:``)."""
    ConfigStore.instance().store(name=name, node=schema)
