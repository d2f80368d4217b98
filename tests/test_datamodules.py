import pytest
import torch

from datamodules import (
    FeatureClassificationData,
    LinearRegressionData,
    RecallSequenceData,
    StripeImageData,
    TeacherRegressionData,
)
from datamodules.base import EpochShuffle, InMemoryBatches, TensorBatches


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


def test_classification_shape_facts_describe_the_generated_tensors():
    data = FeatureClassificationData(num_features=7, num_classes=3, num_samples=300)
    assert data.input_shape == (7,)
    assert data.num_outputs == 3
    assert data.num_classes == 3
    data.setup("fit")
    x, y = data.splits["train"].tensors
    assert x.shape[1:] == data.input_shape
    assert y.dtype == torch.long
    assert set(y.unique().tolist()) == {0, 1, 2}


def test_regression_shape_facts_describe_the_generated_tensors():
    regression = LinearRegressionData(weights=[1.0, -1.0, 0.5])
    assert regression.input_shape == (3,)
    assert regression.num_outputs == 1
    assert not hasattr(regression, "num_classes")  # so the CLI links none into the task
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


@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluation_loaders_keep_order(split):
    data = LinearRegressionData(num_samples=100, batch_size=None)
    data.setup("fit")
    (batch,) = list(getattr(data, f"{split}_dataloader")())
    assert torch.equal(batch[0], data.splits[split].tensors[0])


def test_a_null_batch_size_means_the_whole_split():
    data = LinearRegressionData(num_samples=100, batch_size=None)
    data.setup("fit")
    (train_batch,) = list(data.train_dataloader())
    assert len(train_batch[0]) == len(data.splits["train"])


def test_tensor_batches_index_a_batch_like_single_samples():
    x, y = torch.randn(10, 3), torch.arange(10)
    data = TensorBatches(x, y)
    batch = data.__getitems__([4, 1, 7])
    assert torch.equal(batch[0], torch.stack([data[i][0] for i in (4, 1, 7)]))
    assert torch.equal(batch[1], torch.tensor([4, 1, 7]))


def rows_of(batches):
    return torch.cat([x for x, _ in batches]).squeeze(1).tolist()


def test_data_parallel_training_shards_are_disjoint_equal_and_follow_the_epoch_order():
    data = TensorBatches(torch.arange(103.0).unsqueeze(1), torch.zeros(103))
    shards = [InMemoryBatches(data, 8, EpochShuffle(103, seed=4), rank, 3) for rank in range(3)]
    epochs = []
    for epoch in (0, 1):
        for shard in shards:
            shard.sampler.set_epoch(epoch)
        seen = [rows_of(shard) for shard in shards]
        # The same step count on every rank (DDP would hang otherwise), no sample twice.
        assert [len(shard) for shard in shards] == [5, 5, 5]
        assert [len(rows) for rows in seen] == [34, 34, 34]
        flat = [value for rows in seen for value in rows]
        assert len(set(flat)) == 102
        # Together the ranks take the epoch's order, less the one sample that sits out.
        order = EpochShuffle(103, seed=4)
        order.set_epoch(epoch)
        assert sorted(flat) == sorted(list(order)[:102])
        epochs.append(seen[0])
    assert epochs[0] != epochs[1]


def test_data_parallel_evaluation_shards_hold_every_sample_once():
    data = TensorBatches(torch.arange(10.0).unsqueeze(1), torch.zeros(10))
    shards = [InMemoryBatches(data, 2, None, rank, 4) for rank in range(4)]
    assert sorted(value for shard in shards for value in rows_of(shard)) == list(range(10))
    assert [shard.shard_size for shard in shards] == [3, 3, 2, 2]


def test_fewer_samples_than_processes_are_refused():
    data = TensorBatches(torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="2 samples cannot be shared among 3 data-parallel"):
        InMemoryBatches(data, 8, None, 0, 3)


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


@pytest.mark.parametrize(
    ("rule", "label"),
    [
        ("sum", lambda x: x.sum(1) > 0),
        ("xor", lambda x: (x[:, 0] > 0) != (x[:, 1] > 0)),
        ("circles", lambda x: x.norm(dim=1) > x.norm(dim=1).median()),
    ],
)
def test_binary_rules_label_as_documented(rule, label):
    data = FeatureClassificationData(num_features=2, rule=rule, num_samples=500)
    x, y = data.generate(torch.Generator().manual_seed(0))
    assert torch.equal(y, label(x).long())
    assert 0.3 < y.float().mean() < 0.7


