"""Load encoder weights by parameter name from HIPT / DINO checkpoints, bare state dicts or safetensors.

Accepted files:
    * HIPT's released DINO training dicts (``vit256_small_dino.pth``, ``vit4k_xs_dino.pth``):
      ``{'student', 'teacher', 'optimizer', 'epoch', 'args', 'dino_loss', ...}`` with keys prefixed
      ``backbone.`` (and ``module.`` under DDP) and DINO-head keys ``head.*``;
    * this project's DINO snapshots (same layout);
    * a bare backbone state dict, in a ``.pth`` or a ``.safetensors`` file (see ``source.models.convert``).

Pickled files are read with ``torch.load(weights_only=True)``: no code in them is executed; the only
non-tensor type allowed beyond PyTorch's defaults is ``argparse.Namespace`` (the ``args`` entry).
"""

from __future__ import annotations

import argparse
import logging
import math
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from source.errors import UserError
from source.io import placeholder_kind
from source.models.vit import resize_pos_embed

logger = logging.getLogger(__name__)

KEY_PREFIXES = ("module.", "_orig_mod.", "backbone.")
"""Wrapper prefixes stripped from checkpoint keys (DDP, torch.compile, DINO's MultiCropWrapper)."""
HEAD_PREFIXES = ("head.",)
"""Keys of the DINO projection head, which no encoder uses."""
SAFE_GLOBALS = [argparse.Namespace]
_ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(UserError):
    """A checkpoint file cannot be used; the message names the file and what to do."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did."""

    path: Path
    entry: Optional[str]
    loaded: int
    ignored_head: int
    ignored_entries: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resized_pos_embed: Optional[tuple[int, int]] = None
    adopted_pos_grid: Optional[int] = None
    normalisation: Optional[tuple[list[float], list[float]]] = None


def _sniff(path: Path, key: Optional[str] = None) -> str:
    """Return the file kind: ``safetensors``, ``torch`` (zip or legacy pickle); raise for anything else.

    ``key``: the config key that gave ``path``, named in the message of a missing file.
    """
    if not path.exists():
        raise CheckpointError(
            f"checkpoint '{path}' does not exist. Download it (see the README, 'Pretrained weights') or set "
            f"{key or 'the config key'}=null to start from random weights on purpose."
        )
    if path.is_dir():
        raise CheckpointError(f"checkpoint '{path}' is a directory; give the path of the .pth/.safetensors file")
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(512)
    if not head:
        raise CheckpointError(f"checkpoint '{path}' is empty (0 bytes); download it again")
    kind = placeholder_kind(head)
    if kind == "a git-LFS pointer file":
        raise CheckpointError(
            f"checkpoint '{path}' is a git-LFS pointer file ({size} bytes), not the weights. Run 'git lfs pull' in its "
            "repository or download the real file."
        )
    if kind == "an HTML page":
        raise CheckpointError(
            f"checkpoint '{path}' is an HTML page ({size} bytes), saved by a failed download (for instance a Google "
            "Drive quota or virus-scan page). Download the file again."
        )
    if head.startswith(_ZIP_MAGIC) or head[:1] == b"\x80":
        return "torch"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 8 + header_len <= size:
            return "safetensors"
        if head[8:9] == b"{":
            raise CheckpointError(f"checkpoint '{path}' is a truncated safetensors file; download or convert it again")
    raise CheckpointError(
        f"checkpoint '{path}' is neither a PyTorch checkpoint nor a safetensors file (starts with {head[:16]!r}); "
        "check that the download finished"
    )


