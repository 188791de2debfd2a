"""Resume and determinism: a SIGKILLed run resumes to the uninterrupted result, broken
checkpoints are skipped with a reason, and the same seed gives the same metrics."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftkit.core.config import ConfigError
from ftkit.train import checkpoints

ROOT = Path(__file__).resolve().parents[2]
WORKER_PATH = Path(__file__).resolve().parent / "_resume_worker.py"
_spec = importlib.util.spec_from_file_location("_resume_worker", WORKER_PATH)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

# per-run timings and throughput differ between runs; everything else is recorded metrics
TIMING = {"train_runtime", "train_samples_per_second", "train_steps_per_second",
          "eval_runtime", "eval_samples_per_second", "eval_steps_per_second"}


def _metrics(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def _final(history: list[dict]) -> tuple[float, float]:
    """The last logged training loss and the last evaluation loss."""
    train = [row["loss"] for row in history if "loss" in row]
    evals = [row["eval_loss"] for row in history if "eval_loss" in row]
    return train[-1], evals[-1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, in this process: ``(output_dir, log_history)``."""
    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTKIT_HEADLESS", "1")
        history = worker.run(out)
    return out, history


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _start(out: Path, *args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "FTKIT_HEADLESS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, str(WORKER_PATH), str(out), *args], cwd=ROOT,
                                env=env, stdout=fh, stderr=subprocess.STDOUT)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_mid_run_then_resume_matches_the_uninterrupted_run(tmp_path, reference):
    out, log = tmp_path / "run", tmp_path / "worker.log"
    proc = _start(out, "--step-delay", "0.1", log=log)  # ~4 s of steps: time to kill it
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob(f"checkpoint-*/{checkpoints.MARKER}"))) < 2:
            assert proc.poll() is None, f"worker exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no checkpoint after 120 s:\n{log.read_text()}"
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (out / "history.json").exists()
    saved = checkpoints.latest_valid_checkpoint(out)
    assert saved is not None and saved.name != f"checkpoint-{worker.STEPS}"
    # and a newer checkpoint cut off while being written: no marker, a truncated file
    partial = out / f"checkpoint-{int(saved.name.split('-')[1]) + worker.SAVE_STEPS}"
    shutil.copytree(reference[0] / partial.name, partial, dirs_exist_ok=True)
    (partial / checkpoints.MARKER).unlink()
    _truncate(partial / "optimizer.pt")

    before = log.stat().st_size
    assert _start(out, "--resume", log=log).wait(timeout=120) == 0, log.read_text()[-3000:]
    resumed_log = log.read_text()[before:]
    assert f"skipping checkpoint {partial}: no {checkpoints.MARKER}" in resumed_log
    assert f"resuming from {saved}" in resumed_log, resumed_log[-2000:]
    assert checkpoints.checkpoint_problem(partial) is None  # written again, whole this time
    resumed = json.loads((out / "history.json").read_text())

    (ref_train, ref_eval), (train, evals) = _final(reference[1]), _final(resumed)
    diffs = abs(train - ref_train) / ref_train, abs(evals - ref_eval) / ref_eval
    print(f"resumed from {saved.name}: final train loss {train:.6f} vs {ref_train:.6f}, "
          f"eval loss {evals:.6f} vs {ref_eval:.6f}; relative differences {diffs}")
    assert max(diffs) < 0.01
    assert [r.get("step") for r in resumed] == [r.get("step") for r in reference[1]]


def _copy_checkpoints(reference, tmp_path: Path, steps=(32, 36, 40)) -> Path:
    out = tmp_path / "run"
    for step in steps:
        shutil.copytree(reference[0] / f"checkpoint-{step}", out / f"checkpoint-{step}")
    return out


@pytest.mark.parametrize("damage, words", [
    (lambda d: _truncate(d / "optimizer.pt"), ["optimizer.pt", "bytes", "truncated"]),
    (lambda d: _truncate(d / "adapter_model.safetensors"), ["adapter_model.safetensors"]),
    (lambda d: (d / checkpoints.MARKER).unlink(), [checkpoints.MARKER, "did not finish"]),
    (lambda d: (d / "rng_state.pth").unlink(), ["rng_state.pth", "missing"]),
    (lambda d: (d / "trainer_state.json").write_text('{"global_step": 4'), ["trainer_state"]),
], ids=["truncated-optimizer", "truncated-weights", "no-marker", "missing-rng",
        "bad-trainer-state"])
def test_a_broken_newest_checkpoint_is_skipped_for_the_previous_one(tmp_path, reference, damage,
                                                                     words):
    out = _copy_checkpoints(reference, tmp_path)
    assert checkpoints.latest_valid_checkpoint(out) == out / "checkpoint-40"
    damage(out / "checkpoint-40")
    messages: list[str] = []
    assert checkpoints.latest_valid_checkpoint(out, log=messages.append) == out / "checkpoint-36"
    assert len(messages) == 1 and "checkpoint-40" in messages[0]
    assert all(w in messages[0] for w in words), messages[0]


def test_without_markers_the_files_themselves_are_checked(tmp_path, reference, capsys):
    out = _copy_checkpoints(reference, tmp_path)
    for marker in out.glob(f"*/{checkpoints.MARKER}"):
        marker.unlink()
    assert checkpoints.latest_valid_checkpoint(out) is None  # unmarked = possibly interrupted
    assert capsys.readouterr().out.count("skipping checkpoint") == 3
    _truncate(out / "checkpoint-40" / "optimizer.pt")
    (out / "checkpoint-36" / "scheduler.pt").write_bytes(b"")
    found = checkpoints.latest_valid_checkpoint(out, require_marker=False)
    printed = capsys.readouterr().out
    assert found == out / "checkpoint-32"
    assert "checkpoint-40: optimizer.pt does not load" in printed
    assert "checkpoint-36: empty (0 bytes): scheduler.pt" in printed
    assert checkpoints.latest_valid_checkpoint(tmp_path / "nothing-yet") is None


def test_checkpoint_settings_are_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("FTKIT_HEADLESS", "1")
    with pytest.raises(ConfigError, match=r"save_steps = -1: must be 0 \(no checkpoints\)"):
        worker.make(tmp_path, save_steps=-1)
    with pytest.raises(ConfigError, match="give the checkpoint interval once"):
        checkpoints.save_overrides(5, {"save_strategy": "epoch"})
    assert checkpoints.save_overrides(0, {"seed": 1}) == {"seed": 1}
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file: must be a folder"):
        checkpoints.latest_valid_checkpoint(tmp_path / "file")


def test_same_seed_and_config_give_identical_metrics(tmp_path, reference, monkeypatch):
    monkeypatch.setenv("FTKIT_HEADLESS", "1")
    again = worker.run(tmp_path / "again")
    assert _metrics(again) == _metrics(reference[1])  # exact, every logged value
    assert sum("loss" in row for row in again) == worker.STEPS // 4  # logged every 4 steps
