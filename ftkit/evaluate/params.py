"""Parameter section of the evaluation stage (paper ch. 7): notebook 13's perplexity sets, curve
runs, harness tasks, calibration and safety checks. Light on purpose (no torch): schemas and
panels read it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ftkit.core.config import Section, param

Task = Literal["shop_knowledge", "shop_intent", "general_knowledge", "shop_answer"]


@dataclass(frozen=True)
class EvalConfig(Section):
    """What notebook 13 measures on the assistant, and how much of it."""
    ppl_rows: int = param(48, "Held-out support pairs and general texts scored for perplexity.",
                          min=2, max=100_000)
    n_boot: int = param(1000, "Bootstrap resamples behind every interval.", min=50,
                        max=100_000)
    curve_steps: int = param(18, "Steps of the 'good' and the 'too little data' runs.", min=3,
                             max=100_000)
    few_steps: int = param(4, "Steps of the 'too few steps' run (a curve needs 3 points).",
                           min=3, max=100_000)
    small_rows: int = param(8, "Training pairs of the 'too little data' run.", min=1,
                            max=100_000)
    curve_lr: float = param(1e-3, "Learning rate of the curve runs (the 'too little data' run "
                            "uses twice this).", min=0.0, min_exclusive=True, max=1.0, log=True)
    curve_batch: int = param(4, "Batch size of the curve runs.", min=1, max=1024)
    eval_every: int = param(3, "Steps between evaluations in the curve runs.", min=1,
                            max=100_000)
    curve_eval_rows: int = param(12, "Held-out pairs each curve evaluation scores.", min=1,
                                 max=100_000)
    patience: int = param(2, "Evaluations without improvement before early stopping.", min=1,
                          max=1000)
    noise_examples: int = param(24, "Examples whose per-example gradients are taken.", min=2,
                                max=100_000)
    noise_batches: list[int] = param([1, 2, 4, 8, 16], "Batch sizes whose gradient noise is "
                                     "measured (each at most noise_examples).", min=1,
                                     max=100_000)
    tasks: list[Task] = param(["shop_knowledge", "shop_intent", "general_knowledge",
                               "shop_answer"], "Harness tasks (data/eval_tasks) run on base "
                              "and fine-tuned.")
    task_limit: int = param(30, "Questions per task, the first ones of each file (0: all).",
                            min=0, max=100_000)
    harness_batch: int = param(8, "Batch size of the harness's model calls.", min=1, max=1024)
    chat_template: bool = param(False, "Wrap the harness's prompts in the chat template.")
    ece_bins: int = param(10, "Confidence bins of the calibration error.", min=2, max=100)
    coverage: float = param(0.5, "Share of questions answered when abstaining below a "
                            "confidence threshold.", min=0.0, min_exclusive=True, max=1.0)
    guard_max_fpr: float = param(0.05, "False-positive rate on benign training prompts the "
                                 "guard's threshold allows (cross-validated).", min=0.0,
                                 max=1.0)
    refusal_prompts: int = param(36, "Held-out prompts per group (harmful, benign look-alike, "
                                 "ordinary) the models answer.", min=1, max=100_000)
    safety_examples: int = param(60, "Refusal and benign look-alike examples mixed into the "
                                 "safety-tuned variant's training.", min=2, max=100_000)
    safety_repeats: int = param(8, "Times each safety example is repeated in that training "
                                "mix (a few dozen rows are rare next to the support records).",
                                min=1, max=100)
    reply_tokens: int = param(32, "Tokens generated per reply in the refusal check.", min=1,
                              max=4096)

    def check(self) -> None:
        if self.few_steps >= self.curve_steps:
            self.fail("few_steps", f"must be below curve_steps ({self.curve_steps})")
        if self.eval_every > self.curve_steps:
            self.fail("eval_every", f"must be at most curve_steps ({self.curve_steps})")
        if any(b > self.noise_examples for b in self.noise_batches):
            self.fail("noise_batches", f"each at most noise_examples ({self.noise_examples})")
        if not any(t != "shop_answer" for t in self.tasks):
            self.fail("tasks", "choose at least one multiple-choice task (the calibration "
                      "section reads their choice log-likelihoods)")
