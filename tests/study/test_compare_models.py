"""compare_models.py: two slide models trained for real over 5 folds compared end to end (tables checked against
scikit-learn and an independent DeLong, the report self-contained), survival and regression comparisons on planted
prediction files, and every input it must refuse, from the command line."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf
from scipy.stats import norm
from sklearn.metrics import brier_score_loss, mean_absolute_error, roc_auc_score
from sksurv.metrics import concordance_index_censored, integrated_brier_score
from sksurv.util import Surv

from source.config.compare import CompareConfig
from source.data.make_folds import make_folds
from source.engines.compare_job import run_compare_job
from source.engines.training_job import run_training_job
from source.study.runs import CLASSIFICATION_TRUTH, REGRESSION_TRUTH
from source.study.survival_curves import SURVIVAL_PREFIX, fold_evaluation_times
from source.tasks.survival import survival_column
from tests.helpers import REPO, assert_documented, load_documented, subprocess_environment
from tests.training_data import classification_data, job_config

YAML = REPO / "config" / "compare" / "default.yaml"
PNG = b"\x89PNG\r\n\x1a\n"
QUICK = "n_bootstrap=200"


def compare_command(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "compare_models.py"), "--config-name", "default", *args]


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        compare_command(*args, f"output_dir={tmp_path / 'out'}", "run_id=cmp"),
        capture_output=True,
        text=True,
        env=subprocess_environment(),
        cwd=tmp_path,
    )


def runs_argument(folders: dict[str, Path]) -> str:
    return "runs={" + ", ".join(f"{name}: '{folder}'" for name, folder in folders.items()) + "}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """abmil and mean trained for real on planted features over 5 folds (test parts disjoint: out-of-fold)."""
    root = tmp_path_factory.mktemp("compare_trained")
    paths = classification_data(root / "data", n_slides=40, regions=4, dim=16, signal=2.0)
    labels = pd.concat([pd.read_csv(paths[name]) for name in ("train", "tune", "test")])
    labels.to_csv(root / "labels.csv", index=False)
    make_folds(root / "labels.csv", root / "folds", folds=5, stratify="label")
    folders = {}
    for aggregator in ("abmil", "mean"):
        values = {"nepochs": 2, "model.hidden_dim": 8, "model.embed_dim_region": 16, "model.aggregator": aggregator}
        cfg = job_config(
            "classification", root, paths, run_id=aggregator, **values, **{"data.fold_dir": str(root / "folds")}
        )
        assert run_training_job(cfg, "classification", multi=True) == 0
        folders[aggregator] = Path(cfg.output_dir) / cfg.experiment_name / aggregator
    return folders


@pytest.fixture(scope="module")
def compared(trained, tmp_path_factory) -> Path:
    """compare_models.py on the two trained runs; its run folder."""
    root = tmp_path_factory.mktemp("compare_cli")
    result = run_cli(root, runs_argument(trained), QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "out" / "comparison" / "cmp"


def pooled_test_predictions(folder: Path) -> pd.DataFrame:
    frames = [
        pd.read_csv(path).assign(fold=path.parent.name) for path in sorted(folder.glob("fold_*/test_predictions.csv"))
    ]
    return pd.concat(frames, ignore_index=True)


def test_the_yaml_documents_every_key_of_the_schema():
    assert_documented(YAML, CompareConfig)


def test_the_truth_columns_are_those_training_writes():
    from source.tasks.classification_splits import TARGET as CLASSIFICATION_TARGET
    from source.tasks.regression_splits import TARGET as REGRESSION_TARGET
    from source.tasks.survival import SURVIVAL_PREFIX as SURVIVAL_COLUMNS

    assert (CLASSIFICATION_TRUTH, REGRESSION_TRUTH) == (CLASSIFICATION_TARGET, REGRESSION_TARGET)
    assert SURVIVAL_PREFIX == SURVIVAL_COLUMNS


def test_the_comparison_modules_load_without_torch():
    modules = [
        "source.config.compare",
        "source.study.runs",
        "source.study.alignment",
        "source.study.survival_curves",
        "source.study.compare",
        "source.study.plots",
        "source.study.report",
    ]
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_environment(), cwd=REPO
    )
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr[-2000:]


def test_a_comparison_writes_its_tables_plots_and_report(compared):
    for name in ("comparison.csv", "pairwise.csv", "report.html", "report.md", "config.yaml"):
        assert (compared / name).is_file(), name
    for name in ("roc", "precision_recall", "forest", "reliability"):
        assert (compared / f"{name}.png").read_bytes().startswith(PNG), name
    comparison = pd.read_csv(compared / "comparison.csv")
    assert set(comparison.metric) == {"auroc", "auprc", "balanced_accuracy", "brier", "ece"}
    assert set(comparison.model) == {"abmil", "mean"} and (comparison.n == 40).all() and (comparison.n_folds == 5).all()
    pairwise = pd.read_csv(compared / "pairwise.csv")
    assert set(pairwise.test) == {"delong", "paired_bootstrap", "corrected_t"}
    assert pairwise.loc[pairwise.metric == "auroc", "test"].tolist() == ["delong", "corrected_t"]
    assert (pairwise.p_adjusted >= pairwise.p_value - 1e-12).all() and pairwise.p_adjusted.le(1).all()


def test_pooled_auroc_and_brier_are_scikit_learn_on_the_runs_own_predictions(compared, trained):
    comparison = pd.read_csv(compared / "comparison.csv").set_index(["model", "metric"])
    for model, folder in trained.items():
        predictions = pooled_test_predictions(folder)
        truth, positive = predictions.label_index, predictions.prob_1
        assert comparison.loc[(model, "auroc"), "estimate"] == pytest.approx(roc_auc_score(truth, positive), abs=1e-6)
        assert comparison.loc[(model, "brier"), "estimate"] == pytest.approx(
            brier_score_loss(truth, positive), abs=1e-6
        )
        for metric in ("auroc", "brier"):
            row = comparison.loc[(model, metric)]
            assert row.ci_low <= row.estimate <= row.ci_high
            assert row.fold_ci_low <= row.fold_mean <= row.fold_ci_high


def delong_by_definition(truth: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """DeLong, DeLong & Clarke-Pearson (1988) from the pairwise kernel psi (1 above, 1/2 tied): difference, p."""
    components = []
    for scores in (a, b):
        positive, negative = scores[truth == 1], scores[truth == 0]
        psi = (positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])
        components.append((psi.mean(axis=1), psi.mean(axis=0)))
    s10 = np.cov(np.stack([components[0][0], components[1][0]]))
    s01 = np.cov(np.stack([components[0][1], components[1][1]]))
    covariance = s10 / (truth == 1).sum() + s01 / (truth == 0).sum()
    difference = components[0][0].mean() - components[1][0].mean()
    z = difference / np.sqrt(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    return difference, 2 * norm.sf(abs(z))


def test_the_delong_p_value_is_an_independent_computation(compared, trained):
    a, b = (pooled_test_predictions(trained[model]) for model in ("abmil", "mean"))
    paired = a.merge(b, on=["fold", "slide_id"], suffixes=("_a", "_b"))
    assert len(paired) == 40 and (paired.label_index_a == paired.label_index_b).all()
    difference, p_value = delong_by_definition(
        paired.label_index_a.to_numpy(), paired.prob_1_a.to_numpy(), paired.prob_1_b.to_numpy()
    )
    pairwise = pd.read_csv(compared / "pairwise.csv")
    row = pairwise[(pairwise.metric == "auroc") & (pairwise.test == "delong")].iloc[0]
    assert (row.model_a, row.model_b) == ("abmil", "mean")
    assert row.difference == pytest.approx(difference, abs=1e-9)
    assert row.p_value == pytest.approx(p_value, abs=1e-4)


class ReportParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images, self.tags = [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def test_the_html_report_is_self_contained(compared):
    text = (compared / "report.html").read_text()
    parser = ReportParser()
    parser.feed(text)
    prefix = "data:image/png;base64,"
    assert len(parser.images) == len(list(compared.glob("*.png")))
    for source in parser.images:
        assert source.startswith(prefix) and base64.b64decode(source[len(prefix) :]).startswith(PNG)
    assert not re.search(r"https?://|<link|<script|@import|url\(", text, flags=re.IGNORECASE)
    assert not re.search(r'src="(?!data:image/png;base64,)', text)
    assert not {"link", "script", "iframe", "object", "embed"} & parser.tags
    assert "abmil vs mean: AUROC " in text and "DeLong p = " in text and "corrected t p = " in text
    markdown = (compared / "report.md").read_text()
    for name in re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown):
        assert (compared / name).is_file() and "/" not in name
    assert "| abmil | auroc |" in markdown


def write_run(folder: Path, config: dict, predictions: dict[str, pd.DataFrame], split: str = "test") -> Path:
    """A run folder as training writes it: config.yaml and <split>_predictions.csv (per fold_<i>/, or at its root
    for the fold name ``""``)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    for fold, frame in predictions.items():
        (folder / fold).mkdir(exist_ok=True)
        frame.to_csv(folder / fold / f"{split}_predictions.csv", index=False)
    return folder


