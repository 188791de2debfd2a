"""Data-parallel training through torchrun and DDP (ftkit.train.distributed, .scaling), on the
tiny Llama."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import yaml

from ftkit import models
from ftkit.core.config import ConfigError
from ftkit.core.env import free_port
from ftkit.train import distributed as D
from ftkit.train import scaling as S
from ftkit.train.speed import fastloss

LOSS_TOL = 1e-3  # absolute, per logged step
ADAPTER_TOL = 0.05  # relative difference of the adapters' weight updates (B·A)


@pytest.mark.slow
def test_two_processes_at_batch_b_train_what_one_process_at_batch_2b_trains(tmp_path):
    one = D.launch(D.Job(out_dir=str(tmp_path / "one"), batch_size=4, max_steps=4), 1)
    two = D.launch(D.Job(out_dir=str(tmp_path / "two"), batch_size=2, max_steps=4), 2,
                   allow_oversubscribe=True)  # equivalence, whatever the core count
    assert [r["world"] for r in two] == [2, 2]
    losses = S.compare_losses(one, two)
    assert len(losses) == 4
    assert losses["abs_diff"].max() < LOSS_TOL, losses
    assert two[0]["losses"] == two[1]["losses"]  # every rank logs the global mean
    same = S.adapter_difference(tmp_path / "one" / "adapter", tmp_path / "two" / "adapter")
    assert same["relative"] < ADAPTER_TOL, same
    # the measure can tell different training apart: another seed draws other examples
    other = D.launch(D.Job(out_dir=str(tmp_path / "other"), batch_size=4, max_steps=4,
                           seed=7), 1)
    far = S.adapter_difference(tmp_path / "one" / "adapter", tmp_path / "other" / "adapter")
    assert far["relative"] > 10 * same["relative"]
    assert S.compare_losses(one, other)["abs_diff"].iloc[0] > 0  # other examples, other loss
    assert two[0]["allreduce_seconds"] > 0 and one[0]["allreduce_seconds"] == 0
    s = S.summary(two)
    assert s["processes"] == 2 and 0 < s["comm_share"] and s["examples_per_s"] > 0


@pytest.fixture
def one_process_group(tmp_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_the_label_only_loss_through_a_ddp_wrapper_equals_the_direct_one(one_process_group):
    from torch.nn.parallel import DistributedDataParallel

    model, tok = models.load("tiny-llama")
    ids = tok(["one example of text", "and another, longer example of text"],
              return_tensors="pt", padding=True)
    labels = ids["input_ids"].clone()
    labels[:, :2] = -100
    args = (ids["input_ids"], ids["attention_mask"], labels, None)
    direct = fastloss.label_only_loss(model, *args)
    direct.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ddp = DistributedDataParallel(model)
    assert fastloss._unwrap_ddp(ddp) is model and fastloss._unwrap_ddp(model) is model
    wrapped = fastloss._through_ddp(ddp, model, args, {})
    wrapped.backward()
    assert torch.allclose(direct, wrapped)
    assert all(torch.allclose(g, p.grad, atol=1e-6) for g, p in zip(grads, model.parameters()))
    assert "forward" not in model.__dict__  # the model's own forward is back


def test_plans_that_cannot_run_as_asked_are_refused():
    with pytest.raises(ConfigError, match="has 2 cores"):
        D.check_plan(3, 6, cores=2)
    D.check_plan(3, 6, cores=2, allow_oversubscribe=True)
    with pytest.raises(ConfigError, match="does not split over 2 processes"):
        D.check_plan(2, 5, cores=4)
    with pytest.raises(ConfigError, match="at least 1"):
        D.check_plan(0, 4)
    with pytest.raises(ConfigError, match="launcher"):
        D.launch_command(D.Path("job.json"), 2, launcher="mpi")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusals")
def test_accelerate_on_cpu_is_refused_before_any_process_starts(tmp_path):
    with pytest.raises(ConfigError, match="torchrun"):
        D.launch(D.Job(out_dir=str(tmp_path)), 2, launcher="accelerate")
    assert not (tmp_path / "job.json").exists()


def test_the_config_files_load_with_accelerates_own_loader(tmp_path):
    paths = D.accelerate_configs(tmp_path, gpus_per_machine=4, machines=2, main_ip="10.0.0.1")
    assert sorted(paths) == ["ddp", "fsdp", "zero2", "zero3"]
    loaded = {name: D.load_accelerate_config(p) for name, p in paths.items()}
    assert {n: c.distributed_type.value for n, c in loaded.items()} == {
        "ddp": "MULTI_GPU", "fsdp": "FSDP", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}
    assert all(c.num_processes == 8 and c.num_machines == 2 for c in loaded.values())
    assert loaded["zero2"].deepspeed_config["zero_stage"] == 2
    assert loaded["zero3"].deepspeed_config["zero_stage"] == 3
    assert loaded["ddp"].main_process_ip == "10.0.0.1"
    assert not list(tmp_path.glob("*.tmp"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load(paths["ddp"].read_text()), "gpus": 8}))
    with pytest.raises(ConfigError, match="accelerate cannot read"):
        D.load_accelerate_config(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusals")
def test_a_config_for_a_backend_missing_here_is_refused_naming_it(tmp_path):
    paths = D.accelerate_configs(tmp_path, gpus_per_machine=2)
    for name in ("ddp", "fsdp", "zero2", "zero3"):
        with pytest.raises(ConfigError, match="deepspeed|CUDA GPUs"):
            D.launch(D.Job(out_dir=str(tmp_path / name)), 2, config=paths[name])


def test_memory_arithmetic_of_the_sharding_strategies():
    gib = 2**30
    assert S.memory_per_device(gib, 8, "DDP") == pytest.approx(16)  # 2+2+12 bytes each
    assert S.memory_per_device(gib, 8, "ZeRO-1") == pytest.approx(2 + 2 + 12 / 8)
    assert S.memory_per_device(gib, 8, "ZeRO-2") == pytest.approx(2 + 14 / 8)
    assert S.memory_per_device(gib, 8, "ZeRO-3 / FSDP") == pytest.approx(2)
    assert S.memory_per_device(gib, 1, "ZeRO-3 / FSDP") == pytest.approx(16)  # nothing to share
    table = S.memory_table({"8B": 8e9, "70B": 70e9})
    assert list(table["70B"].iloc[:4]) == sorted(table["70B"].iloc[:4], reverse=True)
    verdict = S.fits(table, 80)  # an 80 GB GPU, 8 of them
    assert verdict.loc["DDP", "8B"] == "—" and verdict.loc["ZeRO-3 / FSDP", "8B"] == "fits"
    assert verdict.loc["ZeRO-3 / FSDP", "70B"] == "—"  # 1.1 TB of states over 640 GB
    assert verdict.loc["QLoRA (DDP)", "70B"] == "fits"
    with pytest.raises(ConfigError, match="strategy"):
        S.memory_per_device(1e9, 8, "ZeRO-4")


def test_the_entry_point_explains_its_usage(capsys):
    assert D.main([]) == 2
    assert "usage" in capsys.readouterr().err
