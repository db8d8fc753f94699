"""Predict with trained checkpoints of any task on named csvs (several checkpoints: averaged ensemble).

    python3 inference/predict.py run_dir=output/<experiment>/<run_id> test_csvs.cohort=cohort.csv

The task is the checkpoints' own (all of one task). Config: config/inference/default.yaml (every key documented there).
"""

from pathlib import Path

from source.entry import inference_entry

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    inference_entry(ROOT / "config", None)
