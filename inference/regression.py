"""Predict with trained regression checkpoints on named csvs (several checkpoints: predictions averaged).

    python3 inference/regression.py --config-name regression run_dir=output/<experiment>/<run_id> \\
        test_csvs.cohort=cohort.csv

Config: config/inference/regression.yaml (every key documented there).
"""

from pathlib import Path

from source.entry import inference_entry

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    inference_entry(ROOT / "config", "regression")
