"""Every registered slide model (forward, backward, strict state-dict round trip) and each one's maths against an
independent eager computation with its own weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from source.engines.train import Trainer, TrainerSettings
from source.models.clam import CLAM
from source.models.factory import build_slide_model
from source.models.mil import ABMIL, DSMIL, PoolingMIL
from source.models.settings import EncoderSettings, HiptOptions, SlideModelSettings
from source.models.slide_registry import AGGREGATORS, DsMilOptions, aggregator_spec
from source.models.transmil import NystromAttention, TransMIL, iterative_pinv
from source.tasks.classification import ClassificationTask
from tests.engines.test_trainer import make_split


def settings_for(name: str, level: str = "global") -> SlideModelSettings:
    hipt = HiptOptions(vit_region=EncoderSettings(level="local", warn_random=False)) if name == "hipt" else None
    return SlideModelSettings(aggregator=name, level=level, hidden_dim=16, dropout=0.0, patch_dim=24, options=hipt)


@pytest.mark.parametrize("level", ["global", "local"])
@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_forward_backward_and_state_dict_round_trip(name, level):
    settings = settings_for(name, level)
    torch.manual_seed(0)
    model = build_slide_model(settings, 3)
    if level == "global":
        bag = torch.randn(5, 192)
    elif settings.patch_bags:
        bag = torch.randn(5 * 4, 24)  # a flat bag of the patches of 5 regions of 2 x 2
    else:
        bag = torch.randn(5, 4, 24)  # HIPT at level local: grids through ViT_region
    logits, attention = model.forward_with_attention(bag)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    if aggregator_spec(name).attention:
        assert attention.shape == (len(bag),) and torch.isclose(attention.sum(), torch.tensor(1.0))
    else:
        assert attention is None
    model(bag).square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    torch.manual_seed(1)
    twin = build_slide_model(settings, 3)
    twin.load_state_dict(model.state_dict(), strict=True)
    model.eval(), twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(twin(bag), model(bag))


def gated_attention(h, tanh_layer, sigmoid_layer, score_layer):
    """softmax over instances of w^T (tanh(V h + b) * sigmoid(U h + c)) + d, from raw weights."""
    tanh = torch.tanh(h @ tanh_layer.weight.T + tanh_layer.bias)
    sigmoid = torch.sigmoid(h @ sigmoid_layer.weight.T + sigmoid_layer.bias)
    return torch.softmax((tanh * sigmoid) @ score_layer.weight.T + score_layer.bias, dim=0)


def embedded(model, bag):
    linear = model.embed[0]
    return torch.relu(bag @ linear.weight.T + linear.bias)


def test_abmil_equals_the_gated_attention_formula():
    torch.manual_seed(2)
    model = ABMIL(12, 3, hidden=10, dropout=0.0).eval()
    bag = torch.randn(7, 12)
    h = embedded(model, bag)
    pool = model.pool
    a = gated_attention(h, pool.tanh_branch[0], pool.sigmoid_branch[0], pool.score).squeeze(1)
    expected = (a @ h) @ model.classifier.weight.T + model.classifier.bias
    logits, attention = model.forward_with_attention(bag)
    torch.testing.assert_close(attention, a)
    torch.testing.assert_close(logits, expected)


@pytest.mark.parametrize("multi_branch", [False, True])
def test_clam_attention_branch_equals_the_formula(multi_branch):
    torch.manual_seed(3)
    model = CLAM(12, 3, hidden=10, dropout=0.0, multi_branch=multi_branch).eval()
    bag = torch.randn(9, 12)
    h = embedded(model, bag)
    a = gated_attention(h, model.attention_tanh[0], model.attention_sigmoid[0], model.attention_score).T
    if multi_branch:
        expected = torch.stack([clf.weight[0] @ (a[i] @ h) + clf.bias[0] for i, clf in enumerate(model.classifiers)])
    else:
        expected = (a[0] @ h) @ model.classifier.weight.T + model.classifier.bias
    logits, attention = model.forward_with_attention(bag)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(attention, a[int(expected.argmax())] if multi_branch else a[0])


def test_clam_instance_loss_equals_a_direct_computation():
    torch.manual_seed(4)
    model = CLAM(12, 3, hidden=10, dropout=0.0, k_sample=2, instance_loss_weight=0.3, subtyping=True).eval()
    bag = torch.randn(9, 12)
    logits, auxiliary, weight = model.forward_train(bag, {"label": torch.tensor(1)})
    h = embedded(model, bag)
    a = gated_attention(h, model.attention_tanh[0], model.attention_sigmoid[0], model.attention_score)[:, 0]
    order = torch.argsort(a, descending=True)
    expected = 0.0
    for cls, classifier in enumerate(model.instance_classifiers):
        if cls == 1:
            chosen, targets = torch.cat([order[:2], order[-2:].flip(0)]), torch.tensor([1, 1, 0, 0])
        else:
            chosen, targets = order[:2], torch.tensor([0, 0])
        expected = expected + F.cross_entropy(h[chosen] @ classifier.weight.T + classifier.bias, targets)
    torch.testing.assert_close(auxiliary, expected / 3)
    assert weight == 0.3
    model.subtyping = False  # the true class's positives and negatives only, not averaged over the classes
    true_class = model.instance_classifiers[1]
    chosen = torch.cat([order[:2], order[-2:].flip(0)])
    alone = F.cross_entropy(h[chosen] @ true_class.weight.T + true_class.bias, torch.tensor([1, 1, 0, 0]))
    torch.testing.assert_close(model.forward_train(bag, {"label": torch.tensor(1)})[1], alone)
    assert model.forward_train(bag, {"bin": torch.tensor(0)})[1] is None  # no class label: no instance loss
    assert model.forward_train(bag[:1], {"label": torch.tensor(0)})[1] == 0  # a bag of 1 has no k instances


def test_dsmil_and_pooling_equal_their_formulas():
    torch.manual_seed(5)
    model = DSMIL(12, 2, hidden=8, dropout=0.0, instance_embedding=True).eval()
    bag = torch.randn(6, 12)
    h = embedded(model, bag)
    scores = h @ model.instance_classifier.weight.T + model.instance_classifier.bias
    q = model.query(h)
    critical = q[scores.argmax(0)]
    a = torch.softmax(q @ critical.T / math.sqrt(q.shape[1]), dim=0)
    pooled = a.T @ model.value(h)
    bag_scores = (model.bag_classifier.weight * pooled.unsqueeze(0)).sum((1, 2)) + model.bag_classifier.bias
    expected = 0.5 * (scores.max(0).values + bag_scores)
    logits, attention = model.forward_with_attention(bag)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(attention, a[:, int(expected.argmax())])
    for reduce in ("mean", "max"):
        pooling = PoolingMIL(12, 2, hidden=8, dropout=0.0, reduce=reduce).eval()
        h = embedded(pooling, bag)
        pooled = h.mean(0) if reduce == "mean" else h.max(0).values
        torch.testing.assert_close(pooling(bag), pooled @ pooling.classifier.weight.T + pooling.classifier.bias)


def test_dsmil_reference_form_reads_the_instances_as_they_come():
    """No embedding, no value layer, no dropout: both streams on the raw instances; the logits are the bag stream's."""
    torch.manual_seed(8)
    model = DSMIL(6, 3, hidden=8, dropout=0.5).eval()
    assert isinstance(model.embed, nn.Identity) and isinstance(model.value, nn.Identity)
    assert not any(isinstance(module, nn.Dropout) for module in model.modules())
    classifier, first, second, conv = model.instance_classifier, model.query[0], model.query[2], model.bag_classifier
    assert (classifier.in_features, first.in_features, first.out_features, conv.kernel_size) == (6, 6, 4, (6,))
    bag = torch.randn(5, 6)
    scores = bag @ classifier.weight.T + classifier.bias  # (N, C): the max-instance stream
    q = torch.tanh(torch.relu(bag @ first.weight.T + first.bias) @ second.weight.T + second.bias)  # (N, 4)
    a = torch.softmax(q @ q[scores.argmax(0)].T / 2.0, dim=0)  # (N, C); sqrt(4) = 2
    bag_scores = torch.einsum("ocd,cd->o", conv.weight, a.T @ bag) + conv.bias  # the instances are the values
    logits, attention = model.forward_with_attention(bag)
    torch.testing.assert_close(logits, bag_scores)
    torch.testing.assert_close(attention, a[:, int(bag_scores.argmax())])
    assert not torch.allclose(logits, 0.5 * (scores.max(0).values + bag_scores))  # the streams are not averaged


