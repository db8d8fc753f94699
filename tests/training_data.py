"""Generated slide features with (or without) a real signal, and their label csvs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tests.helpers import TEST_DEVICE


def write_features(features_dir: Path, slide_ids, bags) -> None:
    features_dir.mkdir(parents=True, exist_ok=True)
    for slide_id, bag in zip(slide_ids, bags, strict=True):
        torch.save(torch.as_tensor(bag, dtype=torch.float32), features_dir / f"{slide_id}.pt")


def write_splits(root: Path, frame: pd.DataFrame) -> dict[str, Path]:
    """``train`` / ``tune`` / ``test`` csvs of the first 60 / next 20 / last 20 % of the rows, and ``features_dir``."""
    cut1, cut2 = int(0.6 * len(frame)), int(0.8 * len(frame))
    paths = {}
    for name, part in (("train", frame[:cut1]), ("tune", frame[cut1:cut2]), ("test", frame[cut2:])):
        paths[name] = root / f"{name}.csv"
        part.to_csv(paths[name], index=False)
    return paths | {"features_dir": root / "features"}


def classification_data(
    root: Path,
    n_slides: int = 90,
    regions: int = 8,
    dim: int = 192,
    signal: float = 1.5,
    seed: int = 0,
    num_classes: int = 2,
    local_grid: int = 0,
) -> dict[str, Path]:
    """Slides whose class shifts a share of their regions along a class direction (signal=0: pure noise).

    Returns csv paths for train / tune / test (60 / 20 / 20 % of the slides) and features_dir.
    """
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(num_classes, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    labels = np.arange(n_slides) % num_classes
    rng.shuffle(labels)
    slide_ids = [f"slide_{i:03d}" for i in range(n_slides)]
    bags = []
    for label in labels:
        shape = (regions, local_grid * local_grid, dim) if local_grid else (regions, dim)
        bag = rng.normal(size=shape)
        informative = rng.random(regions) < 0.5
        bag[informative] += signal * directions[label] * (1 if not local_grid else 1)
        bags.append(bag)
    write_features(root / "features", slide_ids, bags)
    return write_splits(root, pd.DataFrame({"slide_id": slide_ids, "label": labels}))


def survival_data(
    root: Path,
    n_patients: int = 90,
    regions: int = 8,
    dim: int = 192,
    signal: float = 1.0,
    seed: int = 0,
    slides_per_patient: int = 1,
    local_grid: int = 0,
) -> dict[str, Path]:
    """Patients whose hazard grows with the projection of their features on one direction (signal=0: noise);
    ``local_grid`` n: level-local bags ``(regions, n*n, dim)``."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    rows, bags, slide_ids = [], [], []
    for p in range(n_patients):
        risk = rng.normal()
        time = rng.exponential(scale=30 * np.exp(-3.0 * risk * (signal > 0))) + 0.5
        censored = int(rng.random() < 0.3)
        if censored:
            time = max(0.5, time * rng.uniform(0.3, 1.0))
        for s in range(slides_per_patient):
            shape = (regions, local_grid * local_grid, dim) if local_grid else (regions, dim)
            bag = rng.normal(size=shape) + signal * risk * direction
            slide_id = f"case_{p:03d}_s{s}"
            slide_ids.append(slide_id)
            bags.append(bag)
            rows.append(
                {
                    "case_id": f"case_{p:03d}",
                    "slide_id": slide_id,
                    "censorship": censored,
                    "survival_months": round(time, 3),
                }
            )
    write_features(root / "features", slide_ids, bags)
    frame = pd.DataFrame(rows)
    cases = frame.case_id.unique()
    cut1, cut2 = int(0.6 * len(cases)), int(0.8 * len(cases))
    paths = {}
    for name, part in (("train", cases[:cut1]), ("tune", cases[cut1:cut2]), ("test", cases[cut2:])):
        paths[name] = root / f"{name}.csv"
        frame[frame.case_id.isin(part)].to_csv(paths[name], index=False)
    paths["features_dir"] = root / "features"
    return paths


def regression_data(
    root: Path,
    n_slides: int = 60,
    regions: int = 8,
    dim: int = 192,
    signal: float = 1.0,
    seed: int = 0,
    local_grid: int = 0,
) -> dict[str, Path]:
    """Slides whose label is ``10 + 5 * s`` for a latent s shifting their regions along one direction (signal=0:
    the features carry nothing of s). Label column ``target``; train / tune / test = 60 / 20 / 20 %;
    ``local_grid`` n: level-local bags ``(regions, n*n, dim)``."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    latent = rng.normal(size=n_slides)
    slide_ids = [f"slide_{i:03d}" for i in range(n_slides)]
    shape = (regions, local_grid * local_grid, dim) if local_grid else (regions, dim)
    bags = [rng.normal(size=shape) + signal * value * direction for value in latent]
    write_features(root / "features", slide_ids, bags)
    return write_splits(root, pd.DataFrame({"slide_id": slide_ids, "target": np.round(10 + 5 * latent, 4)}))


def job_config(kind: str, out: Path, paths: dict[str, Path], **overrides):
    """A training config on generated data: csvs of ``paths``, outputs under ``out/out``, CPU, small and quick."""
    from tests.helpers import training_config

    values = {
        "data.train_csv": str(paths["train"]),
        "data.tune_csv": str(paths["tune"]),
        "data.test_csv": str(paths["test"]) if "test" in paths else None,
        "features_dir": str(paths["features_dir"]),
        "output_dir": str(out / "out"),
        "run_id": "run",
        "device": TEST_DEVICE,
        "nepochs": {"classification": 6, "survival": 8}.get(kind, 8),
        "training.gradient_accumulation": 8,
        "optim.lr": 0.001,
        "model.dropout": 0.1,
        "optim.lr_scheduler.name": None,
    }
    return training_config(kind, **(values | overrides))


def abmil_checkpoint(features_dir: Path | str, path: Path) -> Path:
    """A ``best.pt`` of an untrained, seeded ABMIL classifier on the ViT_region features of ``features_dir`` (as
    training writes it: weights, saved config, task state), for heatmaps, contributions and the viewer."""
    from omegaconf import OmegaConf

    from source.config.slide_model import slide_model_settings
    from source.models.factory import build_slide_model
    from tests.helpers import training_config

    training = training_config("classification", features_dir=str(features_dir))
    training.model.aggregator, training.model.pretrain_vit_region = "abmil", None
    torch.manual_seed(0)
    model = build_slide_model(slide_model_settings(training), 2)
    config = OmegaConf.to_container(training, resolve=True, enum_to_str=True)
    torch.save({"model": model.state_dict(), "config": config, "task": {"kind": "classification"}, "epoch": 0}, path)
    return path
