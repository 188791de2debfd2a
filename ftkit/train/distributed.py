"""Data-parallel training on existing engines: torchrun / accelerate launch, DDP (paper §5.2, §5.6).

The kit's trainer factory (``ftkit.train.sft.make_trainer``) needs no change to run in several
processes: the transformers Trainer reads the launcher's ``RANK``/``WORLD_SIZE`` variables and
wraps the model in DistributedDataParallel through Accelerate (gloo on CPUs, NCCL on GPUs).
This module supplies what is around it:

- :class:`Job` and :func:`train_process` — the running example's LoRA fine-tuning as one
  training function, run unchanged in every process of a launch; each process writes what it
  measured (losses, step times, peak memory, the time of one gradient all-reduce);
- :func:`launch` — starts a job under ``torchrun`` or ``accelerate launch`` in N processes and
  reads the processes' results; bad plans (more processes than cores, a batch the world size
  does not divide, a config for a backend that is not installed) are refused first;
- :func:`accelerate_configs` — ready accelerate config files for multi-GPU DDP, FSDP and
  DeepSpeed ZeRO-2/3, each checked by accelerate's own loader (on CPUs ``accelerate launch``
  starts one process unless mpirun is set up, so CPU runs go through ``torchrun``).

What the launches measured, and the memory arithmetic of sharding: ftkit.train.scaling.

Used in notebooks/19_scaling_out.ipynb and tests/train/test_distributed.py.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from transformers import TrainerCallback

from ftkit import models
from ftkit.core.config import AdapterConfig, ConfigError, TrainConfig
from ftkit.core.env import free_port, peak_rss_mb, seed_everything
from ftkit.data.formatting import pairs_dataset
from ftkit.train import adapters, assistant, sft

LAUNCHERS = ("torchrun", "accelerate")
RESULT = "rank{}.json"


@dataclass(frozen=True)
class Job:
    """One data-parallel LoRA fine-tuning of the shop's assistant (flat values, JSON-able).

    ``batch_size`` is per process: ``world × batch_size × grad_accum`` examples make one
    optimiser step. ``train_rows`` examples of the assistant's records are used (0: all).
    ``time_full_allreduce``: also time an all-reduce of as many values as the model has
    weights (the traffic of full fine-tuning). ``lora_dropout`` is 0 so that runs of
    different world sizes compute the same gradients: each process draws its own dropout
    masks, so with dropout they differ by design."""
    out_dir: str
    model_name: str = "tiny-llama"
    batch_size: int = 2
    grad_accum: int = 1
    max_steps: int = 4
    lr: float = 1e-3
    lora_r: int = 4
    lora_dropout: float = 0.0
    max_length: int = 256
    train_rows: int = 64
    seed: int = 42
    threads: int = 1
    allreduce_repeats: int = 5
    time_full_allreduce: bool = False


# ---------------------------------------------------------------- checks before a launch

def check_plan(processes: int, global_batch: int, cores: int | None = None,
               allow_oversubscribe: bool = False) -> None:
    """Refuse a plan that cannot run as asked: ``processes`` must be ≥ 1 and at most the
    machine's cores (its GPUs, where it has any) unless ``allow_oversubscribe``, and must
    divide ``global_batch`` (the examples of one step): each process takes an equal share."""
    cores = cores or os.cpu_count() or 1
    if processes < 1:
        raise ConfigError(f"processes = {processes}: need at least 1")
    gpus = torch.cuda.device_count()
    if gpus and processes > gpus and not allow_oversubscribe:
        raise ConfigError(f"processes = {processes} but this machine has {gpus} GPU(s): NCCL "
                          "needs one GPU per process; use at most that many processes")
    if processes > cores and not allow_oversubscribe:
        raise ConfigError(f"processes = {processes} but this machine has {cores} cores: each "
                          "process would get less than one core and all would run slower; use "
                          f"at most {cores} or pass allow_oversubscribe=True to measure it anyway")
    if global_batch < processes or global_batch % processes:
        raise ConfigError(f"a global batch of {global_batch} examples does not split over "
                          f"{processes} processes; choose a batch that is a multiple of "
                          f"{processes} (per-process batch = global batch / processes)")


def check_backend(config: dict) -> None:
    """Refuse an accelerate config whose backend this machine lacks, naming what is missing.

    DeepSpeed needs its package and GPUs; FSDP and multi-GPU DDP need CUDA GPUs (NCCL);
    on CPUs ``accelerate launch`` needs mpirun, so CPU runs go through ``torchrun``."""
    kind = config.get("distributed_type", "NO")
    kind = getattr(kind, "value", kind)  # accelerate's loader gives an enum
    if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("this config uses DeepSpeed (distributed_type: DEEPSPEED), which is not "
                          "installed here: pip install deepspeed (it needs CUDA GPUs); on CPUs "
                          "launch with torchrun (launch(..., launcher='torchrun'))")
    if kind in ("DEEPSPEED", "FSDP", "MULTI_GPU"):
        gpus = torch.cuda.device_count()
        need = int(config.get("num_processes", 1)) // max(1, int(config.get("num_machines", 1)))
        if gpus < need:
            raise ConfigError(f"this config ({kind}) needs {need} CUDA GPUs per machine and this "
                              f"machine has {gpus}; on CPUs launch with torchrun "
                              "(launch(..., launcher='torchrun'))")
    if kind == "MULTI_CPU" and not config.get("mpirun_config"):
        raise ConfigError("accelerate launch starts several CPU processes only through mpirun "
                          "(mpirun_hostfile in the config); on CPUs launch with torchrun "
                          "(launch(..., launcher='torchrun'))")


# ---------------------------------------------------------------- accelerate config files

def _base(kind: str, processes: int, machines: int, main_ip: str, port: int) -> dict:
    cfg = {"compute_environment": "LOCAL_MACHINE", "distributed_type": kind,
           "num_machines": machines, "num_processes": processes, "machine_rank": 0,
           "main_training_function": "main", "rdzv_backend": "static",
           "same_network": True, "use_cpu": False, "debug": False, "mixed_precision": "bf16"}
    if machines > 1:
        cfg.update(main_process_ip=main_ip, main_process_port=port)
    return cfg


def accelerate_config_dicts(gpus_per_machine: int = 8, machines: int = 1,
                            main_ip: str = "127.0.0.1", port: int = 29500) -> dict[str, dict]:
    """The accelerate configs as dicts: ``ddp``, ``fsdp``, ``zero2``, ``zero3`` (GPUs: NCCL).

    ``num_processes`` counts all processes of all machines. Each machine runs the same command
    with its own ``machine_rank`` (``accelerate launch --machine_rank i``)."""
    total = gpus_per_machine * machines
    fsdp = {"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_state_dict_type": "SHARDED_STATE_DICT", "fsdp_offload_params": False,
            "fsdp_cpu_ram_efficient_loading": True, "fsdp_reshard_after_forward": True,
            "fsdp_activation_checkpointing": False}
    zero = {"gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
            "offload_optimizer_device": "none", "offload_param_device": "none",
            "zero3_init_flag": False}
    return {
        "ddp": _base("MULTI_GPU", total, machines, main_ip, port),
        "fsdp": {**_base("FSDP", total, machines, main_ip, port), "fsdp_config": fsdp},
        "zero2": {**_base("DEEPSPEED", total, machines, main_ip, port),
                  "deepspeed_config": {**zero, "zero_stage": 2}},
        "zero3": {**_base("DEEPSPEED", total, machines, main_ip, port),
                  "deepspeed_config": {**zero, "zero_stage": 3, "zero3_init_flag": True,
                                       "zero3_save_16bit_model": True}},
    }


def load_accelerate_config(path: str | Path):
    """The file read by accelerate's own loader (the one ``accelerate launch`` uses); a file
    accelerate would reject raises ConfigError with its reason."""
    try:
        return load_config_from_file(str(path))
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"{path}: accelerate cannot read this config: {err}") from err


def accelerate_configs(folder: str | Path, **kwargs) -> dict[str, Path]:
    """Write :func:`accelerate_config_dicts` as YAML files into ``folder`` and check each with
    accelerate's loader; returns ``{name: path}``. Files are written whole or not at all."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, cfg in accelerate_config_dicts(**kwargs).items():
        path = folder / f"{name}.yaml"
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        load_accelerate_config(tmp)
        os.replace(tmp, path)
        paths[name] = path
    return paths


