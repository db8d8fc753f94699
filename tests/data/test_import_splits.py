"""The official CLAM / HIPT splits imported into fold folders, and the paper's label-stratified training share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from source.data.features import FeatureBank
from source.data.import_splits import SplitImportError, import_splits, main, strip_extension
from source.data.splits import stratified_share
from source.engines.training_job import run_training_job
from tests.training_data import classification_data, job_config


def write_clam_splits(folder, dataset_ids):
    """splits_0.csv (columns of different lengths, ids with .svs) and splits_1_bool.csv (ids without extension)."""
    folder.mkdir()
    train, val, test = dataset_ids[:8], dataset_ids[8:11], dataset_ids[11:13]
    columns = {
        "train": [f"{s}.svs" for s in train] + ["ghost-1.svs", "ghost-2.svs"],  # 2 ids the dataset lacks
        "val": [f"{s}.svs" for s in val] + [f"{dataset_ids[13]}.svs"],  # a slide the dataset has without a label
        "test": [f"{s}.svs" for s in test],
    }
    longest = max(len(values) for values in columns.values())
    padded = {name: values + [None] * (longest - len(values)) for name, values in columns.items()}
    pd.DataFrame(padded).to_csv(folder / "splits_0.csv")  # CLAM writes its index as the first column
    roles = {s: ("train" if i >= 5 else "val" if i < 3 else "test") for i, s in enumerate(dataset_ids[:13])}
    boolean = pd.DataFrame(
        {name: [roles[s] == name for s in roles] for name in ("train", "val", "test")}, index=list(roles)
    )
    boolean.to_csv(folder / "splits_1_bool.csv")
    return columns, roles


@pytest.fixture
def dataset(tmp_path):
    ids = [f"TCGA-{i:02d}" for i in range(16)]
    frame = pd.DataFrame(
        {
            "case_id": [f"case-{i // 2}" for i in range(16)],
            "slide_id": [f"{s}.svs" if i % 2 else s for i, s in enumerate(ids)],  # with and without extension
            "oncotree_code": ["IDC", "ILC"] * 6 + ["IDC", None, "ILC", None],  # rows 13 and 15 have no label
        }
    )
    frame.to_csv(tmp_path / "dataset.csv", index=False)
    return ids, tmp_path / "dataset.csv"


def test_clam_split_files_become_fold_folders_with_a_report(tmp_path, dataset, capsys):
    ids, csv = dataset
    columns, roles = write_clam_splits(tmp_path / "splits", ids)
    assert main([str(tmp_path / "splits"), str(csv), str(tmp_path / "folds"), "--label", "oncotree_code"]) == 0
    fold_0 = {role: pd.read_csv(tmp_path / "folds" / "fold_0" / f"{role}.csv") for role in ("train", "tune", "test")}
    assert fold_0["train"].slide_id.tolist() == ids[:8] and fold_0["tune"].slide_id.tolist() == ids[8:11]
    assert list(fold_0["train"].columns) == ["case_id", "slide_id", "oncotree_code", "label"]
    assert (fold_0["train"].label == fold_0["train"].oncotree_code).all()
    fold_1 = pd.read_csv(tmp_path / "folds" / "fold_1" / "train.csv")
    assert fold_1.slide_id.tolist() == [s for s, role in roles.items() if role == "train"]
    report = pd.read_csv(tmp_path / "folds" / "import_report.csv").set_index("fold")
    # fold 0 lists 2 ghosts and TCGA-13, which has no label: 3 ids without a labelled row
    assert report.loc[0, "split_ids_absent_from_dataset"] == 3 and report.loc[1, "split_ids_absent_from_dataset"] == 0
    # 14 labelled rows (all but 13 and 15); fold 0 assigns TCGA-00 .. TCGA-12: TCGA-14 is in no split
    assert report.loc[0, "dataset_rows_in_no_split"] == 1 and report.loc[0, "test_rows"] == 2
    printed = capsys.readouterr().out
    assert "14 labelled slides" in printed and "2 rows without oncotree_code left out" in printed


def test_case_ids_select_every_slide_of_the_case(tmp_path, dataset):
    _, csv = dataset
    (tmp_path / "splits").mkdir()
    splits = {"train": ["case-0", "case-1", "case-2"], "val": ["case-3"], "test": ["case-4"]}
    pd.DataFrame({k: v + [None] * (3 - len(v)) for k, v in splits.items()}).to_csv(tmp_path / "splits" / "splits_0.csv")
    reports = import_splits(tmp_path / "splits", csv, tmp_path / "folds", "oncotree_code")
    assert reports[0].matched_by == "case_id" and reports[0].rows == {"train": 6, "tune": 2, "test": 2}


def test_bad_inputs_are_one_error_each(tmp_path, dataset):
    _, csv = dataset
    with pytest.raises(SplitImportError, match="does not exist"):
        import_splits(tmp_path / "none", csv, tmp_path / "out", "oncotree_code")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SplitImportError, match="no splits_<k>.csv"):
        import_splits(tmp_path / "empty", csv, tmp_path / "out", "oncotree_code")
    (tmp_path / "other").mkdir()
    pd.DataFrame({"train": ["x-1"], "val": ["x-2"]}).to_csv(tmp_path / "other" / "splits_0.csv")
    with pytest.raises(SplitImportError, match="no train id matches"):
        import_splits(tmp_path / "other", csv, tmp_path / "out", "oncotree_code")
    with pytest.raises(SplitImportError, match="no column 'subtype'"):
        import_splits(tmp_path / "other", csv, tmp_path / "out", "subtype")
    assert main([str(tmp_path / "empty"), str(csv), str(tmp_path / "out")]) == 2
    assert strip_extension("TCGA-AB.1234.svs") == "TCGA-AB.1234" and strip_extension("TCGA-AB.1234") == "TCGA-AB.1234"


def test_imported_folds_train_as_data_fold_dir(tmp_path):
    paths = classification_data(tmp_path / "data", n_slides=20, regions=3, signal=2.0)
    frame = pd.concat([pd.read_csv(paths[name]) for name in ("train", "tune", "test")])
    frame.to_csv(tmp_path / "dataset.csv", index=False)
    ids = frame.slide_id.tolist()
    (tmp_path / "splits").mkdir()
    for fold in range(2):
        rotated = ids[fold * 4 :] + ids[: fold * 4]
        columns = {"train": rotated[:12], "val": rotated[12:16] + [None] * 8, "test": rotated[16:] + [None] * 8}
        pd.DataFrame(columns).to_csv(tmp_path / "splits" / f"splits_{fold}.csv")
    import_splits(tmp_path / "splits", tmp_path / "dataset.csv", tmp_path / "folds")
    cfg = job_config("classification", tmp_path, paths, nepochs=1, **{"data.fold_dir": str(tmp_path / "folds")})
    assert run_training_job(cfg, "classification", multi=True) == 0
    summary = pd.read_csv(tmp_path / "out" / "classification" / "run" / "summary.csv")
    assert {"fold_0", "fold_1"} <= set(summary.columns)


def test_train_fraction_keeps_the_label_proportions_with_a_seed(tmp_path):
    frame = pd.DataFrame({"slide_id": [f"s{i}" for i in range(40)], "label": [0] * 30 + [1] * 10})
    kept = stratified_share(frame, 0.25, 0, frame.label)
    assert kept.label.value_counts().to_dict() == {0: 8, 1: 2}
    assert kept.slide_id.tolist() == stratified_share(frame, 0.25, 0, frame.label).slide_id.tolist()
    assert kept.slide_id.tolist() != stratified_share(frame, 0.25, 1, frame.label).slide_id.tolist()
    assert list(kept.index) == list(range(10)) and kept.slide_id.map(lambda s: int(s[1:])).is_monotonic_increasing
    paths = classification_data(tmp_path, n_slides=40, regions=2)
    from source.tasks.classification_splits import classification_splits

    bank = FeatureBank(paths["features_dir"], "global", 192)
    splits = classification_splits({"train": str(paths["train"])}, bank, "label", 2, train_fraction=0.25, seed=3)
    train = pd.read_csv(paths["train"])
    expected = {k: int(round(0.25 * v)) for k, v in train.label.value_counts().to_dict().items()}
    assert splits["train"].frame.label.value_counts().to_dict() == expected
    assert np.isin(splits["train"].frame.slide_id, train.slide_id).all()


def write_fold_files(folder, folds):
    """``splits_<k>.csv`` for each ``{column: ids}`` of ``folds``, columns padded with blanks as CLAM writes them."""
    folder.mkdir()
    for fold, columns in enumerate(folds):
        longest = max(len(values) for values in columns.values())
        padded = {name: values + [None] * (longest - len(values)) for name, values in columns.items()}
        pd.DataFrame(padded).to_csv(folder / f"splits_{fold}.csv")


def overlapping_folds(ids):
    """Fold 0 is clean; fold 1 has TCGA-03 in train (as ``.svs``) and test, and TCGA-09 in val and test."""
    clean = {"train": ids[:8], "val": ids[8:11], "test": ids[11:13]}
    leaking = {"train": [f"{s}.svs" for s in ids[:8]], "val": ids[8:11], "test": [ids[3], ids[9], ids[12]]}
    return [clean, leaking]


def test_an_id_in_two_splits_of_a_fold_is_an_error_naming_fold_id_splits_and_fix(tmp_path, dataset, capsys):
    ids, csv = dataset
    write_fold_files(tmp_path / "splits", overlapping_folds(ids))
    args = [str(tmp_path / "splits"), str(csv), str(tmp_path / "folds"), "--label", "oncotree_code"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "fold 1" in error and "'TCGA-03'" in error and "train" in error and "test" in error
    assert "TCGA-03.svs" in error  # the id as the file spells it, to find it there
    assert "fix the splits file" in error and "--allow-overlap" in error
    assert not (tmp_path / "folds").exists()  # nothing written: no fold is left half imported
    with pytest.raises(SplitImportError, match=r"fold 1 .*'TCGA-03'.*train.*test") as raised:
        import_splits(tmp_path / "splits", csv, tmp_path / "folds", "oncotree_code")
    assert raised.value.exit_code == 2


def test_allow_overlap_writes_the_folds_and_warns_with_an_overlap_column(tmp_path, dataset, caplog):
    ids, csv = dataset
    write_fold_files(tmp_path / "splits", overlapping_folds(ids))
    args = [str(tmp_path / "splits"), str(csv), str(tmp_path / "folds"), "--label", "oncotree_code"]
    with caplog.at_level("WARNING", logger="source.data.import_splits"):
        assert main([*args, "--allow-overlap"]) == 0
    fold_1 = {role: pd.read_csv(tmp_path / "folds" / "fold_1" / f"{role}.csv") for role in ("train", "tune", "test")}
    assert fold_1["train"].slide_id.tolist() == ids[:8] and fold_1["tune"].slide_id.tolist() == ids[8:11]
    assert fold_1["test"].slide_id.tolist() == [ids[3], ids[9], ids[12]]
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "fold 1" in warnings[0] and "TCGA-03 (train, test)" in warnings[0] and "TCGA-09 (val, test)" in warnings[0]
    report = pd.read_csv(tmp_path / "folds" / "import_report.csv").set_index("fold")
    assert report["split_ids_in_several_splits"].to_dict() == {0: 0, 1: 2}
    reports = import_splits(tmp_path / "splits", csv, tmp_path / "again", "oncotree_code", allow_overlap=True)
    assert [report.overlap_ids for report in reports] == [[], ["TCGA-03", "TCGA-09"]]


def test_absent_ids_are_named_the_first_20_then_the_count_of_the_rest(tmp_path, dataset, capsys):
    ids, csv = dataset
    ghosts = [f"ghost-{i:02d}.svs" for i in range(25)]
    write_fold_files(tmp_path / "splits", [{"train": ids[:8] + ghosts, "val": ids[8:11], "test": ids[11:13]}])
    assert main([str(tmp_path / "splits"), str(csv), str(tmp_path / "folds"), "--label", "oncotree_code"]) == 0
    report = pd.read_csv(tmp_path / "folds" / "import_report.csv").set_index("fold")
    assert report.loc[0, "split_ids_absent_from_dataset"] == 25
    named = ", ".join(f"ghost-{i:02d}" for i in range(20)) + " and 5 more"
    assert report.loc[0, "absent_split_ids"] == named
    printed = capsys.readouterr().out
    assert f"fold 0: 25 split ids absent from the dataset or without a label there: {named}" in printed
    assert "ghost-20" not in printed


def test_the_report_names_few_absent_ids_without_a_count(tmp_path, dataset):
    ids, csv = dataset
    write_clam_splits(tmp_path / "splits", ids)
    reports = import_splits(tmp_path / "splits", csv, tmp_path / "folds", "oncotree_code")
    assert reports[0].absent_ids == ["ghost-1", "ghost-2", "TCGA-13"] and reports[1].absent_ids == []
