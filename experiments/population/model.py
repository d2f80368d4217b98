"""The batched model: ``P`` copies of a network trained as one LightningModule.

The members' parameters are stacked (``torch.func.stack_module_state``), dim 0 indexing the
member, and the network runs once for all of them: as batched matrix products where it is an
MLP (:mod:`experiments.population.stacked`), else ``torch.func.vmap`` over
``torch.func.functional_call`` of one copy of the network on the meta device. Each member's
loss is the mean over the batch, as its single run's; the sum of the members' losses is
what is differentiated, so each member's gradient is its own. The metrics are the task's
(accuracy, or mean absolute error and R²), summed per member over the epoch.
"""

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn

from experiments.population.optim import PopulationOptimizer, build_scheduler, keep_scheduler
from experiments.population.stacked import stacked_forward
from models.tasks import Task

CLASSIFICATION = "classification"
REGRESSION = "regression"


SHARED = {"target", "target_sq", "outputs_count"}  # sums of the targets, the same for every member


class Tally:
    """One stage's sums over an epoch, per member: enough for its loss and metrics."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, name: str, value: torch.Tensor) -> None:
        self.sums[name] = self.sums[name] + value if name in self.sums else value

    def keep(self, index: torch.Tensor) -> None:
        for name, value in self.sums.items():
            if name not in SHARED:
                self.sums[name] = value[index.to(value.device)]


class PopulationTask(LightningModule):
    """``P`` members of one task, with one network shape, trained in one pass per batch.

    Args:
        networks: Each member's network, built as its single run builds it.
        kind: ``classification`` or ``regression`` (the task's loss and metrics).
        optimizer: The optimizer's class path, as in the config.
        optimizer_args: Each member's optimizer ``init_args``.
        log_every_n_steps: How often the training loss is recorded, as the Trainer's option.
        scheduler: The learning-rate scheduler as the config gives it (``class_path`` and
            ``init_args``), or ``None``: one for the population, its arguments shared.
    """

    def __init__(
        self,
        networks: Sequence[nn.Module],
        kind: str,
        optimizer: str,
        optimizer_args: Sequence[Mapping[str, Any]],
        log_every_n_steps: int = 50,
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if kind not in (CLASSIFICATION, REGRESSION):
            raise ValueError(f"kind must be classification or regression, got {kind!r}")
        params, buffers = torch.func.stack_module_state(list(networks))
        self.names = list(params)
        self.buffer_names = list(buffers)
        self.stacked = nn.ParameterList([nn.Parameter(params[n]) for n in self.names])
        for number, name in enumerate(self.buffer_names):
            self.register_buffer(f"buffer{number}", buffers[name])
        # Each member's weights at its best epoch so far: its best checkpoint, written when it
        # leaves the population (in the population's checkpoint until then).
        for number, name in enumerate(self.names):
            self.register_buffer(f"best{number}", params[name].detach().clone())
        # The network's structure, without storage: not a submodule, so it is no parameter
        # of this module and no entry of its checkpoints.
        self.structure = [copy.deepcopy(networks[0]).to("meta")]
        # Batched matrix products where the network is a plain MLP; vmap for the rest.
        self.fast_forward = stacked_forward(self.structure[0], self.names)
        self.kind = kind
        self.optimizer_path = optimizer
        self.optimizer_args = [dict(a) for a in optimizer_args]
        self.log_every_n_steps = log_every_n_steps
        self.scheduler = dict(scheduler) if scheduler else None
        self.tallies = {stage: Tally() for stage in ("train", "val", "test")}
        self.step_losses: list[tuple[int, torch.Tensor]] = []
        # The targets' mean and deviation where the data scales them for the loss, as the
        # single run's task takes them (models.Task.target_scale): the loss on scaled targets,
        # the metrics in the targets' own units.
        self.target_scale: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def size(self) -> int:
        """Members in the population now."""
        return self.stacked[0].shape[0]

    def buffers_stacked(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, f"buffer{n}") for n in range(len(self.buffer_names)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's outputs for the same inputs: shape ``(P, batch, ...)``."""
        if self.fast_forward is not None:
            outputs = self.fast_forward(tuple(self.stacked), x, self.training)
            if outputs is not None:
                return outputs
        network = self.structure[0]
        network.train(self.training)
        names, buffer_names = self.names, self.buffer_names

        def one(params: tuple, buffers: tuple, inputs: torch.Tensor) -> torch.Tensor:
            state = (
                dict(zip(names, params, strict=True)),
                dict(zip(buffer_names, buffers, strict=True)),
            )
            return torch.func.functional_call(network, state, (inputs,))

        # Each member draws its own dropout masks, as P separate runs would.
        batched = torch.func.vmap(one, in_dims=(0, 0, None), randomness="different")
        return batched(tuple(self.stacked), self.buffers_stacked(), x)

    def losses(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's loss on the batch, shape ``(P,)``, as the task computes it."""
        if self.kind == CLASSIFICATION:
            # The members as cross-entropy's batch dim and the samples as a further dim: the
            # per-sample losses of a flattened (P * batch) call, in 60% of its time (no copy of
            # the targets per member), the same values.
            targets = y.expand(outputs.shape[0], *y.shape)
            per_sample = F.cross_entropy(outputs.transpose(1, 2), targets, reduction="none")
            return per_sample.flatten(1).mean(dim=1)
        return (outputs - y).pow(2).flatten(1).mean(dim=1)

    def tally(
        self, stage: str, outputs: torch.Tensor, y: torch.Tensor, losses: torch.Tensor
    ) -> None:
        """Add the batch to ``stage``'s sums (the loss weighted by the batch size, as
        Lightning averages a logged loss over an epoch)."""
        tally = self.tallies[stage]
        size = len(y)
        tally.count += size
        tally.add("loss", losses * size)
        if self.kind == CLASSIFICATION:
            tally.add("correct", (outputs.argmax(dim=-1) == y).sum(dim=1).to(torch.float64))
            return
        error = (outputs - y).flatten(2)
        tally.add("abs", error.abs().sum(dim=(1, 2)).to(torch.float64))
        tally.add("squared", error.pow(2).sum(dim=1).to(torch.float64))
        target = y.flatten(1).to(torch.float64)
        tally.add("target", target.sum(dim=0))
        tally.add("target_sq", target.pow(2).sum(dim=0))
        tally.add("outputs_count", torch.tensor(float(target.shape[1] * size), dtype=torch.float64))

    def epoch_values(self, stage: str) -> dict[str, torch.Tensor]:
        """``stage``'s loss and metrics over the epoch, each of shape ``(P,)``, on the CPU."""
        tally = self.tallies[stage]
        if tally.count == 0:
            return {}
        sums = {name: value.detach().cpu() for name, value in tally.sums.items()}
        values = {f"{stage}/loss": sums["loss"] / tally.count}
        if self.kind == CLASSIFICATION:
            values[f"{stage}/acc"] = sums["correct"] / tally.count
        else:
            values[f"{stage}/mae"] = sums["abs"] / sums["outputs_count"]
            total = sums["target_sq"] - sums["target"].pow(2) / tally.count  # per output
            values[f"{stage}/r2"] = (1 - sums["squared"] / total).mean(dim=1)
        return {name: value.to(torch.float32) for name, value in values.items()}

    def reset(self, stage: str) -> None:
        self.tallies[stage] = Tally()

    # The single run's own handling of scaled targets (models.Task): the data's scale taken
    # when fit, validation or test starts, the loss on scaled targets, the metrics unscaled.
    take_target_scale = Task.take_target_scale
    on_fit_start = Task.on_fit_start
    on_validation_start = Task.on_validation_start
    on_test_start = Task.on_test_start
    scaled = Task.scaled
    unscaled = Task.unscaled

    def step_of(self, stage: str, batch: Any) -> torch.Tensor:
        x, y = batch
        outputs = self(x)
        losses = self.losses(outputs, self.scaled(y))
        self.tally(stage, self.unscaled(outputs.detach()), y, losses.detach())
        return losses

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        losses = self.step_of("train", batch)
        step = self.trainer.global_step
        if (step + 1) % self.log_every_n_steps == 0:  # when Lightning would log the step's loss
            self.step_losses.append((step, losses.detach()))
        return losses.sum()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.step_of("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.step_of("test", batch)

    def on_train_epoch_start(self) -> None:
        self.reset("train")
        self.step_losses = []

    def on_validation_epoch_start(self) -> None:
        self.reset("val")

    def on_test_epoch_start(self) -> None:
        self.reset("test")

    def configure_optimizers(self) -> Any:
        optimizer = PopulationOptimizer(self.stacked, self.optimizer_path, self.optimizer_args)
        if self.scheduler is None:
            return optimizer
        scheduler = build_scheduler(
            optimizer, self.scheduler["class_path"], self.scheduler.get("init_args") or {}
        )
        # As models.tasks.Task configures a single run's: stepped once an epoch.
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": "val/loss"},
        }

    def rates(self) -> list[float] | None:
        """Each member's learning rate for the next epoch, where a scheduler sets it."""
        if self.scheduler is None:
            return None
        return self.trainer.optimizers[0].param_groups[0]["lr"].tolist()

    def member_weights(self, member: int) -> dict[str, torch.Tensor]:
        """Member ``member``'s network state, as its single run's task holds it."""
        state = {
            f"network.{n}": p[member].detach().clone()
            for n, p in zip(self.names, self.stacked, strict=True)
        }
        for name, buffer in zip(self.buffer_names, self.buffers_stacked(), strict=True):
            state[f"network.{name}"] = buffer[member].clone()
        return state

    def best_stacked(self) -> list[torch.Tensor]:
        return [getattr(self, f"best{n}") for n in range(len(self.names))]

    @torch.no_grad()
    def remember(self, improved: torch.Tensor) -> None:
        """Keep the current weights as the best of the members where ``improved`` (``(P,)``)."""
        for param, best in zip(self.stacked, self.best_stacked(), strict=True):
            mask = improved.to(param.device).view(-1, *([1] * (param.dim() - 1)))
            best.copy_(torch.where(mask, param, best))

    def best_weights(self, member: int) -> dict[str, torch.Tensor]:
        """Member ``member``'s network state at its best epoch."""
        state = self.member_weights(member)
        for name, best in zip(self.names, self.best_stacked(), strict=True):
            state[f"network.{name}"] = best[member].clone()
        return state

    def load_member(self, member: int, weights: Mapping[str, torch.Tensor]) -> None:
        """Put a member's network state (as :meth:`member_weights` gives it) back in place."""
        with torch.no_grad():
            for name, param in zip(self.names, self.stacked, strict=True):
                param[member].copy_(weights[f"network.{name}"])

    def keep(self, members: Sequence[int]) -> None:
        """Keep only ``members`` (ascending indices); the others leave the population."""
        index = torch.as_tensor(list(members), dtype=torch.long, device=self.stacked[0].device)
        kept = [nn.Parameter(p.detach()[index].clone()) for p in self.stacked]
        self.stacked = nn.ParameterList(kept)
        kept_buffers = [f"buffer{n}" for n in range(len(self.buffer_names))]
        for name in [*kept_buffers, *(f"best{n}" for n in range(len(self.names)))]:
            setattr(self, name, getattr(self, name)[index].clone())
        for tally in self.tallies.values():
            tally.keep(index)
        self.step_losses = [(step, losses[index]) for step, losses in self.step_losses]
        self.optimizer_args = [self.optimizer_args[i] for i in members]
        optimizer = self.trainer.optimizers[0] if self._trainer is not None else None
        if isinstance(optimizer, PopulationOptimizer):
            optimizer.keep(members, list(self.stacked))
            for config in self.trainer.lr_scheduler_configs:
                keep_scheduler(config.scheduler, members)
