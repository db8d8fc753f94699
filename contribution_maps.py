"""Contribution maps: the exact effect of removing each region on a trained slide model's output
(the probability of a class, the survival risk, the regression prediction), per slide.

    python3 contribution_maps.py --config-name default run_dir=output/classification/<run_id> slide_id=TCGA-XX
    python3 contribution_maps.py --config-name default checkpoint=best.pt slide_csv=slides.csv \
        extraction_run=output/feature_extraction/<run_id>

Config: config/contribution/default.yaml (every key documented there).
Exit code: 0 done, 1 some slide failed (see slides.csv), 2 bad config or checkpoint.
"""

from pathlib import Path

from omegaconf import DictConfig

from source.config.contribution import ContributionConfig
from source.config.core import hydra_entry, register_schema
from source.entry import exit_with

CONFIG_DIR = Path(__file__).resolve().parent / "config"


def main(cfg: DictConfig) -> None:
    from source.engines.contribution_job import run_contribution_job

    exit_with(run_contribution_job, cfg)


if __name__ == "__main__":
    register_schema("contribution_schema", ContributionConfig)
    hydra_entry(main, CONFIG_DIR / "contribution", "default")
