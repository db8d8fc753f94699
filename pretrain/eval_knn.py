"""kNN evaluation of a checkpoint on a labelled patch (or region) set: accuracy, balanced accuracy, AUC.

    python3 pretrain/eval_knn.py --config-name knn checkpoint=output/dino/<run_id>/best.pt \
        downstream.train_csv=train.csv downstream.test_csv=test.csv

Config: config/pretraining/knn.yaml (every key documented there).
"""

from pathlib import Path

from source.entry import knn_entry

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    knn_entry(ROOT / "config")
