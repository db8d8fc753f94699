"""Real H&E inputs for pretraining tests: patches and level-local region tensors of the demo slide."""

import pandas as pd
import pytest
import torch
from PIL import Image

from source.data.regions import read_region
from source.models.hipt import HIPTEncoder
from source.models.vit import vit_small


@pytest.fixture(scope="session")
def patch_dir(demo_regions_1024, tmp_path_factory):
    """24 tissue patches of 256 px (4 from each of the 6 demo regions), in class folders by region."""
    root = tmp_path_factory.mktemp("patches")
    for r, path in enumerate(sorted((demo_regions_1024 / "CMU-1-Small-Region" / "imgs").iterdir())):
        with Image.open(path) as region:
            for k, (x, y) in enumerate([(256, 256), (512, 256), (256, 512), (512, 512)]):
                folder = root / f"region_{r}"
                folder.mkdir(exist_ok=True)
                region.crop((x, y, x + 256, y + 256)).save(folder / f"{k}.png")
    return root


@pytest.fixture(scope="session")
def downstream_csvs(patch_dir, tmp_path_factory):
    """kNN sets: label = which half of the slide the patch comes from; paths relative to the csv."""
    root = tmp_path_factory.mktemp("downstream")
    rows = [
        {"tile_path": str(p), "label": "top" if int(p.parent.name.split("_")[1]) % 3 == 0 else "bottom"}
        for p in sorted(patch_dir.rglob("*.png"))
    ]
    table = pd.DataFrame(rows)
    table.iloc[::2].to_csv(root / "train.csv", index=False)
    table.iloc[1::2].to_csv(root / "test.csv", index=False)
    return root / "train.csv", root / "test.csv"


@pytest.fixture(scope="session")
def region_tensor_dir(demo_regions_1024, tmp_path_factory):
    """[16, 384] patch features of the 6 demo regions (1024 px, a 4 x 4 grid), as extract_features writes them."""
    root = tmp_path_factory.mktemp("region_tensors")
    torch.manual_seed(0)
    encoder = HIPTEncoder(vit_small().eval(), None, patch_batch_size=16)
    for path in sorted((demo_regions_1024 / "CMU-1-Small-Region" / "imgs").iterdir()):
        pixels = torch.from_numpy(read_region(path, 1024)).permute(2, 0, 1).unsqueeze(0)
        with torch.inference_mode():
            torch.save(encoder.encode_patches(pixels)[0].clone(), root / f"CMU_{path.stem}.pt")
    return root
