"""File helpers: atomic writes (temporary name + rename) and path joining that cannot escape a folder."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from source.errors import RunFailedError, UserError

if TYPE_CHECKING:  # torch and pandas load on first use: config errors are reported before they are imported
    import pandas as pd

_LFS_MAGIC = b"version https://git-lfs"
_HTML_STARTS = (b"<!doctype html", b"<html", b"<?xml", b"<head")


def placeholder_kind(head: bytes) -> str | None:
    """What a downloaded file really is when it is a stand-in for the data, from its first bytes.

    Returns:
        ``"a git-LFS pointer file"``, ``"an HTML page"`` (a failed download's error or quota page), or
        ``None`` when the bytes look like neither.
    """
    if head.startswith(_LFS_MAGIC):
        return "a git-LFS pointer file"
    if head.lstrip().lower().startswith(_HTML_STARTS):
        return "an HTML page"
    return None


class UnsafePathError(UserError, ValueError):
    """A name taken from user data would lead outside its folder."""


def safe_join(base: str | Path, name: str, suffix: str = "") -> Path:
    """``base / (name + suffix)``, refusing names that leave ``base``.

    Args:
        base: the folder the result must stay in.
        name: one path component from user data (a slide id, a csv value).
        suffix: appended to ``name`` (e.g. ``.pt``).

    Raises:
        UnsafePathError: ``name`` is empty, ``.`` or ``..``, or holds a path separator or a NUL.
            (The check is on the name: symlinks inside ``base`` are followed on purpose.)
    """
    text = str(name)
    if text in {"", ".", ".."} or any(char in text for char in ("/", "\\", "\x00")):
        raise UnsafePathError(f"'{name}' is not a plain file or folder name: it would escape '{base}'")
    return Path(base) / f"{text}{suffix}"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    A run killed at any moment leaves either the old file or the complete new one, never a truncated
    file under the final name. Leftover temporaries start with ``.`` and end with ``.tmp``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise OutputWriteError(write_failure(path, error)) from error
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:
        if isinstance(error, OutputWriteError) or not _is_write_failure(error):
            raise
        raise OutputWriteError(write_failure(path, error)) from error
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


WRITE_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EROFS, errno.EDQUOT, errno.EIO}
"""The errors of a write that the user must fix (space, permissions, size limits, a read-only or failing disk)."""
TORCH_WRITE_MESSAGES = ("iostream error", "unexpected pos", "PytorchStreamWriter failed", "file write failed")
"""How torch.save reports a failed write of its zip writer, which hides the OS error."""


class OutputWriteError(RunFailedError):
    """A file could not be written (no space, no permission, a size limit); nothing partial is left under its name."""


def _is_write_failure(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno in WRITE_ERRNOS
    return isinstance(error, RuntimeError) and any(text in str(error) for text in TORCH_WRITE_MESSAGES)


def write_failure(path: Path, error: BaseException) -> str:
    """One line naming the file and the reason, e.g. ``cannot write out/x.pt: no space left on device (ENOSPC)``."""
    if isinstance(error, OSError) and error.errno is not None:
        reason = f"{os.strerror(error.errno).lower()} ({errno.errorcode.get(error.errno, error.errno)})"
    else:
        free = _free_bytes(path.parent)
        space = f"; {free / 1e9:.2f} GB free there" if free is not None else ""
        reason = f"the write failed: disk full, a file-size limit or an I/O error ({str(error).splitlines()[0]}){space}"
    return f"cannot write {path}: {reason}. Free space, fix the permissions or choose another output_dir"


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


ORPHAN_TEMPORARY = re.compile(r"^\..+\.tmp$")
"""The name of a temporary of :func:`atomic_path` (``.<name>.<random>.tmp``)."""


def remove_orphan_temporaries(folder: str | Path, older_than: float) -> int:
    """Delete the temporaries under ``folder`` that a killed run left (modified before ``older_than``, a time stamp:
    a write still in progress is never touched); returns how many."""
    removed = 0
    for path in Path(folder).rglob(".*.tmp"):
        try:
            if ORPHAN_TEMPORARY.match(path.name) and path.is_file() and path.stat().st_mtime < older_than:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    import torch

    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


def json_safe(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """``value`` with every NaN / infinite float replaced by ``None`` (strict JSON), and the dotted paths replaced."""
    if isinstance(value, dict):
        pairs = [(key, json_safe(item, f"{path}.{key}" if path else str(key))) for key, item in value.items()]
        return {key: clean for key, (clean, _) in pairs}, [p for _, (_, paths) in pairs for p in paths]
    if isinstance(value, (list, tuple)):
        pairs = [json_safe(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return [clean for clean, _ in pairs], [p for _, paths in pairs for p in paths]
    if isinstance(value, float) and not math.isfinite(value):
        return None, [path]
    return value, []


def json_record(value: Any) -> Any:
    """``value`` with numpy scalars made plain Python numbers (JSON-able); raises TypeError for other objects."""
    import numpy as np

    def plain(item: Any) -> Any:
        if isinstance(item, np.generic):
            return item.item()
        raise TypeError(f"{type(item).__name__} is not JSON serialisable")

    return json.loads(json.dumps(value, default=plain))


def atomic_write_json(path: str | Path, value: Any) -> list[str]:
    """Write ``value`` as strict JSON (non-finite floats become ``null``) atomically; returns the keys made null."""
    clean, replaced = json_safe(value)
    atomic_write_text(path, json.dumps(clean, indent=2))
    return replaced


def atomic_write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a DataFrame as csv (no index) atomically."""
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False)
