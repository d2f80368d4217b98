"""The thread policy: one thread for a small network, the CPUs for a large one, the user's
choice above both; and the CLI applying it for as long as its command runs."""

import os

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from experiments import threads
from models import CNN, MLP
from tests.conftest import NO_TEST, config

MLP_SHAPE, CNN_SHAPE = (10,), (3, 32, 32)


class ThreadsSeen(Callback):
    """Records PyTorch's thread count while training."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.seen = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _threads_as_found(monkeypatch: pytest.MonkeyPatch):
    """No thread setting leaks out of a test, and none leaks in from the environment."""
    for name in threads.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    found = torch.get_num_threads()
    yield
    torch.set_num_threads(found)


@pytest.fixture
def four_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)


def mlp_work() -> int:
    return threads.step_flops(MLP(MLP_SHAPE, 2, hidden_sizes=[50]), MLP_SHAPE, 32)


def cnn_work() -> int:
    return threads.step_flops(CNN(CNN_SHAPE, 10), CNN_SHAPE, 64)


def test_the_small_mlp_trains_on_one_thread_and_the_cnn_on_every_cpu(four_cpus):
    assert mlp_work() < threads.SMALL_STEP_FLOPS < cnn_work()
    assert threads.choose(mlp_work()) == 1
    assert threads.choose(cnn_work()) == 4


def test_a_large_network_shares_the_cpus_among_processes_and_runs_beside_it(four_cpus):
    assert threads.choose(cnn_work(), processes=2) == 2  # DDP: each process its share
    with threads.shared_by(2):  # a sweep's two workers
        assert threads.choose(cnn_work()) == 2
        assert threads.choose(cnn_work(), processes=2) == 1
        assert threads.choose(mlp_work()) == 1
    assert threads.choose(cnn_work()) == 4
    with pytest.raises(ValueError, match="runs must be at least 1, got 0"), threads.shared_by(0):
        pass


def test_counting_a_step_touches_neither_the_network_nor_the_random_numbers():
    network = torch.nn.Sequential(
        torch.nn.Linear(10, 50), torch.nn.Dropout(), torch.nn.Linear(50, 2)
    )
    before = [p.detach().clone() for p in network.parameters()]
    rng = torch.random.get_rng_state()
    # At least 2 FLOPs per weight and sample forward and 4 backward: a dense layer's work.
    assert threads.step_flops(network, (10,), 32) == 6 * 652 * 32
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(p.grad is None and p.device.type == "cpu" for p in network.parameters())
    assert all(torch.equal(p, q) for p, q in zip(network.parameters(), before, strict=True))


class CpuOnly(torch.nn.Module):
    """A network the meta device cannot run: it makes a CPU tensor of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + torch.ones(3)


def test_a_step_that_cannot_be_counted_is_estimated_from_the_parameters():
    assert threads.step_flops(CpuOnly(), (4,), 8) == 6 * 15 * 8
    assert threads.step_flops(CpuOnly(), None, 8) == 6 * 15 * 8


def test_the_users_choice_wins_and_is_put_back(monkeypatch):
    cnn, mlp = CNN(CNN_SHAPE, 10), MLP(MLP_SHAPE, 2)
    data = type("Data", (), {"batch_size": 32, "input_shape": MLP_SHAPE})()
    found = torch.get_num_threads()
    restore = threads.apply(3, mlp, data)  # --threads 3
    assert torch.get_num_threads() == 3
    assert os.environ["OMP_NUM_THREADS"] == "3"  # what DDP's processes inherit
    restore()
    assert torch.get_num_threads() == found
    assert "OMP_NUM_THREADS" not in os.environ

    torch.set_num_threads(found + 1)  # chosen in the process before the run
    threads.apply(threads.AUTO, mlp, data)()
    assert torch.get_num_threads() == found + 1
    torch.set_num_threads(found)

    monkeypatch.setenv("MKL_NUM_THREADS", "5")  # torch read it at start: it is left as it is
    threads.apply(threads.AUTO, cnn, data)
    assert torch.get_num_threads() == found
    assert "OMP_NUM_THREADS" not in os.environ

    with pytest.raises(ValueError, match="threads must be a positive integer or 'auto', got 0"):
        threads.apply(0, mlp, data)


@pytest.mark.parametrize(("setting", "expected"), [("auto", 1), ("3", 3)])
def test_a_fit_trains_with_the_policys_threads_or_the_option(run_cli, setting, expected):
    found = torch.get_num_threads()
    cli = run_cli(
        "fit",
        "--config",
        config("mlp_classification"),
        "--data.init_args.num_samples",
        "100",
        "--trainer.max_epochs",
        "1",
        *NO_TEST,
        "--threads",
        setting,
        "--trainer.callbacks+=tests.test_threads.ThreadsSeen",
    )
    seen = next(cb for cb in cli.trainer.callbacks if isinstance(cb, ThreadsSeen)).seen
    assert seen == expected
    assert torch.get_num_threads() == found  # put back when the command ends


def test_the_option_refuses_zero_threads(run_cli, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_cli("fit", "--config", config("mlp_classification"), "--threads", "0")
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == "error: --threads must be a positive integer or auto, got 0"
    assert not (tmp_path / "lightning_logs").exists()
