"""ftkit: a notebook-first kit for fine-tuning LLMs, offline on a CPU.

Notebooks use one import, ``import ftkit as ft``, and call the names below; each lives in the
module of its pipeline stage (one idea per module). Imports are lazy so that the ``ftkit``
command starts without loading torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # config.py: typed configs and papermill parameters
    "Config": "config", "ConfigError": "config", "config_from_params": "config",
    "RunConfig": "config", "ModelConfig": "config", "DataConfig": "config",
    "TrainConfig": "config", "AdapterConfig": "config",
    # runs.py: recorded metrics, claims and figures
    "record": "runs", "record_table": "runs", "claim": "runs", "save_figure": "runs",
    # models.py / packs: the model registry and offline packs
    "load": "models", "load_model": "models", "load_tokenizer": "models",
    "known_models": "models",
    # env.py: hardware, seeds, measurements
    "seed_everything": "env", "device_info": "env", "measure_matmul": "env",
    "peak_rss_mb": "env", "progress": "env", "best_device": "env",
    # widgets.py and plots.py: thin layers over the above
    "panel": "widgets", "show": "plots",
    # train/callbacks.py: live loss plot for any transformers Trainer
    "live_plot": "train.callbacks",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ftkit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
