"""Discrete-time survival: NLL of the hazard model, risk = -sum(S), survival probabilities at the bin edges,
patient-level c-index, td-AUC, KM plots."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd
import torch
from sksurv.metrics import concordance_index_censored, cumulative_dynamic_auc
from sksurv.util import Surv

from source.config.common import AggMethod
from source.config.core import CONFIG_KEY
from source.config.training import ModelConfig
from source.plots import save_figure
from source.tasks.base import LabelSettings, Task
from source.tasks.kaplan_meier import kaplan_meier_figure, log_rank
from source.tasks.survival_splits import survival_splits

logger = logging.getLogger(__name__)


def nll_survival_loss(
    logits: torch.Tensor, bins: torch.Tensor, censorship: torch.Tensor, alpha: float = 0.15, eps: float = 1e-7
) -> torch.Tensor:
    """Negative log-likelihood of the discrete-time hazard model, averaged over the batch.

    With ``h = sigmoid(logits)``, ``S = cumprod(1 - h)`` and ``S(-1) = 1``:
    ``L_unc = -(1 - c) [log S(y - 1) + log h(y)]``, ``L_cens = -c log S(y)``,
    ``loss = (1 - alpha)(L_cens + L_unc) + alpha L_unc``; values clamped at ``eps`` before the logs.

    Args:
        logits: ``(B, K)``.
        bins: ``(B,)`` time bin y of each item.
        censorship: ``(B,)`` 1 = censored, 0 = event.
        alpha: weight of the extra uncensored term (0.15 in training, 0 for tune / test).
    """
    hazards = torch.sigmoid(logits)
    survival = torch.cumprod(1 - hazards, dim=1)
    padded = torch.cat([torch.ones_like(survival[:, :1]), survival], dim=1)
    y = bins.long().reshape(-1, 1)
    c = censorship.float().reshape(-1, 1)
    before = torch.gather(padded, 1, y).clamp(min=eps)
    hazard = torch.gather(hazards, 1, y).clamp(min=eps)
    after = torch.gather(padded, 1, y + 1).clamp(min=eps)
    uncensored = -(1 - c) * (torch.log(before) + torch.log(hazard))
    censored = -c * torch.log(after)
    return ((1 - alpha) * (censored + uncensored) + alpha * uncensored).mean()


def survival_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """``(..., K)`` survival ``S(k) = prod_{j <= k} (1 - sigmoid(logit_j))`` of ``(..., K)`` logits: the probability
    of surviving past bin k."""
    return torch.cumprod(1 - torch.sigmoid(logits), dim=-1)


def risk_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Risk ``-sum_k S(k)`` of ``(..., K)`` logits: higher means shorter expected survival."""
    return -survival_from_logits(logits).sum(dim=-1)


SURVIVAL_PREFIX = "survival_at_"
"""Prefix of the prediction columns of survival probabilities: ``survival_at_<repr(float(t))>`` holds the probability
of surviving past time t (``repr`` of a float is the shortest text that ``float()`` reads back to the same value)."""


def survival_column(time: float) -> str:
    """The prediction column of the survival probability at ``time``, e.g. ``survival_at_12.5``."""
    return f"{SURVIVAL_PREFIX}{float(time)!r}"


@dataclass
class SurvivalKeys:
    """The root keys of a survival training config (``config/training/task/survival.yaml``)."""

    label_name: str = "survival_months"
    nbins: int = 4


@dataclass
class SurvivalModelKeys(ModelConfig):
    """The ``model`` block of a survival training config: every aggregator's keys and the patient-level ones."""

    agg_method: Optional[AggMethod] = None
    max_regions: Optional[int] = None


@dataclass(frozen=True)
class SurvivalSettings(LabelSettings):
    """What survival reads from its training config."""

    label_name: str = "survival_months"
    nbins: int = 4
    agg_method: Optional[str] = field(default=None, metadata={CONFIG_KEY: "model.agg_method"})
    max_regions: Optional[int] = field(default=None, metadata={CONFIG_KEY: "model.max_regions"})


