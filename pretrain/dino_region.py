"""Hierarchical DINO pretraining, region stage: ViT_region on [n*n, 384] region tensors (features/region/ of level
local).

    python3 pretrain/dino_region.py --config-name region data_dir=... [key=value ...]
    python3 -m torch.distributed.run --nproc_per_node=N pretrain/dino_region.py --config-name region data_dir=...

Config: config/pretraining/region.yaml (every key documented there).
Exit code: 0 done, 1 the loss diverged, 2 bad config / data / checkpoint.
"""

from pathlib import Path

from source.entry import pretraining_entry

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    pretraining_entry(ROOT / "config", "region")
