"""bf16 only where the machine runs it fast: CPU flags, the measured fallback, the override."""
import pytest

from ftkit.core import env
from ftkit.core.config import TrainConfig
from ftkit.train import sft


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.delenv("FTKIT_BF16", raising=False)
    env.bf16_fast.cache_clear()
    monkeypatch.setattr(env, "_BF16_NOTED", [])
    yield
    env.bf16_fast.cache_clear()


@pytest.mark.parametrize("flags, fast", [
    ({"avx2", "fma"}, False),                       # emulated bf16: float32 instead
    ({"avx2", "avx512f", "avx512bw"}, False),       # AVX-512 without its BF16 extension
    ({"avx512f", "avx512_bf16"}, True),
    ({"amx_bf16", "amx_tile"}, True),
    ({"fp", "asimd", "bf16"}, True),                # Arm FEAT_BF16 (/proc/cpuinfo "Features")
])
def test_cpu_bf16_follows_the_matmul_instructions(monkeypatch, flags, fast):
    monkeypatch.setattr(env, "cpu_flags", lambda: flags)
    monkeypatch.setattr(env, "measure_matmul", lambda *a, **k: pytest.fail("flags suffice"))
    assert env.bf16_fast("cpu") is fast


def test_without_flags_the_faster_matmul_decides(monkeypatch):
    monkeypatch.setattr(env, "cpu_flags", lambda: set())
    speed = {"bfloat16": 40.0, "float32": 100.0}
    monkeypatch.setattr(env, "measure_matmul", lambda dtype, **k: speed[dtype])
    assert env.bf16_fast("cpu") is False
    env.bf16_fast.cache_clear()
    speed["bfloat16"] = 180.0
    assert env.bf16_fast("cpu") is True


@pytest.mark.parametrize("value, expected", [("0", False), ("1", True)])
def test_the_environment_variable_overrides(monkeypatch, value, expected):
    monkeypatch.setenv("FTKIT_BF16", value)
    monkeypatch.setattr(env, "cpu_flags", lambda: {"avx512_bf16"} if value == "0" else set())
    assert env.bf16_fast("cpu") is expected


def test_a_refused_request_is_explained_once(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(env, "cpu_flags", lambda: {"avx2"})
    monkeypatch.setattr(env, "best_device", lambda: "cpu")
    assert env.use_bf16(False) is False and capsys.readouterr().err == ""
    args = sft.training_arguments(TrainConfig(bf16=True), str(tmp_path))
    assert args.bf16 is False
    assert "FTKIT_BF16=1" in capsys.readouterr().err
    assert env.use_bf16(True) is False and capsys.readouterr().err == ""  # said once


def test_bf16_training_where_the_cpu_has_it(monkeypatch, tmp_path):
    monkeypatch.setattr(env, "cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(env, "best_device", lambda: "cpu")
    assert sft.training_arguments(TrainConfig(bf16=True), str(tmp_path)).bf16 is True
    assert sft.training_arguments(TrainConfig(bf16=False), str(tmp_path)).bf16 is False
