"""Hierarchical DINO pretraining, patch stage: ViT_patch on 256-px patch images (data_dir).

    python3 pretrain/dino_patch.py --config-name patch data_dir=... [key=value ...]
    python3 -m torch.distributed.run --nproc_per_node=N pretrain/dino_patch.py --config-name patch data_dir=...

Config: config/pretraining/patch.yaml (every key documented there).
Exit code: 0 done, 1 the loss diverged, 2 bad config / data / checkpoint.
"""

from pathlib import Path

from source.entry import pretraining_entry

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    pretraining_entry(ROOT / "config", "patch")
