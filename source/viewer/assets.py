"""The files every page of a viewer site loads, copied into the site so that it opens from disk and can be sent as one
folder: OpenSeadragon (``static/openseadragon/``, installed by ``make viewer-assets`` from the npm registry, with its
licence), the viewer's own script and style (``web/``) and the colour bars."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from source.errors import UserError
from source.io import atomic_path
from source.viewer.layers import ATTENTION_CMAP, CONTRIBUTION_CMAP, colorbar

PACKAGE = Path(__file__).resolve().parent
OPENSEADRAGON = PACKAGE / "static" / "openseadragon"
WEB = PACKAGE / "web"
REQUIRED = ("openseadragon.min.js", "LICENSE.txt", "images")
ASSETS = "assets"
"""The site's folder of shared files (``<run>/assets/``)."""


class MissingAssetsError(UserError):
    """OpenSeadragon was not installed into the package (exit code 2)."""


def check_assets() -> None:
    """Raise :class:`MissingAssetsError` unless OpenSeadragon and its licence are in the package."""
    missing = [name for name in REQUIRED if not (OPENSEADRAGON / name).exists()]
    if missing:
        raise MissingAssetsError(
            f"the viewer's OpenSeadragon files are missing ({', '.join(missing)} in {OPENSEADRAGON}): run `make "
            "viewer-assets` (needs npm) once"
        )


def copy_assets(run_dir: Path) -> Path:
    """Copy the shared files into ``run_dir/assets/`` (again each time: a resumed run gets the current ones); returns
    the folder. Each file is written to a temporary name and renamed, so jobs of a shared run may do this at once."""
    target = run_dir / ASSETS
    for source in sorted(OPENSEADRAGON.rglob("*")) + sorted(WEB.glob("*.js")) + sorted(WEB.glob("*.css")):
        if source.is_file():
            inside = OPENSEADRAGON in source.parents
            relative = Path("openseadragon") / source.relative_to(OPENSEADRAGON) if inside else Path(source.name)
            with atomic_path(target / relative) as temporary:
                shutil.copyfile(source, temporary)
    for cmap in (ATTENTION_CMAP, CONTRIBUTION_CMAP):
        with atomic_path(target / f"colorbar_{cmap}.png") as temporary:
            Image.fromarray(colorbar(cmap)).save(temporary, format="PNG")
    return target
