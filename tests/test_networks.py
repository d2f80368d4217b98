import ast
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from models import MLP, LinearRegression

NETWORK_FILES = ["linear.py", "mlp.py", "_shapes.py"]


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