def compare_in_process(tmp_path: Path, folders: dict[str, Path], **values) -> Path:
    cfg = OmegaConf.merge(OmegaConf.structured(CompareConfig), load_documented(YAML))
    cfg.runs = {name: str(folder) for name, folder in folders.items()}
    for key, value in ({"output_dir": str(tmp_path / "out"), "run_id": "cmp", "n_bootstrap": 100} | values).items():
        OmegaConf.update(cfg, key, value, merge=False)
    assert run_compare_job(cfg) == 0
    return tmp_path / "out" / "comparison" / "cmp"


EDGES = [0.5, 10.0, 20.0, 35.0, 400.000001]
"""Bin edges of the planted survival runs: three inner edges inside every fold's follow-up, the last beyond it."""


def survival_folds(seed: int, n_folds: int = 3, patients: int = 24, edges=None) -> dict[str, pd.DataFrame]:
    """Each fold's test predictions: patients with one or two slides, risk tied to the time by ``seed``'s noise; with
    ``edges``, each slide's survival probability at every upper edge (``exp(-t exp(risk))``), as training writes it."""
    rng = np.random.default_rng(0)
    noise = np.random.default_rng(seed)
    folds = {}
    for fold in range(n_folds):
        rows = []
        for patient in range(patients):
            time = float(rng.exponential(30) + 1)
            censored = int(rng.random() < 0.3)
            risk = -np.log(time) + noise.normal(scale=1.0 + seed)
            for slide in range(1 + patient % 2):
                case = f"case_{fold}_{patient:02d}"
                slide_risk = risk + noise.normal(scale=0.1)
                row = {
                    "case_id": case,
                    "slide_id": f"{case}_s{slide}",
                    "censorship": censored,
                    "survival_months": time,
                    "bin": 0,
                    "risk": slide_risk,
                }
                rows.append(row | {survival_column(t): np.exp(-t * np.exp(slide_risk)) for t in (edges or [])[1:]})
        folds[f"fold_{fold}"] = pd.DataFrame(rows)
    return folds


