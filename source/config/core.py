"""Hydra plumbing shared by every entry script: schema + documented defaults, argv defaults, saving."""

from __future__ import annotations

import dataclasses
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Mapping

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from source.errors import ConfigError

HYDRA_DEFAULTS = (
    "hydra.run.dir=.",
    "hydra.output_subdir=null",
    "hydra/job_logging=none",
    "hydra/hydra_logging=none",
)
"""Overrides that keep Hydra from creating ``outputs/`` folders or touching logging: runs write to
``output_dir/<experiment_name>/<run_id>/`` themselves and configure their own logging."""


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


def group_choice(argv: list[str], group: str, config: Path) -> str:
    """The option of the Hydra group ``group`` a command line picks (``group=<option>``), else the one the defaults
    list of ``config`` names (itself or through the configs it composes from its own folder); "" if none does."""
    for arg in argv:
        if arg.startswith(f"{group}="):
            return arg.split("=", 1)[1]
    for entry in OmegaConf.load(config).get("defaults", []):
        if OmegaConf.is_dict(entry) and group in entry:
            return str(entry[group])
        sibling = config.with_name(f"{entry}.yaml") if isinstance(entry, str) else None
        if sibling is not None and sibling.is_file():
            return group_choice([], group, sibling)
    return ""


def config_name_of(argv: list[str], default: str) -> str:
    """The ``--config-name`` of a command line, else ``default``."""
    for index, arg in enumerate(argv):
        if arg in ("--config-name", "-cn") and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--config-name="):
            return arg.split("=", 1)[1]
    return default


def _leaf_keys(node: Any, prefix: str = "") -> list[str]:
    if not OmegaConf.is_dict(node):
        return [prefix.rstrip(".")]
    keys = [prefix.rstrip(".")] if prefix else []
    for key in node.keys():
        keys += _leaf_keys(node._get_node(key), f"{prefix}{key}.")
    return keys


def _is_known(key: str, baseline: DictConfig) -> bool:
    """A dotted key names a node of ``baseline``, or lies under a free-form mapping (e.g. ``label_mapping``)."""
    parts = key.split(".")
    for depth in range(1, len(parts) + 1):
        path = ".".join(parts[:depth])
        node = OmegaConf.select(baseline, path, default=None, throw_on_missing=False)
        if node is None and not _has_path(baseline, path):
            return False
        if depth < len(parts) and OmegaConf.is_dict(node) and OmegaConf.get_type(node) is dict:
            return True  # user-defined keys of a Dict field
    return True


def _has_path(cfg: DictConfig, path: str) -> bool:
    parent, _, leaf = path.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return OmegaConf.is_dict(node) and leaf in node.keys()  # keys(): ``in`` is False for a required (???) key


def _explain_override_error(error: Exception, known: list[str]) -> str:
    cause = error.__cause__ or error
    text = str(cause)
    full_key = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("full_key:")), None
    )
    first = text.splitlines()[0] if text else str(error)
    if full_key and ("not in" in first or "is not in struct" in first):
        return _unknown_key_message(full_key, known)
    return f"{full_key}: {first}" if full_key else str(error).splitlines()[0]


KEY_ALIASES = {"learning_rate": "lr", "weight_decay": "wd", "epochs": "nepochs", "num_epochs": "nepochs"}
"""Names other tools use for keys of ours, for the suggestion of an unknown key."""


def _unknown_key_message(key: str, known: list[str]) -> str:
    import difflib

    parent, _, leaf = key.rpartition(".")
    alias = f"{parent}.{KEY_ALIASES[leaf]}" if parent and leaf in KEY_ALIASES else KEY_ALIASES.get(leaf)
    close = [alias] if alias in known else difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else "; see the documented keys in the config file"
    return f"unknown config key '{key}'{hint}"


