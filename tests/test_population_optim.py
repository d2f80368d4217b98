"""The batched optimizers and schedulers, member by member against torch.optim on one gradient."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch

from experiments.population.optim import (
    SCHEDULERS,
    PopulationOptimizer,
    keep_scheduler,
    member_scheduler_state,
    must_match,
    unsupported,
    unsupported_scheduler,
)

# A small network's parameter shapes: two weights and two biases.
SHAPES = ((4, 3), (4,), (2, 4), (2,))

# Members that differ in every value their optimizer lets differ, momentum zero and not included.
CASES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "adam": (
        "torch.optim.Adam",
        [
            {},
            {"lr": 0.03, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1},
            {"lr": 1e-4, "betas": (0.95, 0.9), "eps": 1e-3, "foreach": False},
        ],
    ),
    "adam-amsgrad-maximize": (
        "torch.optim.Adam",
        [
            {"amsgrad": True, "maximize": True},
            {
                "amsgrad": True,
                "maximize": True,
                "lr": 0.01,
                "betas": [0.5, 0.6],
                "weight_decay": 0.05,
            },
        ],
    ),
    "adam-decoupled": (
        "torch.optim.Adam",
        [
            {"decoupled_weight_decay": True, "weight_decay": 0.1},
            {"decoupled_weight_decay": True, "lr": 0.01, "eps": 1e-4},
            {"decoupled_weight_decay": True, "lr": 0.2, "weight_decay": 0.5, "betas": [0.7, 0.8]},
        ],
    ),
    "adamw": (
        "torch.optim.AdamW",
        [
            {},
            {"lr": 0.02, "betas": [0.85, 0.95], "eps": 1e-5, "weight_decay": 0.3},
            {"lr": 0.005, "weight_decay": 0.0, "fused": False},
        ],
    ),
    "adamw-amsgrad": (
        "torch.optim.AdamW",
        [{"amsgrad": True}, {"amsgrad": True, "lr": 0.1, "betas": [0.6, 0.7], "weight_decay": 0.2}],
    ),
    "sgd": (
        "torch.optim.SGD",
        [
            {"lr": 0.1},
            {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
            {"lr": 0.2, "momentum": 0.5},
            {"lr": 0.01, "dampening": 0.5, "weight_decay": 0.1},
        ],
    ),
    "sgd-no-momentum": ("torch.optim.SGD", [{"lr": 0.1}, {"lr": 0.3, "weight_decay": 0.1}]),
    "sgd-nesterov-maximize": (
        "torch.optim.SGD",
        [
            {"lr": 0.1, "momentum": 0.9, "nesterov": True, "maximize": True},
            {"lr": 0.02, "momentum": 0.5, "nesterov": True, "maximize": True, "weight_decay": 0.1},
            {"lr": 0.3, "momentum": 0.1, "nesterov": True, "maximize": True},
        ],
    ),
    "rmsprop": (
        "torch.optim.RMSprop",
        [
            {},
            {"lr": 0.001, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1, "momentum": 0.9},
            {"lr": 0.05, "alpha": 0.5},
        ],
    ),
    "rmsprop-centered": (
        "torch.optim.RMSprop",
        [
            {"centered": True, "momentum": 0.5},
            {"centered": True, "lr": 0.003, "alpha": 0.8, "eps": 1e-4, "weight_decay": 0.2},
            {"centered": True, "lr": 0.02, "momentum": 0.3},
        ],
    ),
    "rmsprop-maximize": (
        "torch.optim.RMSprop",
        [{"maximize": True, "momentum": 0.8}, {"maximize": True, "lr": 0.1, "momentum": 0.2}],
    ),
}

SCHEDULE_ARGS: dict[type, dict[str, Any]] = {
    torch.optim.lr_scheduler.StepLR: {"step_size": 2, "gamma": 0.5},
    torch.optim.lr_scheduler.MultiStepLR: {"milestones": [1, 3], "gamma": 0.3},
    torch.optim.lr_scheduler.ExponentialLR: {"gamma": 0.7},
    torch.optim.lr_scheduler.CosineAnnealingLR: {"T_max": 3, "eta_min": 1e-4},
    torch.optim.lr_scheduler.LinearLR: {"start_factor": 0.25, "total_iters": 3},
    torch.optim.lr_scheduler.ConstantLR: {"factor": 0.5, "total_iters": 2},
    torch.optim.lr_scheduler.OneCycleLR: {"max_lr": 0.05, "total_steps": 8},
    torch.optim.lr_scheduler.PolynomialLR: {"total_iters": 4, "power": 2.0},
}


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Within float32's arithmetic: 1e-6 relative (1e-7 absolute near zero)."""
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-7)


