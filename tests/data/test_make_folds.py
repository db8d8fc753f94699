"""Patient-level stratified folds, and the overlap check of training splits."""

import numpy as np
import pandas as pd
import pytest

from source.data.labels import LabelTableError, check_no_overlap
from source.data.make_folds import FoldError, main, make_folds


@pytest.fixture
def labels(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for patient in range(30):
        label = "LUAD" if patient % 3 else "LUSC"
        for slide in range(rng.integers(1, 4)):
            rows.append({"case_id": f"p{patient}", "slide_id": f"p{patient}_s{slide}", "label": label})
    path = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_folds_keep_patients_together_and_cover_everyone_once(labels, tmp_path):
    folders = make_folds(labels, tmp_path / "splits", folds=5, stratify="label")
    everyone = pd.read_csv(labels)
    tested = []
    for folder in folders:
        splits = {name: pd.read_csv(folder / f"{name}.csv") for name in ("train", "tune", "test")}
        assert sum(len(s) for s in splits.values()) == len(everyone)
        patients = [set(s.case_id) for s in splits.values()]
        assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
        assert all(set(s.label) == {"LUAD", "LUSC"} for s in splits.values()), "every split has both classes"
        tested += splits["test"].slide_id.tolist()
        check_no_overlap(splits, {name: name for name in splits})  # the training job accepts them
    assert sorted(tested) == sorted(everyone.slide_id), "each slide is tested exactly once"


def test_no_test_split_and_bad_inputs(labels, tmp_path):
    folders = make_folds(labels, tmp_path / "cv", folds=4, test=False)
    assert sorted(p.name for p in folders[0].iterdir()) == ["train.csv", "tune.csv"]
    with pytest.raises(FoldError, match="no column 'grade'"):
        make_folds(labels, tmp_path / "x", stratify="grade")
    with pytest.raises(FoldError, match="cannot fill 40 parts"):
        make_folds(labels, tmp_path / "x", folds=40)
    assert main([str(labels), str(tmp_path / "y"), "--folds", "2"]) == 2
    assert (
        main([str(labels), str(tmp_path / "z"), "--folds", "3"]) == 0
        and (tmp_path / "z" / "fold_2" / "test.csv").exists()
    )


def test_shared_slides_or_patients_are_refused_unless_allowed(caplog):
    train = pd.DataFrame({"case_id": ["a", "b", "c"], "slide_id": ["a1", "b1", "c1"]})
    tune = pd.DataFrame({"case_id": ["c", "d"], "slide_id": ["c2", "d1"]})
    paths = {"train": "train.csv", "tune": "tune.csv"}
    with pytest.raises(LabelTableError, match=r"1 case_id\(s\) in both train.csv \(train\) and tune.csv \(tune\): c"):
        check_no_overlap({"train": train, "tune": tune}, paths)
    check_no_overlap({"train": train, "tune": tune}, paths, allow=True)
    assert "allowed by data.allow_overlap" in caplog.text
    same = {"train": train, "tune": train.copy()}
    with pytest.raises(LabelTableError, match="3 case_id"):
        check_no_overlap(same, paths)
    no_case = {"train": train.drop(columns="case_id"), "tune": train.drop(columns="case_id")}
    with pytest.raises(LabelTableError, match=r"3 slide_id\(s\)"):
        check_no_overlap(no_case, paths)
