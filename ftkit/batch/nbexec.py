"""Execute one notebook with papermill in a child process, under a wall-clock limit.

papermill only limits single cells. To bound a whole notebook, the runner starts
``python -m ftkit.batch.nbexec SPEC.json`` and kills that process and all its descendants (the
Jupyter kernel included) when the limit passes. The child writes a small JSON outcome with
the exception that stopped the notebook, which becomes the report's error excerpt.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # a dependency of ipykernel, so present wherever notebooks can run

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
EXCERPT_CHARS = 1500
TRACEBACK_LINES = 12
KILL_GRACE_S = 5
SOURCE_LINES = 4  # of the cell that was running at a timeout


@dataclass
class Job:
    """What to execute and where its files go (all paths absolute)."""
    input: Path
    output: Path
    params: dict[str, Any]
    cwd: Path
    env: dict[str, str]
    timeout_s: float
    cell_timeout_s: float
    log_path: Path
    outcome_path: Path
    kernel_name: str = "python3"


@dataclass
class Outcome:
    """How an execution ended: status is passed, failed or timeout."""
    status: str
    seconds: float
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def execute(job: Job) -> Outcome:
    """Run ``job`` in a child process; never raises for notebook errors or timeouts."""
    spec = job.outcome_path.with_suffix(".spec.json")
    spec.parent.mkdir(parents=True, exist_ok=True)
    job.outcome_path.unlink(missing_ok=True)
    spec.write_text(json.dumps(_spec(job)), encoding="utf-8")
    start = time.monotonic()
    with open(job.log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ftkit.batch.nbexec", str(spec)],
            cwd=job.cwd, env=job.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        timed_out = _wait(proc, job.timeout_s)
    seconds = time.monotonic() - start
    spec.unlink(missing_ok=True)
    if timed_out:
        return Outcome("timeout", seconds, _timeout_message(job))
    return _read_outcome(job, seconds)


def _spec(job: Job) -> dict:
    """The child's instructions, as JSON."""
    return {
        "input": str(job.input), "output": str(job.output), "params": job.params,
        "cwd": str(job.cwd), "cell_timeout_s": job.cell_timeout_s,
        "kernel_name": job.kernel_name, "outcome": str(job.outcome_path),
    }


def _wait(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait for the child; on timeout or Ctrl-C kill its process tree. True if timed out."""
    try:
        proc.wait(timeout=timeout_s)
        return False
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.wait()
        return True
    except BaseException:
        kill_tree(proc.pid)
        proc.wait()
        raise


def kill_tree(pid: int) -> None:
    """Terminate a process and every descendant, then kill whatever is still alive.

    Descendants are listed first: the kernel runs in its own session, so killing the child's
    process group alone would leave it running.
    """
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        _signal(proc, "terminate")
    _, alive = psutil.wait_procs(procs, timeout=KILL_GRACE_S)
    for proc in alive:
        _signal(proc, "kill")
    psutil.wait_procs(alive, timeout=KILL_GRACE_S)


def _signal(proc: psutil.Process, how: str) -> None:
    """Send terminate/kill, ignoring processes that already exited."""
    try:
        getattr(proc, how)()
    except psutil.NoSuchProcess:
        pass


def _read_outcome(job: Job, seconds: float) -> Outcome:
    """Turn the child's outcome file (or, lacking one, its log) into an Outcome."""
    try:
        data = json.loads(job.outcome_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        tail = strip_ansi(_tail(job.log_path, 30))
        return Outcome("failed", seconds, _clip(f"the notebook process died.\n{tail}"))
    finally:
        job.outcome_path.unlink(missing_ok=True)
    if data["status"] == "passed":
        return Outcome("passed", seconds)
    return Outcome(data["status"], seconds, excerpt(data), details=data)


def excerpt(data: dict) -> str:
    """``Name: message`` plus the last traceback lines, ANSI codes stripped, clipped."""
    head = f"{data.get('ename', 'Error')}: {strip_ansi(str(data.get('evalue', '')))}".strip()
    lines = strip_ansi("\n".join(data.get("traceback") or [])).splitlines()
    lines = [ln for ln in lines if ln.strip()][-TRACEBACK_LINES:]
    where = data.get("cell")
    prefix = f"{head}\n(raised in cell In [{where}])" if where is not None else head
    return _clip(prefix + ("\n\n" + "\n".join(lines) if lines else ""))


def strip_ansi(text: str) -> str:
    """Text without terminal colour codes."""
    return ANSI_RE.sub("", text)


def _clip(text: str, limit: int = EXCERPT_CHARS) -> str:
    """Text cut to ``limit`` characters, keeping the head line and the tail of the rest."""
    if len(text) <= limit:
        return text
    head, _, rest = text.partition("\n")
    head = head[: limit // 2]
    room = max(limit - len(head) - 6, 0)
    return f"{head}\n...\n{rest[-room:]}" if room else head


def _tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a text file, or '' if it cannot be read."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _timeout_message(job: Job) -> str:
    """Explain a wall-clock timeout, naming the cell that was running if papermill saved it."""
    msg = f"Timeout: the notebook ran past its wall-clock limit of {job.timeout_s:g} s."
    cell = running_cell(job.output)
    if cell is not None:
        number, source = cell
        shown = "\n".join("    " + ln for ln in source.splitlines()[:SOURCE_LINES])
        msg += f"\nIt was stopped in cell {number} of the executed notebook:\n{shown}"
    return msg


def running_cell(notebook: Path) -> tuple[int, str] | None:
    """(1-based number, source) of the cell papermill marked as running, if any."""
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    for number, cell in enumerate(nb.get("cells", []), start=1):
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "running":
            source = cell.get("source", "")
            return number, "".join(source) if isinstance(source, list) else source
    return None


def _child_main(spec_path: str) -> int:
    """Entry point of the child process: run papermill and write the outcome file."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    outcome = _run_papermill(spec)
    Path(spec["outcome"]).write_text(json.dumps(outcome), encoding="utf-8")
    return 0


def _run_papermill(spec: dict) -> dict:
    """Execute the notebook and describe how it ended."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            spec["input"], spec["output"], parameters=spec["params"],
            kernel_name=spec["kernel_name"], execution_timeout=spec["cell_timeout_s"],
            cwd=spec["cwd"], log_output=False, progress_bar=False,
        )
    except PapermillExecutionError as exc:
        return {"status": "failed", "ename": exc.ename, "evalue": exc.evalue,
                "traceback": list(exc.traceback), "cell": exc.exec_count}
    except Exception as exc:  # kernel death, cell timeout, bad notebook: all end the run
        # nbclient's per-cell limit is a timeout too, not an error in the notebook's code
        status = "timeout" if type(exc).__name__ == "CellTimeoutError" else "failed"
        # papermill's own frames say nothing about the notebook; the log keeps them anyway
        traceback.print_exc()
        return {"status": status, "ename": type(exc).__name__, "evalue": str(exc)}
    return {"status": "passed"}


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
