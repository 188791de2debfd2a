"""Exact-match VQA scoring per question type, and a grid of images with their answers (§11.2).

A prediction is right when its first word, lower-cased and stripped of punctuation, equals the
one-word answer; chance for each type is one over the answers it can have
(:func:`ftkit.vqa.shapes.chance`). Used in notebooks/17_multimodal_vqa.ipynb.
"""
from __future__ import annotations

import re

import torch

from ftkit.core.env import bf16_autocast
from ftkit.vqa import shapes
from ftkit.vqa.train import prepare_image, user_turn


def first_word(text: str) -> str:
    """``" Red.\\n"`` → ``"red"``: the answer a one-word prediction gives."""
    words = re.findall(r"[a-z/]+", text.lower())
    return words[0] if words else ""


@torch.inference_mode()
def answer(model, processor, images: list, questions: list[str], max_new_tokens: int = 4,
           bf16: bool = True) -> list[str]:
    """Greedy answers to ``questions`` about ``images`` (one image each), one batch."""
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images for {len(questions)} questions")
    prompts = [processor.apply_chat_template(user_turn(q), add_generation_prompt=True)
               for q in questions]
    size = getattr(getattr(model.config, "vision_config", None), "image_size", None)
    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    try:
        batch = processor(text=prompts, images=[[prepare_image(i, size)] for i in images],
                          return_tensors="pt", padding=True).to(model.device)
    finally:
        tok.padding_side = side
    with bf16_autocast(bf16, model.device.type):
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def score(model, processor, rows: list[dict], batch_size: int = 32, max_new_tokens: int = 4,
          progress=None):
    """A DataFrame, one row per question: type, question, answer, prediction, correct."""
    import pandas as pd

    model.eval()
    images = [shapes.render(r["scene"]) for r in rows]
    starts = range(0, len(rows), batch_size)
    preds = []
    for s in (progress or iter)(starts):
        chunk = rows[s:s + batch_size]
        preds += answer(model, processor, images[s:s + batch_size],
                        [r["question"] + shapes.SUFFIX for r in chunk], max_new_tokens)
    frame = pd.DataFrame({"type": [r["type"] for r in rows],
                          "question": [r["question"] for r in rows],
                          "answer": [r["answer"] for r in rows], "prediction": preds})
    frame["correct"] = [first_word(p) == a for p, a in zip(frame.prediction, frame.answer)]
    return frame


def accuracy_by_type(frame) -> dict[str, float]:
    """Exact-match accuracy per question type, plus ``all`` (the mean over questions)."""
    acc = frame.groupby("type")["correct"].mean().to_dict()
    return {t: float(acc[t]) for t in shapes.QUESTION_TYPES if t in acc} | {
        "all": float(frame["correct"].mean())}


def accuracy_table(results: dict):
    """Rows ``(stage, split)``, columns the question types, ``all`` and ``chance``.

    Args:
        results: ``{(stage, split): scored DataFrame}`` in the order to show.
    """
    import pandas as pd

    rows = {key: accuracy_by_type(frame) for key, frame in results.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["stage", "split"])
    return table


def chance_row() -> dict[str, float]:
    """Chance accuracy per question type and overall (the mean over types, equal counts)."""
    row = {t: shapes.chance(t) for t in shapes.QUESTION_TYPES}
    return row | {"all": sum(row.values()) / len(row)}


def valid_share(frame) -> float:
    """Share of predictions whose first word is a possible answer of the question's type
    (an untrained model often answers in sentences, or not at all)."""
    valid = [first_word(p) in shapes.ANSWERS[t] for p, t in zip(frame.prediction, frame.type)]
    return sum(valid) / max(1, len(valid))


def spread(n: int, total: int) -> list[int]:
    """``n`` row indices, one per scene, cycling through the question types."""
    per = len(shapes.QUESTION_TYPES)
    return [k * per + k % per for k in range(n) if k * per + k % per < total]


def plot_grid(rows: list[dict], frame, n: int = 8, cols: int = 4):
    """Images with question, answer and prediction (green right, red wrong), one question per
    scene, the question types in turn."""
    import matplotlib.pyplot as plt

    picks = spread(n, len(rows))
    rows, frame, n = [rows[i] for i in picks], frame.iloc[picks], len(picks)
    lines = (n + cols - 1) // cols
    fig, axes = plt.subplots(lines, cols, figsize=(3.2 * cols, 3.4 * lines), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in zip(range(n), axes.flat):
        r = frame.iloc[i]
        ax.imshow(shapes.render(rows[i]["scene"]), interpolation="nearest")
        said = first_word(r.prediction) or "∅"
        ax.set_title(f"{r.question}\nanswer: {r.answer} · model: {said}", fontsize=8,
                     color="green" if r.correct else "red")
    fig.tight_layout()
    return fig


def plot_accuracy(table, chance: dict[str, float]):
    """Grouped bars: accuracy per question type for each (stage, split), chance as ticks."""
    import matplotlib.pyplot as plt
    import numpy as np

    types = [t for t in shapes.QUESTION_TYPES if t in table.columns]
    fig, ax = plt.subplots(figsize=(11, 3.6))
    width = 0.8 / len(table)
    x = np.arange(len(types))
    for k, (key, row) in enumerate(table.iterrows()):
        ax.bar(x + k * width, [row[t] for t in types], width, label=" / ".join(key))
    ax.scatter(x + 0.4 - width / 2, [chance[t] for t in types], marker="_", s=600, color="k",
               label="chance", zorder=3)
    ax.set_xticks(x + 0.4 - width / 2, types)
    ax.set_ylabel("exact-match accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return fig


def score_splits(model, processor, splits: dict[str, list[dict]], batch_size: int = 32,
                 progress=None) -> dict[str, object]:
    """:func:`score` on each named split of question rows: ``{split: DataFrame}``."""
    return {name: score(model, processor, rows, batch_size, progress=progress)
            for name, rows in splits.items()}


def plot_scenes(scenes: list[dict], n: int = 8, cols: int = 4):
    """Scenes with their captions, as the training data shows them."""
    import matplotlib.pyplot as plt

    n = min(n, len(scenes))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for scene, ax in zip(scenes[:n], axes.flat):
        ax.imshow(shapes.render(scene), interpolation="nearest")
        ax.set_title(scene["caption"].replace(": ", ":\n").replace(" and ", "\nand "),
                     fontsize=7)
    fig.tight_layout()
    return fig
