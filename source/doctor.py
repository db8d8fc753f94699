"""Pre-flight check of a cohort before a long extraction: every slide opened, its spacing read, its tissue found,
the output's size estimated against the free disk, and the device and precision ``auto`` would pick.

    python3 -m source.doctor wsi_csv=slides.csv [region_size=4096] [level=global] [tiling.spacing=0.5] ...

Takes the keys of ``config/default.yaml`` (the extraction's); prints one table, one row per slide, and a summary.
Exit code: 0 every slide would be extracted, 1 some would fail (their reason in the table), 2 a bad command line.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from source.config.cohort_check import CohortCheckSettings, cohort_check_settings
from source.errors import UserError

REPO = Path(__file__).resolve().parents[1]
FLOAT_BYTES = 4


def bytes_per_region(cfg: CohortCheckSettings, patch_width: Optional[int]) -> int:
    """The bytes of one region's features: ``192`` floats (global) or ``n*n * width`` (local)."""
    if cfg.level == "global":
        return 192 * FLOAT_BYTES
    grid = cfg.region_size // cfg.patch_size
    return grid * grid * (patch_width or 384) * FLOAT_BYTES


def check_slide(slide, cfg: CohortCheckSettings) -> dict:
    """One row: the slide's spacing, the regions hs2p finds, the read level, or why the slide would fail."""
    from source.wsi.tiling import pyramid_read_of, tile_whole_slide

    row = {"slide_id": slide.slide_id, "status": "ok", "regions": 0, "spacing_um": slide.spacing_at_level_0}
    row |= {"read_level": None, "features_mb": 0.0, "problem": ""}
    try:
        result = tile_whole_slide(slide, cfg.tiling, cfg.region_size, cfg.patch_size)
        read = pyramid_read_of(result, slide, cfg.tiling, cfg.region_size)
        row |= {"regions": int(result.num_tiles), "spacing_um": read.spacing_at_level_0, "read_level": read.read_level}
        if result.num_tiles == 0:
            row |= {"status": "fail", "problem": "no tissue region found (lower tiling.min_tissue_fraction?)"}
    except UserError as error:
        row |= {"status": "fail", "problem": str(error)}
    return row


def free_bytes(folder: Path) -> Optional[int]:
    """Free space where ``folder`` is (its nearest existing parent)."""
    for candidate in (folder, *folder.absolute().parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return None


def run_doctor(argv: Sequence[str]) -> int:
    """Check the cohort; print the table and the summary; return the exit code."""
    import torch

    from source.devices import resolve_device
    from source.models.registry import encoder_spec
    from source.precision import resolve_precision
    from source.wsi.slide_table import read_wsi_csv

    cfg = cohort_check_settings(argv, REPO / "config" / "default.yaml")
    slides = read_wsi_csv(cfg.wsi_csv)
    width = encoder_spec(cfg.vit_patch_arch).embed_dim
    per_region = bytes_per_region(cfg, width)
    rows = []
    for slide in slides:
        row = check_slide(slide, cfg)
        row["features_mb"] = round(row["regions"] * per_region / 1e6, 3)
        rows.append(row)
    table = pd.DataFrame(rows)
    device = resolve_device(cfg.device)
    precision = resolve_precision("auto", device)
    total = float(table.features_mb.sum())
    free = free_bytes(Path(cfg.output_dir))
    failing = int((table.status != "ok").sum())
    print(table.to_string(index=False))
    space = f", where {free / 1e9:.1f} GB are free" if free is not None else ""
    print(
        f"\n{len(table) - failing}/{len(table)} slide(s) ready, {failing} would fail; {int(table.regions.sum())} "
        f"regions, about {total:.1f} MB of {cfg.level} features ({per_region} bytes per region) in "
        f"{cfg.output_dir}{space}"
    )
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"device {device}{gpu}; precision auto -> {precision}")
    if free is not None and total * 1e6 > free:
        print(f"NOT ENOUGH SPACE: the features need about {total:.1f} MB, {free / 1e6:.1f} MB are free")
        return 1
    return 1 if failing else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return run_doctor(sys.argv[1:] if argv is None else argv)
    except UserError as error:
        print(f"ERROR {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