# ---------------------------------------------------------------- the training function

def allreduce_seconds(numel: int, repeats: int) -> float:
    """Seconds of one all-reduce of ``numel`` float32 values across the launch's processes,
    timed alone after a warm-up; 0 in a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return 0.0
    flat = torch.zeros(numel)
    dist.all_reduce(flat)  # warm-up
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(repeats):
        dist.all_reduce(flat)
    return (time.perf_counter() - t0) / repeats


def train_process(job: Job) -> dict:
    """The running example's LoRA fine-tuning in this process, as one rank of a launch.

    Run by every process of :func:`launch` (and by itself in a plain Python process): the
    assistant's records, the LoRA adapter, ``make_trainer`` with the per-process batch. Writes
    ``rank<i>.json`` (per-step losses, step seconds, peak RSS, all-reduce seconds, tokens) and,
    on rank 0, the trained adapter (safetensors) into ``job.out_dir``; returns the result."""
    torch.set_num_threads(job.threads)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    out = Path(job.out_dir)
    seed_everything(job.seed)
    model, tokenizer = models.load(job.model_name)
    model = adapters.apply_method(model, AdapterConfig(peft_method="lora", lora_r=job.lora_r,
                                                       lora_alpha=2.0 * job.lora_r,
                                                       lora_dropout=job.lora_dropout))
    model.config.use_cache = False
    rows = assistant.fitting(assistant.records(job.seed)["train"], tokenizer, job.max_length,
                             job.train_rows, job.seed)
    train_ds = pairs_dataset(tokenizer, rows["instruction"], rows["response"], job.max_length)
    cfg = TrainConfig(lr=job.lr, max_steps=job.max_steps, batch_size=job.batch_size,
                      grad_accum=job.grad_accum, warmup_ratio=0.0, lr_scheduler="constant",
                      eval_steps=job.max_steps)

    class StepClock(TrainerCallback):
        def __init__(self):
            self.seconds, self._t0 = [], 0.0

        def on_step_begin(self, args, state, control, **kw):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.seconds.append(time.perf_counter() - self._t0)

    clock = StepClock()
    trainer = sft.make_trainer(model, tokenizer, train_ds, None, cfg, str(out / "run"),
                               job.seed, title=f"rank {rank} of {world}", callbacks=[clock],
                               logging_steps=1, include_num_input_tokens_seen="all")
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    # one step's gradient traffic, and what it would be if every weight trained
    comm = allreduce_seconds(trainable, job.allreduce_repeats)
    comm_full = allreduce_seconds(total, 2) if job.time_full_allreduce else 0.0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    grad_norms = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
    if trainer.is_world_process_zero():
        sft.unwrap(trainer).save_pretrained(str(out / "adapter"))
    result = {"rank": rank, "world": world, "threads": job.threads, "losses": losses,
              "grad_norms": grad_norms,
              "step_seconds": clock.seconds, "train_seconds": seconds,
              "tokens": int(trainer.state.num_input_tokens_seen),
              "examples": job.max_steps * job.batch_size * job.grad_accum * world,
              "allreduce_seconds": comm, "allreduce_full_seconds": comm_full,
              "peak_rss_mb": peak_rss_mb(), "trainable": trainable, "total": total}
    (out / RESULT.format(rank)).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


# ---------------------------------------------------------------- launching

def launch_command(spec: Path, processes: int, launcher: str = "torchrun",
                   config: str | Path | None = None) -> list[str]:
    """The command line that runs :func:`train_process` on ``spec`` in ``processes``
    processes on this machine, under ``torchrun`` or ``accelerate launch``."""
    if launcher not in LAUNCHERS:
        raise ConfigError(f"launcher = {launcher!r}: choose one of {list(LAUNCHERS)}")
    module = ["-m", __name__, str(spec)]
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
                f"--nproc-per-node={processes}", "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{free_port()}", *module]
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if config is not None:
        cmd += ["--config_file", str(config)]
    return [*cmd, "--num_processes", str(processes), "--main_process_ip", "127.0.0.1",
            "--main_process_port", str(free_port()), *module]


def cluster_commands(spec: str = "job.json", nodes: int = 2, per_node: int = 8,
                     main_ip: str = "10.0.0.1", port: int = 29500,
                     config: str = "ddp.yaml") -> dict[str, str]:
    """The command lines that run this module's training function on ``nodes`` machines with
    ``per_node`` processes (GPUs) each: torchrun and accelerate (run on every node, with its
    own rank), and Slurm's ``srun`` (one task per node, torchrun inside)."""
    module = f"-m {__name__} {spec}"
    rdzv = f"--rdzv-backend=c10d --rdzv-endpoint={main_ip}:{port}"
    return {
        "torchrun, on every node": f"torchrun --nnodes={nodes} --nproc-per-node={per_node} "
                                   f"{rdzv} {module}",
        "accelerate, on node i": f"accelerate launch --config_file {config} --num_machines "
                                 f"{nodes} --num_processes {nodes * per_node} --machine_rank i "
                                 f"--main_process_ip {main_ip} --main_process_port {port} "
                                 f"{module}",
        "Slurm": f"srun --nodes={nodes} --ntasks-per-node=1 --gpus-per-node={per_node} "
                 f"torchrun --nnodes={nodes} --nproc-per-node={per_node} "
                 f"--rdzv-backend=c10d --rdzv-endpoint=$(scontrol show hostnames "
                 f"$SLURM_JOB_NODELIST | head -n1):{port} {module}",
    }