class SurvivalTask(Task):
    """``nbins`` hazard logits per item; metrics at patient level (slide risks averaged per ``case_id``).

    Args:
        nbins: number of time bins.
        time_column: the time column of the label tables (``label_name``).
        edges: the ``nbins + 1`` increasing bin edges (from the training split): the td-AUC's evaluation times are
            picked among them, and :meth:`predict` reports the survival probability at each bin's upper edge.
        alpha: training weight of the uncensored term.
    """

    kind = "survival"
    default_tracking = "c_index"
    metric_names = ("c_index", "auc")
    higher_is_better = {"loss": False, "c_index": True, "auc": True}

    keys = SurvivalKeys
    model_keys = SurvivalModelKeys
    settings = SurvivalSettings
    resume_keys = ("nbins",)

    @classmethod
    def config_problems(cls, settings: SurvivalSettings) -> list[str]:
        """``nbins`` of at least 2, ``model.max_regions`` of at least 1."""
        if settings.nbins < 2:
            return [f"nbins must be >= 2, got {settings.nbins}"]
        if settings.max_regions is not None and settings.max_regions < 1:
            return [f"model.max_regions must be >= 1, got {settings.max_regions}"]
        return []

    @classmethod
    def outputs_of(cls, settings: SurvivalSettings) -> int:
        return int(settings.nbins)

    @classmethod
    def label_columns(cls, settings: SurvivalSettings) -> set[str]:
        return {"case_id", "censorship", settings.label_name}

    @classmethod
    def target_names(cls) -> list[str]:
        return ["bin", "censorship"]

    @classmethod
    def by_patient(cls, settings: SurvivalSettings) -> bool:
        """Patients are the items when ``model.agg_method`` pools their slides."""
        return settings.agg_method is not None

    @classmethod
    def build(cls, settings: SurvivalSettings, paths: Mapping[str, str], bank, state: Optional[dict] = None):
        """Bins from the training split (or the trained model's ``state``); the training outcomes td-AUC needs."""
        edges = np.asarray(state["edges"]) if state else None
        tables = survival_splits(
            paths,
            bank,
            settings.label_name,
            settings.nbins,
            settings.agg_method,
            settings.max_regions,
            settings.pct,
            settings.seed,
            edges,
            settings.allow_overlap,
            settings.train_fraction,
        )
        if state:
            return cls.from_state(settings, state), tables.splits, state
        task = cls(settings.nbins, settings.label_name, tables.edges)
        task.set_training_outcomes(tables.splits["train"].frame)
        state = {
            "kind": cls.kind,
            "edges": tables.edges.tolist(),
            "train_events": task.training_outcomes["event"].tolist(),
            "train_times": task.training_outcomes["time"].tolist(),
        }
        return task, tables.splits, state

    @classmethod
    def from_state(cls, settings: SurvivalSettings, state: dict) -> "SurvivalTask":
        """Bins and training outcomes (the td-AUC's censoring reference) as trained."""
        task = cls(settings.nbins, settings.label_name, np.asarray(state["edges"]))
        task.training_outcomes = np.array(
            list(zip(state["train_events"], state["train_times"], strict=True)),
            dtype=[("event", bool), ("time", float)],
        )
        return task

    def ensemble(self, tables: list[pd.DataFrame]) -> pd.DataFrame:
        """Mean risk, and mean survival probability at each time every model predicts; ``survival_at_<t>`` columns
        only some models have (models trained on other splits have other bin edges) are dropped."""
        result = tables[0].copy()
        result["risk"] = np.mean([table["risk"].to_numpy() for table in tables], axis=0)
        curves = [column for column in result.columns if column.startswith(SURVIVAL_PREFIX)]
        shared = [column for column in curves if all(column in table.columns for table in tables)]
        for column in shared:
            result[column] = np.mean([table[column].to_numpy() for table in tables], axis=0)
        return result.drop(columns=sorted(set(curves) - set(shared)))

    def __init__(self, nbins: int, time_column: str, edges: Optional[np.ndarray] = None, alpha: float = 0.15) -> None:
        self.nbins = self.num_outputs = nbins
        self.time_column = time_column
        self.edges = edges
        self.alpha = alpha
        self.training_outcomes: Optional[np.ndarray] = None

    def set_training_outcomes(self, train: pd.DataFrame) -> None:
        """Keep the training patients' (event, time), the censoring reference of td-AUC."""
        patients = train.drop_duplicates("case_id")
        self.training_outcomes = Surv.from_arrays(
            patients.censorship.to_numpy() == 0, patients[self.time_column].to_numpy(dtype=float)
        )

    def loss(self, logits: torch.Tensor, targets: Mapping[str, torch.Tensor], training: bool) -> torch.Tensor:
        """NLL of one item (``targets['bin']``, ``targets['censorship']``); alpha only in training."""
        return nll_survival_loss(
            logits.unsqueeze(0),
            targets["bin"].reshape(1),
            targets["censorship"].reshape(1),
            self.alpha if training else 0.0,
        )

    explained_name = "risk"

    def explained(self, logits: torch.Tensor, target_class: Optional[int] = None) -> torch.Tensor:
        """The risk ``-sum_k S(k)``, as :meth:`predict` reports it."""
        return risk_from_logits(logits.float())

    def predict(self, logits: torch.Tensor) -> dict[str, float]:
        """``risk`` = -sum of the survival function of logits ``(K,)``; with the bin edges known, also
        ``survival_at_<t>`` = S(k), the probability of surviving past t, for the upper edge t of each bin k (named
        by :func:`survival_column`)."""
        logits = logits.detach().float()
        columns = {"risk": float(risk_from_logits(logits))}
        if self.edges is not None:
            survival = survival_from_logits(logits).tolist()
            columns |= {survival_column(t): s for t, s in zip(self.edges[1:], survival, strict=True)}
        return columns

    def patients(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """One row per patient: mean risk of its items, its censorship and time."""
        return predictions.groupby("case_id", sort=False).agg(
            risk=("risk", "mean"), censorship=("censorship", "first"), time=(self.time_column, "first")
        )

    def metrics(self, predictions: pd.DataFrame) -> dict[str, float]:
        """``c_index`` (scikit-survival, patient level) and ``auc`` (mean cumulative/dynamic AUC) where times allow."""
        patients = self.patients(predictions)
        events = patients.censorship.to_numpy() == 0
        metrics = {"c_index": float("nan"), "auc": float("nan")}
        metrics["logrank_statistic"], metrics["logrank_p"] = log_rank(
            events, patients.time.to_numpy(dtype=float), self.high_risk(patients).astype(int)
        )
        try:
            metrics["c_index"] = float(
                concordance_index_censored(events, patients.time.to_numpy(dtype=float), patients.risk.to_numpy())[0]
            )
        except ValueError:  # no event, or no comparable pair of patients in this split
            pass
        times = self.auc_times(patients)
        if len(times):
            try:
                metrics["auc"] = float(self.dynamic_auc(patients, times)[1])
            except ValueError:
                pass
        return metrics

    @staticmethod
    def high_risk(patients: pd.DataFrame) -> np.ndarray:
        """``(P,)`` bool: patients whose risk is above the median (the Kaplan-Meier and log-rank groups)."""
        risk = patients.risk.to_numpy()
        return risk > np.median(risk)

    def dynamic_auc(self, patients: pd.DataFrame, times: np.ndarray) -> tuple[np.ndarray, float]:
        """scikit-survival's cumulative/dynamic AUC at ``times`` (per time, mean).

        The censoring distribution comes from the training patients; when this split follows patients
        beyond the last training time (which scikit-survival cannot weight), from training + this split.
        """
        outcomes = Surv.from_arrays(patients.censorship.to_numpy() == 0, patients.time.to_numpy(dtype=float))
        reference = self.training_outcomes
        if outcomes["time"].max() >= reference["time"].max():
            reference = np.concatenate([reference, outcomes])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cumulative_dynamic_auc(reference, outcomes, patients.risk.to_numpy(), times)

    def auc_times(self, patients: pd.DataFrame) -> np.ndarray:
        """Inner bin edges that lie inside both the test follow-up and the training times (empty if none)."""
        if self.edges is None or self.training_outcomes is None:
            return np.array([])
        test_times = patients.time.to_numpy(dtype=float)
        events = patients.censorship.to_numpy() == 0
        train_times = self.training_outcomes["time"]
        low, high = max(test_times.min(), train_times.min()), min(test_times.max(), train_times.max())
        candidates = np.asarray(self.edges[1:-1], dtype=float)
        in_range = candidates[(candidates >= low) & (candidates < high)]
        return np.array([t for t in in_range if (events & (test_times <= t)).any()])

    def plots(self, predictions: pd.DataFrame, out_dir: Path, split: str) -> list[Path]:
        """Kaplan-Meier curves split at the median risk (censoring ticks, numbers at risk, log-rank test) and td-AUC
        over time."""
        import matplotlib.pyplot as plt

        patients = self.patients(predictions)
        events = patients.censorship.to_numpy() == 0
        times = patients.time.to_numpy(dtype=float)
        high = self.high_risk(patients)
        written = []
        figure = kaplan_meier_figure(
            events,
            times,
            [("low risk", ~high), ("high risk", high)],
            self.time_column,
            f"{split} Kaplan-Meier, split at median risk",
        )
        written.append(save_figure(figure, out_dir / f"{split}_kaplan_meier.png"))
        auc_times = self.auc_times(patients)
        try:
            aucs, mean_auc = self.dynamic_auc(patients, auc_times) if len(auc_times) else (None, None)
        except ValueError:
            aucs = None
        if aucs is not None:
            figure, axis = plt.subplots(figsize=(6, 4))
            axis.plot(auc_times, aucs, marker="o")
            axis.axhline(mean_auc, linestyle="--", color="gray", label=f"mean {mean_auc:.3f}")
            axis.set(
                xlabel=self.time_column,
                ylabel="time-dependent AUC",
                title=f"{split} cumulative/dynamic AUC",
                ylim=(0, 1),
            )
            axis.legend()
            written.append(save_figure(figure, out_dir / f"{split}_td_auc.png"))
        return written