def test_dsmil_trains_on_half_the_bag_and_half_the_max_instance_cross_entropy(tmp_path):
    """The training loop's step loss is 0.5 * CE(bag scores) + 0.5 * CE(max-instance scores)."""
    torch.manual_seed(9)
    model = DSMIL(192, 2, hidden=8, dropout=0.0)
    split = make_split(4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    settings = TrainerSettings(nepochs=1, show_progress=False)
    trainer = Trainer(model, ClassificationTask(2), optimizer, None, settings, tmp_path, torch.device("cpu"))
    loss = trainer.train_epoch(split, epoch=0)["loss"]
    classifier, expected = model.instance_classifier, []
    for index in range(4):  # the weights are those the epoch used (lr 0)
        bag = split.dataset[index]
        label = bag.targets["label"].long().reshape(1)
        max_scores = (bag.features @ classifier.weight.T + classifier.bias).max(0).values
        bag_loss = F.cross_entropy(model(bag.features).unsqueeze(0), label)
        expected.append(0.5 * bag_loss + 0.5 * F.cross_entropy(max_scores.unsqueeze(0), label))
    assert loss == pytest.approx(float(torch.stack(expected).mean().detach()), rel=1e-5)
    survival = {"bin": torch.tensor(1), "censorship": torch.tensor(0.0)}
    assert model.forward_train(split.dataset[0].features, survival)[1:] == (None, 0.0)  # no class label: no max loss


class EarlierDSMIL(nn.Module):
    """A frozen copy of this project's DS-MIL before the reference form became the default: the oracle of
    ``instance_embedding=True``."""

    def __init__(self, in_dim: int, num_outputs: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.instance_classifier = nn.Linear(hidden, num_outputs)
        self.query = nn.Sequential(
            nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, hidden // 2), nn.Tanh()
        )
        self.value = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, hidden))
        self.bag_classifier = nn.Conv1d(num_outputs, num_outputs, kernel_size=hidden)

    def forward(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(C,)`` (the mean of the two streams) and the predicted output's attention ``(N,)``."""
        embedded = self.embed(bag)
        instance_scores = self.instance_classifier(embedded)
        queries = self.query(embedded)
        critical = queries[instance_scores.argmax(dim=0)]
        attention = torch.softmax(queries @ critical.T / math.sqrt(queries.shape[1]), dim=0)
        bag_scores = self.bag_classifier((attention.T @ self.value(embedded)).unsqueeze(0)).flatten()
        logits = 0.5 * (instance_scores.max(dim=0).values + bag_scores)
        return logits, attention[:, int(logits.argmax())]


def test_dsmil_instance_embedding_is_the_earlier_model():
    """Same seed, same weights, same outputs (dropout included) and no added loss: earlier runs reproduce."""
    settings = SlideModelSettings("dsmil", region_dim=12, hidden_dim=8, dropout=0.3, options=DsMilOptions(True))
    torch.manual_seed(10)
    model = build_slide_model(settings, 3)
    torch.manual_seed(10)
    earlier = EarlierDSMIL(12, 3, hidden=8, dropout=0.3)
    assert isinstance(model, DSMIL) and isinstance(model.embed[0], nn.Linear)
    assert isinstance(build_slide_model(SlideModelSettings(aggregator="dsmil"), 3).embed, nn.Identity)  # the default
    for (name, got), (_, expected) in zip(model.state_dict().items(), earlier.state_dict().items(), strict=True):
        torch.testing.assert_close(got, expected, msg=name)
    bag = torch.randn(7, 12)
    torch.manual_seed(11)
    logits, auxiliary, weight = model.forward_train(bag, {"label": torch.tensor(2)})
    torch.manual_seed(11)
    torch.testing.assert_close(logits, earlier(bag)[0])  # training mode: the same dropout masks
    assert (auxiliary, weight) == (None, 0.0)
    model.eval(), earlier.eval()
    for got, expected in zip(model.forward_with_attention(bag), earlier(bag), strict=True):
        torch.testing.assert_close(got, expected)
    keep = torch.tensor([[True] * 7, [True, False, True, True, False, True, True]])
    torch.testing.assert_close(model.forward_masked(bag.expand(2, -1, -1), keep)[1], earlier(bag[keep[1]])[0])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 17])
