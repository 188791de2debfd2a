"""Reading loss curves (paper §7.3): a diagnosis from the curves alone, and gradient noise.

- :func:`diagnose` labels a (train, eval) curve pair as ``over-fitting``, ``under-fitting``,
  ``noisy`` or ``healthy`` and says which numbers decided it. The rules, in this order:

  * over-fitting — the eval loss ended at least ``rise`` (relative) above its best, the best
    came before the end, and the training loss kept falling after it;
  * under-fitting — the eval loss hardly moved (less than ``min_drop`` of its start), or it
    was still falling fast at the end: the last third of the eval points brought at least
    ``late_share`` of the whole drop;
  * noisy — the training loss jumps around its own running median by more than ``noise``
    (median relative deviation);
  * healthy — none of these.

- :func:`gradient_noise` measures how far a mini-batch gradient is from the gradient of all
  examples, by batch size (§7.3.3): per-example gradients are taken once, batches are
  averages of them, and the relative squared error falls about as 1/b.
- :func:`stopping_summary` reads where early stopping stopped and what it kept.

Used in notebooks/13_evaluation_and_safety.ipynb.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ftkit.core.config import ConfigError
from ftkit.data.formatting import IGNORE_INDEX, tokenize_with_mask

LABELS = ("over-fitting", "under-fitting", "noisy", "healthy")


@dataclass(frozen=True)
class Diagnosis:
    """A label from :data:`LABELS`, the reason in words, and the numbers behind it."""
    label: str
    reason: str
    numbers: dict


def _series(curve, what: str) -> pd.Series:
    s = curve if isinstance(curve, pd.Series) else pd.Series(dict(curve))
    s = s.dropna().sort_index().astype(float)
    if len(s) < 3:
        raise ConfigError(f"diagnose: the {what} curve needs at least 3 points, got {len(s)}")
    return s


def diagnose(train, eval_, rise: float = 0.03, min_drop: float = 0.05, late_share: float = 0.25,
             noise: float = 0.08, window: int = 5) -> Diagnosis:
    """The diagnosis of a run from its curves (``{step: loss}`` mappings or Series)."""
    tr, ev = _series(train, "train"), _series(eval_, "eval")
    e0, e_end = float(ev.iloc[0]), float(ev.iloc[-1])
    best_step, e_best = int(ev.idxmin()), float(ev.min())
    k = int(np.floor(2 * (len(ev) - 1) / 3))
    total = e0 - e_end
    late = float((ev.iloc[k] - e_end) / total) if total > 0 else 0.0
    smooth = tr.rolling(window, center=True, min_periods=1).median()
    roughness = float(((tr - smooth).abs() / smooth.abs().clip(lower=1e-9)).median())
    train_after = tr[tr.index >= best_step]
    numbers = {"eval_start": e0, "eval_best": e_best, "best_step": best_step, "eval_end": e_end,
               "rise_after_best": (e_end - e_best) / e_best, "drop": total / e0,
               "late_share": late, "train_roughness": roughness,
               "train_fall_after_best": float(train_after.iloc[0] - train_after.iloc[-1])
               if len(train_after) > 1 else 0.0}
    if numbers["rise_after_best"] >= rise and best_step < int(ev.index[-1]) and \
            numbers["train_fall_after_best"] > 0:
        return Diagnosis("over-fitting", f"eval loss ended {numbers['rise_after_best']:.0%} above "
                         f"its best (step {best_step}) while the training loss kept falling",
                         numbers)
    if numbers["drop"] < min_drop:
        return Diagnosis("under-fitting", f"eval loss fell only {numbers['drop']:.1%}", numbers)
    if late >= late_share:
        return Diagnosis("under-fitting", f"the last third of the run still brought {late:.0%} "
                         "of the eval loss's drop: it had more to learn", numbers)
    if roughness > noise:
        return Diagnosis("noisy", f"training loss strays {roughness:.0%} from its running median",
                         numbers)
    return Diagnosis("healthy", f"eval loss fell {numbers['drop']:.0%} and levelled off "
                     f"({late:.0%} of the drop in the last third) without rising again", numbers)


def diagnosis_table(runs: dict, expected: dict[str, str]) -> tuple[pd.DataFrame, dict]:
    """:func:`diagnose` every run (``{name: run}`` with ``.train``, ``.eval``, ``.seconds``):
    a table (planted label, diagnosis, eval start/best/end, late share, seconds, reason) and
    the :class:`Diagnosis` of each."""
    found = {name: diagnose(run.train, run.eval) for name, run in runs.items()}
    table = pd.DataFrame({name: {"planted as": expected.get(name, ""), "diagnosis": d.label,
                                 "eval start": d.numbers["eval_start"],
                                 "eval best": d.numbers["eval_best"],
                                 "eval end": d.numbers["eval_end"],
                                 "late share": d.numbers["late_share"],
                                 "seconds": runs[name].seconds, "because": d.reason}
                          for name, d in found.items()}).T
    return table, found


def stopping_summary(eval_curve, stopped_step: int, max_steps: int, kept_loss: float) -> dict:
    """Where early stopping ended and how the loss it kept compares with the best seen
    (``eval_curve`` of the same recipe run to ``max_steps``)."""
    ev = _series(eval_curve, "eval")
    best = float(ev.min())
    return {"stopped_step": int(stopped_step), "max_steps": int(max_steps),
            "steps_saved": int(max_steps - stopped_step), "kept_eval_loss": float(kept_loss),
            "best_eval_loss_seen": best, "best_step": int(ev.idxmin()),
            "gap_to_best": (float(kept_loss) - best) / best}


def per_example_gradients(model, tokenizer, prompts: list[str], completions: list[str],
                          max_length: int = 256, select: str | None = None,
                          progress=None) -> torch.Tensor:
    """``(N, P)``: the completion-loss gradient of each example, flattened over the chosen
    parameters (name contains ``select``, temporarily made trainable; else the trainable
    ones). Examples with no completion token left after truncation are skipped."""
    params = [p for name, p in model.named_parameters()
              if (select in name if select else p.requires_grad)]
    if not params:
        raise ConfigError("gradient_noise: no parameter " +
                          (f"named *{select}*" if select else "is trainable"))
    frozen = [p for p in params if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    was_training = model.training
    model.train()
    grads = []
    items = range(len(prompts))
    try:
        for i in (progress(items) if progress else items):
            enc = tokenize_with_mask(tokenizer, prompts[i], completions[i], max_length)
            if all(lbl == IGNORE_INDEX for lbl in enc["labels"][1:]):
                continue
            model.zero_grad(set_to_none=True)
            model(input_ids=torch.tensor([enc["input_ids"]], device=model.device),
                  labels=torch.tensor([enc["labels"]], device=model.device)).loss.backward()
            grads.append(torch.cat([p.grad.detach().flatten().float() for p in params]))
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        for p in frozen:
            p.requires_grad_(False)
    if len(grads) < 2:
        raise ConfigError(f"gradient_noise: {len(grads)} example(s) with a completion token; "
                          "need at least 2")
    return torch.stack(grads)


def gradient_noise(model, tokenizer, prompts: list[str], completions: list[str],
                   batch_sizes: list[int], draws: int = 200, max_length: int = 256,
                   seed: int = 0, select: str | None = None, progress=None) -> pd.DataFrame:
    """Relative gradient noise ``E‖ḡ_b − ḡ‖² / ‖ḡ‖²`` by batch size ``b``.

    ``ḡ`` is the mean of the per-example gradients (:func:`per_example_gradients`) over all
    examples; ``ḡ_b`` the mean over ``b`` examples drawn without replacement, ``draws`` times.
    Also the mean cosine between ``ḡ_b`` and ``ḡ``. Sampling without replacement from N
    examples makes the expected noise ``(1/b − 1/N)·σ²/‖ḡ‖²``; ``expected`` gives that curve
    scaled through the smallest batch's point. ``select``: as in
    :func:`per_example_gradients` (e.g. ``"lora_"`` on a loaded, frozen peft model).
    """
    n = len(prompts)
    if n < 2 or len(completions) != n:
        raise ConfigError(f"gradient_noise needs at least 2 examples with completions (got {n})")
    bad = [b for b in batch_sizes if not 1 <= b <= n]
    if bad:
        raise ConfigError(f"batch sizes {bad} must lie in 1..{n} (the number of examples)")
    g = per_example_gradients(model, tokenizer, prompts, completions, max_length, select,
                              progress)
    m = len(g)
    mean = g.mean(0)
    norm2 = float(mean.square().sum())
    rng = np.random.default_rng(seed)
    rows = []
    for b in sorted({min(b, m) for b in batch_sizes}):
        err, cos = [], []
        for _ in range(draws):
            gb = g[torch.from_numpy(rng.choice(m, size=b, replace=False))].mean(0)
            err.append(float((gb - mean).square().sum()) / norm2)
            cos.append(float(torch.nn.functional.cosine_similarity(gb, mean, dim=0)))
        rows.append({"batch_size": b, "noise": float(np.mean(err)), "cosine": float(np.mean(cos))})
    table = pd.DataFrame(rows)
    one = table.iloc[0]
    scale = one.noise / max(1 / one.batch_size - 1 / m, 1e-12)
    table["expected"] = scale * (1 / table.batch_size - 1 / m)
    table.attrs["examples"] = m
    return table
