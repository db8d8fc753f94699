"""Tasks own what differs between them: outputs, label columns, targets, patient items, ensembles."""

import numpy as np
import pandas as pd
import pytest

from source.config.core import settings_from_config
from source.tasks.classification import ClassificationTask
from source.tasks.registry import TASKS, task_class
from source.tasks.survival import SurvivalTask
from tests.helpers import training_config


def test_each_kind_answers_from_its_training_config():
    classification = settings_from_config(
        ClassificationTask.settings,
        training_config("classification", features_dir="x", num_classes=3, label_name="subtype"),
    )
    survival_config = training_config("survival", features_dir="x", nbins=5, **{"model.agg_method": "self_att"})
    survival = settings_from_config(SurvivalTask.settings, survival_config)
    assert sorted(TASKS) == ["classification", "regression", "survival"] and task_class("survival") is SurvivalTask
    assert ClassificationTask.outputs_of(classification) == 3 and SurvivalTask.outputs_of(survival) == 5
    assert ClassificationTask.label_columns(classification) == {"subtype"}
    assert SurvivalTask.label_columns(survival) == {"case_id", "censorship", "survival_months"}
    assert ClassificationTask.target_names() == ["label"] and SurvivalTask.target_names() == ["bin", "censorship"]
    assert SurvivalTask.by_patient(survival) and not ClassificationTask.by_patient(classification)
    with pytest.raises(
        ValueError, match=r"unknown task 'segmentation'; known tasks: \['classification', 'regression',"
    ):
        task_class("segmentation")


def test_ensembles_average_the_prediction_columns_and_recompute_the_decision():
    task = ClassificationTask(3, ["a", "b", "c"])
    first = pd.DataFrame({"slide_id": ["s1", "s2"], "prob_a": [0.6, 0.1], "prob_b": [0.3, 0.5], "prob_c": [0.1, 0.4]})
    second = first.assign(prob_a=[0.0, 0.1], prob_b=[0.3, 0.1], prob_c=[0.7, 0.8])
    merged = task.ensemble([first, second])
    np.testing.assert_allclose(merged.prob_c, [0.4, 0.6])
    assert (
        merged.pred.tolist() == [2, 2]
        and merged.pred_label.tolist() == ["c", "c"]
        and merged.slide_id.tolist() == ["s1", "s2"]
    )
    risks = SurvivalTask(4, "survival_months").ensemble(
        [pd.DataFrame({"risk": [1.0, -2.0]}), pd.DataFrame({"risk": [3.0, 0.0]})]
    )
    np.testing.assert_allclose(risks.risk, [2.0, -1.0])
