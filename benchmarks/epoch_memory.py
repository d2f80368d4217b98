"""How much memory a training epoch's bookkeeping takes as the data grows.

``mlp_classification`` trains one epoch at 10,000 and at 1,000,000 training samples (batches
of 1024), each in a fresh process. A callback forgets the process's peak memory (Linux's
VmHWM) when the epoch starts and reads it when training ends: the growth over the epoch, its
validation included, is what the loop and the task keep while it runs; the data themselves
are in memory before the epoch starts. It should not grow with the number of samples.

Run: ``.venv/bin/python -m benchmarks.epoch_memory``.
"""

import subprocess
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]
TRAINING_SAMPLES = (10_000, 1_000_000)


def status(field: str) -> int:
    """A field of /proc/self/status, in bytes."""
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


class EpochMemory(Callback):
    """Prints the peak memory an epoch added to the process, in MiB."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # the peak so far is forgotten
        self.before = status("VmRSS:")

    def on_train_end(self, trainer, pl_module) -> None:
        print(f"EPOCH_PEAK_MIB {(status('VmHWM:') - self.before) / 2**20:.1f}", flush=True)


def main() -> None:
    print("training samples   epoch's peak memory growth")
    for samples in TRAINING_SAMPLES:
        command = [
            sys.executable, "-m", "experiments", "fit",
            "--config", str(REPO / "experiments" / "mlp_classification.yaml"),
            "--data.init_args.num_samples", str(int(samples / 0.8)),
            "--data.init_args.batch_size", "1024",
            "--trainer.max_epochs", "1",
            "--trainer.num_sanity_val_steps", "0",
            "--test_after_fit", "false",
            "--figures.enabled", "false",
            "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(Path("/tmp") / "epoch_memory"),
            "--trainer.callbacks+=benchmarks.epoch_memory.EpochMemory",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
        peak = next(line for line in done.stdout.splitlines() if line.startswith("EPOCH_PEAK"))
        print(f"{samples:>16,}   {float(peak.split()[1]):8.1f} MiB")


if __name__ == "__main__":
    main()
