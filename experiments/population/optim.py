"""Batched optimizers and learning-rate schedulers for a population of trials.

A population stacks P copies of a network's parameters along a new dim 0. `PopulationOptimizer`
updates all P members in one pass over the stacked tensors, and each member's update is the
arithmetic that ``torch.optim``'s single-tensor code (the CPU default) does for that member
alone: the same bias corrections, the same place for ``eps`` and weight decay, SGD's first
momentum step copying the gradient. Every scalar torch computes in Python floats (``1 - beta1``,
``lr / bias_correction1``, ``beta2 ** step``) is computed here in float64 too, one value per
member, and cast to the parameters' dtype exactly where torch's kernels cast it. On a CPU the
results match torch.optim bit for bit as far as measured; other kernels (CUDA, or torch's
foreach path, which differs from its own single-tensor path) may differ in the last bit.

What is batched:

- ``torch.optim.Adam`` and ``AdamW`` (``amsgrad``, ``maximize``, Adam's
  ``decoupled_weight_decay``), ``SGD`` (momentum, zero or not, dampening, Nesterov, weight
  decay, ``maximize``) and ``RMSprop`` (``alpha``, ``eps``, momentum, ``centered``, weight decay,
  ``maximize``). Every numeric argument may differ per member; it lives in the param group as a
  float64 tensor of shape (P,) (Adam's ``betas`` as a pair of them). The flags that pick a code
  path (`must_match`) must be equal across members.
- The schedulers in `SCHEDULERS`. They run unchanged on the population's optimizer: their
  arithmetic on a float64 tensor "lr" is their arithmetic on a Python float, member by member.
  The group's "lr" is a `MemberRates`, a tensor whose ``fill_`` also takes a (P,) tensor,
  because torch's schedulers write a tensor "lr" back with ``fill_``.

What is not, and why (`unsupported` and `unsupported_scheduler` say it in a few words):

- Other optimizers: each has its own arithmetic, none of it written here.
- ``differentiable=True`` and hyperparameters given as tensors: they exist for meta-learning and
  graph capture, which a sweep does not do.
- ``ReduceLROnPlateau``: it lowers the rate when one metric stalls, while each member has its
  own metric; other schedulers (lambdas, chains, cyclic) are not checked against torch here.
- One scheduler instance serves the whole population, so its own arguments (``step_size``,
  ``T_max``, ...) are shared by the members; only the optimizer's values differ.

``foreach``, ``fused`` and ``capturable`` are accepted and ignored; each member's state in
torch's format (`PopulationOptimizer.member_state_dict`, `member_scheduler_state`) keeps them.
"""

from __future__ import annotations

import importlib
import inspect
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import lr_scheduler
from torch.optim.optimizer import _get_scalar_dtype

#: Schedulers checked member by member against torch on a population's optimizer.
SCHEDULERS: tuple[type, ...] = (
    lr_scheduler.StepLR,
    lr_scheduler.MultiStepLR,
    lr_scheduler.ExponentialLR,
    lr_scheduler.CosineAnnealingLR,
    lr_scheduler.LinearLR,
    lr_scheduler.ConstantLR,
    lr_scheduler.OneCycleLR,
    lr_scheduler.PolynomialLR,
)

# Flags torch accepts that choose how, not what, it computes.
_IGNORED = frozenset({"foreach", "fused", "capturable"})


@dataclass(frozen=True)
class _Rule:
    """How one optimizer class is batched."""

    kind: str
    flags: tuple[str, ...]
    values: tuple[str, ...]


_RULES: dict[type, _Rule] = {
    torch.optim.Adam: _Rule(
        "adam", ("amsgrad", "maximize", "decoupled_weight_decay"), ("lr", "eps", "weight_decay")
    ),
    torch.optim.AdamW: _Rule("adam", ("amsgrad", "maximize"), ("lr", "eps", "weight_decay")),
    torch.optim.SGD: _Rule(
        "sgd", ("nesterov", "maximize"), ("lr", "momentum", "dampening", "weight_decay")
    ),
    torch.optim.RMSprop: _Rule(
        "rmsprop", ("centered", "maximize"), ("lr", "alpha", "eps", "weight_decay", "momentum")
    ),
}


