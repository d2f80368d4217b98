"""The fast path: the same results bit for bit as plain Lightning, its patches, and its limits."""

import ast
import logging
from pathlib import Path
from typing import ClassVar

import lightning
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loops import training_epoch_loop
from lightning.pytorch.profilers import PassThroughProfiler, SimpleProfiler
from lightning.pytorch.utilities.exceptions import MisconfigurationException

import models
from datamodules import FeatureClassificationData
from experiments import fastpath
from experiments.cli import DEFAULT_EXPERIMENT, main
from experiments.fastpath.hooks import TRAINING_HOOKS, skip_unused_batch_hooks, unused_hooks
from experiments.fastpath.profiler import NoProfiler, no_profiler
from experiments.fastpath.progress import ThrottledBar
from models import MLP, ClassificationTask
from tests.conftest import NO_TEST, REPO, config, curves, fit_in, run_dir

ON_A_VERIFIED_LIGHTNING = pytest.mark.skipif(
    not fastpath.verified(), reason=f"Lightning {lightning.__version__}: the fast path stays off"
)

# A classification and a regression experiment, each with what draws random numbers or saves
# checkpoints on the way: dropout, validation every epoch, the best and the last checkpoint.
RUNS = {
    "mlp_classification": ["--model.init_args.network.init_args.dropout", "0.2"],
    "two_layer_relu": [],
}


def fit(root: Path, name: str, *extra: str) -> Path:
    """Train ``name`` for 4 epochs (and test it) in ``root``; return the run directory."""
    fit_in(root, "--config", config(name), "--trainer.max_epochs", "4", *RUNS[name], *extra)
    return run_dir(root, name)


@pytest.fixture(scope="module")
def fast_runs(trained_runs) -> dict[str, Path]:
    """Each experiment of RUNS trained with the fast path."""
    runs = {}
    for name in RUNS:
        home, _ = trained_runs.train(
            "--config", config(name), "--trainer.max_epochs", "4", *RUNS[name]
        )
        runs[name] = run_dir(home, name)
    return runs


def assert_same_run(one: Path, two: Path) -> None:
    """The same weights, optimiser state and logged series, bit for bit."""
    first = torch.load(one / "checkpoints/last.ckpt", weights_only=True)
    second = torch.load(two / "checkpoints/last.ckpt", weights_only=True)
    assert first["global_step"] == second["global_step"]
    assert first["state_dict"].keys() == second["state_dict"].keys()
    for name, tensor in first["state_dict"].items():
        assert torch.equal(tensor, second["state_dict"][name]), name
    for key, state in first["optimizer_states"][0]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, second["optimizer_states"][0]["state"][key][name]), name
    assert sorted(p.name for p in (one / "checkpoints").iterdir()) == sorted(
        p.name for p in (two / "checkpoints").iterdir()
    )
    assert curves(one) == curves(two)


@pytest.mark.slow  # whole runs compared bit for bit
@pytest.mark.parametrize("name", RUNS)
def test_plain_lightning_gives_the_same_run_bit_for_bit(fast_runs, tmp_path, name):
    assert_same_run(fast_runs[name], fit(tmp_path, name, "--fast_path", "false"))


@pytest.mark.slow  # whole runs compared bit for bit
@pytest.mark.parametrize("name", RUNS)
def test_on_an_unverified_lightning_it_stays_off_says_so_and_the_run_works(
    fast_runs, tmp_path, monkeypatch, caplog, name
):
    monkeypatch.setattr(lightning, "__version__", "2.99.0")
    # Lightning's logger writes to stderr itself and passes nothing up, where caplog listens.
    lightning_logger = logging.getLogger("lightning.pytorch")
    lightning_logger.addHandler(caplog.handler)
    try:
        run = fit(tmp_path, name)
    finally:
        lightning_logger.removeHandler(caplog.handler)
    said = [record.getMessage() for record in caplog.records if "fast path" in record.getMessage()]
    assert said == [
        f"fast path off: Lightning 2.99.0 is not a version it was verified on "
        f"({', '.join(fastpath.VERIFIED)}); training runs on plain Lightning"
    ]
    assert_same_run(fast_runs[name], run)


def test_every_patch_is_taken_away_after_the_run(run_cli):
    signature = training_epoch_loop.is_param_in_hook_signature
    cli = run_cli("fit", "--trainer.max_epochs", "1", *NO_TEST)
    assert training_epoch_loop.is_param_in_hook_signature is signature
    assert "__setattr__" not in vars(LightningModule)
    assert "log" not in vars(cli.model)
    assert not any(hook in vars(cli.model) for hook in TRAINING_HOOKS)


