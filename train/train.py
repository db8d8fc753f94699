"""Slide-level training of any registered task (``task=<kind>``), on one split or on every fold.

    python3 train/train.py --config-name single task=survival features_dir=... data.train_csv=... [key=value ...]
    python3 train/train.py --config-name multi task=regression features_dir=... data.fold_dir=... [key=value ...]

Config: config/training/any_task/{single,multi}.yaml, composing config/training/base.yaml and
config/training/task/<task>.yaml (every key documented there). train/<task>[_multi].py are this job with the task
fixed.
Exit code: 0 done, 2 bad config / csv / features / checkpoint.
"""

from pathlib import Path

from source.entry import any_task_training_entry

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    any_task_training_entry(ROOT / "config")
