"""Attention heatmaps of HIPT: patch, region, factorized (region x patch) and slide level, stitched per slide.

    python3 attention_visualization.py --config-name default region_fp=region.jpg
    python3 attention_visualization.py --config-name default region_dir=/data/regions slide_id=TCGA-XX
    python3 -m torch.distributed.run --standalone --nproc_per_node=2 attention_visualization.py --config-name default \
        region_dir=/data/regions slide_csv=slides.csv

Config: config/heatmaps/default.yaml (every key documented there).
Exit code: 0 done, 1 some slide failed (see slides.csv), 2 bad config or checkpoint.
"""

from pathlib import Path

from omegaconf import DictConfig

from source.config.core import hydra_entry, register_schema
from source.config.heatmaps import HeatmapConfig
from source.entry import exit_with

CONFIG_DIR = Path(__file__).resolve().parent / "config"


def main(cfg: DictConfig) -> None:
    from source.engines.heatmap_job import run_heatmap_job

    exit_with(run_heatmap_job, cfg)


if __name__ == "__main__":
    register_schema("heatmap_schema", HeatmapConfig)
    hydra_entry(main, CONFIG_DIR / "heatmaps", "default")
