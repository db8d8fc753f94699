"""Predict with trained regression checkpoints on named csvs (several checkpoints: predictions averaged).

    python3 inference/regression.py --config-name regression run_dir=output/<experiment>/<run_id> \\
        test_csvs.cohort=cohort.csv

Config: config/inference/regression.yaml (every key documented there).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from source.entry import inference_entry  # noqa: E402

if __name__ == "__main__":
    inference_entry(ROOT / "config", "regression")
