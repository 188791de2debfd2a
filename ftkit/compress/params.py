"""Parameter section of the compression stage (paper §6.10, §8.3.5, §6.3.3): what notebook 12
prunes, quantises, fine-tunes and exports. Light on purpose (no torch): schemas and panels
read it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ftkit.core.config import Section, param

Quant = Literal["fp32", "bf16", "int8", "int4", "nf4", "bnb-8bit"]
GGUFType = Literal["Q8_0", "Q5_0", "Q4_1", "Q4_0", "F16", "F32"]


@dataclass(frozen=True)
class CompressConfig(Section):
    """Pruning, quantising, re-tuning and exporting the assistant."""
    calibration_rows: int = param(32, "Training records whose activations rank the MLP "
                                  "channels for structured pruning.", min=1, max=10_000)
    eval_rows: int = param(12, "Held-out records for perplexity.", min=1, max=10_000)
    n_questions: int = param(4, "Held-out questions answered by each variant; the task score "
                             "is the word-overlap F1 of its replies with the shop's answers.",
                             min=0, max=1000)
    max_new_tokens: int = param(24, "Tokens generated per reply for the task score.", min=1,
                                max=1024)
    sparsities: list[float] = param([0.1, 0.3, 0.7], "Shares of the MLP weights pruned, "
                                    "each in [0, 1).", min=0.0, max=1.0)
    head_groups: int = param(1, "Key/value groups (a key/value head and its query heads) "
                             "removed from every attention layer.", min=1, max=64)
    timing_rounds: int = param(5, "Rounds of side-by-side forward passes timed per variant "
                               "(the median counts).", min=1, max=100)
    recover_sparsity: float = param(0.3, "Structured sparsity whose model gets a recovery "
                                    "fine-tune (one of sparsities).", min=0.0, max=1.0)
    recover_steps: int = param(20, "LoRA steps of the recovery fine-tune.", min=1, max=100_000)
    recover_lr: float = param(1e-3, "Learning rate of the recovery and quantised-base "
                              "fine-tunes.", min=0.0, min_exclusive=True, max=1.0, log=True)
    train_rows: int = param(0, "Training records used by those fine-tunes (0: all).", min=0)
    quant_methods: list[Quant] = param(["fp32", "bf16", "int8", "int4"], "Weight formats "
                                       "measured (nf4/bnb-8bit: bitsandbytes, GPU only).")
    qlora_methods: list[Quant] = param(["fp32", "int8"], "Frozen-base formats a LoRA adapter "
                                       "is trained on (the QLoRA idea).")
    qlora_steps: int = param(6, "LoRA steps per frozen-base format.", min=1, max=100_000)
    gguf_types: list[GGUFType] = param(["Q8_0", "Q4_0"], "GGUF block formats written and "
                                       "loaded back.")

    def check(self) -> None:
        if any(not 0.0 <= s < 1.0 for s in self.sparsities):
            self.fail("sparsities", "each sparsity must lie in [0, 1) (1.0 removes everything)")
        if len(set(self.sparsities)) != len(self.sparsities):
            self.fail("sparsities", "name each sparsity once")
        if self.recover_sparsity not in self.sparsities:
            self.fail("recover_sparsity", f"must be one of sparsities {self.sparsities!r}")
        for name in ("quant_methods", "qlora_methods", "gguf_types"):
            if len(set(getattr(self, name))) != len(getattr(self, name)):
                self.fail(name, "name each format once")
