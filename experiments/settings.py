"""A run's settings as flat ``name: value`` pairs, read from its resolved config.

The same names serve TensorBoard's hyperparameters tab (:func:`flat_hparams`) and the runs
table's columns of settings that differ between runs (:func:`flat_settings`). This module
imports nothing heavy: ``python -m experiments.runs`` uses it.
"""

from collections.abc import Mapping
from typing import Any

HParam = bool | int | float | str

# Trainer settings that say where or how visibly a run went, not what it learned.
NOT_SETTINGS = {"logger", "callbacks", "default_root_dir", "enable_progress_bar"}
NOT_SETTINGS |= {"enable_model_summary", "plugins", "profiler"}


def visit(flat: dict[str, HParam], name: str, value: Any) -> None:
    """Add ``value`` to ``flat`` under ``name``, nested mappings under dotted names.

    ``{class_path, init_args}`` nodes become ``name: class_path`` plus ``name.arg`` entries;
    lists become text, and unset (null) values are left out.
    """
    if isinstance(value, Mapping) and "class_path" in value:
        flat[name] = value["class_path"]
        for key, inner in (value.get("init_args") or {}).items():
            visit(flat, f"{name}.{key}", inner)
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            visit(flat, f"{name}.{key}" if name else key, inner)
    elif isinstance(value, bool | int | float | str):
        flat[name] = value
    elif isinstance(value, list | tuple):
        flat[name] = str(list(value))


def flat_callbacks(flat: dict[str, HParam], callbacks: Any) -> None:
    """The Trainer callbacks of the config (those of the YAML and of the command line): their
    class names under ``callbacks``, each one's arguments under ``callbacks.<Class>.<arg>``."""
    if isinstance(callbacks, Mapping):
        callbacks = [callbacks]
    names = []
    for callback in callbacks or []:
        if not isinstance(callback, Mapping) or "class_path" not in callback:
            continue
        name = str(callback["class_path"]).rsplit(".", 1)[-1]
        names.append(name)
        for key, value in (callback.get("init_args") or {}).items():
            visit(flat, f"callbacks.{name}.{key}", value)
    if names:
        flat["callbacks"] = ", ".join(names)


def flat_hparams(config: Mapping[str, Any]) -> dict[str, HParam]:
    """The run's settings for the hyperparameters tab: task, network, optimiser, data, seed,
    ``max_epochs`` and the Trainer's callbacks."""
    flat: dict[str, HParam] = {}
    model = dict(config.get("model") or {})
    visit(flat, "task", {"class_path": model.get("class_path"), "init_args": {}})
    for key, value in (model.get("init_args") or {}).items():
        visit(flat, key, value)
    visit(flat, "data", config.get("data"))
    visit(flat, "seed", config.get("seed_everything"))
    trainer = config.get("trainer") or {}
    visit(flat, "max_epochs", trainer.get("max_epochs"))
    flat_callbacks(flat, trainer.get("callbacks"))
    return flat


def flat_settings(config: Mapping[str, Any]) -> dict[str, HParam]:
    """Everything of :func:`flat_hparams`, and the Trainer's other settings as ``trainer.*``."""
    flat = flat_hparams(config)
    for key, value in (config.get("trainer") or {}).items():
        if key not in NOT_SETTINGS and key != "max_epochs":
            visit(flat, f"trainer.{key}", value)
    return flat
