"""Which trials can share one batched network, and why others cannot.

Trials share a population when everything but the values that leave the network's shapes and
the training's course alone is equal: the seed (``seed_everything``, which only initialises
the network: the data and its order come from the data's own seed) and the optimizer's
numeric arguments (learning rate, betas, eps, weight decay) may differ; every other key of
the sweep's space (the network's sizes, the optimizer's class and its must-match flags, the
learning-rate scheduler and its arguments, the batch size, ``max_epochs``, the data) splits
trials into separate populations.

A group's first trial is built by the CLI itself (``ExperimentCLI(run=False)``): its parser,
its resolved config and its network as a single run builds it. The other members' configs are
that one with their own values put in, and their networks are built again from the seed, as
the CLI builds them; the first member's network, built both ways, checks that this is exact.
"""

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import yaml
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch import nn

from experiments.population import optim
from experiments.population.model import CLASSIFICATION, REGRESSION

SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SEED = "seed_everything"
OPTIMIZER = "model.init_args.optimizer"
OPTIMIZER_ARGS = f"{OPTIMIZER}.init_args."
TASKS = {"models.ClassificationTask": CLASSIFICATION, "models.RegressionTask": REGRESSION}
# Layers that torch.func.vmap cannot batch, or whose state a population does not keep apart.
UNBATCHED_LAYERS = {
    nn.LSTM: "nn.LSTM has no vmap batching rule (PyTorch #105982)",
    nn.GRU: "nn.GRU has no vmap batching rule (PyTorch #134606)",
    nn.RNN: "nn.RNN has no vmap batching rule",
    # The public batch-norm layers (their common base class is private to torch).
    (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm): (
        "batch-norm running statistics are not batched"
    ),
}
# Trainer settings that a population follows only at their defaults.
TRAINER_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "accumulate_grad_batches": (1,),
    "gradient_clip_val": (None, 0, 0.0),
    "max_steps": (-1, None),
    "max_time": (None,),
    "limit_train_batches": (None, 1.0),
    "limit_val_batches": (None, 1.0),
    "val_check_interval": (None, 1.0),
    "precision": (None, "32", "32-true", 32),
    "overfit_batches": (0, 0.0),
    "fast_dev_run": (False, 0),
    "strategy": ("auto",),
    "num_nodes": (1,),
    "detect_anomaly": (False,),
    "barebones": (False,),
    "reload_dataloaders_every_n_epochs": (0,),
}


def batched_key(key: str, optimizer_path: str | None) -> bool:
    """Whether members may differ in the sweep key ``key`` and still share a population."""
    if key == SEED:
        return True
    if key.startswith(OPTIMIZER_ARGS):
        name = key.removeprefix(OPTIMIZER_ARGS)
        # Before the optimizer is known (None), every one of its arguments may differ.
        flags = optim.must_match(optimizer_path) if optimizer_path else ()
        return "." not in name and name not in flags
    return False


def group_key(params: Mapping[str, Any], optimizer_path: str | None) -> str:
    """What must be equal for trials with ``params`` to share one population."""
    fixed = {k: v for k, v in params.items() if not batched_key(k, optimizer_path)}
    return json.dumps(fixed, sort_keys=True, default=str)


