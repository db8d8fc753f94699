"""Predict with trained classification checkpoints on named csvs (several checkpoints: averaged ensemble).

    python3 inference/classification.py --config-name classification run_dir=output/<experiment>/<run_id> \\
        test_csvs.cohort=cohort.csv

Config: config/inference/classification.yaml (every key documented there).
"""

from pathlib import Path

from source.entry import inference_entry

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    inference_entry(ROOT / "config", "classification")
