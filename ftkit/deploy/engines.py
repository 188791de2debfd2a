"""Which program serves a model, and the parts of launching it that do not depend on it.

Two engines speak the same OpenAI-compatible API, so :class:`ftkit.deploy.server.Server` and
the client code are the same for both:

- ``transformers``: transformers' own server (``transformers serve``), on CPU or GPU; the kit
  wraps it with its API-key and request checks (:mod:`ftkit.deploy.server`).
- ``vllm``: vLLM's OpenAI server (paged attention, continuous batching always on), for a CUDA
  GPU where the ``vllm`` package is installed; it checks the API key itself (the key travels in
  ``$VLLM_API_KEY``, never on the command line) and refuses malformed or over-long requests
  with 400. An unmerged adapter is served with vLLM's LoRA support; "no batching" means one
  sequence at a time (``--max-num-seqs 1``). Torchao's weight-only formats are not among its
  loaders, so ``weights=int8/int4`` stays with ``transformers``.
- ``auto``: ``vllm`` where it can run (installed, CUDA GPU), else ``transformers``.

``python -m ftkit.deploy.engines --parent PID serve MODEL ...`` runs vLLM's command line in a
child that stops itself, and every process it started, when PID is gone.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ftkit.core.config import ConfigError

ENGINES = ("auto", "transformers", "vllm")
VLLM_KEY_ENV = "VLLM_API_KEY"
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM accepts as a maximum
ADAPTER_NAME = "adapter"  # the model name requests use for an adapter served by vLLM


def vllm_available() -> bool:
    """Whether vLLM can serve here: the package is installed and a CUDA GPU is visible."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def resolve(engine: str) -> str:
    """``transformers`` or ``vllm`` for ``engine`` (``auto`` picks); a clear error where the
    asked engine cannot run here."""
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "vllm" if vllm_available() else "transformers"
    if engine == "vllm" and not vllm_available():
        raise ConfigError("engine 'vllm': needs the vllm package and a CUDA GPU (pip install "
                          "vllm on a GPU machine); engine='transformers' serves on any machine")
    return engine


def check_weights(engine: str, weights: str) -> None:
    """Refuse torchao's weight-only formats where the engine cannot load them (vLLM)."""
    if engine == "vllm" and weights != "auto":
        raise ConfigError(f"weights {weights!r}: torchao's weight-only formats are served by "
                          "engine 'transformers'; vLLM loads pre-quantised checkpoints")


def lora_rank(adapter: str | Path) -> int:
    """The smallest maximum LoRA rank vLLM accepts that holds ``adapter``'s rank."""
    config = json.loads((Path(adapter) / "adapter_config.json").read_text())
    rank = int(config.get("r", 8))
    fits = [r for r in VLLM_LORA_RANKS if r >= rank]
    if not fits:
        raise ConfigError(f"adapter {str(adapter)!r}: rank {rank} is over the largest vLLM "
                          f"serves ({VLLM_LORA_RANKS[-1]}); merge it and serve the merged model")
    return fits[0]


def vllm_args(model: str, host: str, port: int, dtype: str = "auto",
              continuous_batching: bool = True, adapter: str | None = None,
              gpu_memory: float = 0.2) -> list[str]:
    """The ``vllm serve`` arguments for one model (the model's folder is also its name in
    requests; an adapter's name is :data:`ADAPTER_NAME`). ``gpu_memory``: the share of the
    GPU's memory this server may take, so that several run side by side."""
    if not 0.0 < gpu_memory <= 1.0:
        raise ConfigError(f"gpu_memory {gpu_memory}: a share of the GPU's memory, in (0, 1]")
    args = ["serve", model, "--host", host, "--port", str(port), "--dtype", dtype,
            "--served-model-name", model, "--gpu-memory-utilization", str(gpu_memory),
            "--uvicorn-log-level", "warning"]
    if not continuous_batching:
        args += ["--max-num-seqs", "1"]
    if adapter:
        args += ["--enable-lora", "--lora-modules", f"{ADAPTER_NAME}={adapter}",
                 "--max-lora-rank", str(lora_rank(adapter))]
    return args


def watch_parent(parent: int) -> None:
    """Exit when the process that started this server is gone (no orphans). A server that
    leads its own process group takes the processes it started with it."""
    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                if os.getpgrp() == os.getpid():
                    os.killpg(os.getpid(), signal.SIGKILL)
                os._exit(0)
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(argv: list[str] | None = None) -> int:
    """``python -m ftkit.deploy.engines [--parent PID] serve MODEL ...``: vLLM's command line."""
    parser = argparse.ArgumentParser(prog="ftkit-vllm", description="vLLM's OpenAI server, "
                                     "stopped with the process that started it")
    parser.add_argument("--parent", type=int, default=0, help="exit when this pid is gone")
    parser.add_argument("vllm_args", nargs=argparse.REMAINDER, help="vllm's own arguments")
    args = parser.parse_args(argv)
    if args.parent:
        watch_parent(args.parent)
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", *args.vllm_args]
    return vllm_main() or 0


__all__ = ["ADAPTER_NAME", "ENGINES", "VLLM_KEY_ENV", "check_weights", "lora_rank", "main",
           "resolve", "vllm_args", "vllm_available", "watch_parent"]

if __name__ == "__main__":
    sys.exit(main())