def check_overrides(config_path: Path, config_name: str, argv: list[str], groups: tuple[str, ...] = ()) -> None:
    """Compose the config with the command line's overrides; exit 2 with one line naming the key on any error.

    Unknown keys (with or without Hydra's ``+``/``++``) and values of the wrong type are refused before
    anything heavy is imported, with the closest valid key when there is one. The choices of the Hydra ``groups``
    (e.g. ``task=survival``) are part of the baseline the keys are looked up in.
    """
    from hydra import compose, initialize_config_dir

    name = config_name_of(argv, config_name)
    overrides = [arg for arg in argv if "=" in arg and not arg.startswith("-")]
    choices = [arg for arg in overrides if arg.split("=", 1)[0] in groups]
    known: list[str] = []
    try:
        with initialize_config_dir(config_dir=str(config_path), version_base=None):
            baseline = compose(name, overrides=choices)
            known = _leaf_keys(baseline)
            for override in overrides:
                key = override.split("=", 1)[0].lstrip("+~")
                if not key.startswith("hydra") and key not in groups and not _is_known(key, baseline):
                    raise ConfigError(_unknown_key_message(key, known))
            compose(name, overrides=overrides)
    except ConfigError as error:
        _exit_with_config_error(str(error))
    except Exception as error:  # Hydra's composition errors: a bad value, a missing config file
        message = _explain_override_error(error, known)
        unquoted = [arg for arg in overrides if not arg.isascii() and "'" not in arg and '"' not in arg]
        if unquoted:
            key, _, value = unquoted[0].partition("=")
            message += (
                f". A value with non-ASCII characters must be quoted for Hydra: \"{key}='{value}'\" (the single quotes "
                "inside the shell's double quotes)"
            )
        _exit_with_config_error(message)


def _exit_with_config_error(message: str) -> None:
    print(f"ERROR config: {message}", file=sys.stderr)
    sys.exit(2)


def hydra_entry(
    main: Callable[[DictConfig], Any], config_path: Path, config_name: str, groups: tuple[str, ...] = ()
) -> None:
    """Run ``main`` under ``hydra.main`` with :data:`HYDRA_DEFAULTS` (unless given on the command line).

    The overrides are checked first (:func:`check_overrides`): a bad key or value exits with code 2.
    """
    import hydra

    if not any(arg in sys.argv[1:] for arg in ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info")):
        check_overrides(config_path, config_name, sys.argv[1:], groups)
    given = {arg.split("=", 1)[0].lstrip("+~") for arg in sys.argv[1:] if "=" in arg}
    sys.argv.extend(item for item in HYDRA_DEFAULTS if item.split("=", 1)[0] not in given)
    hydra.main(config_path=str(config_path), config_name=config_name, version_base=None)(main)()


def plain_config(cfg: DictConfig) -> dict:
    """The resolved config as plain dicts and lists (choices as strings), for records that outlive it."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def read_saved_config(path: Path) -> dict:
    """A config a run saved (``config.yaml``), as plain dicts and lists."""
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def config_yaml(plain: Mapping[str, Any]) -> str:
    """A plain config (:func:`plain_config`) as the YAML a run saves (``config.yaml``)."""
    return OmegaConf.to_yaml(OmegaConf.create(dict(plain)))


def register_yaml(name: str, path: Path, group: str | None = None, package: str | None = None) -> None:
    """Register the YAML file ``path`` in Hydra's ConfigStore as ``name`` (in ``group``, merged at ``package``; e.g.
    ``_global_``: at the root), for a ``defaults:`` list outside its folder to compose."""
    ConfigStore.instance().store(name=name, node=OmegaConf.load(path), group=group, package=package)


def register_schema(name: str, schema: type) -> None:
    """Register a dataclass schema in Hydra's ConfigStore as ``name`` (YAMLs list it in ``defaults:``)."""
    ConfigStore.instance().store(name=name, node=schema)


CONFIG_KEY = "config_key"
"""Field metadata naming the dotted config key a settings field is read from (default: the field's name)."""


def settings_from_config(settings: type, cfg: DictConfig) -> Any:
    """An instance of the dataclass ``settings`` read from ``cfg``: each field from its dotted key (the field's
    ``metadata[CONFIG_KEY]``, else its name) as plain Python (containers as dicts / lists, choices as strings);
    a key the config lacks keeps the field's default."""
    values = {}
    for known in dataclasses.fields(settings):
        key = known.metadata.get(CONFIG_KEY, known.name)
        if not _has_path(cfg, key):
            continue
        value = OmegaConf.select(cfg, key)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        values[known.name] = value.value if isinstance(value, Enum) else value
    return settings(**values)
