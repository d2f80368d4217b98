"""Classification data on feature vectors."""

from typing import Literal

import torch

from datamodules.base import SyntheticDataModule, check_count

RULES = ["linear", "sum", "xor", "circles", "random"]
BINARY_RULES = {"sum", "xor", "circles"}


class FeatureClassificationData(SyntheticDataModule):
    """Gaussian feature vectors ``x ~ N(0, I)`` with labels given by ``rule``.

    Rules (``sum``, ``xor`` and ``circles`` are binary):
        ``linear``: the class whose random direction has the largest projection,
        ``argmax(x @ W)``: separable by hyperplanes.
        ``sum``: ``x0 + x1 + ... > 0``, the rule of source 004.
        ``xor``: ``(x0 > 0) != (x1 > 0)``; no single hyperplane separates the classes.
        ``circles``: inside or outside the sphere that splits the samples in half;
        not linearly separable either.
        ``random``: uniformly random labels, as in sources 000-003; there is nothing to learn,
        so validation accuracy stays at chance whatever the training loss does.

    Args:
        num_features: Length of each feature vector.
        num_classes: Number of classes.
        rule: How labels follow from the features.
        num_samples: Samples generated in total, before the split.
        val_fraction: Fraction of the samples held out for validation.
        test_fraction: Fraction of the samples held out for testing.
        batch_size: Samples per batch; ``null`` means the whole split in one batch.
        seed: Seeds data generation, the split and the training order.
    """

    def __init__(
        self,
        num_features: int = 10,
        num_classes: int = 2,
        rule: Literal["linear", "sum", "xor", "circles", "random"] = "linear",
        num_samples: int = 1000,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int | None = 32,
        seed: int = 0,
    ) -> None:
        super().__init__(num_samples, val_fraction, test_fraction, batch_size, seed)
        check_count("num_features", num_features)
        check_count("num_classes", num_classes, minimum=2)
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if rule in BINARY_RULES and num_classes != 2:
            raise ValueError(f"rule {rule!r} makes 2 classes, got num_classes={num_classes}")
        if rule == "xor" and num_features < 2:
            raise ValueError(f"rule 'xor' needs num_features >= 2, got {num_features}")
        self.num_features = num_features
        self.num_classes = num_classes
        self.rule = rule

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.num_features,)

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def generate(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(self.num_samples, self.num_features, generator=generator)
        if self.rule == "random":
            y = torch.randint(0, self.num_classes, (self.num_samples,), generator=generator)
        elif self.rule == "linear":
            directions = torch.randn(self.num_features, self.num_classes, generator=generator)
            y = (x @ directions).argmax(dim=1)
        elif self.rule == "sum":
            y = x.sum(dim=1) > 0
        elif self.rule == "xor":
            y = (x[:, 0] > 0) != (x[:, 1] > 0)
        else:
            radius = x.norm(dim=1)
            y = radius > radius.median()
        return x, y.long()
