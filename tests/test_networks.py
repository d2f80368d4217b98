import ast
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from models import CNN, MLP, LinearRegression, RecurrentNet, ScratchTwoLayer

NETWORK_FILES = ["linear.py", "mlp.py", "cnn.py", "scratch.py", "recurrent.py", "checks.py"]


@pytest.mark.parametrize(
    ("network", "input_shape", "num_outputs"),
    [
        (LinearRegression([1], 1), (1,), 1),
        (LinearRegression([3], 2), (3,), 2),
        (MLP([10], 2, hidden_sizes=[50]), (10,), 2),
        (MLP([10], 1, hidden_sizes=[5], activation="sigmoid"), (10,), 1),
        (MLP([1, 28, 28], 10, hidden_sizes=[128, 64]), (1, 28, 28), 10),
        (MLP([10], 3, hidden_sizes=[]), (10,), 3),
    ],
)
def test_network_maps_the_shapes_it_claims(network, input_shape, num_outputs):
    out = network(torch.randn(7, *input_shape))
    assert out.shape == (7, num_outputs)


def test_mlp_is_the_sequential_stack_of_source_003():
    mlp = MLP([1, 28, 28], 10, hidden_sizes=[128, 64])
    assert isinstance(mlp, nn.Sequential)
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 128), (128, 64), (64, 10)]
    assert sum(isinstance(m, nn.ReLU) for m in mlp) == 2


@pytest.mark.parametrize(
    ("kwargs", "layer"),
    [
        ({"activation": "sigmoid"}, nn.Sigmoid),
        ({"activation": "tanh"}, nn.Tanh),
        ({"norm": "batch"}, nn.BatchNorm1d),
        ({"norm": "layer"}, nn.LayerNorm),
        ({"dropout": 0.5}, nn.Dropout),
    ],
)
def test_mlp_options_add_their_layer(kwargs, layer):
    mlp = MLP([4], 2, hidden_sizes=[8, 8], **kwargs)
    assert sum(isinstance(m, layer) for m in mlp) == 2
    assert mlp(torch.randn(5, 4)).shape == (5, 2)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: MLP([10], 0), "num_outputs must be a positive integer, got 0"),
        (lambda: MLP([], 2), "input_shape must be a non-empty list"),
        (lambda: MLP([10, -1], 2), r"input_shape .* got \[10, -1\]"),
        (lambda: MLP([10], 2, hidden_sizes=[0]), "hidden_sizes entry must be a positive integer"),
        (lambda: MLP([10], 2, activation="swish"), "activation must be one of .* got 'swish'"),
        (lambda: MLP([10], 2, norm="group"), "norm must be one of .* got 'group'"),
        (lambda: MLP([10], 2, dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (lambda: LinearRegression([1], -3), "num_outputs must be a positive integer, got -3"),
    ],
)
def test_bad_network_arguments_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("filename", NETWORK_FILES)
def test_networks_do_not_import_lightning(filename):
    source = (Path(__file__).resolve().parents[1] / "models" / filename).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported, "the file imports nothing: wrong file?"
    assert not imported & {"lightning", "pytorch_lightning", "torchmetrics"}


def test_linear_regression_flattens_its_input():
    network = LinearRegression([2, 3], 1)
    assert network.linear.in_features == math.prod((2, 3))


@pytest.mark.parametrize("image", [(3, 32, 32), (1, 28, 28), (3, 30, 22), (2, 9, 9)])
@pytest.mark.parametrize("global_pool", [False, True])
def test_cnn_derives_its_flatten_size_from_the_image_shape(image, global_pool):
    cnn = CNN(list(image), 10, channels=[16, 32], global_pool=global_pool)
    x = torch.randn(2, *image)
    assert cnn.features(x).shape[1] == cnn.classifier[0].in_features
    assert cnn(x).shape == (2, 10)


def test_cnn_is_the_network_of_source_001_example_3():
    cnn = CNN([3, 32, 32], 10)
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 16, (3, 3), (1, 1)),
        (16, 32, (3, 3), (1, 1)),
    ]
    linears = [m for m in cnn.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32 * 8 * 8, 128), (128, 10)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in cnn.modules()) == 2


@pytest.mark.parametrize(
    ("kwargs", "layer", "count"),
    [
        ({"pool": "avg"}, nn.AvgPool2d, 2),
        ({"pool": "max"}, nn.MaxPool2d, 2),
        ({"batch_norm": True}, nn.BatchNorm2d, 2),
        ({"global_pool": True}, nn.AdaptiveAvgPool2d, 1),
        ({"dropout": 0.3}, nn.Dropout, 1),
    ],
)
def test_cnn_options_add_their_layer(kwargs, layer, count):
    cnn = CNN([3, 16, 16], 4, **kwargs)
    assert sum(isinstance(m, layer) for m in cnn.modules()) == count
    assert cnn(torch.randn(2, 3, 16, 16)).shape == (2, 4)


def test_scratch_network_is_four_raw_tensors():
    net = ScratchTwoLayer([2], 2, hidden_size=8)
    assert not any(isinstance(m, nn.Linear) for m in net.modules())
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
    assert shapes == {"W1": (2, 8), "b1": (8,), "W2": (8, 2), "b2": (2,)}
    assert torch.count_nonzero(net.b1) == 0
    assert torch.count_nonzero(net.b2) == 0
    x = torch.randn(5, 2)
    expected = torch.clamp(x @ net.W1 + net.b1, min=0) @ net.W2 + net.b2
    assert torch.equal(net(x), expected)


@pytest.mark.parametrize(("cell", "kind"), [("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_recurrent_cell_is_an_argument(cell, kind):
    net = RecurrentNet([20, 10], 4, cell=cell, hidden_size=20, num_layers=2)
    assert type(net.rnn) is kind
    assert (net.rnn.input_size, net.rnn.hidden_size, net.rnn.num_layers) == (10, 20, 2)
    assert net.rnn.batch_first
    assert net(torch.randn(3, 20, 10)).shape == (3, 4)


def test_recurrent_output_depends_on_the_first_step():
    net = RecurrentNet([5, 3], 2, cell="gru")
    x = torch.randn(1, 5, 3)
    changed = x.clone()
    changed[0, 0] += 1.0
    assert not torch.equal(net(x), net(changed))


def test_mlp_output_activation_gives_the_simple_net_of_source_002():
    net = MLP([10], 1, hidden_sizes=[], output_activation="relu")
    assert [type(m) for m in net] == [nn.Flatten, nn.Linear, nn.ReLU]
    assert (net(torch.randn(50, 10)) >= 0).all()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: CNN([3, 32], 10), "input_shape must have 3 entries"),
        (lambda: CNN([3, 3, 3], 10), r"too small for 2 pooling blocks: .* at least 4"),
        (lambda: CNN([3, 32, 32], 10, pool="median"), "pool must be one of .* got 'median'"),
        (lambda: CNN([3, 32, 32], 10, channels=[]), "channels must list at least one"),
        (lambda: RecurrentNet([20, 10], 4, cell="transformer"), "cell must be one of"),
        (lambda: RecurrentNet([10], 4), "input_shape must have 2 entries"),
        (lambda: ScratchTwoLayer([2], 2, hidden_size=0), "hidden_size must be a positive"),
    ],
)
def test_bad_arguments_of_the_other_networks_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()
