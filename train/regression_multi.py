"""Slide-level regression training on every fold of data.fold_dir (fold_<i>/{train,tune,test}.csv), then
summary.csv.

    python3 train/regression_multi.py --config-name multi features_dir=... [key=value ...]

Config: config/training/regression/multi.yaml: single.yaml with the fold input (keys documented in
config/training/base.yaml and config/training/task/regression.yaml).
Exit code: 0 done, 2 bad config / csv / features / checkpoint.
"""

from pathlib import Path

from source.entry import training_entry

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    training_entry(ROOT / "config", "regression", multi=True)