class Probe(Callback):
    """Notes what the fast path put in place when training starts."""

    seen: ClassVar[dict] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        Probe.seen = {
            "log": type(vars(pl_module).get("log")).__name__,
            "setattr": "__setattr__" in vars(LightningModule),
            "profiler": type(trainer.profiler).__name__,
            "bar": type(trainer.progress_bar_callback).__name__,
        }


@pytest.mark.parametrize(
    ("fast", "seen"),
    [
        pytest.param(
            "true",
            {
                "log": "RepeatedLog",
                "setattr": True,
                "profiler": "NoProfiler",
                "bar": "ThrottledBar",
            },
            marks=ON_A_VERIFIED_LIGHTNING,
        ),
        (
            "false",
            {
                "log": "NoneType",
                "setattr": False,
                "profiler": "PassThroughProfiler",
                "bar": "TQDMProgressBar",
            },
        ),
    ],
)
def test_the_fast_path_is_in_place_while_training_unless_switched_off(
    tmp_path, monkeypatch, fast, seen
):
    monkeypatch.chdir(tmp_path)
    args = ["--trainer.max_epochs", "1", "--fast_path", fast, *NO_TEST]
    main(
        [
            "fit",
            *args,
            "--trainer.callbacks+=tests.test_fastpath.Probe",
            # Lightning's bar, as on a terminal (elsewhere a run prints lines, not a bar).
            "--trainer.callbacks+=TQDMProgressBar",
            "--trainer.enable_model_summary",
            "false",
        ]
    )
    assert Probe.seen == seen


class CountingCallback(Callback):
    """A user's callback acting on two per-batch hooks; it counts the calls."""

    def __init__(self) -> None:
        self.calls = {"on_before_backward": 0, "on_validation_batch_end": 0}

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.calls["on_before_backward"] += 1

    def on_validation_batch_end(self, trainer, pl_module, *args) -> None:
        self.calls["on_validation_batch_end"] += 1


