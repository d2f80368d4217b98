"""Classification data on feature vectors."""

from typing import Literal

import torch

from datamodules.synthetic import SyntheticDataModule
from models import checks

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
        **kwargs: ``num_samples``, the split and batching, as for
            :class:`~datamodules.synthetic.SyntheticDataModule`.
    """

    def __init__(
        self,
        num_features: int = 10,
        num_classes: int = 2,
        rule: Literal["linear", "sum", "xor", "circles", "random"] = "linear",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        checks.at_least("num_features", num_features)
        checks.at_least("num_classes", num_classes, 2)
        checks.one_of("rule", rule, RULES)
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