def write_training_folds(fold_dir: Path, longest: tuple[float, ...] = (500.0, 500.0, 50.0)) -> None:
    """Each fold's train.csv: 48 patients of two slides, times exponential but at most ``longest`` of that fold."""
    rng = np.random.default_rng(7)
    for fold, cap in enumerate(longest):
        (fold_dir / f"fold_{fold}").mkdir(parents=True)
        time = np.minimum(rng.exponential(30, size=48) + 1, cap)
        patients = pd.DataFrame(
            {"case_id": [f"train_{i}" for i in range(48)], "censorship": (rng.random(48) < 0.3).astype(int)}
        ).assign(survival_months=time)
        patients.loc[patients.index.repeat(2)].to_csv(fold_dir / f"fold_{fold}" / "train.csv", index=False)


def survival_runs(tmp_path: Path, edges: dict[str, list[float] | None]) -> dict[str, Path]:
    """A run of 3 folds per model of ``edges`` (model -> its bin edges, None: predictions without survival columns),
    trained on the folds of ``tmp_path / 'splits'``."""
    folders = {}
    for seed, (name, model_edges) in enumerate(edges.items()):
        config = {
            "label_name": "survival_months",
            "nbins": len(model_edges or EDGES) - 1,
            "data": {"fold_dir": str(tmp_path / "splits")},
            "model": {"aggregator": name},
        }
        folders[name] = write_run(tmp_path / name, config, survival_folds(seed, edges=model_edges))
    return folders


