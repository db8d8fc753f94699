"""Slide-level classification training on one train/tune(/test) split (data.train_csv, data.tune_csv, data.test_csv).

    python3 train/classification.py --config-name single features_dir=... [key=value ...]

Config: config/training/classification/single.yaml, composing config/training/base.yaml and
config/training/task/classification.yaml (every key documented there).
Exit code: 0 done, 2 bad config / csv / features / checkpoint.
"""

from pathlib import Path

from source.entry import training_entry

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    training_entry(ROOT / "config", "classification", multi=False)