def same(actual: Any, expected: Any) -> None:
    """Equal state_dicts: same structure and types, tensors close, floats equal to 1e-12."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(actual, torch.Tensor):
        assert actual.dtype == expected.dtype
        assert actual.shape == expected.shape
        close(actual, expected)
    elif isinstance(actual, dict):
        assert actual.keys() == expected.keys()
        for key in actual:
            same(actual[key], expected[key])
    elif isinstance(actual, (list, tuple)):
        assert len(actual) == len(expected)
        for item, other in zip(actual, expected, strict=True):
            same(item, other)
    elif isinstance(actual, float):
        assert actual == pytest.approx(expected, rel=1e-12, abs=1e-15)
    else:
        assert actual == expected


def torch_class(class_path: str) -> type:
    return getattr(torch.optim, class_path.rpartition(".")[2])


class Pair:
    """A population and its members trained alone by torch.optim, fed the same gradients."""

    def __init__(self, case: str, schedule: type | None = None, seed: int = 0) -> None:
        self.class_path, self.members = CASES[case]
        self.schedule = schedule
        self.generator = torch.Generator().manual_seed(seed)
        count = len(self.members)
        weights = [torch.randn(count, *shape, generator=self.generator) for shape in SHAPES]
        self.stacked = [w.clone().requires_grad_() for w in weights]
        self.optimizer = PopulationOptimizer(self.stacked, self.class_path, self.members)
        self.scheduler = self.schedules(self.optimizer)
        cls = torch_class(self.class_path)
        self.alone = [[w[m].clone().requires_grad_() for w in weights] for m in range(count)]
        self.single = [cls(p, **args) for p, args in zip(self.alone, self.members, strict=True)]
        self.single_schedulers = [self.schedules(o) for o in self.single]

    def schedules(self, optimizer: torch.optim.Optimizer) -> Any:
        return (
            None
            if self.schedule is None
            else self.schedule(optimizer, **SCHEDULE_ARGS[self.schedule])
        )

    def step(self, epochs: int = 1, steps: int = 2) -> None:
        """Train: `steps` gradients a member, then a scheduler step, `epochs` times."""
        for _ in range(epochs):
            for _ in range(steps):
                grads = [torch.randn(len(self.alone), *s, generator=self.generator) for s in SHAPES]
                for param, grad in zip(self.stacked, grads, strict=True):
                    param.grad = grad.clone()
                self.optimizer.step()
                for member, (params, optimizer) in enumerate(
                    zip(self.alone, self.single, strict=True)
                ):
                    for param, grad in zip(params, grads, strict=True):
                        param.grad = grad[member].clone()
                    optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
                for scheduler in self.single_schedulers:
                    scheduler.step()

    def keep(self, members: list[int]) -> None:
        self.stacked = [p.detach()[members].clone().requires_grad_() for p in self.stacked]
        self.optimizer.keep(members, self.stacked)
        if self.scheduler is not None:
            keep_scheduler(self.scheduler, members)
        self.alone = [self.alone[m] for m in members]
        self.single = [self.single[m] for m in members]
        self.single_schedulers = [self.single_schedulers[m] for m in members]

    def assert_match(self) -> None:
        rates = self.optimizer.param_groups[0]["lr"]
        for member, (params, optimizer) in enumerate(zip(self.alone, self.single, strict=True)):
            assert float(rates[member]) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12)
            for stacked, alone in zip(self.stacked, params, strict=True):
                close(stacked.detach()[member], alone.detach())


@pytest.mark.parametrize("case", CASES)
def test_each_member_steps_as_torch_optim(case: str) -> None:
    pair = Pair(case)
    for _ in range(4):
        pair.step(steps=1)
        pair.assert_match()


@pytest.mark.parametrize(
    ("schedule", "case"),
    [(s, "adam") for s in SCHEDULERS]
    + [(torch.optim.lr_scheduler.OneCycleLR, c) for c in ("sgd", "rmsprop", "adamw")]
    + [(torch.optim.lr_scheduler.CosineAnnealingLR, "sgd-nesterov-maximize")],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_schedulers_step_each_member_as_alone(schedule: type, case: str) -> None:
    pair = Pair(case, schedule)
    for _ in range(5):
        pair.step()
        pair.assert_match()


@pytest.mark.parametrize("case", ["adam", "adamw-amsgrad", "sgd", "rmsprop", "rmsprop-centered"])
def test_a_kept_population_continues_as_its_members_alone(case: str) -> None:
    pair = Pair(case, torch.optim.lr_scheduler.CosineAnnealingLR)
    pair.step(epochs=2)
    pair.keep([m for m in range(len(pair.members)) if m != 1])
    pair.step(epochs=3)
    pair.assert_match()
    assert pair.optimizer.param_groups[0]["lr"].shape == (len(pair.members) - 1,)


# OneCycleLR adds keys to the group and cycles momentum; without it, members keep momentum 0.
@pytest.mark.parametrize(
    "schedule", [None, torch.optim.lr_scheduler.OneCycleLR], ids=["", "OneCycleLR"]
)
@pytest.mark.parametrize("case", CASES)
def test_member_state_is_torch_optims_and_continues_there(case: str, schedule: type | None) -> None:
    pair = Pair(case, schedule)
    pair.step(epochs=2)
    cls = torch_class(pair.class_path)
    for member, args in enumerate(pair.members):
        state = pair.optimizer.member_state_dict(member)
        same(state, pair.single[member].state_dict())
        # A single run resumed from the member's state continues as the member does alone.
        params = [p.detach()[member].clone().requires_grad_() for p in pair.stacked]
        optimizer = cls(params, **args)
        # As Lightning restores: the scheduler is built first, then both states are loaded.
        scheduler = pair.schedules(optimizer)
        optimizer.load_state_dict(state)
        pair.alone[member], pair.single[member] = params, optimizer
        if scheduler is not None:
            schedule_state = member_scheduler_state(pair.scheduler.state_dict(), member)
            same(schedule_state, pair.single_schedulers[member].state_dict())
            scheduler.load_state_dict(schedule_state)
            pair.single_schedulers[member] = scheduler
    pair.step(epochs=2)
    pair.assert_match()


@pytest.mark.parametrize("case", CASES)
def test_a_saved_population_resumes_exactly(case: str) -> None:
    pair = Pair(case, torch.optim.lr_scheduler.StepLR)
    pair.step(epochs=2)
    buffer = io.BytesIO()
    torch.save(
        {"optimizer": pair.optimizer.state_dict(), "scheduler": pair.scheduler.state_dict()}, buffer
    )
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    params = [p.detach().clone().requires_grad_() for p in pair.stacked]
    resumed = PopulationOptimizer(params, pair.class_path, pair.members)
    scheduler = torch.optim.lr_scheduler.StepLR(
        resumed, **SCHEDULE_ARGS[torch.optim.lr_scheduler.StepLR]
    )
    resumed.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=pair.generator) for p in params]
        for stacked, own, grad in zip(pair.stacked, params, grads, strict=True):
            stacked.grad, own.grad = grad.clone(), grad.clone()
        pair.optimizer.step()
        resumed.step()
        pair.scheduler.step()
        scheduler.step()
    assert torch.equal(resumed.param_groups[0]["lr"], pair.optimizer.param_groups[0]["lr"])
    for stacked, own in zip(pair.stacked, params, strict=True):
        assert torch.equal(stacked, own)


@pytest.mark.parametrize(
    ("class_path", "init_args", "reason"),
    [
        ("torch.optim.Adagrad", {}, "torch.optim.Adagrad is not batched"),
        ("torch.optim.Adam", {"differentiable": True}, "differentiable is not batched"),
        ("torch.optim.SGD", {"lr": torch.tensor(0.1)}, "lr given as a tensor is not batched"),
        (
            "torch.optim.Adam",
            {"betas": (torch.tensor(0.9), torch.tensor(0.99))},
            "betas given as a tensor",
        ),
        ("torch.optim.AdamW", {"decoupled_weight_decay": True}, "not an argument of AdamW"),
        ("torch.optim.SGD", {"betas": [0.9, 0.99]}, "betas is not an argument of SGD"),
        ("torch.optim.nowhere.Adam", {}, "is not batched"),
    ],
)
def test_what_is_not_batched_says_why(
    class_path: str, init_args: dict[str, Any], reason: str
) -> None:
    assert reason in (unsupported(class_path, init_args) or "")
    with pytest.raises(ValueError, match="cannot batch"):
        PopulationOptimizer([torch.zeros(1, 2, requires_grad=True)], class_path, [init_args])


@pytest.mark.parametrize("case", CASES)
def test_what_is_batched_has_no_reason(case: str) -> None:
    class_path, members = CASES[case]
    assert all(unsupported(class_path, args) is None for args in members)


@pytest.mark.parametrize(
    ("class_path", "init_args", "reason"),
    [
        ("torch.optim.lr_scheduler.ReduceLROnPlateau", {}, "watches one metric"),
        ("torch.optim.lr_scheduler.CyclicLR", {"base_lr": 0.1, "max_lr": 1.0}, "is not batched"),
        (
            "torch.optim.lr_scheduler.StepLR",
            {"step_size": torch.tensor(2)},
            "step_size given as a tensor",
        ),
    ]
    + [
        (f"torch.optim.lr_scheduler.{s.__name__}", args, None)
        for s in SCHEDULERS
        for args in [SCHEDULE_ARGS[s]]
    ],
    ids=lambda value: value.rpartition(".")[2] if isinstance(value, str) else None,
)
def test_unsupported_schedulers_say_why(
    class_path: str, init_args: dict[str, Any], reason: str | None
) -> None:
    found = unsupported_scheduler(class_path, init_args)
    assert found is None if reason is None else reason in (found or "")


def test_flags_that_pick_a_code_path_must_match() -> None:
    assert set(must_match("torch.optim.SGD")) == {"nesterov", "maximize"}
    assert set(must_match("torch.optim.RMSprop")) == {"centered", "maximize"}
    assert set(must_match("torch.optim.AdamW")) == {"amsgrad", "maximize"}
    assert "decoupled_weight_decay" in must_match("torch.optim.Adam")
    assert must_match("torch.optim.Adagrad") == ()
    params = [torch.zeros(2, 3, requires_grad=True)]
    members = [{"momentum": 0.9, "nesterov": True}, {"momentum": 0.9}]
    with pytest.raises(ValueError, match="members differ in nesterov"):
        PopulationOptimizer(params, "torch.optim.SGD", members)
    with pytest.raises(ValueError, match="does not have 3 members"):
        PopulationOptimizer(params, "torch.optim.SGD", [{}, {}, {}])
