"""DINO pretraining end to end on real H&E inputs with tiny settings."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from PIL import Image

from source.engines.pretraining_job import run_knn_job, run_pretraining_job
from source.errors import ConfigError
from source.models.factory import build_vit_patch, build_vit_region
from source.models.hipt import HIPTEncoder
from source.models.settings import EncoderSettings
from source.pretraining.data import PretrainingDataError
from tests.helpers import REPO, TEST_DEVICE, pretraining_config, subprocess_environment
from tests.pretraining.dino_runs import FAST_PATCH, assert_killed_run_resumes, log, on_cpu

FAST_REGION = {
    "model.out_dim": 128,
    "model.teacher_temp": 0.04,
    "model.warmup_teacher_temp_epochs": 1,
    "training.nepochs": 5,
    "training.warmup_epochs": 1,
    "training.batch_size_per_gpu": 3,
    "aug.local_crops_number": 2,
    "speed.num_workers": 0,
    "optim.lr": 0.05,
    "device": TEST_DEVICE,
}


def patch_run(tmp_path, patch_dir, run_id="run", **overrides):
    cfg = pretraining_config(
        "patch", data_dir=str(patch_dir), output_dir=str(tmp_path), run_id=run_id, **(FAST_PATCH | overrides)
    )
    return run_pretraining_job(cfg, "patch"), tmp_path / "dino_patch" / run_id


def test_patch_stage_trains_monitors_and_snapshots_load_for_extraction(tmp_path, patch_dir, downstream_csvs):
    code, run_dir = patch_run(
        tmp_path,
        patch_dir,
        **{
            "downstream.train_csv": str(downstream_csvs[0]),
            "downstream.test_csv": str(downstream_csvs[1]),
            "knn.k": 3,
            "knn.save_features": True,
        },
    )
    assert code == 0
    records = log(run_dir)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    losses = [r["loss"] for r in records]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert {
        "student_auc",
        "teacher_accuracy",
        "teacher_balanced_accuracy",
        "lr",
        "wd",
        "momentum",
        "teacher_temp",
    } <= set(records[0])
    assert [r["teacher_temp"] for r in records] == pytest.approx([0.04] * 3)
    assert [r["momentum"] for r in records] == sorted(r["momentum"] for r in records) and records[0]["wd"] < records[2][
        "wd"
    ]
    assert (run_dir / "best.pt").exists() and (run_dir / "checkpoint_0002.pt").exists()
    for slim in ("best.pt", "checkpoint_0002.pt"):  # teacher backbone only: what extraction loads
        snapshot = torch.load(run_dir / slim, weights_only=True)
        assert set(snapshot) == {"teacher", "epoch", "history", "config"}
        assert snapshot["teacher"] and all(k.startswith("backbone.") for k in snapshot["teacher"])
        assert (run_dir / slim).stat().st_size < (run_dir / "latest.pt").stat().st_size / 3
        build_vit_patch(EncoderSettings(patch_arch="vit_tiny", patch_weights=run_dir / slim))
    assert (run_dir / "knn_features" / "teacher_test_features.pt").exists()
    state = torch.load(run_dir / "latest.pt", weights_only=True)
    assert {"student", "teacher", "optimizer", "scaler", "epoch", "dino_loss", "config"} <= set(state)
    assert all(k.startswith(("backbone.", "head.")) for k in state["teacher"])
    # the snapshot loads with the extraction loader and gives the teacher's features
    encoder = HIPTEncoder(
        build_vit_patch(EncoderSettings(patch_arch="vit_tiny", patch_weights=run_dir / "latest.pt")).eval()
    )
    region = torch.randint(0, 256, (1, 3, 256, 256), dtype=torch.uint8)
    from source.models.vit import build_vit

    teacher = build_vit("vit_tiny").eval()
    teacher.load_state_dict(
        {k[len("backbone.") :]: v for k, v in state["teacher"].items() if k.startswith("backbone.")}
    )
    with torch.inference_mode():
        torch.testing.assert_close(encoder.encode_patches(region)[0, 0], teacher(encoder.normalize(region))[0])


def test_region_stage_on_level_local_features(tmp_path, region_tensor_dir):
    vit = build_vit_region(EncoderSettings(warn_random=False))
    from tests.helpers import official_checkpoint

    torch.save(official_checkpoint(vit), tmp_path / "vit4k_xs_dino.pth")
    cfg = pretraining_config(
        "region",
        data_dir=str(region_tensor_dir),
        output_dir=str(tmp_path),
        run_id="r",
        **(FAST_REGION | {"model.pretrained_weights": str(tmp_path / "vit4k_xs_dino.pth")}),
    )
    assert run_pretraining_job(cfg, "region") == 0
    records = log(tmp_path / "dino_region" / "r")
    assert len(records) == 5 and all(torch.isfinite(torch.tensor([r["loss"] for r in records])))
    assert records[-1]["loss"] < records[0]["loss"]
    loaded = build_vit_region(EncoderSettings(region_weights=tmp_path / "dino_region" / "r" / "latest.pt"))
    grid = torch.load(next(region_tensor_dir.iterdir()), weights_only=True).T.reshape(1, 384, 4, 4)
    assert loaded(grid).shape == (1, 192)


def test_resume_continues_identically(tmp_path, patch_dir, monkeypatch):
    assert_killed_run_resumes(
        lambda root, **keys: patch_run(root, patch_dir, **keys), tmp_path, monkeypatch, kill_after=1
    )


def test_two_process_gloo_run_gives_the_single_process_loss(tmp_path, patch_dir):
    common = [f"data_dir={patch_dir}", "model.drop_path_rate=0", "training.nepochs=2"] + [
        f"{k}={v}"
        for k, v in on_cpu(FAST_PATCH).items()
        if k not in {"training.batch_size_per_gpu", "training.nepochs"}
    ]
    environment = subprocess_environment()
    script = str(REPO / "pretrain" / "dino_patch.py")
    single = subprocess.run(
        [
            sys.executable,
            script,
            "--config-name",
            "patch",
            *common,
            "training.batch_size_per_gpu=8",
            "output_dir=one",
            "run_id=x",
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    double = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            script,
            "--config-name",
            "patch",
            *common,
            "training.batch_size_per_gpu=4",
            "output_dir=two",
            "run_id=x",
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = log(tmp_path / "one" / "dino_patch" / "x"), log(tmp_path / "two" / "dino_patch" / "x")
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-4)


def test_bad_inputs_are_named(tmp_path, patch_dir, region_tensor_dir, downstream_csvs):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PretrainingDataError, match="holds no image"):
        patch_run(tmp_path, tmp_path / "empty")
    with pytest.raises(ConfigError, match="exceeds the 24 samples"):
        patch_run(tmp_path, patch_dir, **{"training.batch_size_per_gpu": 32})
    with pytest.raises(ConfigError, match="model.arch 'vit_huge'"):
        patch_run(tmp_path, patch_dir, **{"model.arch": "vit_huge"})
    broken = tmp_path / "broken"
    broken.mkdir()
    for index in range(20):
        Image.new("RGB", (64, 64), (200, 100, 100)).save(broken / f"{index}.png")
    (broken / "bad.png").write_bytes(b"not a png")
    with pytest.raises(PretrainingDataError, match="1 of 21 images .* unreadable"):
        patch_run(tmp_path, broken)
    assert patch_run(tmp_path, broken, **{"training.max_bad_fraction": 0.1, "training.nepochs": 1})[0] == 0
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    torch.save(torch.zeros(15, 384), wrong / "a.pt")
    with pytest.raises(PretrainingDataError, match=r"shape \(15, 384\), expected \(n\*n, 384\)"):
        run_pretraining_job(
            pretraining_config("region", data_dir=str(wrong), output_dir=str(tmp_path), **FAST_REGION), "region"
        )
    table = pd.read_csv(downstream_csvs[0])
    table.drop(columns=["label"]).to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(PretrainingDataError, match=r"missing column\(s\) \['label'\]"):
        patch_run(
            tmp_path,
            patch_dir,
            **{"downstream.train_csv": str(tmp_path / "nolabel.csv"), "downstream.test_csv": str(downstream_csvs[1])},
        )
    table.assign(tile_path="missing.png").to_csv(tmp_path / "nopath.csv", index=False)
    with pytest.raises(PretrainingDataError, match="does not exist"):
        patch_run(
            tmp_path,
            patch_dir,
            **{"downstream.train_csv": str(tmp_path / "nopath.csv"), "downstream.test_csv": str(downstream_csvs[1])},
        )


def test_eval_knn_on_a_snapshot(tmp_path, patch_dir, downstream_csvs):
    assert patch_run(tmp_path, patch_dir, **{"training.nepochs": 1})[0] == 0
    from omegaconf import OmegaConf

    from source.config.pretraining import KnnEvalConfig

    cfg = OmegaConf.merge(
        OmegaConf.structured(KnnEvalConfig),
        {
            "checkpoint": str(tmp_path / "dino_patch" / "run" / "latest.pt"),
            "arch": "vit_tiny",
            "output_dir": str(tmp_path),
            "run_id": "k",
            "downstream": {"train_csv": str(downstream_csvs[0]), "test_csv": str(downstream_csvs[1])},
            "knn": {"k": 3},
            "device": TEST_DEVICE,
        },
    )
    assert run_knn_job(cfg) == 0
    metrics = json.loads((tmp_path / "knn" / "k" / "metrics.json").read_text())
    assert set(metrics) == {"accuracy", "balanced_accuracy", "auc"} and 0 <= metrics["accuracy"] <= 1


def test_early_stopping_follows_the_teachers_knn_score(tmp_path, patch_dir, downstream_csvs, monkeypatch):
    from source.pretraining.monitor import KnnMonitor

    scores = iter([0.6, 0.6, 0.7, 0.9, 0.5, 0.5, 0.4, 0.4, 0.3, 0.3])  # student, teacher per epoch
    monkeypatch.setattr(
        KnnMonitor, "evaluate", lambda self, *args: {"accuracy": 0.5, "balanced_accuracy": 0.5, "auc": next(scores)}
    )
    downstream = {"downstream.train_csv": str(downstream_csvs[0]), "downstream.test_csv": str(downstream_csvs[1])}
    stopping = {
        "early_stopping.enable": True,
        "early_stopping.patience": 2,
        "early_stopping.min_epoch": 0,
        "training.nepochs": 5,
    }
    code, run_dir = patch_run(tmp_path, patch_dir, **(downstream | stopping))
    assert code == 0
    records = log(run_dir)
    assert [r["teacher_auc"] for r in records] == [
        0.6,
        0.9,
        0.5,
        0.4,
    ]  # best at epoch 2, then 2 evaluations without improvement
    assert torch.load(run_dir / "best.pt", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_are_finite(tmp_path, patch_dir, precision):
    code, run_dir = patch_run(tmp_path, patch_dir, **{"speed.precision": precision, "training.nepochs": 1})
    assert code == 0 and torch.isfinite(torch.tensor(log(run_dir)[0]["loss"]))
    assert (torch.load(run_dir / "latest.pt", weights_only=True)["scaler"] is not None) == (precision == "fp16")


def test_a_run_that_stopped_early_is_not_continued_on_resume(tmp_path, patch_dir, downstream_csvs, monkeypatch):
    from source.pretraining.monitor import KnnMonitor

    monkeypatch.setattr(
        KnnMonitor, "evaluate", lambda self, *args: {"accuracy": 0.5, "balanced_accuracy": 0.5, "auc": 0.5}
    )
    settings = {
        "downstream.train_csv": str(downstream_csvs[0]),
        "downstream.test_csv": str(downstream_csvs[1]),
        "early_stopping.enable": True,
        "early_stopping.patience": 1,
        "early_stopping.min_epoch": 0,
        "training.nepochs": 4,
    }
    _, run_dir = patch_run(tmp_path, patch_dir, **settings)
    assert len(log(run_dir)) == 2
    assert patch_run(tmp_path, patch_dir, resume=True, **settings)[0] == 0
    assert len(log(run_dir)) == 2


def test_a_diverging_loss_stops_with_a_clear_error(tmp_path, patch_dir, monkeypatch):
    from source.engines.pretrain import TrainingDivergedError
    from source.pretraining.loss import DINOLoss

    original = DINOLoss.forward
    monkeypatch.setattr(DINOLoss, "forward", lambda self, *args: original(self, *args) * float("nan"))
    with pytest.raises(TrainingDivergedError, match="not finite .* epoch 1, iteration 1"):
        patch_run(tmp_path, patch_dir)


def test_unknown_tracked_metric_is_a_config_error(tmp_path, patch_dir):
    from omegaconf.errors import ValidationError

    with pytest.raises(
        ValidationError, match=r"Invalid value 'f1', expected one of \[accuracy, balanced_accuracy, auc\]"
    ):
        patch_run(tmp_path, patch_dir, **{"early_stopping.tracking": "f1"})


def test_one_epoch_clamps_the_warmups_and_regions_as_patches_are_warned(tmp_path, demo_regions_1024, caplog):
    overrides = {
        "training.nepochs": 1,
        "training.warmup_epochs": 10,
        "model.warmup_teacher_temp_epochs": 30,
        "training.batch_size_per_gpu": 2,
    }
    code, run_dir = patch_run(tmp_path, demo_regions_1024, **overrides)
    assert code == 0 and len(log(run_dir)) == 1
    assert "training.warmup_epochs (10) exceeds training.nepochs (1): clamped to 1" in caplog.text
    assert "model.warmup_teacher_temp_epochs (30) exceeds training.nepochs (1): clamped to 1" in caplog.text
    assert "about 1024 px (median shorter side), far larger than the 256-px patches" in caplog.text


def test_region_stage_reads_slide_feature_files_like_region_files(tmp_path, region_tensor_dir):
    """A features/slide/ folder ([M, n*n, 384] per slide) gives the same regions, hence the same run, as one file per
    region."""
    from source.pretraining.data import find_region_tensors, load_grid

    regions = sorted(region_tensor_dir.iterdir())
    slides = tmp_path / "slides"
    slides.mkdir()
    torch.save(torch.stack([torch.load(p, weights_only=True) for p in regions[:4]]), slides / "a.pt")
    torch.save(torch.stack([torch.load(p, weights_only=True) for p in regions[4:]]), slides / "b.pt")
    refs, grid, width = find_region_tensors(slides)
    assert (
        grid == 4
        and width == 384
        and [(r.path.name, r.row) for r in refs] == [("a.pt", i) for i in range(4)] + [("b.pt", i) for i in range(2)]
    )
    for ref, path in zip(refs, regions, strict=True):
        torch.testing.assert_close(load_grid(ref), load_grid(path))
    short = FAST_REGION | {"training.nepochs": 2}
    losses = []
    for name, folder in (("files", region_tensor_dir), ("slides", slides)):
        cfg = pretraining_config("region", data_dir=str(folder), output_dir=str(tmp_path), run_id=name, **short)
        assert run_pretraining_job(cfg, "region") == 0
        losses.append([r["loss"] for r in log(tmp_path / "dino_region" / name)])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_region_stage_two_process_gloo_run_on_slide_files_gives_the_single_process_loss(tmp_path, region_tensor_dir):
    regions = sorted(region_tensor_dir.iterdir())
    slides = tmp_path / "slides"
    slides.mkdir()
    torch.save(torch.stack([torch.load(p, weights_only=True) for p in regions[:4]]), slides / "a.pt")
    torch.save(torch.stack([torch.load(p, weights_only=True) for p in regions[4:]]), slides / "b.pt")
    common = [f"data_dir={slides}", "model.drop_path_rate=0", "training.nepochs=2"] + [
        f"{k}={v}"
        for k, v in on_cpu(FAST_REGION).items()
        if k not in {"training.batch_size_per_gpu", "training.nepochs"}
    ]
    environment = subprocess_environment()
    script = [str(REPO / "pretrain" / "dino_region.py"), "--config-name", "region", *common]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for command, batch, out in (([sys.executable], 2, "one"), (torchrun, 1, "two")):
        result = subprocess.run(
            [*command, *script, f"training.batch_size_per_gpu={batch}", f"output_dir={out}", "run_id=x"],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = log(tmp_path / "one" / "dino_region" / "x"), log(tmp_path / "two" / "dino_region" / "x")
    assert len(one) == 2 and [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-4)


def test_two_c10d_nodes_train_with_the_global_batch_of_both(tmp_path, patch_dir):
    """Patch pretraining on two 'nodes' of one process each (torchrun c10d rendezvous): one run, global batch 8."""
    from tests.helpers import run_on_two_c10d_nodes

    fixed = {"training.batch_size_per_gpu", "training.nepochs"}
    settings = [f"{k}={v}" for k, v in on_cpu(FAST_PATCH).items() if k not in fixed]
    arguments = [str(REPO / "pretrain" / "dino_patch.py"), "--config-name", "patch", f"data_dir={patch_dir}"]
    arguments += [
        "training.nepochs=2",
        "training.batch_size_per_gpu=4",
        *settings,
        f"output_dir={tmp_path}",
        "run_id=nodes",
    ]
    run_on_two_c10d_nodes(arguments)
    run_dir = tmp_path / "dino_patch" / "nodes"
    records = log(run_dir)
    assert [r["epoch"] for r in records] == [1, 2] and all(torch.isfinite(torch.tensor([r["loss"] for r in records])))
    assert "global batch 8, 3 iterations per epoch" in (run_dir / "log.txt").read_text()
