"""Slide-level classification training on every fold of data.fold_dir (fold_<i>/{train,tune,test}.csv), then
summary.csv.

    python3 train/classification_multi.py --config-name multi features_dir=... [key=value ...]

Config: config/training/classification/multi.yaml: single.yaml with the fold input (keys documented in
config/training/base.yaml and config/training/task/classification.yaml).
Exit code: 0 done, 2 bad config / csv / features / checkpoint.
"""

from pathlib import Path

from source.entry import training_entry

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    training_entry(ROOT / "config", "classification", multi=True)
