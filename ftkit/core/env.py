"""The machine: hardware and dtype detection, seeds, matmul speed, memory, progress bars.

Used in notebooks/00_setup_and_environment.ipynb and by every notebook that trains.
"""
from __future__ import annotations

import ctypes
import functools
import gc
import mmap
import os
import platform
import random
import resource
import socket
import sys
import threading
import time

import numpy as np
import torch


def headless() -> bool:
    """True in batch runs (the runner sets FTKIT_HEADLESS=1): no widgets, plain-text progress."""
    return os.environ.get("FTKIT_HEADLESS", "0") == "1"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (servers, process rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a rerun with the same seed gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict:
    """What this machine offers for training: CPU, memory, GPU, dtypes, library versions."""
    import psutil

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python": sys.version.split()[0], "torch": torch.__version__,
        "cpu": _cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu, "cuda": torch.version.cuda if gpu else None,
        "bf16_gpu": bool(gpu) and torch.cuda.is_bf16_supported(),
        "mps": torch.backends.mps.is_available(),
    }


def best_device() -> str:
    """``cuda`` if a GPU is present, else ``mps`` on Apple silicon, else ``cpu``."""
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def measure_matmul(dtype: str = "float32", n: int = 1024, seconds: float = 1.0,
                   device: str | None = None) -> float:
    """Measured GFLOP/s of an ``n x n`` matmul in ``dtype`` (2·n³ FLOPs per product).

    Runs for about ``seconds`` after one warm-up product; the best of several timed chunks is
    kept, which is the least disturbed by other work on the machine.
    """
    device = device or best_device()
    dt = getattr(torch, dtype)
    a = torch.randn(n, n, device=device).to(dt)
    b = torch.randn(n, n, device=device).to(dt)
    _sync(device, a @ b)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(4):
            c = a @ b
        _sync(device, c)
        best = min(best, (time.perf_counter() - t0) / 4)
    return 2 * n**3 / best / 1e9


def _sync(device: str, tensor: torch.Tensor) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
    else:
        float(tensor[0, 0])


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux /proc; elsewhere the peak so far)."""
    try:
        pages = int(open("/proc/self/statm").read().split()[1])
    except OSError:
        return peak_rss_mb()
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so that a following
    memory measurement starts from what is really in use."""

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def file_mappings() -> list[tuple[int, int]]:
    """Address ranges of this process mapped from files (Linux ``/proc/self/maps``)."""
    ranges = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[4] != "0" and parts[5].startswith("/"):
                    start, end = (int(a, 16) for a in parts[0].split("-"))
                    ranges.append((start, end))
    except OSError:
        pass
    return ranges


def file_mapped(tensor: torch.Tensor, ranges: list[tuple[int, int]] | None = None) -> bool:
    """Whether ``tensor``'s memory lies inside one file mapping (``ranges`` from
    :func:`file_mappings`, read afresh when not given)."""
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    return any(a <= start and end <= b for a, b in (file_mappings() if ranges is None
                                                     else ranges))


