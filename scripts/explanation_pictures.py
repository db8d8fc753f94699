"""The two pictures of docs/heatmaps.md: slide-level attention and exact contributions of the same slide model on
the demo slide (OpenSlide's CC0 CMU-1-Small-Region.svs), written to docs/images/.

    python3 scripts/explanation_pictures.py

Without HIPT's weights in checkpoints/ (and without a model trained on a cohort) the encoders and the ABMIL slide
model have random weights: the pictures show what each map looks like and how to read it, not biology.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from source.config.contribution import ContributionConfig  # noqa: E402
from source.config.core import compose_base  # noqa: E402
from source.config.extraction import ExtractionConfig  # noqa: E402
from source.config.heatmaps import HeatmapConfig  # noqa: E402
from source.config.slide_model import slide_model_settings  # noqa: E402
from source.data.demo_slide import SLIDE_ID, fetch_demo_slide  # noqa: E402
from source.engines.contribution_job import run_contribution_job  # noqa: E402
from source.engines.extraction_job import run_extraction_job  # noqa: E402
from source.engines.heatmap_job import run_heatmap_job  # noqa: E402
from source.models.factory import build_slide_model  # noqa: E402
from source.tasks.registry import TRAINING_SCHEMAS  # noqa: E402

WIDTH = 900


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="hipt_pictures_"))
    slide = fetch_demo_slide(ROOT / ".cache")
    (out / "slides.csv").write_text(f"slide_id,image_path\n{SLIDE_ID},{slide}\n")
    extraction = compose_base(ExtractionConfig, ROOT / "config" / "default.yaml")
    values = {"wsi_csv": str(out / "slides.csv"), "output_dir": str(out), "run_id": "ex", "region_size": 1024}
    values |= {"pretrain_vit_patch": None, "pretrain_vit_region": None, "num_workers": 0, "device": "cpu"}
    extraction = OmegaConf.merge(extraction, values)
    assert run_extraction_job(extraction) == 0
    run = out / "feature_extraction" / "ex"
    training = OmegaConf.merge(
        OmegaConf.structured(TRAINING_SCHEMAS["classification"]),
        {
            "features_dir": str(run / "features" / "slide"),
            "model": {"aggregator": "abmil", "pretrain_vit_region": None},
        },
    )
    torch.manual_seed(7)
    model = build_slide_model(slide_model_settings(training), 2)
    config = OmegaConf.to_container(training, resolve=True, enum_to_str=True)
    checkpoint = out / "abmil.pt"
    torch.save(
        {"model": model.state_dict(), "config": config, "task": {"kind": "classification"}, "epoch": 0}, checkpoint
    )
    heatmaps = OmegaConf.merge(
        OmegaConf.structured(HeatmapConfig),
        {
            "extraction_run": str(run),
            "slide_weights": str(checkpoint),
            "patch_weights": None,
            "region_weights": None,
            "output_dir": str(out),
            "run_id": "h",
            "device": "cpu",
            "save_region_maps": False,
        },
    )
    assert run_heatmap_job(heatmaps) == 0
    contributions = OmegaConf.merge(
        OmegaConf.structured(ContributionConfig),
        {"checkpoint": str(checkpoint), "slide_id": SLIDE_ID, "extraction_run": str(run), "output_dir": str(out)},
        {"run_id": "c", "device": "cpu", "canvas_width": 1200},
    )
    assert run_contribution_job(contributions) == 0
    images = ROOT / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    for source, name in (
        (out / "heatmaps" / "h" / SLIDE_ID / "slide" / "slide.png", "attention_demo.png"),
        (out / "contributions" / "c" / SLIDE_ID / "canvas.png", "contribution_demo.png"),
    ):
        picture = Image.open(source).convert("RGB")
        picture.thumbnail((WIDTH, WIDTH))
        picture.save(images / name, optimize=True)
        print(images / name)
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
