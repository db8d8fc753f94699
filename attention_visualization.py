"""Attention heatmaps of HIPT: patch, region, factorized (region x patch) and slide level, stitched per slide.

    python3 attention_visualization.py --config-name default region_fp=region.jpg
    python3 attention_visualization.py --config-name default region_dir=/data/regions slide_id=TCGA-XX
    python3 -m torch.distributed.run --standalone --nproc_per_node=2 attention_visualization.py --config-name default \
        region_dir=/data/regions slide_csv=slides.csv

Config: config/heatmaps/default.yaml (every key documented there).
Exit code: 0 done, 1 some slide failed (see slides.csv), 2 bad config or checkpoint.
"""

from pathlib import Path

from source.config.heatmaps import HeatmapConfig
from source.entry import job_entry

CONFIG_DIR = Path(__file__).resolve().parent / "config"

if __name__ == "__main__":
    job_entry(
        CONFIG_DIR / "heatmaps",
        "default",
        "heatmap_schema",
        HeatmapConfig,
        "source.engines.heatmap_job:run_heatmap_job",
    )
