"""Batched optimizers: one ``torch.optim`` update per member of a population, all at once.

A stand-in that batches Adam and AdamW only, with the interface of issue 24's batched
optimizers (``/tmp/population-interface.md``); the full module (SGD, RMSprop, schedulers)
replaces it. Parameters are stacked: dim 0 indexes the ``P`` members, and every per-member
value (learning rate, betas, eps, weight decay) is a tensor of shape ``(P,)``.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

BATCHED = {"torch.optim.Adam", "torch.optim.AdamW"}
# Flags that choose how torch computes an update, not what it computes.
IMPLEMENTATION = {"foreach", "fused", "capturable", "differentiable"}
NUMERIC = ("lr", "beta1", "beta2", "eps", "weight_decay")


def unsupported(class_path: str, init_args: Mapping[str, Any]) -> str | None:
    """Why members using this optimizer cannot train as one population, or ``None``."""
    if class_path not in BATCHED:
        return f"{class_path.rsplit('.', 1)[-1]} is not batched"
    for flag in ("amsgrad", "maximize", "differentiable"):
        if init_args.get(flag):
            return f"{flag} is not batched"
    if isinstance(init_args.get("lr"), torch.Tensor):
        return "a tensor learning rate is not batched"
    return None


def unsupported_scheduler(class_path: str, init_args: Mapping[str, Any]) -> str | None:
    """Why a learning-rate scheduler cannot drive a population (none is batched here yet)."""
    return f"the scheduler {class_path.rsplit('.', 1)[-1]} is not batched"


def must_match(class_path: str) -> tuple[str, ...]:
    """The init_args that must be equal across a population's members."""
    return ("amsgrad", "maximize", "decoupled_weight_decay")


def defaults(class_path: str) -> dict[str, Any]:
    """torch's defaults for the optimizer's numeric arguments."""
    decay = 1e-2 if class_path == "torch.optim.AdamW" else 0.0
    return {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": decay}


class PopulationOptimizer(torch.optim.Optimizer):
    """Adam or AdamW for stacked parameters, with each member's own hyperparameters.

    Args:
        params: Stacked parameters; dim 0 indexes the members.
        class_path: ``torch.optim.Adam`` or ``torch.optim.AdamW``.
        members: Each member's optimizer ``init_args`` as the config gives them.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        class_path: str,
        members: Sequence[Mapping[str, Any]],
    ) -> None:
        reason = unsupported(class_path, members[0] if members else {})
        if reason is not None:
            raise ValueError(f"PopulationOptimizer: {reason}")
        self.class_path = class_path
        self.members = [{**defaults(class_path), **dict(m)} for m in members]
        self.decoupled = class_path == "torch.optim.AdamW" or bool(
            self.members[0].get("decoupled_weight_decay")
        )
        params = list(params)
        group = {name: self.column(name) for name in NUMERIC}
        super().__init__(params, group)

    def column(self, name: str) -> torch.Tensor:
        """The members' values of ``name`` as a float64 tensor of shape ``(P,)``."""
        if name.startswith("beta"):
            values = [float(m["betas"][int(name[-1]) - 1]) for m in self.members]
        else:
            values = [float(m[name]) for m in self.members]
        return torch.tensor(values, dtype=torch.float64)

    @staticmethod
    def per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``values`` (shape ``(P,)``) shaped to broadcast over stacked ``like``."""
        return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def shaped(self, values: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """``values`` shaped for each of ``params``, in their dtype and on their device."""
        return [self.per_member(values.to(p.device), p) for p in params]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return loss
        grads = [p.grad for p in params]
        for param in params:
            state = self.state[param]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(param)
                state["exp_avg_sq"] = torch.zeros_like(param)
            state["step"] += 1
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        step = float(self.state[params[0]]["step"])
        lr, beta1, beta2 = group["lr"], group["beta1"], group["beta2"]
        decay = group["weight_decay"]
        # One foreach operation per stage over all the stacked tensors, as torch's foreach
        # Adam does over a network's; the per-member values broadcast along dim 0.
        if bool((decay != 0).any()):
            if self.decoupled:
                torch._foreach_mul_(params, self.shaped(1 - lr * decay, params))
            else:
                grads = torch._foreach_add(
                    grads, torch._foreach_mul(params, self.shaped(decay, params))
                )
        torch._foreach_lerp_(exp_avgs, grads, self.shaped(1 - beta1, params))
        torch._foreach_mul_(exp_avg_sqs, self.shaped(beta2, params))
        torch._foreach_addcmul_(
            exp_avg_sqs, grads, torch._foreach_mul(grads, self.shaped(1 - beta2, params))
        )
        correction1 = 1 - beta1**step
        correction2_sqrt = (1 - beta2**step).sqrt()
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, self.shaped(correction2_sqrt, params))
        torch._foreach_add_(denom, self.shaped(group["eps"], params))
        updates = torch._foreach_div(exp_avgs, denom)
        torch._foreach_mul_(updates, self.shaped(lr / correction1, params))
        torch._foreach_sub_(params, updates)
        return loss

    def keep(self, members: Sequence[int], params: Iterable[torch.Tensor]) -> None:
        """Keep only ``members``; ``params`` are the new, already sliced stacked tensors."""
        index = torch.as_tensor(list(members), dtype=torch.long)
        group = self.param_groups[0]
        new = list(params)
        states = {}
        for old, param in zip(group["params"], new, strict=True):
            state = self.state.pop(old, {})
            states[param] = {
                key: value if key == "step" else value[index.to(value.device)].clone()
                for key, value in state.items()
            }
        self.state.clear()
        self.state.update(states)
        group["params"] = new
        for name in NUMERIC:
            group[name] = group[name][index]
        self.members = [self.members[i] for i in members]

    def member_state_dict(self, member: int) -> dict[str, Any]:
        """Member ``member``'s state as ``torch.optim.<class>(params).state_dict()`` gives it."""
        group = self.param_groups[0]
        state = {}
        for number, param in enumerate(group["params"]):
            held = self.state.get(param)
            if held:
                state[number] = {
                    "step": held["step"].clone(),
                    "exp_avg": held["exp_avg"][member].clone(),
                    "exp_avg_sq": held["exp_avg_sq"][member].clone(),
                }
        own = self.members[member]
        settings = {
            "lr": float(group["lr"][member]),
            "betas": (float(group["beta1"][member]), float(group["beta2"][member])),
            "eps": float(group["eps"][member]),
            "weight_decay": float(group["weight_decay"][member]),
            "amsgrad": False,
            "maximize": False,
            "foreach": own.get("foreach"),
            "capturable": bool(own.get("capturable", False)),
            "differentiable": False,
            "fused": own.get("fused"),
            "decoupled_weight_decay": self.decoupled,
        }
        return {
            "state": state,
            "param_groups": [{**settings, "params": list(range(len(group["params"])))}],
        }


def member_scheduler_state(scheduler_state: Mapping[str, Any], member: int) -> dict[str, Any]:
    """A batched scheduler's state narrowed to one member (no scheduler is batched here)."""
    raise NotImplementedError("no learning-rate scheduler is batched in this stand-in")


__all__ = [
    "PopulationOptimizer",
    "member_scheduler_state",
    "must_match",
    "unsupported",
    "unsupported_scheduler",
]
