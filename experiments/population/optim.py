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


def _scheduler_class(class_path: str) -> type | None:
    """A scheduler's class from its path, or from its name in ``torch.optim.lr_scheduler``."""
    return _resolve(class_path) if "." in class_path else getattr(lr_scheduler, class_path, None)


def unsupported_scheduler(class_path: str, init_args: Mapping[str, Any]) -> str | None:
    """Why a population cannot use this learning-rate scheduler, or None when it can."""
    cls = _scheduler_class(class_path)
    if cls is lr_scheduler.ReduceLROnPlateau:
        return "ReduceLROnPlateau watches one metric, not one per member"
    if cls not in SCHEDULERS:
        return f"{class_path} is not batched"
    for key, value in init_args.items():
        if _holds_tensor(value):
            return f"{key} given as a tensor is not batched"
    return None


def build_scheduler(
    optimizer: PopulationOptimizer, class_path: str, init_args: Mapping[str, Any]
) -> lr_scheduler.LRScheduler:
    """The scheduler a config names (``class_path`` and ``init_args``) on a population's
    optimizer: one instance for all members, its own arguments shared by them."""
    reason = unsupported_scheduler(class_path, init_args)
    if reason is not None:
        raise ValueError(f"cannot batch {class_path}: {reason}")
    return _scheduler_class(class_path)(optimizer, **init_args)


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
    """Per-member float64 values, cast to the parameters' dtype and device and shaped to
    broadcast over each, as one list per value for ``torch._foreach_*`` operations."""

    def __init__(self, values: Mapping[str, Tensor], params: Sequence[Tensor]) -> None:
        self._values = values
        self._params = params
        self._cast: dict[tuple[str, torch.dtype, torch.device, int], Tensor] = {}
        self._lists: dict[str, list[Tensor]] = {}

    def __call__(self, name: str) -> list[Tensor]:
        """Value `name` for each parameter: a (P, 1, ...) view of the parameter's rank."""
        columns = self._lists.get(name)
        if columns is None:
            columns = self._lists[name] = [self._column(name, like) for like in self._params]
        return columns

    def _column(self, name: str, like: Tensor) -> Tensor:
        key = (name, like.dtype, like.device, like.dim())
        column = self._cast.get(key)
        if column is None:
            column = self._values[name].to(like.device, like.dtype)
            column = self._cast[key] = column.view(-1, *([1] * (like.dim() - 1)))
        return column

    def mask(self, name: str) -> list[Tensor]:
        """Where value `name` is zero, shaped to broadcast over each parameter."""
        zero = self._values[name] == 0
        return [zero.to(p.device).view(-1, *([1] * (p.dim() - 1))) for p in self._params]


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
        # The last step's columns and what they were made of (see `_columns`).
        self._cached: tuple[Any, _Columns] | None = None

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

    def _gradients(self, group: Mapping[str, Any], params: list[Tensor]) -> list[Tensor]:
        grads = [param.grad for param in params]
        return torch._foreach_neg(grads) if group["maximize"] else grads  # type: ignore[arg-type]

    def _vectors(self, group: Mapping[str, Any], *names: str) -> dict[str, Tensor]:
        """The group's values `names`, each as float64 with one entry per member."""
        return {name: _vector(group[name], self.population) for name in names}

    def _columns(
        self,
        values: dict[str, Tensor],
        derive: Callable[[dict[str, Tensor]], dict[str, Tensor]],
        params: Sequence[Tensor],
    ) -> _Columns:
        """`values` and those that `derive` makes of them, as columns for `params`: made again
        only when a value changed (a scheduler's "lr"), not every step."""
        key = (
            torch.stack(list(values.values())).tolist(),
            [(param.dtype, param.device, param.dim()) for param in params],
        )
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, _Columns(values | derive(values), params))
        return self._cached[1]

    # Each update below is torch.optim's single-tensor arithmetic. SGD and RMSprop do it for
    # all parameters at once with torch._foreach_* operations: their per-member values are
    # (P, 1, ...) tensors, which no fast foreach kernel takes, so each operation runs torch's
    # own kernel for every parameter in turn (one Python call for the list, not one a
    # parameter), with the same broadcasting: each member's arithmetic is what it was alone.

    def _adam(self, group: dict[str, Any], params: list[Tensor]) -> None:
        values = self._vectors(group, "lr", "eps", "weight_decay")
        lr, decay = values["lr"], values["weight_decay"]
        beta1, beta2 = (_vector(beta, self.population) for beta in group["betas"])
        values |= {"beta1": beta1, "beta2": beta2}
        decays = bool(decay.any())

        def derive(values: dict[str, Tensor]) -> dict[str, Tensor]:
            return {
                "shrink": 1 - values["lr"] * values["weight_decay"],
                "keep1": 1 - values["beta1"],
                "keep2": 1 - values["beta2"],
            }

        amsgrad = group["amsgrad"]
        by_step: dict[float, list[Tensor]] = defaultdict(list)
        steps = []
        for param in params:
            state = self.state[param]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                if amsgrad:
                    state["max_exp_avg_sq"] = torch.zeros_like(
                        param, memory_format=torch.preserve_format
                    )
            steps.append(state["step"])
        torch._foreach_add_(steps, 1)
        for param, step in zip(params, steps, strict=True):
            by_step[step.item()].append(param)
        # Parameters share a step count unless some went without gradients at times.
        for step, stepped in by_step.items():
            column = self._columns(values, derive, stepped)
            corrections = _Columns(
                {
                    "neg_step_size": -(lr / (1 - _power(beta1, step))),
                    "correction2_sqrt": _power(1 - _power(beta2, step), 0.5),
                },
                stepped,
            )
            grads = self._gradients(group, stepped)
            shrinks, decays_by, keeps1, betas2, keeps2, epsilons = (
                column(name)
                for name in ("shrink", "weight_decay", "keep1", "beta2", "keep2", "eps")
            )
            neg_step_sizes = corrections("neg_step_size")
            corrections2 = corrections("correction2_sqrt")
            # One parameter at a time, not torch._foreach_*: its temporaries stay in the cache
            # (measured: foreach 10% slower for 256 members, no faster for 64).
            for index, param in enumerate(stepped):
                state, grad = self.state[param], grads[index]
                if decays:
                    if group["decoupled_weight_decay"]:
                        param.mul_(shrinks[index])
                    else:
                        grad = torch.addcmul(grad, param, decays_by[index])
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, keeps1[index])
                # torch's addcmul_(grad, grad, value=v) is (v * grad) * grad, which this repeats.
                exp_avg_sq.mul_(betas2[index]).addcmul_(grad * keeps2[index], grad)
                if amsgrad:
                    maximum = state["max_exp_avg_sq"]
                    torch.maximum(maximum, exp_avg_sq, out=maximum)
                    exp_avg_sq = maximum
                denom = (exp_avg_sq.sqrt() / corrections2[index]).add_(epsilons[index])
                param.addcdiv_(exp_avg * neg_step_sizes[index], denom)

    def _sgd(self, group: dict[str, Any], params: list[Tensor]) -> None:
        values = self._vectors(group, "lr", "momentum", "dampening", "weight_decay")
        column = self._columns(
            values, lambda v: {"neg_lr": -v["lr"], "keep": 1 - v["dampening"]}, params
        )
        decays, moving = bool(values["weight_decay"].any()), bool(values["momentum"].any())
        mixed = moving and not bool(values["momentum"].all())
        grads = self._gradients(group, params)
        if decays:
            grads = torch._foreach_addcmul(grads, params, column("weight_decay"))
        if moving:
            states = [self.state[param] for param in params]
            bufs = [state.get("momentum_buffer") for state in states]
            # torch's first momentum step copies the gradient, without dampening.
            old = [index for index, buf in enumerate(bufs) if buf is not None]
            if old:
                momenta, keeps = column("momentum"), column("keep")
                moved = [bufs[i] for i in old]
                torch._foreach_mul_(moved, [momenta[i] for i in old])
                torch._foreach_addcmul_(moved, [grads[i] for i in old], [keeps[i] for i in old])
            for index, state in enumerate(states):
                if bufs[index] is None:
                    bufs[index] = state["momentum_buffer"] = grads[index].detach().clone()
            if group["nesterov"]:
                updates = torch._foreach_addcmul(grads, bufs, column("momentum"))
            else:
                updates = bufs
            if mixed:
                # Members without momentum step on the gradient itself, as torch does.
                updates = [
                    torch.where(mask, grad, update)
                    for mask, grad, update in zip(
                        column.mask("momentum"), grads, updates, strict=True
                    )
                ]
            grads = updates
        torch._foreach_addcmul_(params, grads, column("neg_lr"))

    def _rmsprop(self, group: dict[str, Any], params: list[Tensor]) -> None:
        values = self._vectors(group, "lr", "alpha", "eps", "weight_decay", "momentum")
        column = self._columns(
            values, lambda v: {"neg_lr": -v["lr"], "keep": 1 - v["alpha"]}, params
        )
        # torch's RMSprop has momentum where it is > 0; negative momentum is refused.
        decays, moving = bool(values["weight_decay"].any()), bool(values["momentum"].any())
        mixed = moving and not bool(values["momentum"].all())
        states = [self.state[param] for param in params]
        for param, state in zip(params, states, strict=True):
            if not state:
                state["step"] = torch.zeros((), dtype=_get_scalar_dtype())
                state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                if group["centered"]:
                    state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if moving and "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(
                    param, memory_format=torch.preserve_format
                )
        torch._foreach_add_([state["step"] for state in states], 1)
        grads = self._gradients(group, params)
        if decays:
            grads = torch._foreach_addcmul(grads, params, column("weight_decay"))
        square_avgs = [state["square_avg"] for state in states]
        torch._foreach_mul_(square_avgs, column("alpha"))
        torch._foreach_addcmul_(square_avgs, torch._foreach_mul(grads, column("keep")), grads)
        if group["centered"]:
            grad_avgs = [state["grad_avg"] for state in states]
            torch._foreach_lerp_(grad_avgs, grads, column("keep"))
            avgs = torch._foreach_addcmul(square_avgs, grad_avgs, grad_avgs, value=-1)
            torch._foreach_sqrt_(avgs)
        else:
            avgs = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(avgs, column("eps"))
        if not moving:
            torch._foreach_addcdiv_(params, torch._foreach_mul(grads, column("neg_lr")), avgs)
            return
        bufs = [state["momentum_buffer"] for state in states]
        torch._foreach_mul_(bufs, column("momentum"))
        torch._foreach_addcdiv_(bufs, grads, avgs)
        if not mixed:
            torch._foreach_addcmul_(params, bufs, column("neg_lr"))
            return
        # Members without momentum step on grad / avg, as torch does.
        stepped = torch._foreach_addcdiv(params, torch._foreach_mul(grads, column("neg_lr")), avgs)
        moved = torch._foreach_addcmul(params, bufs, column("neg_lr"))
        for param, mask, one, other in zip(
            params, column.mask("momentum"), stepped, moved, strict=True
        ):
            param.copy_(torch.where(mask, one, other))

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
