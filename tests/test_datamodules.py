import pytest
import torch

from datamodules import FeatureClassificationData, LinearRegressionData
from datamodules.base import EpochShuffle, TensorBatches


def rows(t: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r.tolist()) for r in t.flatten(1)}


@pytest.mark.parametrize(
    ("num_samples", "val", "test", "sizes"),
    [
        (1000, 0.1, 0.1, (800, 100, 100)),
        (100, 0.2, 0.05, (75, 20, 5)),
        (50, 0.3, 0.3, (20, 15, 15)),
    ],
)
def test_splits_have_the_asked_sizes_and_are_disjoint(num_samples, val, test, sizes):
    data = FeatureClassificationData(num_samples=num_samples, val_fraction=val, test_fraction=test)
    data.setup("fit")
    assert tuple(len(data.splits[s]) for s in ("train", "val", "test")) == sizes
    train, valid, tst = (rows(data.splits[s].tensors[0]) for s in ("train", "val", "test"))
    assert len(train) + len(valid) + len(tst) == num_samples  # every sample in one split
    assert not train & valid
    assert not train & tst
    assert not valid & tst


def test_same_seed_same_data_and_split_other_seed_differs():
    first, second, other = (LinearRegressionData(seed=s) for s in (3, 3, 4))
    for data in (first, second, other):
        data.setup("fit")
    for split in ("train", "val", "test"):
        for a, b in zip(first.splits[split].tensors, second.splits[split].tensors, strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(first.splits["train"].tensors[0], other.splits["train"].tensors[0])


def test_shape_facts_describe_the_generated_tensors():
    data = FeatureClassificationData(num_features=7, num_classes=3, num_samples=300)
    assert data.input_shape == (7,)
    assert data.num_outputs == 3
    assert data.num_classes == 3
    data.setup("fit")
    x, y = data.splits["train"].tensors
    assert x.shape[1:] == data.input_shape
    assert y.dtype == torch.long
    assert set(y.unique().tolist()) == {0, 1, 2}

    regression = LinearRegressionData(weights=[1.0, -1.0, 0.5])
    assert regression.input_shape == (3,)
    assert regression.num_outputs == 1
    regression.setup("fit")
    x, y = regression.splits["train"].tensors
    assert x.shape[1:] == (3,)
    assert y.shape[1:] == (1,)


def test_linear_rule_labels_follow_the_features_and_random_labels_do_not():
    linear = FeatureClassificationData(rule="linear", num_samples=2000)
    random = FeatureClassificationData(rule="random", num_samples=2000)
    for data in (linear, random):
        data.setup("fit")

    # A least-squares linear read-out of the labels: near perfect for the linear rule only.
    def linear_fit_accuracy(data):
        x, y = data.splits["train"].tensors
        design = torch.cat([x, torch.ones(len(x), 1)], 1)
        w = torch.linalg.lstsq(design, y.float().unsqueeze(1) * 2 - 1).solution
        return ((design @ w).squeeze(1) > 0).long().eq(y).float().mean().item()

    assert linear_fit_accuracy(linear) > 0.95
    assert linear_fit_accuracy(random) < 0.65


def test_regression_targets_follow_the_stated_line():
    data = LinearRegressionData(weights=[2.0], bias=1.0, noise_std=0.0, num_samples=20)
    data.setup("fit")
    x, y = data.splits["train"].tensors
    assert torch.allclose(y, 2 * x + 1)


def test_train_loader_shuffles_per_epoch_and_covers_every_sample():
    data = FeatureClassificationData(num_samples=200, batch_size=16)
    data.setup("fit")
    loader = data.train_dataloader()
    train_x = data.splits["train"].tensors[0]

    def epoch_order(epoch):
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        assert all(len(x) == 16 for x, _ in batches[:-1])
        return torch.cat([x for x, _ in batches])

    first, again, second = epoch_order(0), epoch_order(0), epoch_order(1)
    assert rows(first) == rows(train_x)
    assert len(first) == len(train_x)
    assert torch.equal(first, again)
    assert not torch.equal(first, second)
    assert not torch.equal(first, train_x)


def test_evaluation_loaders_keep_order_and_none_means_full_batch():
    data = LinearRegressionData(num_samples=100, batch_size=None)
    data.setup("fit")
    for split, loader in (("val", data.val_dataloader()), ("test", data.test_dataloader())):
        (batch,) = list(loader)
        assert torch.equal(batch[0], data.splits[split].tensors[0])
    (train_batch,) = list(data.train_dataloader())
    assert len(train_batch[0]) == len(data.splits["train"])


def test_tensor_batches_index_a_batch_like_single_samples():
    x, y = torch.randn(10, 3), torch.arange(10)
    data = TensorBatches(x, y)
    batch = data.__getitems__([4, 1, 7])
    assert torch.equal(batch[0], torch.stack([data[i][0] for i in (4, 1, 7)]))
    assert torch.equal(batch[1], torch.tensor([4, 1, 7]))


def test_epoch_shuffle_is_a_permutation_fixed_by_seed_and_epoch():
    sampler = EpochShuffle(50, seed=1)
    sampler.set_epoch(3)
    order = list(sampler)
    assert sorted(order) == list(range(50))
    other = EpochShuffle(50, seed=1)
    other.set_epoch(3)
    assert list(other) == order


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_samples": 0}, "num_samples must be a positive integer, got 0"),
        ({"val_fraction": 0.0}, r"val_fraction must be in \(0, 1\), got 0.0"),
        ({"test_fraction": 1.5}, r"test_fraction must be in \(0, 1\), got 1.5"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "must be below 1 .* got 0.5 \\+ 0.5"),
        ({"batch_size": 0}, "batch_size must be a positive integer or null, got 0"),
        ({"num_features": -2}, "num_features must be a positive integer, got -2"),
        ({"num_classes": 1}, "num_classes must be an integer >= 2, got 1"),
        ({"rule": "spiral"}, "rule must be one of .* got 'spiral'"),
    ],
)
def test_bad_data_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeatureClassificationData(**kwargs)
