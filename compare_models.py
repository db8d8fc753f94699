"""Compare trained slide models on their own predictions: metrics with bootstrap and fold intervals, paired tests
(DeLong, paired bootstrap, corrected t over folds, Holm-adjusted), calibration, plots and one self-contained report.

    python3 compare_models.py --config-name default \
        "runs={hipt: output/classification/brca_hipt, abmil: output/classification/brca_abmil}"
    python3 compare_models.py --config-name default "runs=[output/survival/hipt, output/survival/mean]" split=tune

Config: config/compare/default.yaml (every key documented there).
Exit code: 0 done, 2 bad config or runs that cannot be compared (another task, other slides, a missing file).
"""

from pathlib import Path

from source.config.compare import CompareConfig
from source.entry import job_entry

CONFIG_DIR = Path(__file__).resolve().parent / "config"

if __name__ == "__main__":
    job_entry(
        CONFIG_DIR / "compare",
        "default",
        "compare_schema",
        CompareConfig,
        "source.engines.compare_job:run_compare_job",
    )