def test_transmil_takes_any_bag_size(size):
    torch.manual_seed(6)
    model = TransMIL(12, 2, hidden=16, dropout=0.0)
    bag = torch.randn(size, 12, requires_grad=True)
    logits = model(bag)
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert torch.isfinite(bag.grad).all() and bag.grad.abs().sum() > 0


def test_nystrom_attention_with_one_landmark_per_token_is_softmax_attention():
    """With as many landmarks as tokens the Nystrom factorisation A A^+ A V is exactly softmax(QK^T) V."""
    torch.manual_seed(7)
    attention = NystromAttention(16, heads=2, landmarks=6, pinv_iterations=30, dropout=0.0).eval()
    tokens = torch.randn(1, 6, 16, dtype=torch.float64)
    attention.double()
    q, k, v = attention.qkv(tokens).reshape(1, 6, 3, 2, 8).permute(2, 0, 3, 1, 4)
    exact = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1) @ v
    exact = exact + F.conv2d(v, attention.residual.weight, padding=(16, 0), groups=2)
    expected = attention.out(exact.transpose(1, 2).reshape(1, 6, 16))
    torch.testing.assert_close(attention(tokens), expected, atol=1e-6, rtol=1e-6)
    matrix = torch.softmax(torch.randn(3, 8, 8, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(iterative_pinv(matrix, 40), torch.linalg.pinv(matrix), atol=1e-6, rtol=1e-6)
