"""kNN evaluation of a checkpoint on a labelled patch (or region) set: accuracy, balanced accuracy, AUC.

    python3 pretrain/eval_knn.py --config-name knn checkpoint=output/dino/<run_id>/best.pt \
        downstream.train_csv=train.csv downstream.test_csv=test.csv

Config: config/pretraining/knn.yaml (every key documented there).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from source.entry import knn_entry  # noqa: E402

if __name__ == "__main__":
    knn_entry(ROOT / "config")
