"""Extract HIPT features from square regions cut from whole-slide images.

    python3 extract_features.py --config-name default region_dir=/data/regions
    python3 -m torch.distributed.run --standalone --nproc_per_node=4 extract_features.py --config-name default ...

Configs: config/feature_extraction/ (every key documented in config/default.yaml).
Exit code: 0 when every slide succeeded, 1 when some failed (see slides.csv), 2 for a bad config or checkpoint.
"""

from pathlib import Path

from omegaconf import DictConfig

from source.config.core import hydra_entry, register_base
from source.config.extraction import ExtractionConfig
from source.entry import exit_with

CONFIG_DIR = Path(__file__).resolve().parent / "config"


def main(cfg: DictConfig) -> None:
    from source.engines.extraction_job import run_extraction_job

    exit_with(run_extraction_job, cfg)


if __name__ == "__main__":
    register_base("extraction_base", ExtractionConfig, CONFIG_DIR / "default.yaml")
    hydra_entry(main, CONFIG_DIR / "feature_extraction", "default")
