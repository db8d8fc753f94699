"""Slide-level regression of a continuous label: one output, a standardised target, MAE / RMSE / R2 / Pearson /
Spearman, and a predicted-vs-true scatter plot."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from source.config.common import RegressionLoss
from source.plots import save_figure
from source.tasks.base import LabelSettings, Task
from source.tasks.regression_splits import TARGET, Scaling, regression_splits

LOSSES = ("mse", "l1", "huber")


@dataclass
class RegressionKeys:
    """The root keys of a regression training config (``config/training/task/regression.yaml``)."""

    label_name: str = "target"
    loss: RegressionLoss = RegressionLoss.mse
    huber_delta: float = 1.0


@dataclass(frozen=True)
class RegressionSettings(LabelSettings):
    """What regression reads from its training config."""

    label_name: str = "target"
    loss: str = "mse"
    huber_delta: float = 1.0


class RegressionTask(Task):
    """One logit: the standardised prediction ``(value - mean) / std`` of the training split's scaling.

    Args:
        scaling: the training split's mean and std (predictions are reported in the label's own units).
        loss: ``mse``, ``l1`` or ``huber`` (on standardised values; ``huber_delta`` in standard deviations).
    """

    kind = "regression"
    num_outputs = 1
    metric_names = ("mae", "rmse", "r2", "pearson", "spearman")
    default_tracking = "r2"
    higher_is_better = {"loss": False, "mae": False, "rmse": False, "r2": True, "pearson": True, "spearman": True}

    def __init__(self, scaling: Scaling, loss: str = "mse", huber_delta: float = 1.0) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got '{loss}'")
        self.scaling, self.loss_name, self.huber_delta = scaling, loss, huber_delta

    keys = RegressionKeys
    settings = RegressionSettings
    resume_keys = ("loss", "huber_delta")

    @classmethod
    def config_problems(cls, settings: RegressionSettings) -> list[str]:
        """``huber_delta`` > 0."""
        if not settings.huber_delta > 0:
            return [f"huber_delta must be > 0 (in standard deviations of the label), got {settings.huber_delta}"]
        return []

    @classmethod
    def outputs_of(cls, settings: RegressionSettings) -> int:
        return 1

    @classmethod
    def label_columns(cls, settings: RegressionSettings) -> set[str]:
        return {settings.label_name}

    @classmethod
    def target_names(cls) -> list[str]:
        return ["value"]

    @classmethod
    def build(cls, settings: RegressionSettings, paths: Mapping[str, str], bank, state: Optional[dict] = None):
        """Scaling from the training split (or the trained model's ``state``); splits with standardised targets."""
        trained = Scaling(state["mean"], state["std"]) if state else None
        splits, scaling = regression_splits(
            paths,
            bank,
            settings.label_name,
            settings.pct,
            settings.seed,
            trained,
            settings.allow_overlap,
            settings.train_fraction,
        )
        task = cls(scaling, settings.loss, settings.huber_delta)
        return task, splits, {"kind": cls.kind, "mean": scaling.mean, "std": scaling.std}

    @classmethod
    def from_state(cls, settings: RegressionSettings, state: dict) -> "RegressionTask":
        """The training split's scaling as trained."""
        return cls(Scaling(state["mean"], state["std"]), settings.loss, settings.huber_delta)

    def loss(self, logits: torch.Tensor, targets: Mapping[str, torch.Tensor], training: bool) -> torch.Tensor:
        """The chosen loss between logits ``(1,)`` and the standardised ``targets['value']``."""
        target = targets["value"].float().reshape(1).to(logits.device)
        if self.loss_name == "l1":
            return F.l1_loss(logits, target)
        if self.loss_name == "huber":
            return F.huber_loss(logits, target, delta=self.huber_delta)
        return F.mse_loss(logits, target)

    explained_name = "prediction"

    def explained(self, logits: torch.Tensor, target_class: Optional[int] = None) -> torch.Tensor:
        """The prediction in the label's units."""
        return logits.float()[:, 0] * self.scaling.std + self.scaling.mean

    def predict(self, logits: torch.Tensor) -> dict[str, float]:
        """``prediction`` in the label's units."""
        return {"prediction": float(logits.detach().float().reshape(-1)[0]) * self.scaling.std + self.scaling.mean}

    def metrics(self, predictions: pd.DataFrame) -> dict[str, float]:
        """MAE, RMSE, R2 (scikit-learn), Pearson and Spearman correlations (SciPy) of ``prediction`` vs the truth."""
        truth = predictions[TARGET].to_numpy(dtype=float)
        predicted = predictions["prediction"].to_numpy(dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant inputs: correlations are undefined (NaN), as SciPy says
            return {
                "mae": float(mean_absolute_error(truth, predicted)),
                "rmse": float(root_mean_squared_error(truth, predicted)),
                "r2": float(r2_score(truth, predicted)) if len(truth) > 1 else float("nan"),
                "pearson": float(pearsonr(truth, predicted).statistic) if len(truth) > 1 else float("nan"),
                "spearman": float(spearmanr(truth, predicted).statistic) if len(truth) > 1 else float("nan"),
            }

    def plots(self, predictions: pd.DataFrame, out_dir: Path, split: str) -> list[Path]:
        """``<split>_scatter.png``: predicted against true values, the identity line and the metrics."""
        import matplotlib.pyplot as plt

        truth = predictions[TARGET].to_numpy(dtype=float)
        predicted = predictions["prediction"].to_numpy(dtype=float)
        metrics = self.metrics(predictions)
        figure, axis = plt.subplots(figsize=(5, 5))
        axis.scatter(truth, predicted, s=14, alpha=0.7)
        low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
        axis.plot([low, high], [low, high], linestyle="--", color="gray", label="prediction = truth")
        axis.set(
            xlabel="true value",
            ylabel="predicted value",
            title=f"{split}: R2 {metrics['r2']:.3f}, MAE {metrics['mae']:.3g}, Pearson {metrics['pearson']:.3f}",
        )
        axis.legend(loc="upper left")
        return [save_figure(figure, out_dir / f"{split}_scatter.png")]

    def ensemble(self, tables: list[pd.DataFrame]) -> pd.DataFrame:
        """Mean prediction."""
        result = tables[0].copy()
        result["prediction"] = np.mean([table["prediction"].to_numpy() for table in tables], axis=0)
        return result
