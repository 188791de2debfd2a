"""Serve a model behind an OpenAI-compatible API, as a process the kit owns (paper §8.1).

The server is transformers' own (``transformers serve``: chat and text completions, streaming,
optional continuous batching), built in process through its ``Serve`` command so the kit
reuses every handler it has, and wrapped in two defaults of ours:

- it binds ``127.0.0.1`` unless told otherwise, on a port chosen free;
- every request but ``GET /health`` needs ``Authorization: Bearer <key>`` (a request without
  the key gets 401); transformers' server has no key check of its own;
- a malformed request body or a prompt longer than the model's context gets 400 before any
  compute, where the app alone would answer 500 or fail inside generation (:class:`Gate`).

:class:`Server` starts it as a child process (``python -m ftkit.deploy.server``), waits until
``/health`` answers, keeps its log in a file, and stops it on ``stop()``, on leaving a ``with``
block, at interpreter exit, or — when the parent dies without stopping it (a killed kernel) —
by itself: the child checks every second that its parent is alive. Only safetensors or GGUF
weights load (transformers refuses pickled weights when safetensors exist; the kit's exports
hold safetensors only) and ``trust_remote_code`` stays off. ``ftkit serve <model-dir>`` runs
the same server from a shell.

Two variants of a served model, for measuring what they cost (§8.3-8.4): ``adapter=`` serves
the base model with a LoRA adapter on top, unmerged (peft's layers add the low-rank product at
every step, as a server holding many adapters over one base would), and ``weights="int8"`` or
``"int4"`` serves the model with torchao's weight-only quantisation
(``ftkit.compress.quantization.quantize_weights``). :meth:`Server.rss_mb` reads the child's
resident memory.

``engine="vllm"`` (or ``"auto"`` on a GPU with vLLM installed) serves the same API from
vLLM instead (:mod:`ftkit.deploy.engines`); the clients do not change.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import gc
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from ftkit.compress.quantization import quantize_weights, weight_storage_mb
from ftkit.core.config import ConfigError
from ftkit.core.env import free_port
from ftkit.deploy import engines
from ftkit.deploy.engines import watch_parent
from ftkit.deploy.gate import Gate

KEY_ENV = "FTKIT_API_KEY"
WEIGHTS = ("auto", "int8", "int4")  # as saved, or torchao weight-only quantisation
WEIGHTS_LINE = "WEIGHTS_MB"  # the server's log line with its weights' bytes (MB)


def check_model_dir(model: str | Path) -> Path:
    """A folder with a config and safetensors (or a GGUF) weights; anything else is refused."""
    path = Path(model)
    if not path.is_dir():
        raise ConfigError(f"model {str(model)!r}: not a folder; give an exported model folder "
                          "(config.json and model.safetensors)")
    if not (path / "config.json").is_file() or not (
            list(path.glob("*.safetensors")) or list(path.glob("*.gguf"))):
        raise ConfigError(f"model {str(model)!r}: needs config.json and safetensors weights "
                          "(a merged export); an adapter folder must be merged first")
    return path


def check_adapter_dir(adapter: str | Path) -> Path:
    """A peft adapter folder (adapter_config.json and safetensors); anything else is refused."""
    path = Path(adapter)
    if not (path / "adapter_config.json").is_file() or not list(path.glob("*.safetensors")):
        raise ConfigError(f"adapter {str(adapter)!r}: needs adapter_config.json and safetensors "
                          "weights (an adapter export)")
    return path


def check_weights(weights: str) -> str:
    if weights not in WEIGHTS:
        raise ConfigError(f"weights {weights!r}: choose one of {', '.join(WEIGHTS)}")
    return weights


def _loaded(built):
    """The one preloaded model entry of a built transformers server (``.model`` is the model)."""
    (entry,) = built._model_manager.loaded_models.values()
    return entry


def _replace_model(built, adapter: Path | None, weights: str) -> None:
    """Swap the server's preloaded model for the base with ``adapter`` on top (unmerged) and/or
    its weight-quantised form; the model it held is released."""
    entry = _loaded(built)
    model = entry.model
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    if weights != "auto":
        model = quantize_weights(model, weights)
    entry.model = model.eval()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # freed pages back before RSS is read
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def build_app(model: str | Path, key: str, continuous_batching: bool = False,
              dtype: str = "auto", device: str = "cpu", adapter: str | Path | None = None,
              weights: str = "auto"):
    """transformers' serving app for ``model`` (preloaded; with ``adapter`` on top, unmerged,
    and/or in ``weights``' format), behind :class:`Gate`."""
    from transformers.cli.serve import Serve

    class _Built(Serve):
        def start_server(self):  # build only; the kit runs uvicorn itself
            pass

    from transformers import AutoConfig, AutoTokenizer

    folder = check_model_dir(model)
    adapter = None if adapter is None else check_adapter_dir(adapter)
    built = _Built(force_model=str(folder), continuous_batching=continuous_batching,
                   dtype=dtype, device=device, trust_remote_code=False, non_blocking=True,
                   log_level="warning")
    if adapter is not None or check_weights(weights) != "auto":
        _replace_model(built, adapter, weights)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    context = getattr(AutoConfig.from_pretrained(folder), "max_position_embeddings", 0) or 0
    return Gate(built.server.config.app, key, lambda text: len(tokenizer(text).input_ids),
                context), built