def _resolve(class_path: str) -> type | None:
    """The class a config's class_path names ("torch.optim.Adam", or "Adam" in torch.optim)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        module = importlib.import_module(module_name) if module_name else torch.optim
    except ImportError:
        return None
    found = getattr(module, name, None)
    return found if isinstance(found, type) else None


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_holds_tensor(item) for item in value)
    return isinstance(value, Tensor)


def unsupported(class_path: str, init_args: Mapping[str, Any]) -> str | None:
    """Why members using this optimizer cannot train as one population, or None when they can."""
    cls = _resolve(class_path)
    rule = _RULES.get(cls) if cls is not None else None
    if cls is None or rule is None:
        return f"{class_path} is not batched (Adam, AdamW, SGD and RMSprop are)"
    accepted = inspect.signature(cls.__init__).parameters
    for key, value in init_args.items():
        if key not in accepted or key in ("self", "params"):
            return f"{key} is not an argument of {cls.__name__}"
        if _holds_tensor(value):
            return f"{key} given as a tensor is not batched"
    if init_args.get("differentiable"):
        return "differentiable is not batched"
    return None


def unsupported_scheduler(class_path: str, init_args: Mapping[str, Any]) -> str | None:
    """Why a population cannot use this learning-rate scheduler, or None when it can."""
    cls = _resolve(class_path) if "." in class_path else getattr(lr_scheduler, class_path, None)
    if cls is lr_scheduler.ReduceLROnPlateau:
        return "ReduceLROnPlateau watches one metric, not one per member"
    if cls not in SCHEDULERS:
        return f"{class_path} is not batched"
    for key, value in init_args.items():
        if _holds_tensor(value):
            return f"{key} given as a tensor is not batched"
    return None


def must_match(class_path: str) -> tuple[str, ...]:
    """The init_args that must be equal across a population's members."""
    cls = _resolve(class_path)
    rule = _RULES.get(cls) if cls is not None else None
    return rule.flags if rule is not None else ()


class MemberRates(Tensor):
    """The members' learning rates: a float64 (P,) tensor whose ``fill_`` takes a (P,) tensor.

    torch's schedulers write a tensor "lr" with ``fill_`` (``_update_param_group_val``), which
    takes one value only; this lets them write one value per member. Arithmetic on it gives
    plain tensors, so that no scheduler or checkpoint state holds the subclass.
    """

    __torch_function__ = torch._C._disabled_torch_function_impl

    def fill_(self, value: Any) -> Tensor:  # type: ignore[override]
        """Set every member's rate to `value`, or member i's to ``value[i]``."""
        if isinstance(value, Tensor) and value.dim() > 0:
            return self.copy_(value)
        return super().fill_(value)

    def __deepcopy__(self, memo: dict[int, Any]) -> MemberRates:
        return _rates(self)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return _rates, (_plain(self),)


def _rates(values: Any) -> MemberRates:
    return torch.as_tensor(values, dtype=torch.float64).detach().clone().as_subclass(MemberRates)


def _narrow(value: Any, pick: Callable[[Tensor], Any]) -> Any:
    """`value` with `pick` applied to each tensor in it, lists, tuples and dicts rebuilt alike."""
    if isinstance(value, Tensor):
        return pick(value)
    if isinstance(value, tuple):
        return tuple(_narrow(item, pick) for item in value)
    if isinstance(value, list):
        return [_narrow(item, pick) for item in value]
    if isinstance(value, dict):
        return type(value)({key: _narrow(item, pick) for key, item in value.items()})
    return value


def _member_value(member: int) -> Callable[[Tensor], Any]:
    """Picks member `member`'s entry of a per-member tensor, as a Python float."""

    def pick(tensor: Tensor) -> Any:
        return float(tensor[member]) if tensor.dim() else float(tensor)

    return pick


def _kept(index: Tensor) -> Callable[[Tensor], Tensor]:
    """Picks the kept members' entries of a per-member tensor (other tensors stay)."""

    def pick(tensor: Tensor) -> Tensor:
        return tensor.index_select(0, index.to(tensor.device)) if tensor.dim() else tensor

    return pick


def _plain(tensor: Tensor) -> Tensor:
    return tensor.as_subclass(Tensor).clone()


def member_scheduler_state(scheduler_state: Mapping[str, Any], member: int) -> dict[str, Any]:
    """A batched scheduler's state_dict() narrowed to one member, as a single run gives it."""
    return {key: _narrow(value, _member_value(member)) for key, value in scheduler_state.items()}