def read_checkpoint(path: str | Path, key: Optional[str] = None) -> Mapping[str, Any]:
    """Read a checkpoint safely.

    Args:
        path: ``.pth`` / ``.pt`` (zip or legacy format) or ``.safetensors`` file.
        key: the config key that gave ``path`` (named in the message of a missing file).

    Returns:
        The loaded mapping (a state dict, or a training dict holding state dicts).

    Raises:
        CheckpointError: the file is missing, an LFS pointer, an HTML page, truncated, corrupt, or
            holds objects that cannot be unpickled safely.
    """
    path = Path(path)
    kind = _sniff(path, key)
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(
                f"checkpoint '{path}' is a corrupt safetensors file ({error}); convert it again"
            ) from error
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        if "Unsupported global" in message or "weights_only" in message.lower():
            raise CheckpointError(
                f"checkpoint '{path}' holds Python objects that are not allowed for safe loading, so it was not loaded "
                f"(no code from it was run). Details: {message.splitlines()[0]}. Save a plain state dict of the "
                "backbone instead."
            ) from error
        raise CheckpointError(f"checkpoint '{path}' is corrupt ({message}); download it again") from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint '{path}' could not be read: it is truncated or corrupt ({str(error).splitlines()[0]}). "
            "Download it again."
        ) from error
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(loaded).__name__}, not a state dict")
    return loaded


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def select_state_dict(
    checkpoint: Mapping[str, Any], entry: str = "teacher", path: str | Path = "<checkpoint>"
) -> tuple[Mapping[str, torch.Tensor], Optional[str], list[str]]:
    """Pick the state dict to load from a checkpoint.

    Args:
        checkpoint: what :func:`read_checkpoint` returned.
        entry: the entry of a training dict to use (``teacher`` or ``student``).
        path: the file, for error messages.

    Returns:
        the state dict, the entry used (None for a bare state dict), and the other entries ignored.
    """
    if entry in checkpoint and _is_state_dict(checkpoint[entry]):
        return checkpoint[entry], entry, sorted(k for k in checkpoint if k != entry)
    if _is_state_dict(checkpoint):
        return checkpoint, None, []
    for fallback in ("state_dict", "model"):
        if fallback in checkpoint and _is_state_dict(checkpoint[fallback]):
            return checkpoint[fallback], fallback, sorted(k for k in checkpoint if k != fallback)
    raise CheckpointError(
        f"checkpoint '{path}' has no '{entry}' state dict; its entries are {sorted(checkpoint)}. Set the checkpoint "
        "key (for instance 'student') to one of them."
    )


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DDP / compile / DINO-wrapper prefixes from every key (repeatedly, in any order)."""
    cleaned = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in KEY_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        cleaned[key] = value
    return cleaned


def backbone_state_dict(
    checkpoint: Mapping[str, Any], entry: str = "teacher", path: str | Path = "<checkpoint>"
) -> tuple[dict[str, torch.Tensor], int, Optional[str], list[str]]:
    """The backbone tensors of a checkpoint, keys cleaned, DINO-head keys removed.

    Returns:
        backbone state dict, number of head tensors dropped, entry used, other entries ignored.
    """
    state, used, ignored_entries = select_state_dict(checkpoint, entry, path)
    cleaned = strip_prefixes(state)
    backbone = {k: v for k, v in cleaned.items() if not k.startswith(HEAD_PREFIXES)}
    return backbone, len(cleaned) - len(backbone), used, ignored_entries


@dataclass
class FittedState:
    """A checkpoint's backbone mapped onto a model's tensors (:func:`filter_checkpoint`).

    Attributes:
        state: exactly the model's keys that the checkpoint has with the right shape (pos-embed resized).
        missing: model keys the checkpoint lacks.
        misshaped: ``"key (checkpoint shape, model shape)"`` of tensors that do not fit.
        unexpected: checkpoint keys the model does not have (sorted).
        resized: ``(old, new)`` pos-embed patch-token counts when it was interpolated, else None.
    """

    state: dict[str, torch.Tensor]
    missing: list[str]
    misshaped: list[str]
    unexpected: list[str]
    resized: Optional[tuple[int, int]] = None


def filter_checkpoint(backbone: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size]) -> FittedState:
    """Map a checkpoint's backbone tensors onto a model's ``{key: shape}``, without touching any model.

    A pos-embed of another square grid (same width) is interpolated to the model's; everything else is
    taken as it is, by name. Pure: the caller decides what a missing or mis-shaped tensor means.
    """
    backbone = dict(backbone)
    resized = None
    if "pos_embed" in backbone and "pos_embed" in expected and backbone["pos_embed"].shape != expected["pos_embed"]:
        old, new = backbone["pos_embed"], expected["pos_embed"]
        if old.shape[-1] == new[-1]:
            backbone["pos_embed"] = resize_pos_embed(old, int(round((new[1] - 1) ** 0.5)))
            resized = (old.shape[1] - 1, new[1] - 1)
    missing = [k for k in expected if k not in backbone]
    misshaped = [
        f"{k} (checkpoint {tuple(backbone[k].shape)}, model {tuple(shape)})"
        for k, shape in expected.items()
        if k in backbone and backbone[k].shape != shape
    ]
    state = {k: backbone[k] for k in expected if k in backbone and backbone[k].shape == expected[k]}
    return FittedState(state, missing, misshaped, sorted(k for k in backbone if k not in expected), resized)


def load_pretrained(
    model: nn.Module,
    path: str | Path,
    entry: str = "teacher",
    name: str = "encoder",
    adopt_pos_grid: bool = False,
    key: Optional[str] = None,
) -> LoadReport:
    """Load a checkpoint into ``model`` by parameter name.

    A pos-embed of another grid size is either adopted as it is (``adopt_pos_grid``: the model takes the
    checkpoint's grid and interpolates it to each input the DINO way) or resized once to the model's grid.
    Every model tensor must be present with the right shape; DINO-head tensors and other entries of a
    training dict are ignored and counted in one log line. The report carries the pixel normalisation
    a DINO snapshot of this project was trained with.

    Args:
        model: the encoder to fill (a :class:`~source.models.vit.VisionTransformer`).
        path: checkpoint file.
        entry: entry of a training dict to take (``teacher`` by default).
        name: the model's role, for messages (``vit_patch``, ``vit_region``).
        adopt_pos_grid: give the model the checkpoint's pos-embed grid instead of resizing it.
        key: the config key that gave ``path``, named in errors (e.g. ``patch_weights``).

    Raises:
        CheckpointError: unreadable file, missing or mis-shaped tensors.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, key)
    backbone, ignored_head, used, ignored_entries = backbone_state_dict(checkpoint, entry, path)
    adopted = _adopt_pos_grid(model, backbone, name) if adopt_pos_grid else None
    fitted = filter_checkpoint(backbone, {k: v.shape for k, v in model.state_dict().items()})
    if fitted.resized:
        logger.info("%s: interpolated pos_embed of %s from %d to %d patch tokens", name, path, *fitted.resized)
    if fitted.missing or fitted.misshaped:
        problems = []
        if fitted.missing:
            problems.append(
                f"missing tensors: {', '.join(fitted.missing[:8])}{' ...' if len(fitted.missing) > 8 else ''}"
            )
        if fitted.misshaped:
            shown = ", ".join(fitted.misshaped[:8])
            problems.append(f"wrong shapes: {shown}{' ...' if len(fitted.misshaped) > 8 else ''}")
        raise CheckpointError(
            f"checkpoint '{path}' does not fit {name} ({'; '.join(problems)}). Is it the checkpoint of this encoder "
            "and architecture?"
        )
    expected, unexpected, resized = fitted.state, fitted.unexpected, fitted.resized
    model.load_state_dict(fitted.state, strict=True)
    logger.info(
        "%s: loaded %d tensors from %s%s; ignored %d DINO-head tensors%s%s",
        name,
        len(expected),
        path,
        f" ['{used}']" if used else "",
        ignored_head,
        f" and entries {ignored_entries}" if ignored_entries else "",
        f"; {len(unexpected)} unused backbone tensors ({', '.join(unexpected[:4])})" if unexpected else "",
    )
    if unexpected:
        logger.warning(
            "%s: checkpoint '%s' has %d tensors the model does not use: %s", name, path, len(unexpected), unexpected[:8]
        )
    return LoadReport(
        path,
        used,
        len(expected),
        ignored_head,
        ignored_entries,
        unexpected,
        resized,
        adopted,
        _normalisation(checkpoint),
    )