def integrated_brier_by_hand(
    folder: Path, fold_dir: Path, times: list[float], folds=("fold_0", "fold_1", "fold_2")
) -> dict[str, float]:
    """fold -> scikit-survival's integrated Brier score of the run's patients (mean survival of their slides) at the
    ``times`` strictly inside the fold's follow-up, censoring from the fold's training patients (and its test
    patients where these are followed up to the last training time)."""
    values = {}
    for path in [folder / fold / "test_predictions.csv" for fold in folds]:
        columns = [survival_column(t) for t in times]
        patients = (
            pd.read_csv(path)
            .groupby("case_id")
            .agg(
                censorship=("censorship", "first"),
                time=("survival_months", "first"),
                **{c: (c, "mean") for c in columns},
            )
        )
        test = Surv.from_arrays(patients.censorship == 0, patients.time)
        inside = [(t, c) for t, c in zip(times, columns, strict=True) if patients.time.min() < t < patients.time.max()]
        train = pd.read_csv(fold_dir / path.parent.name / "train.csv").drop_duplicates("case_id")
        reference = Surv.from_arrays(train.censorship == 0, train.survival_months)
        if patients.time.max() >= train.survival_months.max():
            reference = np.concatenate([reference, test])
        values[path.parent.name] = integrated_brier_score(
            reference, test, patients[[c for _, c in inside]].to_numpy(), [t for t, _ in inside]
        )
    return values


def test_a_survival_comparison_over_folds(tmp_path):
    write_training_folds(tmp_path / "splits")
    folders = survival_runs(tmp_path, {"hipt": EDGES, "mean": EDGES})
    out = compare_in_process(tmp_path, folders)
    comparison = pd.read_csv(out / "comparison.csv").set_index(["model", "metric"])
    assert set(comparison.index.get_level_values("metric")) == {"c_index", "integrated_brier"}
    for name, folder in folders.items():
        per_fold = []
        for path in sorted(folder.glob("fold_*/test_predictions.csv")):
            patients = (
                pd.read_csv(path)
                .groupby("case_id")
                .agg(risk=("risk", "mean"), censorship=("censorship", "first"), time=("survival_months", "first"))
            )
            per_fold.append(concordance_index_censored(patients.censorship == 0, patients.time, patients.risk)[0])
        row = comparison.loc[(name, "c_index")]
        assert row.estimate == pytest.approx(np.mean(per_fold), abs=1e-9) and row.n == 72
        assert row.fold_mean == pytest.approx(np.mean(per_fold)) and row.ci_low <= row.estimate <= row.ci_high
        brier = integrated_brier_by_hand(folder, tmp_path / "splits", EDGES[1:])
        row = comparison.loc[(name, "integrated_brier")]
        assert row.estimate == pytest.approx(np.mean(list(brier.values())), abs=1e-9)
        assert row.fold_mean == pytest.approx(row.estimate, abs=1e-9) and row.n_folds == 3
        assert row.ci_low <= row.estimate <= row.ci_high and row.failed_draws < 5
    pairwise = pd.read_csv(out / "pairwise.csv")
    assert pairwise.test.tolist() == ["paired_bootstrap", "corrected_t"] * 2
    assert pairwise.metric.tolist() == ["c_index", "c_index", "integrated_brier", "integrated_brier"]
    estimates = comparison.estimate.unstack("metric")
    assert pairwise.difference.tolist()[::2] == pytest.approx((estimates.loc["hipt"] - estimates.loc["mean"]).tolist())
    assert pairwise.set_index("metric").loc["integrated_brier", "difference"].iloc[0] < 0, "hipt's risks are sharper"
    for name in folders:
        assert (out / f"kaplan_meier_{name}.png").read_bytes().startswith(PNG)
    report = (out / "report.md").read_text()
    assert "model.aggregator" in report and "No integrated Brier score" not in report
    assert "The integrated Brier score is scikit-survival's" in report
    assert "In fold_2 the test follow-up reaches the last training time" in report
    assert "hipt vs mean: c-index" in report and "integrated_brier" in report


def test_survival_runs_without_survival_probabilities_are_compared_on_the_c_index(tmp_path):
    write_training_folds(tmp_path / "splits")
    out = compare_in_process(tmp_path, survival_runs(tmp_path, {"hipt": EDGES, "old": None}))
    assert set(pd.read_csv(out / "comparison.csv").metric) == {"c_index"}
    report = (out / "report.md").read_text()
    assert "No integrated Brier score: the predictions of old hold no survival_at_<time> columns" in report


