"""Contribution maps: the exact effect of removing each region on a trained slide model's output
(the probability of a class, the survival risk, the regression prediction), per slide.

    python3 contribution_maps.py --config-name default run_dir=output/classification/<run_id> slide_id=TCGA-XX
    python3 contribution_maps.py --config-name default checkpoint=best.pt slide_csv=slides.csv \
        extraction_run=output/feature_extraction/<run_id>

Config: config/contribution/default.yaml (every key documented there).
Exit code: 0 done, 1 some slide failed (see slides.csv), 2 bad config or checkpoint.
"""

from pathlib import Path

from source.config.contribution import ContributionConfig
from source.entry import job_entry

CONFIG_DIR = Path(__file__).resolve().parent / "config"

if __name__ == "__main__":
    job_entry(
        CONFIG_DIR / "contribution",
        "default",
        "contribution_schema",
        ContributionConfig,
        "source.engines.contribution_job:run_contribution_job",
    )