def main(argv: list[str] | None = None) -> int:
    """``python -m ftkit.deploy.server MODEL [--port P] [--host H] [--continuous-batching]``;
    the key comes from ``$FTKIT_API_KEY``. Prints ``WEIGHTS_MB <MB>`` once the model is loaded
    and ``READY <url>`` once listening."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="ftkit-server", description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--continuous-batching", action="store_true")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--adapter", help="a LoRA adapter folder served on top, unmerged")
    parser.add_argument("--weights", default="auto", choices=WEIGHTS,
                        help="int8/int4: torchao weight-only quantisation")
    parser.add_argument("--parent", type=int, default=0, help="exit when this pid is gone")
    args = parser.parse_args(argv)
    key = os.environ.get(KEY_ENV, "")
    app, built = build_app(args.model, key, args.continuous_batching, args.dtype, args.device,
                           args.adapter, args.weights)
    print(f"{WEIGHTS_LINE} {weight_storage_mb(_loaded(built).model):.1f}", flush=True)
    if args.parent:
        watch_parent(args.parent)
    port = args.port or free_port(args.host)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=port, log_level="warning"))
    threading.Thread(target=_announce, args=(server, f"http://{args.host}:{port}"),
                     daemon=True).start()
    server.run()
    return 0


def _announce(server, url: str) -> None:
    while not server.started:
        time.sleep(0.05)
    print(f"READY {url}", flush=True)


class Server:
    """A served model in a child process, stopped with ``stop()`` or a ``with`` block.

    Args:
        model: an exported model folder (config.json + safetensors).
        port: 0 picks a free one. host: ``127.0.0.1`` unless you mean to expose it.
        key: the API key; default a new random one (``server.key``).
        continuous_batching: transformers' continuous batching (paged attention).
        log: the server's log file; default a temporary file (``server.log``).
        ready_timeout: seconds to wait for ``/health``.
        adapter: a LoRA adapter folder served on top of ``model`` (the base), unmerged.
        weights: ``auto`` (as saved) or ``int8``/``int4`` (torchao weight-only).
        engine: ``transformers``, ``vllm`` (CUDA GPU) or ``auto`` (:mod:`ftkit.deploy.engines`).
        gpu_memory: with vLLM, the share of the GPU's memory this server may take.
    """

    def __init__(self, model: str | Path, port: int = 0, host: str = "127.0.0.1",
                 key: str | None = None, continuous_batching: bool = False,
                 dtype: str = "auto", log: str | Path | None = None,
                 ready_timeout: float | None = None, adapter: str | Path | None = None,
                 weights: str = "auto", engine: str = "transformers", gpu_memory: float = 0.2):
        self.model = str(check_model_dir(model))
        self.adapter = None if adapter is None else str(check_adapter_dir(adapter))
        self.weights = check_weights(weights)
        self.engine, self.gpu_memory = engines.resolve(engine), gpu_memory
        engines.check_weights(self.engine, self.weights)
        self.host, self.port = host, port or free_port(host)
        self.key = key or f"ftkit-{secrets.token_urlsafe(24)}"
        self.url = f"http://{host}:{self.port}"
        self.continuous_batching, self.dtype = continuous_batching, dtype
        if log is None:
            handle, log = tempfile.mkstemp(prefix="ftkit-server-", suffix=".log")
            os.close(handle)
        self.log = Path(log)
        if ready_timeout is None:  # vLLM compiles and captures CUDA graphs before it answers
            ready_timeout = 600.0 if self.engine == "vllm" else 180.0
        self.ready_timeout, self.process = ready_timeout, None

    @property
    def model_name(self) -> str:
        """The ``model`` that requests name: the model's folder, or vLLM's adapter name."""
        if self.engine == "vllm" and self.adapter:
            return engines.ADAPTER_NAME
        return self.model

    @property
    def base_url(self) -> str:
        """The OpenAI clients' ``base_url``."""
        return f"{self.url}/v1"

    def start(self) -> "Server":
        """Start the child and wait for ``/health``; a failed start raises with the log tail."""
        if self.process is not None:
            return self
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
        if self.engine == "vllm":
            cmd = [sys.executable, "-m", "ftkit.deploy.engines", "--parent", str(os.getpid()),
                   *engines.vllm_args(self.model, self.host, self.port, self.dtype,
                                      self.continuous_batching, self.adapter, self.gpu_memory)]
            env[engines.VLLM_KEY_ENV] = self.key
        else:
            cmd = self._transformers_command()
            env[KEY_ENV] = self.key
        if "HF_HUB_CACHE" not in env:  # the server lists the hub cache; an empty one will do
            hub = Path(tempfile.gettempdir()) / "ftkit-hf-hub"
            hub.mkdir(exist_ok=True)
            env["HF_HUB_CACHE"] = str(hub)
        self._group_stopped = False
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        atexit.register(self.stop)
        self._wait_ready()
        return self

    def _transformers_command(self) -> list[str]:
        cmd = [sys.executable, "-m", "ftkit.deploy.server", self.model, "--host", self.host,
               "--port", str(self.port), "--dtype", self.dtype, "--parent", str(os.getpid())]
        if self.continuous_batching:
            cmd.append("--continuous-batching")
        if self.adapter:
            cmd += ["--adapter", self.adapter]
        if self.weights != "auto":
            cmd += ["--weights", self.weights]
        return cmd

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"the server did not answer /health within {self.ready_timeout:.0f}"
                           f" s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if not self.log.is_file():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def rss_mb(self) -> float:
        """The server process's resident memory now (MB; /proc/<pid>/status VmRSS)."""
        if not self.running:
            raise RuntimeError("the server is not running")
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1e3
        raise RuntimeError(f"/proc/{self.process.pid}/status has no VmRSS")

    def weights_mb(self) -> float:
        """What the served model's weights take (MB, the tensors' own bytes, as the server
        logged them after loading); the rest of :meth:`rss_mb` is the runtime. NaN for an
        engine that does not log it (vLLM)."""
        if self.log.is_file():
            with open(self.log, errors="replace") as f:  # an early line: read until it
                for line in f:
                    if line.startswith(WEIGHTS_LINE + " "):
                        return float(line.split()[1])
        return float("nan")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child and the processes it started (its own process group: SIGTERM, then
        SIGKILL after ``timeout``); safe to call twice."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout)
        if not self._group_stopped:  # anything the child left behind in its group, once
            self._group_stopped = True
            self._signal_group(signal.SIGKILL)
        atexit.unregister(self.stop)

    def _signal_group(self, sig: int) -> None:
        """``sig`` to the child's process group (the child leads it: ``start_new_session``)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) != 0


__all__ = ["KEY_ENV", "WEIGHTS", "Gate", "Server", "build_app", "check_adapter_dir",
           "check_model_dir", "check_weights", "free_port", "main", "port_is_free"]

if __name__ == "__main__":
    sys.exit(main())