def test_binary_rule_refuses_more_classes():
    with pytest.raises(ValueError, match="rule 'xor' makes 2 classes, got num_classes=3"):
        FeatureClassificationData(num_features=2, num_classes=3, rule="xor")


def test_teacher_targets_are_learnable_and_noise_targets_are_not():
    teacher = TeacherRegressionData(noise_std=0.0, num_samples=400)
    noise = TeacherRegressionData(targets="noise", num_samples=400)
    x, y = teacher.generate(torch.Generator().manual_seed(0))
    assert y.std() == pytest.approx(1.0, abs=1e-5)  # the teacher's output is scaled to unit std
    again = teacher.generate(torch.Generator().manual_seed(0))
    assert torch.equal(y, again[1])
    x, y = noise.generate(torch.Generator().manual_seed(0))
    design = torch.cat([x, torch.ones(len(x), 1)], 1)
    fit = design @ torch.linalg.lstsq(design, y).solution
    r2 = 1 - (y - fit).pow(2).sum() / (y - y.mean()).pow(2).sum()
    assert r2 < 0.05  # the inputs explain nothing of pure-noise targets


def test_relu_output_teacher_is_what_the_simple_net_can_represent():
    data = TeacherRegressionData(hidden_size=0, relu_output=True, noise_std=0.0)
    x, y = data.generate(torch.Generator().manual_seed(0))
    assert (y >= 0).all()
    positive = y.squeeze(1) > 0
    design = torch.cat([x, torch.ones(len(x), 1)], 1)[positive]
    solution = torch.linalg.lstsq(design, y[positive]).solution
    assert torch.allclose(design @ solution, y[positive], atol=1e-4)  # linear where positive


def test_stripe_images_show_their_class():
    data = StripeImageData(image_shape=[3, 32, 32], num_classes=10, noise_std=0.0, phase="fixed")
    x, y = data.generate(torch.Generator().manual_seed(0))
    assert x.shape == (data.num_samples, 3, 32, 32)
    assert data.input_shape == (3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 2])  # every channel shows the same stripes
    templates = {int(label): x[(y == label).nonzero()[0, 0]] for label in y.unique()}
    assert len(templates) == 10
    for label, template in templates.items():
        assert torch.allclose(x[y == label], template.expand_as(x[y == label]))
    distinct = {tuple(t.flatten()[:64].tolist()) for t in templates.values()}
    assert len(distinct) == 10


def test_random_phase_stripes_vary_within_a_class():
    data = StripeImageData(image_shape=[1, 16, 16], noise_std=0.0, phase="random", num_samples=50)
    x, y = data.generate(torch.Generator().manual_seed(0))
    same = x[y == y[0]]
    assert len(same) > 1
    assert not torch.allclose(same[0], same[1])
    assert x.abs().max() <= 1.0 + 1e-6


def test_recall_sequences_show_the_label_once_at_the_start():
    data = RecallSequenceData(sequence_length=12, num_features=6, num_classes=4, noise_std=0.0)
    x, y = data.generate(torch.Generator().manual_seed(0))
    assert x.shape == (data.num_samples, 12, 6)
    assert data.input_shape == (12, 6)
    assert torch.equal(x[:, 0, :4].argmax(1), y)
    assert torch.count_nonzero(x[:, 1:]) == 0
    noisy = RecallSequenceData(noise_std=0.5).generate(torch.Generator().manual_seed(0))[0]
    assert noisy[:, 1:].std() == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: StripeImageData(image_shape=[32, 32]), r"image_shape must be \[channels"),
        (lambda: StripeImageData(period=1), "period must be at least 2 pixels, got 1"),
        (lambda: RecallSequenceData(num_features=3, num_classes=4), "num_features must be at"),
        (lambda: TeacherRegressionData(targets="zeros"), "targets must be one of"),
        (lambda: TeacherRegressionData(hidden_size=-1), "hidden_size must be an integer >= 0"),
    ],
)
def test_bad_arguments_of_the_other_datamodules_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()
