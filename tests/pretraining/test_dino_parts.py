"""Schedules, loss, centre, EMA, multi-crop, kNN: each against a direct computation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from source.models.vit import build_vit
from source.pretraining.augment import PatchMultiCrop, RegionMultiCrop
from source.pretraining.dino import DINO, MultiCropWrapper
from source.pretraining.head import DINOHead
from source.pretraining.knn import knn_metrics, knn_probabilities
from source.pretraining.loss import DINOLoss
from source.pretraining.schedules import cosine_schedule, scaled_learning_rate, teacher_temperature_schedule


def test_schedules_values_at_chosen_iterations():
    schedule = cosine_schedule(1.0, 0.1, epochs=10, iterations_per_epoch=5, warmup_epochs=2, warmup_start=0.0)
    assert len(schedule) == 50
    assert schedule[0] == 0.0 and schedule[9] == pytest.approx(1.0) and schedule[10] == pytest.approx(1.0)
    middle = 10 + 20  # halfway through the 40 cosine iterations
    assert schedule[middle] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 20 / 40)))
    assert schedule[-1] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 39 / 40)))
    momentum = cosine_schedule(0.996, 1.0, 4, 3)
    assert momentum[0] == pytest.approx(0.996) and np.all(np.diff(momentum) > 0) and momentum[-1] < 1
    temps = teacher_temperature_schedule(0.04, 0.07, 3, 6)
    np.testing.assert_allclose(temps, [0.04, 0.055, 0.07, 0.07, 0.07, 0.07])
    assert scaled_learning_rate(0.0005, 1024) == pytest.approx(0.002)


def test_dino_loss_against_a_direct_computation_and_the_centre_update():
    torch.manual_seed(0)
    out_dim, batch, crops = 16, 3, 4
    loss = DINOLoss(out_dim, crops, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=2, epochs=5)
    loss.center.copy_(torch.randn(1, out_dim) * 0.1)
    center = loss.center.clone()
    student, teacher = torch.randn(crops * batch, out_dim), torch.randn(2 * batch, out_dim)
    value = loss(student, teacher, epoch=1)
    temp = 0.07  # linspace(0.04, 0.07, 2)[1]: the warm-up reaches teacher_temp at its last epoch
    expected = []
    for t in range(2):
        for s in range(crops):
            if s == t:
                continue
            for b in range(batch):
                q = F.softmax((teacher[t * batch + b] - center[0]) / temp, dim=0)
                log_p = F.log_softmax(student[s * batch + b] / 0.1, dim=0)
                expected.append(-(q * log_p).sum())
    assert value.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    torch.testing.assert_close(loss.center, 0.9 * center + 0.1 * teacher.mean(0, keepdim=True))


def test_ema_update_and_teacher_without_gradients():
    torch.manual_seed(0)
    dino = DINO(
        build_vit("vit_tiny"),
        build_vit("vit_tiny"),
        {"out_dim": 32, "hidden": 64, "bottleneck": 16},
        DINOLoss(32, 4, 0.04, 0.04, 0, 1),
    )
    assert all(not p.requires_grad for p in dino.teacher.parameters())
    teacher_before = [p.clone() for p in dino.teacher.parameters()]
    with torch.no_grad():
        for p in dino.student.parameters():
            p.add_(1.0)
    dino.update_teacher(0.9)
    for before, student, teacher in zip(
        teacher_before, dino.student.parameters(), dino.teacher.parameters(), strict=True
    ):
        torch.testing.assert_close(teacher, 0.9 * before + 0.1 * student)
    crops = [torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)] + [torch.randn(2, 3, 16, 16)] * 2
    loss = dino(crops, epoch=0)
    loss.backward()
    assert all(p.grad is None for p in dino.teacher.parameters())
    assert dino.student.backbone.cls_token.grad is not None


def test_head_and_multicrop_wrapper_shapes():
    head = DINOHead(192, out_dim=100, hidden=64, bottleneck=16)
    assert not head.last_layer.parametrizations.weight.original0.requires_grad
    wrapper = MultiCropWrapper(build_vit("vit_tiny"), head)
    out = wrapper([torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32), torch.randn(3, 3, 16, 16)])
    assert out.shape == (9, 100)


def test_patch_multicrop_on_real_tissue(demo_regions_1024):
    path = sorted((demo_regions_1024 / "CMU-1-Small-Region" / "imgs").iterdir())[3]
    with Image.open(path) as region:
        patch = region.crop((0, 0, 256, 256)).convert("RGB")
    crops = PatchMultiCrop(local_number=8)(patch)
    assert len(crops) == 10
    assert all(c.shape == (3, 224, 224) for c in crops[:2]) and all(c.shape == (3, 96, 96) for c in crops[2:])
    assert -1.0 <= float(min(c.min() for c in crops)) and float(max(c.max() for c in crops)) <= 1.0


@pytest.mark.parametrize("grid, global_side, local_side", [(16, 14, 6), (8, 7, 3), (4, 4, 2)])
def test_region_multicrop_shapes_and_content(grid, global_side, local_side):
    features = torch.arange(384 * grid * grid, dtype=torch.float32).reshape(384, grid, grid)
    crops = RegionMultiCrop(grid, local_number=8)(features)
    assert [tuple(c.shape) for c in crops] == [(384, global_side, global_side)] * 2 + [
        (384, local_side, local_side)
    ] * 8
    for crop in crops:  # each crop is a (possibly flipped) window of the grid
        side = crop.shape[-1]
        windows = [
            features[:, r : r + side, c : c + side] for r in range(grid - side + 1) for c in range(grid - side + 1)
        ]
        assert any(torch.equal(crop, w) or torch.equal(crop, w.flip(-1)) for w in windows)


def test_knn_against_brute_force_on_known_clusters():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=generator) * 5
    train_labels = torch.arange(60) % 3
    train = centres[train_labels] + torch.randn(60, 8, generator=generator)
    test_labels = torch.arange(15) % 3
    test = centres[test_labels] + torch.randn(15, 8, generator=generator)
    probabilities = knn_probabilities(train, train_labels, test, num_classes=3, k=5, temperature=0.1)
    for i in range(15):
        similarities = [F.cosine_similarity(test[i], train[j], dim=0).item() for j in range(60)]
        nearest = sorted(range(60), key=lambda j: -similarities[j])[:5]
        votes = np.zeros(3)
        for j in nearest:
            votes[train_labels[j]] += math.exp(similarities[j] / 0.1)
        np.testing.assert_allclose(probabilities[i].numpy(), votes / votes.sum(), rtol=1e-4)
    metrics = knn_metrics(probabilities, test_labels)
    assert metrics["accuracy"] == 1.0 and metrics["auc"] == 1.0