def test_the_integrated_brier_score_takes_the_times_every_model_predicts_in_the_folds_it_can_weigh(tmp_path):
    write_training_folds(tmp_path / "splits")
    (tmp_path / "splits" / "fold_1" / "train.csv").write_text("case_id\ntrain_0\n")
    coarser = [0.5, 10.0, 35.0, 400.000001]
    folders = survival_runs(tmp_path, {"hipt": EDGES, "coarse": coarser})
    out = compare_in_process(tmp_path, folders)
    comparison = pd.read_csv(out / "comparison.csv").set_index(["model", "metric"])
    for name, folder in folders.items():
        brier = integrated_brier_by_hand(folder, tmp_path / "splits", [10.0, 35.0, 400.000001], ("fold_0", "fold_2"))
        row = comparison.loc[(name, "integrated_brier")]
        assert row.estimate == pytest.approx((brier["fold_0"] + brier["fold_2"]) / 2, abs=1e-9)
        assert row.n_folds == 2
    report = (out / "report.md").read_text()
    assert "It leaves out fold_1: its training patients (censoring distribution) could not be read" in report


def test_no_integrated_brier_score_without_two_common_times_inside_the_follow_up(tmp_path):
    write_training_folds(tmp_path / "splits")
    out = compare_in_process(tmp_path, survival_runs(tmp_path, {"hipt": EDGES, "two_bins": [0.5, 20.0, 400.0]}))
    assert set(pd.read_csv(out / "comparison.csv").metric) == {"c_index"}
    report = (out / "report.md").read_text()
    assert (
        "No integrated Brier score: fold_0: only 1 of its 1 common times (bin edges every model predicts at)" in report
    )
    assert "fold_2: only 1 of its 1 common times" in report
    curves = [pd.DataFrame([[0.9, 0.5]], columns=[10.0, 20.0]), pd.DataFrame([[0.8]], columns=[15.0])]
    times, problem = fold_evaluation_times(curves, np.array([1.0, 30.0]))
    assert len(times) == 0 and problem.startswith("its models predict at no common time")