def launch(job: Job, processes: int, launcher: str = "torchrun",
           config: str | Path | None = None, allow_oversubscribe: bool = False,
           log: Callable[[str], None] = print, timeout: float | None = None) -> list[dict]:
    """Run ``job`` in ``processes`` processes (DDP: gloo on CPUs) and return each rank's result.

    The plan is checked first (:func:`check_plan`; with ``config``, :func:`check_backend`).
    The processes' output goes to ``<out_dir>/launch.log``; a failed launch raises with its
    last lines. The assistant's records are built here once, before the processes start."""
    check_plan(processes, processes * job.batch_size, allow_oversubscribe=allow_oversubscribe)
    if launcher == "accelerate" and processes > 1 and not torch.cuda.is_available():
        raise ConfigError("accelerate launch starts several processes on GPUs (or through "
                          "mpirun); on this CPU machine use launcher='torchrun'")
    if config is not None:
        check_backend(dataclasses.asdict(load_accelerate_config(config)))
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(RESULT.format("*")):
        old.unlink()
    assistant.records(job.seed)
    spec = out / "job.json"
    spec.write_text(json.dumps(dataclasses.asdict(job), indent=1), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(job.threads), "FTKIT_HEADLESS": "1",
           "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = launch_command(spec, processes, launcher, config)
    log(f"{launcher}: {processes} process(es) × batch {job.batch_size} × "
        f"{job.threads} thread(s), {job.max_steps} steps …")
    tail: deque[str] = deque(maxlen=40)
    t0 = time.perf_counter()
    with open(out / "launch.log", "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, cwd=os.getcwd())
        for line in proc.stdout:
            fh.write(line)
            tail.append(line.rstrip())
        code = proc.wait(timeout=timeout)
    if code != 0:
        raise RuntimeError(f"{launcher} with {processes} processes failed (exit {code}); "
                           f"last lines of {out / 'launch.log'}:\n" + "\n".join(tail))
    results = [json.loads((out / RESULT.format(r)).read_text(encoding="utf-8"))
               for r in range(processes)]
    log(f"  done in {time.perf_counter() - t0:.1f} s (processes' start included)")
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point of every launched process: ``python -m ftkit.train.distributed JOB.json``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ftkit.train.distributed JOB.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    train_process(Job(**spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Job", "accelerate_config_dicts", "accelerate_configs", "allreduce_seconds",
           "check_backend", "check_plan", "cluster_commands", "launch", "launch_command",
           "load_accelerate_config", "train_process"]
