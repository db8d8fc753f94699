"""Write the teacher backbone of a HIPT / DINO checkpoint alone, as safetensors.

Usage::

    python3 -m source.models.convert vit256_small_dino.pth vit256_small_dino.safetensors [--entry teacher]

The released training dicts (704 MB and 396 MB) hold student, teacher, DINO heads and optimiser
state; the backbones alone are about 87 MB (ViT-S/16) and 11 MB (ViT4K-XS). The output loads with
the same loader as the original and gives identical features.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from safetensors.torch import save_file

from source.models.checkpoints import CheckpointError, backbone_state_dict, read_checkpoint


def convert_to_safetensors(source: str | Path, target: str | Path, entry: str = "teacher") -> int:
    """Convert ``source`` to a backbone-only safetensors file ``target``; returns the tensor count."""
    source, target = Path(source), Path(target)
    backbone, ignored_head, used, _ = backbone_state_dict(read_checkpoint(source), entry, source)
    tensors = {k: v.detach().contiguous().clone() for k, v in backbone.items()}
    metadata = {
        "format": "pt",
        "converted_from": source.name,
        "entry": used or "",
        "dropped_head_tensors": str(ignored_head),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    save_file(tensors, str(temporary), metadata=metadata)
    os.replace(temporary, target)
    return len(tensors)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="checkpoint to read (.pth, .pt or .safetensors)")
    parser.add_argument("target", help="safetensors file to write")
    parser.add_argument("--entry", default="teacher", help="entry of a training dict to keep (default: teacher)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        count = convert_to_safetensors(args.source, args.target, args.entry)
    except CheckpointError as error:
        logging.error("%s", error)
        return 1
    size_mb = Path(args.target).stat().st_size / 1e6
    logging.info("wrote %d tensors (%.1f MB) to %s", count, size_mb, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