def keep_scheduler(scheduler: lr_scheduler.LRScheduler, members: Sequence[int]) -> None:
    """Narrow a scheduler built on a `PopulationOptimizer` to `members`, as `keep` does.

    Schedulers hold per-member values of their own (``base_lrs``, ``_last_lr``); call this next
    to `PopulationOptimizer.keep`.
    """
    pick = _kept(torch.as_tensor(list(members), dtype=torch.long))
    for key, value in vars(scheduler).items():
        if key != "optimizer":
            setattr(scheduler, key, _narrow(value, pick))


def _vector(value: Any, count: int) -> Tensor:
    """A group value as float64 with one entry per member (a scheduler may have set a float)."""
    if isinstance(value, Tensor):
        return value.as_subclass(Tensor).detach().to("cpu", torch.float64).expand(count)
    return torch.full((count,), float(value), dtype=torch.float64)


def _power(base: Tensor, exponent: float) -> Tensor:
    """``base ** exponent`` per member as Python computes it: torch's pow kernel turns small
    integral exponents into products, whose last bit can differ."""
    values = base.tolist()
    powers = {value: value**exponent for value in set(values)}
    return torch.tensor([powers[value] for value in values], dtype=torch.float64)


class _Columns:
    """Per-member float64 values, cast to a parameter's dtype and device and shaped to broadcast."""

    def __init__(self, values: Mapping[str, Tensor]) -> None:
        self._values = values
        self._cast: dict[tuple[str, torch.dtype, torch.device, int], Tensor] = {}

    def __call__(self, name: str, like: Tensor) -> Tensor:
        key = (name, like.dtype, like.device, like.dim())
        column = self._cast.get(key)
        if column is None:
            column = self._values[name].to(like.device, like.dtype)
            column = self._cast[key] = column.view(-1, *([1] * (like.dim() - 1)))
        return column

    def mask(self, name: str, like: Tensor) -> Tensor:
        """Where value `name` is zero, shaped to broadcast over `like`."""
        return (self._values[name] == 0).to(like.device).view(-1, *([1] * (like.dim() - 1)))


