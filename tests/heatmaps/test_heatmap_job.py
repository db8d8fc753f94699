"""attention_visualization end to end on regions of the real demo slide; bad input; torchrun with gloo."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from source.config.heatmaps import HeatmapConfig
from source.config.slide_model import slide_model_settings
from source.engines.heatmap_job import run_heatmap_job
from source.errors import ConfigError
from source.heatmaps.stitch import TITLE_HEIGHT
from source.models.checkpoints import CheckpointError
from source.models.factory import build_slide_model
from tests.helpers import REPO, TEST_DEVICE, subprocess_environment, training_config

TINY = {"vit_patch_arch": "vit_tiny", "patch_weights": None, "region_weights": None}


def heatmap_config(**overrides):
    cfg = OmegaConf.merge(OmegaConf.structured(HeatmapConfig), {k: v for k, v in overrides.items()})
    return cfg


def slide_checkpoint(path, num_classes=2, broken=False, **model):
    """A best.pt of train/classification.py: a GlobalHIPT, or the slide model of the ``model`` overrides."""
    torch.manual_seed(3)
    cfg = training_config("classification", features_dir="unused", num_classes=num_classes, **model)
    cfg.model.pretrain_vit_region = None
    state = build_slide_model(slide_model_settings(cfg).without_region_weights(), num_classes).state_dict()
    if broken:
        state["classifier.weight"] = torch.zeros(5, 7)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    torch.save({"model": state, "config": config, "task": {"kind": "classification"}, "epoch": 3}, path)
    return path


def size(path):
    with Image.open(path) as image:
        return image.size


def test_real_slide_outputs_have_the_documented_names_and_sizes(tmp_path, region_dir):
    cfg = heatmap_config(
        region_dir=str(region_dir),
        slide_id="CMU-1-Small-Region",
        region_size=1024,
        output_dir=str(tmp_path),
        run_id="r",
        patch_weights=None,
        region_weights=None,
        heads=[0, 1],
        downsample=32,
        threshold=0.5,
        highlight=0.6,
        device=TEST_DEVICE,
        slide_weights=str(slide_checkpoint(tmp_path / "best.pt")),
        geojson_patches=True,
    )
    assert run_heatmap_job(cfg) == 0
    out = tmp_path / "heatmaps" / "r" / "CMU-1-Small-Region"
    assert size(out / "patch" / "256" / "head_1" / "1024_2048.png") == (256 + 90, 256)  # the map and its colorbar
    assert size(out / "region" / "1024" / "head_0" / "0_0.png") == (256 + 90, 256)
    assert size(out / "hierarchical_1024_256" / "rhead_1_phead_0" / "0_1024.png") == (256 + 90, 256)
    assert len(list((out / "hierarchical_1024_256").glob("rhead_*_phead_*/*.png"))) == 4 * 6
    for name in [
        "patch_head_0",
        "region_head_1",
        "rhead_0_phead_1",
        "slide",
        "slide_thresh",
        "slide_highlight",
        "patch_head_1_highlight",
    ]:
        width, height = size(out / "slide" / f"{name}.png")
        assert width == 64 + 90 and height == 96 + TITLE_HEIGHT, (
            name
        )  # 2 x 3 regions of 32 px at downsample 32, + colorbar and title
    with Image.open(out / "slide" / "slide_highlight.png") as image:
        assert image.mode == "RGBA"
    assert size(out / "patch.png")[0] > 2 * 64 and (out / "region.png").exists()
    collection = json.loads((out / "attention.geojson").read_text())
    regions = [f for f in collection["features"] if f["properties"]["name"].count("_") == 1]
    assert len(regions) == 6 and all("slide_attention" in f["properties"]["measurements"] for f in regions)
    table = pd.read_csv(out / "attention.csv")
    assert (table.level == "region").sum() == 6 * 2 * 16 and (table.level == "slide").sum() == 6
    assert table[table.level == "slide"].score.max() == 1.0
    assert pd.read_csv(tmp_path / "heatmaps" / "r" / "slides.csv").status.tolist() == ["success"]


@pytest.mark.parametrize("canvas_width, tile", [(2000, 256), (400, 128)])
def test_default_draws_the_mean_over_heads_on_a_canvas_sized_for_the_slide(tmp_path, region_dir, canvas_width, tile):
    cfg = heatmap_config(
        region_dir=str(region_dir),
        slide_id="CMU-1-Small-Region",
        region_size=1024,
        output_dir=str(tmp_path),
        run_id="r",
        device=TEST_DEVICE,
        canvas_width=canvas_width,
        **TINY,
    )
    assert run_heatmap_job(cfg) == 0
    out = tmp_path / "heatmaps" / "r" / "CMU-1-Small-Region"
    per_region = sorted(str(p.relative_to(out).parent) for p in out.rglob("*.png") if p.parent.name == "mean")
    assert per_region == ["hierarchical_1024_256/mean"] * 6 + ["patch/256/mean"] * 6 + ["region/1024/mean"] * 6
    assert not list(out.rglob("head_*")) and not list(out.rglob("rhead_*")), "no per-head output unless asked"
    assert sorted(p.name for p in (out / "slide").iterdir()) == [
        "factorized_mean.png",
        "patch_mean.png",
        "region_mean.png",
    ]
    # the demo slide's regions span 2 x 3 regions of 1024 px: the finest canvas within canvas_width
    assert size(out / "slide" / "patch_mean.png") == (2 * tile + 90, 3 * tile + TITLE_HEIGHT)
    assert size(out / "summary.png")[0] > 3 * 2 * tile and size(out / "patch" / "256" / "mean" / "0_0.png") == (
        256 + 90,
        256,
    )


def test_one_bad_slide_fails_alone(tmp_path, region_dir):
    (region_dir / "empty" / "imgs").mkdir(parents=True)
    (region_dir / "big" / "imgs").mkdir(parents=True)
    Image.new("RGB", (2048, 2048), "white").save(region_dir / "big" / "imgs" / "0_0.jpg")
    pd.DataFrame({"slide_id": ["subset", "empty", "big"]}).to_csv(tmp_path / "slides.csv", index=False)
    cfg = heatmap_config(
        region_dir=str(region_dir),
        slide_csv=str(tmp_path / "slides.csv"),
        region_size=1024,
        output_dir=str(tmp_path),
        run_id="r",
        heads=[0],
        save_region_maps=False,
        device=TEST_DEVICE,
        **TINY,
    )
    assert run_heatmap_job(cfg) == 1
    slides = pd.read_csv(tmp_path / "heatmaps" / "r" / "slides.csv", keep_default_na=False).set_index("slide_id")
    assert slides.loc["subset", "status"] == "success"
    assert "no .jpg images" in slides.loc["empty", "error"]
    assert "region_size is 1024: set region_size=2048" in slides.loc["big", "error"]
    assert (tmp_path / "heatmaps" / "r" / "subset" / "attention.csv").exists()


def subset_config(tmp_path, region_dir, slide_weights, **values):
    """Heatmaps of the 3-region slide ``subset`` with tiny encoders and the slide model at ``slide_weights``."""
    fixed = {"region_dir": str(region_dir), "slide_id": "subset", "region_size": 1024, "output_dir": str(tmp_path)}
    return heatmap_config(**fixed, device=TEST_DEVICE, slide_weights=str(slide_weights), **TINY, **values)


def test_slide_weights_that_do_not_fit_are_an_error(tmp_path, region_dir):
    cfg = subset_config(tmp_path, region_dir, slide_checkpoint(tmp_path / "bad.pt", broken=True))
    with pytest.raises(CheckpointError, match="does not fit"):
        run_heatmap_job(cfg)
    (tmp_path / "features.pt").write_bytes(b"")
    cfg.slide_weights = str(tmp_path / "features.pt")
    with pytest.raises(CheckpointError, match="empty"):
        run_heatmap_job(cfg)


@pytest.mark.parametrize(
    "model",
    [
        {"model.aggregator": "abmil"},  # region features
        {
            "level": "local",
            "model.aggregator": "clam_mb",
            "model.embed_dim_patch": 192,
        },  # flat bags of vit_tiny patches
    ],
)
def test_slide_attention_of_any_aggregator_with_attention(tmp_path, region_dir, model):
    weights = slide_checkpoint(tmp_path / "best.pt", **model)
    cfg = subset_config(tmp_path, region_dir, weights, run_id="r", heads=[0], save_region_maps=False)
    assert run_heatmap_job(cfg) == 0
    out = tmp_path / "heatmaps" / "r" / "subset"
    assert (out / "slide" / "slide.png").exists()
    table = pd.read_csv(out / "attention.csv")
    slide_rows = table[table.level == "slide"]
    assert len(slide_rows) == 3 and slide_rows.score.between(0, 1).all()


def test_an_aggregator_without_attention_is_one_clear_error(tmp_path, region_dir):
    cfg = subset_config(
        tmp_path, region_dir, slide_checkpoint(tmp_path / "best.pt", **{"model.aggregator": "transmil"})
    )
    with pytest.raises(ConfigError, match="'transmil' model, which has no attention over the regions"):
        run_heatmap_job(cfg)


def run_cli(*args, cwd):
    environment = subprocess_environment()
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=environment, cwd=cwd, timeout=600
    )


def test_command_line_single_inputs_and_errors(tmp_path, demo_regions_1024):
    region = sorted((demo_regions_1024 / "CMU-1-Small-Region" / "imgs").iterdir())[0]
    Image.open(region).crop((256, 256, 512, 512)).save(tmp_path / "patch.png")
    tiny = [
        "vit_patch_arch=vit_tiny",
        "patch_weights=null",
        "region_weights=null",
        "region_size=1024",
        "output_dir=out",
        "run_id=r",
    ]
    script = str(REPO / "attention_visualization.py")
    result = run_cli(
        script,
        "--config-name",
        "default",
        f"region_fp={region}",
        f"patch_fp={tmp_path / 'patch.png'}",
        *tiny,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "out" / "heatmaps" / "r"
    assert size(out / "patch" / "patch" / "head_2.png") == (256 + 90, 256) and (out / "patch" / "patch.png").exists()
    assert size(out / region.stem / "hierarchical" / "rhead_5_phead_2.png") == (256 + 90, 256)
    bad_head = run_cli(script, "--config-name", "default", f"region_fp={region}", "heads=[0,9]", *tiny, cwd=tmp_path)
    assert bad_head.returncode == 2 and "heads: [9] do not exist in ViT_patch" in bad_head.stderr
    missing = run_cli(
        script, "--config-name", "default", f"region_fp={region}", "patch_weights=/no/vit.pth", cwd=tmp_path
    )
    assert (
        missing.returncode == 2
        and "'/no/vit.pth' does not exist" in missing.stderr
        and "set patch_weights=null" in missing.stderr
    )
    only_patch = run_cli(
        script,
        "--config-name",
        "default",
        f"patch_fp={tmp_path / 'patch.png'}",
        "region_weights=/no/vit4k.pth",
        *tiny[:2],
        "output_dir=out",
        "run_id=p",
        cwd=tmp_path,
    )
    assert only_patch.returncode == 0, "patch_fp alone needs no ViT_region weights: " + only_patch.stderr[-2000:]
    nothing = run_cli(script, "--config-name", "default", cwd=tmp_path)
    assert nothing.returncode == 2 and "nothing to do" in nothing.stderr


def test_two_process_gloo_run_draws_each_slide_once(tmp_path, region_dir):
    for name in ("copy_a", "copy_b"):
        shutil.copytree(region_dir / "subset", region_dir / name)
    pd.DataFrame({"slide_id": ["subset", "copy_a", "copy_b", "CMU-1-Small-Region"]}).to_csv(
        tmp_path / "slides.csv", index=False
    )
    result = run_cli(
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(REPO / "attention_visualization.py"),
        "--config-name",
        "default",
        f"region_dir={region_dir}",
        f"slide_csv={tmp_path / 'slides.csv'}",
        "region_size=1024",
        "output_dir=out",
        "run_id=ddp",
        "heads=[0]",
        "save_region_maps=false",
        "device=cpu",
        "vit_patch_arch=vit_tiny",
        "patch_weights=null",
        "region_weights=null",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "out" / "heatmaps" / "ddp"
    drawn = {}
    for log in ("log.txt", "log.rank1.txt"):
        for line in (run / log).read_text().splitlines():
            if " regions -> " in line:
                drawn.setdefault(line.split("slide ", 1)[1].split(":")[0], []).append(log)
    assert sorted(drawn) == sorted(["subset", "copy_a", "copy_b", "CMU-1-Small-Region"])
    assert all(len(ranks) == 1 for ranks in drawn.values()) and len({r[0] for r in drawn.values()}) == 2
    assert pd.read_csv(run / "slides.csv").slide_id.tolist() == ["subset", "copy_a", "copy_b", "CMU-1-Small-Region"]


def test_two_c10d_nodes_draw_each_slide_once(tmp_path, region_dir):
    """Two 'nodes' of one process each, joined by torchrun's c10d rendezvous (a two-node Slurm job)."""
    from tests.helpers import run_on_two_c10d_nodes, slides_written_per_log

    shutil.copytree(region_dir / "subset", region_dir / "copy_a")
    arguments = [str(REPO / "attention_visualization.py"), "--config-name", "default", f"region_dir={region_dir}",
                 "region_size=1024", f"output_dir={tmp_path}", "run_id=nodes", "heads=[0]", "save_region_maps=false",
                 "device=cpu", "vit_patch_arch=vit_tiny", "patch_weights=null", "region_weights=null"]  # fmt: skip
    run_on_two_c10d_nodes(arguments)
    drawn = slides_written_per_log(tmp_path / "heatmaps" / "nodes")
    assert sorted(drawn) == ["CMU-1-Small-Region", "copy_a", "subset"] and all(
        len(logs) == 1 for logs in drawn.values()
    )
    assert {logs[0] for logs in drawn.values()} == {"log.txt", "log.rank1.txt"}