def test_callbacks_are_called_only_on_the_batch_hooks_they_implement(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # Run with the progress bar and model summary on, as a user's run is.
    cli = main(
        [
            "fit",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "3",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.log_every_n_steps",
            "1",
            "--trainer.callbacks+=tests.test_fastpath.CountingCallback",
            *NO_TEST,
        ]
    )
    # Implemented hooks still run on every batch (validation's: two in the sanity check, two
    # after the epoch), and the run trains as before.
    counting = next(cb for cb in cli.trainer.callbacks if isinstance(cb, CountingCallback))
    assert counting.calls == {"on_before_backward": 3, "on_validation_batch_end": 4}
    assert cli.trainer.global_step == 3


def test_only_inherited_empty_batch_hooks_are_skipped():
    class TaskWithBackwardHook(ClassificationTask):
        def on_after_backward(self) -> None:
            pass

    task = TaskWithBackwardHook(MLP([2], 2), num_classes=2)
    counting, bar = CountingCallback(), ThrottledBar()
    assert unused_hooks(task, LightningModule, TRAINING_HOOKS) == [
        hook for hook in TRAINING_HOOKS if hook != "on_after_backward"
    ]
    undo = skip_unused_batch_hooks([counting, bar], task)
    assert callable(task.on_after_backward)
    assert task.on_before_backward is None
    assert callable(counting.on_before_backward)
    assert counting.on_train_batch_end is None
    assert callable(bar.on_validation_batch_end)  # the progress bar implements it
    undo()
    assert callable(task.on_before_backward)
    assert callable(counting.on_train_batch_end)


class ChangingLog(ClassificationTask):
    """Logs a value with arguments that change after the first epoch."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("extra", loss.detach(), prog_bar=self.current_epoch > 0)
        return loss


def test_a_repeated_log_with_other_arguments_is_refused_as_lightning_refuses_it(tmp_path):
    trainer = Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, default_root_dir=tmp_path
    )
    task = ChangingLog(MLP([10], 2), num_classes=2)
    undo = fastpath.install(trainer, task)
    try:
        with pytest.raises(
            MisconfigurationException, match="twice in `training_step` with different"
        ):
            trainer.fit(task, FeatureClassificationData(num_samples=100))
    finally:
        undo()


def test_no_profiler_stands_in_for_lightnings_do_nothing_profiler_only():
    quiet = NoProfiler()
    assert quiet.profile("a") is quiet.profile("b")  # one shared context, nothing recorded
    plain = Trainer(logger=False, enable_progress_bar=False)
    assert type(plain.profiler) is PassThroughProfiler
    undo = no_profiler(plain)
    assert type(plain.profiler) is NoProfiler
    undo()
    assert type(plain.profiler) is PassThroughProfiler
    chosen = Trainer(logger=False, profiler=SimpleProfiler(), enable_progress_bar=False)
    no_profiler(chosen)
    assert type(chosen.profiler) is SimpleProfiler


def test_the_progress_bar_draws_each_epochs_last_batch_with_the_step_loss(tmp_path, capsys):
    # 160 training samples in batches of 32: 5 batches an epoch. With an hour between redraws,
    # the bar draws when it starts and at each epoch's last batch, and shows that step's loss.
    bar = ThrottledBar(min_interval=3600)
    trainer = Trainer(
        max_epochs=2,
        log_every_n_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[bar],
        default_root_dir=tmp_path,
    )
    task = models.ClassificationTask(models.MLP([10], 2), num_classes=2)
    trainer.fit(task, FeatureClassificationData(num_samples=200))
    drawn = capsys.readouterr().out.replace("\r", "\n").splitlines()
    counts = {line.split("|")[-1].split()[0] for line in drawn if line.startswith("Epoch")}
    assert "5/5" in counts
    assert not counts & {"2/5", "3/5", "4/5"}
    last = [line for line in drawn if line.startswith("Epoch 1") and "5/5" in line]
    losses = {line.split("train/loss_step=")[1].split(",")[0] for line in last}
    # Drawn at the batch's end and again at the epoch's: the same, current, value.
    assert len(last) >= 2
    assert len(losses) == 1


@pytest.mark.parametrize(
    ("fast", "linked"),
    [pytest.param("true", True, marks=ON_A_VERIFIED_LIGHTNING), ("false", False)],
)
def test_last_checkpoint_saved_with_the_best_is_that_file_under_a_second_name(
    run_cli, tmp_path, fast, linked
):
    # val/loss improves in each of the first epochs, so the best and the last checkpoint are
    # saved together, at the same step.
    run_cli("fit", "--trainer.max_epochs", "3", "--fast_path", fast, *NO_TEST)
    checkpoints = run_dir(tmp_path, DEFAULT_EXPERIMENT) / "checkpoints"
    (best,) = checkpoints.glob("best-*.ckpt")
    assert best.name == "best-epoch=2-step=75.ckpt"
    assert (checkpoints / "last.ckpt").samefile(best) is linked
    # It holds what a separate save of last.ckpt holds: the checkpoint callback's state names
    # last.ckpt as the last file, and a run resumes from it like from any last.ckpt.
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    (callback,) = (v for k, v in last["callbacks"].items() if k.startswith("RunCheckpoint"))
    assert Path(callback["last_model_path"]).name == "last.ckpt"
    assert Path(callback["best_model_path"]).name == best.name
    run_cli("fit", "--trainer.max_epochs", "4", "--ckpt_path", "last", *NO_TEST)
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 4 * 25


def lightning_private_names() -> set[str]:
    """Every ``_name`` that Lightning's own source defines or reads (not ``__dunder__``)."""
    names = set()
    for path in Path(lightning.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "name", None)
            if isinstance(name, str) and name.startswith("_") and not name.startswith("__"):
                names.add(name)
    return names


# The private Lightning names used outside the fast path: each a behaviour, for which no public
# hook serves; their reasons are in the comments beside them, and tests/test_cli.py and
# tests/test_checkpoint.py check that Lightning still has them as used.
BEHAVIOUR = {
    "experiments/cli.py": {"_parse_ckpt_path", "_dump_config"},
    "experiments/report.py": {"_get_file_writer"},  # torch's, as Lightning itself uses it
    # torch's: torch._C._disabled_torch_function_impl, the idiom torch's documentation gives for
    # a tensor subclass whose operations return plain tensors.
    "experiments/population/optim.py": {"_C"},
    # torch's: a module's hooks are listed nowhere else; a hooked module must not be bypassed.
    "experiments/population/stacked.py": {"_forward_hooks", "_forward_pre_hooks"},
    "experiments/checkpoint.py": {
        "_should_save_on_train_epoch_end",
        "_should_skip_saving_checkpoint",
        "_last_global_step_saved",
        "_every_n_epochs",
        "_monitor_candidates",
        "_save_last_checkpoint",
    },
}


def test_outside_the_fast_path_only_the_behaviour_overrides_use_private_lightning_names():
    private = lightning_private_names()
    sources = [
        path
        for folder in ("models", "datamodules", "experiments")
        for path in (REPO / folder).rglob("*.py")
        if "fastpath" not in path.parts
    ]
    trees = {path: ast.parse(path.read_text()) for path in sources}
    # Names this project gives to its own attributes and functions are its own, whatever they
    # are called in Lightning.
    own = {
        target.attr
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute)
    } | {
        node.name
        for tree in trees.values()
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }
    found = {}
    for path, tree in trees.items():
        used = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.FunctionDef):
                used.add(node.name)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lightning"):
                used |= {alias.name for alias in node.names}
        names = {
            name
            for name in used & private
            if name not in own or name in BEHAVIOUR.get(str(path.relative_to(REPO)), ())
        }
        if names:
            found[str(path.relative_to(REPO))] = names
    assert found == BEHAVIOUR