class PopulationOptimizer(torch.optim.Optimizer):
    """One of torch.optim's Adam, AdamW, SGD or RMSprop run for P members at once.

    Args:
        params: Stacked parameters; dim 0 indexes the members.
        class_path: The optimizer's class as the config names it, e.g. ``"torch.optim.Adam"``.
        members: Each member's init_args as the config gives them; omitted keys take torch's
            defaults.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        class_path: str,
        members: Sequence[Mapping[str, Any]],
    ) -> None:
        reason = unsupported(class_path, {}) or next(
            (reason for args in members if (reason := unsupported(class_path, args))), None
        )
        if reason is not None:
            raise ValueError(f"cannot batch {class_path}: {reason}")
        if not members:
            raise ValueError("a population needs at least one member")
        self._class = _resolve(class_path)
        self._rule = _RULES[self._class]
        # torch's own constructor validates each member's values and fills in its defaults; its
        # group is also the template of the member's state_dict.
        probe = torch.zeros(1)
        self._templates = []
        for args in members:
            group = dict(self._class([probe], **args).param_groups[0])
            del group["params"]
            self._templates.append(group)
        for flag in self._rule.flags:
            seen = {template[flag] for template in self._templates}
            if len(seen) > 1:
                raise ValueError(f"members differ in {flag} ({sorted(seen)}); it must be equal")
        first = self._templates[0]
        defaults: dict[str, Any] = {flag: first[flag] for flag in self._rule.flags}
        if self._rule.kind == "adam":
            defaults["decoupled_weight_decay"] = first["decoupled_weight_decay"]
            defaults["betas"] = tuple(
                torch.tensor([t["betas"][i] for t in self._templates], dtype=torch.float64)
                for i in range(2)
            )
        for name in self._rule.values:
            values = [template[name] for template in self._templates]
            defaults[name] = torch.tensor(values, dtype=torch.float64)
        defaults["lr"] = _rates(defaults["lr"])
        params = list(params)
        for param in params:
            if param.dim() == 0 or param.shape[0] != len(members):
                raise ValueError(
                    f"a stacked parameter of shape {tuple(param.shape)} does not have "
                    f"{len(members)} members along dim 0"
                )
        super().__init__(params, defaults)

    @property
    def population(self) -> int:
        """The number of members P."""
        return len(self._templates)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Update every member once from the stacked gradients."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                getattr(self, f"_{self._rule.kind}")(group, params)
        return loss

    def _gradient(self, group: Mapping[str, Any], param: Tensor) -> Tensor:
        assert param.grad is not None
        return -param.grad if group["maximize"] else param.grad

    def _vectors(self, group: Mapping[str, Any], *names: str) -> dict[str, Tensor]:
        """The group's values `names`, each as float64 with one entry per member."""
        return {name: _vector(group[name], self.population) for name in names}

    def _adam(self, group: dict[str, Any], params: list[Tensor]) -> None:
        values = self._vectors(group, "lr", "eps", "weight_decay")
        lr, decay = values["lr"], values["weight_decay"]
        beta1, beta2 = (_vector(beta, self.population) for beta in group["betas"])
        decays = bool(decay.any())
        shared = values | {"shrink": 1 - lr * decay, "keep1": 1 - beta1, "beta2": beta2}
        shared["keep2"] = 1 - beta2
        by_step: dict[float, _Columns] = {}
        for param in params:
            state = self.state[param]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(
                        param, memory_format=torch.preserve_format
                    )
            state["step"] += 1
            step = state["step"].item()
            column = by_step.get(step)
            if column is None:
                column = by_step[step] = _Columns(
                    shared
                    | {
                        "neg_step_size": -(lr / (1 - _power(beta1, step))),
                        "correction2_sqrt": _power(1 - _power(beta2, step), 0.5),
                    }
                )
            grad = self._gradient(group, param)
            if decays:
                if group["decoupled_weight_decay"]:
                    param.mul_(column("shrink", param))
                else:
                    grad = torch.addcmul(grad, param, column("weight_decay", param))
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, column("keep1", param))
            # torch's addcmul_(grad, grad, value=v) is (v * grad) * grad, which this repeats.
            exp_avg_sq.mul_(column("beta2", param)).addcmul_(grad * column("keep2", param), grad)
            if group["amsgrad"]:
                torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
                exp_avg_sq = state["max_exp_avg_sq"]
            denom = (exp_avg_sq.sqrt() / column("correction2_sqrt", param)).add_(
                column("eps", param)
            )
            param.addcdiv_(exp_avg * column("neg_step_size", param), denom)

    def _sgd(self, group: dict[str, Any], params: list[Tensor]) -> None:
        values = self._vectors(group, "lr", "momentum", "dampening", "weight_decay")
        values |= {"neg_lr": -values["lr"], "keep": 1 - values["dampening"]}
        column = _Columns(values)
        decays, moving = bool(values["weight_decay"].any()), bool(values["momentum"].any())
        mixed = moving and not bool(values["momentum"].all())
        for param in params:
            grad = self._gradient(group, param)
            if decays:
                grad = torch.addcmul(grad, param, column("weight_decay", param))
            if moving:
                state = self.state[param]
                buf = state.get("momentum_buffer")
                if buf is None:
                    # torch's first momentum step copies the gradient, without dampening.
                    buf = state["momentum_buffer"] = grad.detach().clone()
                else:
                    buf.mul_(column("momentum", param)).addcmul_(grad, column("keep", param))
                if group["nesterov"]:
                    update = torch.addcmul(grad, buf, column("momentum", param))
                else:
                    update = buf
                if mixed:
                    # Members without momentum step on the gradient itself, as torch does.
                    update = torch.where(column.mask("momentum", param), grad, update)
                grad = update
            param.addcmul_(grad, column("neg_lr", param))

    def _rmsprop(self, group: dict[str, Any], params: list[Tensor]) -> None:
        values = self._vectors(group, "lr", "alpha", "eps", "weight_decay", "momentum")
        values |= {"neg_lr": -values["lr"], "keep": 1 - values["alpha"]}
        column = _Columns(values)
        # torch's RMSprop has momentum where it is > 0; negative momentum is refused.
        decays, moving = bool(values["weight_decay"].any()), bool(values["momentum"].any())
        mixed = moving and not bool(values["momentum"].all())
        for param in params:
            state = self.state[param]
            if not state:
                state["step"] = torch.zeros((), dtype=_get_scalar_dtype())
                state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                if group["centered"]:
                    state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if moving and "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(
                    param, memory_format=torch.preserve_format
                )
            state["step"] += 1
            grad = self._gradient(group, param)
            if decays:
                grad = torch.addcmul(grad, param, column("weight_decay", param))
            square_avg = state["square_avg"]
            square_avg.mul_(column("alpha", param)).addcmul_(grad * column("keep", param), grad)
            if group["centered"]:
                grad_avg = state["grad_avg"]
                grad_avg.lerp_(grad, column("keep", param))
                avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
            else:
                avg = square_avg.sqrt()
            avg.add_(column("eps", param))
            if not moving:
                param.addcdiv_(grad * column("neg_lr", param), avg)
                continue
            buf = state["momentum_buffer"]
            buf.mul_(column("momentum", param)).addcdiv_(grad, avg)
            if not mixed:
                param.addcmul_(buf, column("neg_lr", param))
            else:
                # Members without momentum step on grad / avg, as torch does.
                stepped = torch.addcdiv(param, grad * column("neg_lr", param), avg)
                moved = torch.addcmul(param, buf, column("neg_lr", param))
                param.copy_(torch.where(column.mask("momentum", param), stepped, moved))

    def state_dict(self) -> dict[str, Any]:
        """The population's state; its group holds plain tensors, so it loads with weights_only."""
        state = super().state_dict()
        state["param_groups"] = [_narrow(group, _plain) for group in state["param_groups"]]
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state that `state_dict` gave for a population of the same size."""
        saved = len(state_dict["param_groups"][0]["lr"])
        if saved != self.population:
            raise ValueError(
                f"the state is of {saved} members, this population has {self.population}"
            )
        super().load_state_dict(dict(state_dict))
        self._settle()

    def _settle(self) -> None:
        """Make the group's "lr" a `MemberRates` again and the defaults the group's values."""
        group = self.param_groups[0]
        group["lr"] = _rates(_vector(group["lr"], self.population))
        self.defaults = {key: value for key, value in group.items() if key != "params"}

    def keep(self, members: Sequence[int], params: Iterable[Tensor]) -> None:
        """Keep only `members` (ascending indices), whose stacked parameters are now `params`."""
        members = list(members)
        if (
            not members
            or members != sorted(set(members))
            or not 0 <= members[0] <= members[-1] < self.population
        ):
            raise ValueError(
                f"members to keep must be ascending indices below {self.population}: {members}"
            )
        group = self.param_groups[0]
        params = list(params)
        if len(params) != len(group["params"]):
            raise ValueError(f"{len(params)} parameters given for {len(group['params'])}")
        pick = _kept(torch.as_tensor(members, dtype=torch.long))
        state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for old, new in zip(group["params"], params, strict=True):
            if new.shape != (len(members), *old.shape[1:]):
                raise ValueError(
                    f"a kept parameter has shape {tuple(new.shape)}, not "
                    f"{(len(members), *old.shape[1:])}"
                )
            if old in self.state:
                state[new] = _narrow(self.state[old], pick)
        self.state = state
        for key, value in group.items():
            if key != "params":
                group[key] = _narrow(value, pick)
        group["params"] = params
        self._templates = [self._templates[member] for member in members]
        self._settle()

    def member_state_dict(self, member: int) -> dict[str, Any]:
        """Member `member`'s state as ``torch.optim.<class>(unstacked).state_dict()`` gives it."""
        group = self.param_groups[0]
        template = self._templates[member]
        single = dict(template)
        pick = _member_value(member)
        for key, value in group.items():
            if key == "params":
                continue
            value = _narrow(value, pick)
            # Values a member never changed keep the type its config gave (0, not 0.0).
            single[key] = template[key] if key in template and template[key] == value else value
        single["params"] = list(range(len(group["params"])))
        # torch keeps a momentum buffer only for members with momentum (SGD, RMSprop).
        moving = float(single.get("momentum", 1.0)) != 0
        states = {}
        for index, param in enumerate(group["params"]):
            state = {
                key: value.clone() if key == "step" else value[member].clone()
                for key, value in self.state.get(param, {}).items()
                if moving or key != "momentum_buffer"
            }
            if state:
                states[index] = state
        return {"state": states, "param_groups": [single]}