def test_a_regression_comparison_of_single_runs(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.normal(10, 3, size=30)
    folders = {}
    for name, noise in (("good", 0.5), ("poor", 3.0)):
        frame = pd.DataFrame(
            {
                "slide_id": [f"s{i}" for i in range(30)],
                "target": truth,
                "prediction": truth + rng.normal(scale=noise, size=30),
            }
        )
        folders[name] = write_run(
            tmp_path / name, {"label_name": "target", "loss": "mse", "huber_delta": 1.0}, {"": frame}
        )
    out = compare_in_process(tmp_path, folders)
    comparison = pd.read_csv(out / "comparison.csv").set_index(["model", "metric"])
    assert set(comparison.index.get_level_values("metric")) == {"mae", "rmse", "r2", "pearson"}
    good = pd.read_csv(folders["good"] / "test_predictions.csv")
    assert comparison.loc[("good", "mae"), "estimate"] == pytest.approx(
        mean_absolute_error(good.target, good.prediction)
    )
    assert comparison.fold_mean.isna().all() and comparison.fold_ci_low.isna().all()
    pairwise = pd.read_csv(out / "pairwise.csv")
    assert set(pairwise.test) == {"paired_bootstrap"} and len(pairwise) == 4
    assert pairwise.set_index("metric").loc["mae", "difference"] < 0
    assert (out / "scatter.png").read_bytes().startswith(PNG) and (out / "forest.png").is_file()


def classification_run(folder: Path, truth: np.ndarray, probabilities: np.ndarray, names=("0", "1")) -> Path:
    frame = pd.DataFrame({"slide_id": [f"s{i}" for i in range(len(truth))], "label": truth, "label_index": truth})
    for index, name in enumerate(names):
        frame[f"prob_{name}"] = probabilities[:, index]
    frame["pred"] = probabilities.argmax(axis=1)
    frame["pred_label"] = [names[i] for i in frame.pred]
    return write_run(folder, {"label_name": "label", "num_classes": len(names), "label_mapping": None}, {"": frame})


def test_three_classes_are_compared_one_against_the_rest(tmp_path):
    rng = np.random.default_rng(1)
    truth = np.arange(45) % 3
    folders = {}
    for name, signal in (("sharp", 3.0), ("blunt", 0.5)):
        logits = rng.normal(size=(45, 3)) + signal * np.eye(3)[truth]
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        folders[name] = classification_run(tmp_path / name, truth, probabilities, names=("a", "b", "c"))
    out = compare_in_process(tmp_path, folders)
    comparison = pd.read_csv(out / "comparison.csv").set_index(["model", "metric"])
    sharp = pd.read_csv(folders["sharp"] / "test_predictions.csv")
    expected = roc_auc_score(sharp.label_index, sharp[["prob_a", "prob_b", "prob_c"]], multi_class="ovr")
    assert comparison.loc[("sharp", "auroc"), "estimate"] == pytest.approx(expected, abs=1e-9)
    pairwise = pd.read_csv(out / "pairwise.csv")
    assert set(pairwise.test) == {"paired_bootstrap"}, "DeLong is for two classes"
    for name in ("roc", "precision_recall", "reliability"):
        assert (out / f"{name}.png").read_bytes().startswith(PNG)


def regression_run(folder: Path, slides: list[str]) -> Path:
    frame = pd.DataFrame({"slide_id": slides, "target": np.arange(len(slides), dtype=float), "prediction": 1.0})
    return write_run(folder, {"label_name": "target", "loss": "mse", "huber_delta": 1.0}, {"": frame})


@pytest.fixture(scope="module")
def refusals(trained, tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """Each input the command line must refuse, run at once (separate processes): case -> (output_dir, result)."""
    root = tmp_path_factory.mktemp("refusals")
    one_class = [classification_run(root / name, np.zeros(12, dtype=int), np.full((12, 2), 0.5)) for name in "ab"]
    arguments = {
        "tasks": [runs_argument({"abmil": trained["abmil"], "reg": regression_run(root / "reg", ["s0", "s1", "s2"])})],
        "slides": [
            runs_argument(
                {
                    "first": regression_run(root / "first", [f"s{i:02d}" for i in range(20)]),
                    "second": regression_run(root / "second", [f"s{i:02d}" for i in range(8, 28)]),
                }
            )
        ],
        "file": [runs_argument(trained), "split=validation"],
        "one_run": [f"runs=['{trained['abmil']}']"],
        "one_class": [runs_argument({"a": one_class[0], "b": one_class[1]})],
    }
    started = {
        case: subprocess.Popen(
            compare_command(*args, f"output_dir={root / case}", "run_id=cmp"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_environment(),
            cwd=root,
        )
        for case, args in arguments.items()
    }
    results = {}
    for case, process in started.items():
        stdout, stderr = process.communicate(timeout=300)
        results[case] = (root / case, subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return results


def assert_refused(refusal: tuple[Path, subprocess.CompletedProcess], *messages: str) -> None:
    output_dir, result = refusal
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for message in messages:
        assert message in result.stderr, result.stderr[-3000:]
    assert not output_dir.exists(), "nothing is written"


def test_runs_of_different_tasks_are_refused(refusals):
    assert_refused(
        refusals["tasks"], "runs of different tasks cannot be compared: abmil is classification, reg is regression"
    )


def test_runs_on_other_slides_are_one_error_naming_the_ids(refusals):
    assert_refused(
        refusals["slides"],
        "the runs do not cover the same slides of split 'test'",
        "8 only in first (s00, s01, s02, s03, s04 and 3 more)",
        "8 only in second (s20, s21, s22, s23, s24 and 3 more)",
    )


def test_a_missing_predictions_file_names_the_run_and_the_path(refusals, trained):
    expected = trained["abmil"] / "fold_0" / "validation_predictions.csv"
    assert_refused(refusals["file"], f"run abmil: {expected} not found", "set split to one of them")


def test_one_run_is_refused(refusals):
    assert_refused(refusals["one_run"], "runs: give at least two runs to compare, got 1")


def test_a_split_of_one_class_is_refused(refusals):
    assert_refused(
        refusals["one_class"], "split 'test' has one class only", "AUROC (one class against the rest) is undefined"
    )
