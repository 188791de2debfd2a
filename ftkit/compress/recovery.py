"""Short LoRA fine-tunes on a compressed model (paper §6.10, §6.3.3).

- :func:`lora_tune` trains a LoRA adapter on the support records (the running example's data)
  through the trainer factory, on any causal LM: a pruned one (recovery fine-tuning) or one
  whose frozen base is quantised (the QLoRA idea).
- :func:`recover` is that fine-tune on a pruned model, merged back into a plain model.
- :func:`quantised_base_tuning` trains the same adapter on an fp32 base and on quantised bases:
  held-out loss, base weights in memory, seconds per step.

Used in notebooks/12_pruning_and_quantisation.ipynb.
"""
from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path

import datasets
import pandas as pd

from ftkit.compress.quantization import check_method, quantize_weights, weight_storage_mb
from ftkit.core import env
from ftkit.core.config import AdapterConfig, TrainConfig
from ftkit.data.formatting import pairs_dataset
from ftkit.evaluate.perplexity import perplexity
from ftkit.train import adapters, assistant, sft


def lora_tune(model, tokenizer, records: datasets.DatasetDict, steps: int, output_dir: str,
              lr: float = 1e-3, rank: int = 8, batch_size: int = 4, max_length: int = 256,
              train_rows: int = 0, seed: int = 42, title: str = "LoRA fine-tune") -> tuple:
    """LoRA (rank ``rank``, every linear layer) on a copy of ``model`` for ``steps`` steps on
    ``records["train"]``. Returns ``(peft_model, info)`` with ``seconds``, ``seconds_per_step``
    and the last logged training loss."""
    env.seed_everything(seed)
    peft_model = adapters.apply_method(copy.deepcopy(model),
                                       AdapterConfig(peft_method="lora", lora_r=rank,
                                                     lora_alpha=2.0 * rank))
    peft_model.config.use_cache = False
    rows = assistant.fitting(records["train"], tokenizer, max_length, train_rows, seed)
    train_ds = pairs_dataset(tokenizer, rows["instruction"], rows["response"], max_length)
    cfg = TrainConfig(lr=lr, max_steps=steps, batch_size=batch_size, warmup_ratio=0.1,
                      lr_scheduler="cosine", eval_steps=steps)
    trainer = sft.make_trainer(peft_model, tokenizer, train_ds, None, cfg, output_dir, seed,
                               title=title)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tuned = sft.unwrap(trainer).eval()
    tuned.config.use_cache = True
    return tuned, {"seconds": seconds, "seconds_per_step": seconds / steps,
                   "train_loss": losses[-1] if losses else float("nan")}


def recover(pruned, tokenizer, records: datasets.DatasetDict, steps: int, output_dir: str,
            **kwargs) -> tuple:
    """:func:`lora_tune` on a pruned model, merged into a plain model: ``(model, info)``."""
    tuned, info = lora_tune(pruned, tokenizer, records, steps, output_dir,
                            title="recovery fine-tune after pruning", **kwargs)
    return tuned.merge_and_unload().eval(), info


def quantised_base_tuning(model, tokenizer, records: datasets.DatasetDict, methods: list[str],
                          steps: int, texts: list[str], output_dir: str, **kwargs) -> pd.DataFrame:
    """The same LoRA fine-tune on ``model`` with its frozen base in each of ``methods``
    (``fp32``, ``bf16``, ``int8``, ``int4``): base weights in memory (MB, read from the tensors),
    seconds per step, last training loss and held-out perplexity on ``texts``."""
    rows = {}
    for method in methods:
        base = quantize_weights(model, check_method(method))
        with warnings.catch_warnings():  # peft: merging into a torchao base is not set up;
            warnings.filterwarnings("ignore", message="TorchaoLoraLinear")  # nothing merges
            tuned, info = lora_tune(base, tokenizer, records, steps,
                                    str(Path(output_dir) / f"lora-on-{method}"),
                                    title=f"LoRA on a {method} base", **kwargs)
        rows[method] = {"base_weights_mb": weight_storage_mb(base),
                        "seconds_per_step": info["seconds_per_step"],
                        "train_loss": info["train_loss"],
                        "perplexity": perplexity(tuned, tokenizer, texts)}
    return pd.DataFrame(rows).T


__all__ = ["lora_tune", "quantised_base_tuning", "recover"]