def _private_copies(first: int, last: int) -> bool:
    """Whether any page in ``[first, last)`` holds this process's own copy (written, so no
    longer the file's page) or is swapped out, per ``/proc/self/pagemap``; True if unknown."""

    import numpy as np

    page = mmap.PAGESIZE
    try:
        with open("/proc/self/pagemap", "rb") as pagemap:
            pagemap.seek(first // page * 8)
            entries = np.frombuffer(pagemap.read((last - first) // page * 8), dtype=np.uint64)
    except OSError:
        return True
    if len(entries) != (last - first) // page:
        return True
    flags = (entries >> np.uint64(61)).astype(np.uint8)  # bit 0: file page, 1: swapped, 2: present
    return bool(((flags & 0b101) == 0b100).any() or (flags & 0b010).any())


def release_file_pages(tensors, ranges: list[tuple[int, int]] | None = None) -> int:
    """Drop the resident pages of file-mapped ``tensors`` from this process; returns the bytes.

    A model loaded from safetensors reads its weights straight from the mapped file; once a
    weight is served from another copy (ftkit.train.speed.frozen_linear), its pages only occupy memory.
    ``madvise(MADV_DONTNEED)`` unmaps them: the file's pages stay in the page cache and come
    back on the next touch, unchanged. Only ranges whose every page is still the file's own are
    dropped (a page written in place is this process's private copy and would be lost, so such
    tensors are skipped, as are anonymous memory and systems without ``/proc``). ``ranges``:
    the file mappings, if already read.
    """

    ranges = file_mappings() if ranges is None else ranges
    if not ranges:
        return 0
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page, released, done = mmap.PAGESIZE, 0, set()
    for t in tensors:
        start = t.data_ptr()
        end = start + t.numel() * t.element_size()
        first, last = -(-start // page) * page, end // page * page  # whole pages inside only
        if (first, last) in done or last <= first or not file_mapped(t, ranges) \
                or _private_copies(first, last):
            continue
        done.add((first, last))
        if madvise(first, last - first, 4) == 0:  # 4: MADV_DONTNEED
            released += last - first
    return released


class MemoryTracker:
    """Peak resident memory while a block runs, sampled every ``interval`` s in a thread.

    ``with MemoryTracker() as mem: ...`` then ``mem.peak_mb`` (absolute) and ``mem.delta_mb``
    (peak minus the resident memory at the start): what the block itself needed.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.start_mb, self.peak_mb = interval, 0.0, 0.0
        self._stop = None

    def __enter__(self) -> "MemoryTracker":

        release_memory()
        self.start_mb = self.peak_mb = current_rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, current_rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, current_rss_mb())

    @property
    def delta_mb(self) -> float:
        return self.peak_mb - self.start_mb


def progress(iterable=None, desc: str = "", total: int | None = None, **kwargs):
    """A progress bar: a widget bar interactively, plain text lines every 10 s in batch runs."""
    if headless():
        from tqdm.std import tqdm

        return tqdm(iterable, desc=desc, total=total, mininterval=10, ascii=True,
                    file=sys.stdout, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, **kwargs)


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (x86 ``flags``, Arm ``Features``; empty where there
    is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def dtype_support() -> dict[str, bool]:
    """Which reduced-precision paths this machine accelerates in hardware."""
    flags = cpu_flags()
    gpu = torch.cuda.is_available()
    return {"cpu_avx512_bf16": "avx512_bf16" in flags, "cpu_amx_bf16": "amx_bf16" in flags,
            "cpu_avx512_fp16": "avx512_fp16" in flags,
            "gpu_bf16": gpu and torch.cuda.is_bf16_supported(), "gpu_fp16": gpu}


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX-512 BF16 / AMX, Arm FEAT_BF16


@functools.lru_cache(maxsize=None)
def bf16_fast(device: str | None = None) -> bool:
    """Whether bf16 autocast speeds ``device`` up (default: :func:`best_device`).

    A GPU: whether it supports bf16. A CPU: whether it has bf16 matmul instructions (flags in
    ``BF16_CPU_FLAGS``). Without them PyTorch emulates bf16 matmuls in plain code, one to two
    orders of magnitude slower than float32 (measured: 0.8 vs 110 GFLOP/s on a 2-core AVX2
    server, benchmarks/matmul_dtypes.py), so ftkit trains in float32 there. Where the CPU
    flags cannot be read (macOS), both dtypes' matmuls are measured once and bf16 must be at
    least as fast. The environment variable ``FTKIT_BF16=0`` or ``=1`` overrides the answer.
    """
    forced = os.environ.get("FTKIT_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    device = device or best_device()
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device != "cpu":
        return False
    flags = cpu_flags()
    if flags:
        return any(f in flags for f in BF16_CPU_FLAGS)
    return measure_matmul("bfloat16", n=256, seconds=0.2, device="cpu") >= \
        measure_matmul("float32", n=256, seconds=0.2, device="cpu")


_BF16_NOTED: list[bool] = []


def use_bf16(requested: bool = True, device: str | None = None) -> bool:
    """``requested and bf16_fast(device)``; says once per process why a request is turned down."""
    if not requested:
        return False
    if bf16_fast(device):
        return True
    if not _BF16_NOTED:
        _BF16_NOTED.append(True)
        print("bf16 autocast off: this machine has no bf16 matmul instructions (it would run "
              "bf16 many times slower than float32), so ftkit computes in float32 "
              "(set FTKIT_BF16=1 to force bf16)", file=sys.stderr)
    return False


def bf16_autocast(requested: bool = True, device: str = "cpu"):
    """``torch.autocast`` to bf16 on ``device``, enabled when :func:`use_bf16` says so."""
    return torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16(requested, device))