def _adopt_pos_grid(model: nn.Module, backbone: Mapping[str, torch.Tensor], name: str) -> Optional[int]:
    """Give ``model`` a pos-embed of the checkpoint's square grid; returns that grid side (None if unchanged)."""
    if "pos_embed" not in backbone or not isinstance(getattr(model, "pos_embed", None), nn.Parameter):
        return None
    stored, current = backbone["pos_embed"], model.pos_embed
    tokens = stored.shape[1] - 1
    side = math.isqrt(tokens)
    if stored.shape == current.shape or stored.shape[-1] != current.shape[-1] or side * side != tokens:
        return None
    model.pos_embed = nn.Parameter(
        torch.zeros_like(stored, device=current.device, dtype=current.dtype), requires_grad=current.requires_grad
    )
    model.pos_grid = side
    logger.info("%s: using the checkpoint's %dx%d pos-embed grid", name, side, side)
    return side


def _normalisation(checkpoint: Mapping[str, Any]) -> Optional[tuple[list[float], list[float]]]:
    """``(mean, std)`` recorded in a DINO snapshot of this project (its ``config.aug``), else None."""
    aug = checkpoint.get("config", {}).get("aug") if isinstance(checkpoint.get("config"), Mapping) else None
    if isinstance(aug, Mapping) and "mean" in aug and "std" in aug:
        return list(aug["mean"]), list(aug["std"])
    return None