def put(config: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted CLI key ``key`` in a config of plain values."""
    *path, last = key.split(".")
    node = config
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


def get(config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def import_path(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def build_network(config: Mapping[str, Any]) -> nn.Module:
    """The network of a resolved config (link targets filled in), initialised as a single run
    with its seed initialises it: seeded, then built."""
    seed_everything(int(config[SEED]), workers=True, verbose=False)
    network = config["model"]["init_args"]["network"]
    return import_path(network["class_path"])(**dict(network.get("init_args") or {}))


def same_weights(first: nn.Module, second: nn.Module) -> bool:
    a, b = first.state_dict(), second.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def unbatched_reason(
    config: Mapping[str, Any], network: nn.Module, callbacks: Sequence
) -> str | None:
    """Why trials of this resolved config cannot train as a population; ``None`` if they can."""
    task = get(config, "model.class_path")
    if task not in TASKS:
        return f"the task {task} is not batched"
    for module in network.modules():
        for kind, reason in UNBATCHED_LAYERS.items():
            if isinstance(module, kind):
                return reason
    optimizer = get(config, OPTIMIZER) or {}
    if not isinstance(optimizer, Mapping) or "class_path" not in optimizer:
        return "the optimizer is not given as class_path and init_args"
    reason = optim.unsupported(optimizer["class_path"], optimizer.get("init_args") or {})
    if reason is not None:
        return reason
    scheduler = get(config, "model.init_args.lr_scheduler")
    if scheduler:
        if not isinstance(scheduler, Mapping) or "class_path" not in scheduler:
            return "the scheduler is not given as class_path and init_args"
        reason = optim.unsupported_scheduler(
            scheduler["class_path"], scheduler.get("init_args") or {}
        )
        if reason is not None:
            return reason
    trainer = config.get("trainer") or {}
    for name, allowed in TRAINER_DEFAULTS.items():
        if trainer.get(name, allowed[0]) not in allowed:
            return f"trainer.{name} {trainer[name]!r} is not batched"
    for callback in callbacks:
        if isinstance(callback, EarlyStopping | ModelCheckpoint):
            return f"the callback {type(callback).__name__} watches one run"
    return None


@dataclass
class Template:
    """A group's first member as the CLI builds it: what the other members are made from.

    Attributes:
        resolved: The config as plain values, link targets filled in.
        saved: The config as a run's ``config.yaml`` holds it, as plain values.
        header: The comment line that ``config.yaml`` starts with.
        cli: The CLI, built without running (its parser, model, data and Trainer callbacks).
        reason: Why the group cannot train as a population, or ``None``.
    """

    resolved: dict[str, Any]
    saved: dict[str, Any]
    header: str
    cli: Any
    reason: str | None

    def member(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A member's resolved and saved configs: this one's with ``params`` put in."""
        resolved, saved = json.loads(json.dumps(self.resolved)), json.loads(json.dumps(self.saved))
        for key, value in params.items():
            put(resolved, key, value)
            put(saved, key, value)
        return resolved, saved

    def config_text(self, saved: Mapping[str, Any]) -> str:
        """A member's ``config.yaml``, as the CLI writes a run's."""
        # libyaml's emitter where PyYAML was built with it: the same text as PyYAML's own
        # (checked on the experiments' configs), eight times faster, which a population of 64
        # members notices (0.15 s of its 7 s).
        text = yaml.dump(dict(saved), Dumper=SAFE_DUMPER, sort_keys=False, allow_unicode=True)
        return self.header + text


def template(args: Sequence[str], version: int) -> Template:
    """Build the first member of a group with the CLI (nothing trained, nothing written)."""
    from jsonargparse import Namespace

    from experiments import assembly
    from experiments.cli import ExperimentCLI
    from experiments.rundir import RUN_LOGGER

    cli = ExperimentCLI(args=list(args), run=False, run_version=version)
    dumped = cli.parser.dump(cli.config, skip_link_targets=False, skip_validation=True)
    resolved = yaml.safe_load(dumped)
    # Values linked from the data when the classes are built (input_shape, num_outputs,
    # num_classes) are in the task's hyperparameters, not in the parsed config.
    linked = {k: v for k, v in cli.model.hparams.items() if not k.startswith("_")}
    resolved["model"]["init_args"] = {**resolved["model"].get("init_args", {}), **linked}
    saved_config = cli.config.clone()
    logger = saved_config.get("trainer.logger")
    if isinstance(logger, Namespace) and logger.get("class_path") == RUN_LOGGER:
        saved_config["trainer.logger"] = None
    text = cli.parser.dump(saved_config, skip_none=False, skip_validation=True)
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    saved = yaml.safe_load(text)
    network = cli.model.network
    callbacks = assembly.as_list(cli.config_init.trainer.get("callbacks"))
    reason = unbatched_reason(resolved, network, callbacks)
    if reason is None:
        state = torch.random.get_rng_state()
        try:
            again = build_network(resolved)
        except Exception as error:  # a network this module cannot build from its arguments
            again, reason = None, f"its network cannot be rebuilt from the config ({error})"
        finally:
            torch.random.set_rng_state(state)
        if again is not None and not same_weights(again, network):
            reason = "its network's initialisation cannot be reproduced member by member"
    return Template(resolved, saved, header, cli, reason)
