"""Regression data: targets from a known function of the inputs, plus Gaussian noise."""

from collections.abc import Sequence
from typing import Literal

import torch

from datamodules.synthetic import SyntheticDataModule
from models import checks


class LinearRegressionData(SyntheticDataModule):
    """``y = x @ weights + bias + noise_std * N(0, 1)`` with ``x ~ N(0, I)``, as in source 001.

    The number of input features is the number of weights.

    Args:
        weights: One true weight per input feature.
        bias: The true intercept.
        noise_std: Standard deviation of the Gaussian noise added to the targets.
        **kwargs: ``num_samples``, the split and batching, as for
            :class:`~datamodules.synthetic.SyntheticDataModule`.
    """

    def __init__(
        self,
        weights: Sequence[float] = (2.0,),
        bias: float = 1.0,
        noise_std: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not weights:
            raise ValueError(f"weights must list one weight per feature, got {weights!r}")
        checks.non_negative("noise_std", noise_std)
        self.weights = tuple(float(w) for w in weights)
        self.bias = bias
        self.noise_std = noise_std

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (len(self.weights),)

    @property
    def num_outputs(self) -> int:
        return 1

    def generate(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(self.num_samples, len(self.weights), generator=generator)
        noise = torch.randn(self.num_samples, 1, generator=generator)
        y = x @ torch.tensor(self.weights).unsqueeze(1) + self.bias + self.noise_std * noise
        return x, y


class TeacherRegressionData(SyntheticDataModule):
    """Targets from a fixed random "teacher" network, plus Gaussian noise.

    The teacher is ``act(x @ W1 + b1) @ w2`` with ``hidden_size`` units (``0``: the linear
    ``x @ w + b``), scaled to unit standard deviation, optionally passed through a ReLU
    (``relu_output``), then ``noise_std`` of noise is added. With ``targets: noise`` the
    targets are pure ``N(0, 1)`` draws unrelated to the inputs, as in sources 000, 002 and 003:
    the training loss can fall only by memorising, and validation R² stays at or below 0.

    Args:
        num_features: Length of each input vector.
        hidden_size: Hidden units of the teacher; 0 makes it linear.
        activation: The teacher's hidden non-linearity.
        relu_output: Clamp the teacher's output at zero.
        noise_std: Standard deviation of the noise added to the teacher's output.
        targets: ``teacher`` (learnable) or ``noise`` (the sources' random targets).
        **kwargs: ``num_samples``, the split and batching, as for
            :class:`~datamodules.synthetic.SyntheticDataModule`.
    """

    def __init__(
        self,
        num_features: int = 10,
        hidden_size: int = 5,
        activation: Literal["relu", "sigmoid", "tanh"] = "relu",
        relu_output: bool = False,
        noise_std: float = 0.1,
        targets: Literal["teacher", "noise"] = "teacher",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        checks.at_least("num_features", num_features)
        checks.at_least("hidden_size", hidden_size, 0)
        checks.one_of("activation", activation, TEACHER_ACTIVATIONS)
        checks.non_negative("noise_std", noise_std)
        checks.one_of("targets", targets, ["noise", "teacher"])
        self.num_features = num_features
        self.hidden_size = hidden_size
        self.activation = activation
        self.relu_output = relu_output
        self.noise_std = noise_std
        self.targets = targets

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.num_features,)

    @property
    def num_outputs(self) -> int:
        return 1

    def teacher(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The noiseless targets for ``x``, with weights drawn from ``generator``."""
        features = x
        if self.hidden_size:
            w1 = torch.randn(self.num_features, self.hidden_size, generator=generator)
            b1 = torch.randn(self.hidden_size, generator=generator)
            features = TEACHER_ACTIVATIONS[self.activation](x @ w1 / self.num_features**0.5 + b1)
        w2 = torch.randn(features.shape[1], 1, generator=generator)
        bias = torch.randn(1, generator=generator)
        z = features @ w2 + bias
        z = z / z.std()
        return torch.relu(z) if self.relu_output else z

    def generate(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(self.num_samples, self.num_features, generator=generator)
        if self.targets == "noise":
            return x, torch.randn(self.num_samples, 1, generator=generator)
        y = self.teacher(x, generator)
        return x, y + self.noise_std * torch.randn(y.shape, generator=generator)


TEACHER_ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
