"""Updating the deployed model when the monitor says the world moved (paper §9.3).

- :func:`labelled_window` — the recent traffic whose answers have arrived, as training pairs.
- :func:`retrain` — a new adapter version: the deployed adapter trained further on those pairs
  mixed with a replay of the original training data (so the old intents are not forgotten),
  through the kit's one trainer factory (``ftkit.train.sft.make_trainer``); written to a
  temporary folder and renamed when complete.
- :func:`compare_versions` — per version and slice of traffic (old intents, the new one): the
  share of replies that give the shop's answer and the share on the right topic
  (``ftkit.monitor.responses``).
- :func:`decide` — promote the new version only if it wins on the new traffic without losing
  more than a set margin on the old.
- :class:`Versions` — the adapter versions with their data window, scores and which one is
  live, kept in a JSON file next to them: promotion and rollback are a change of that file.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ftkit import models
from ftkit.core import env
from ftkit.core.config import ConfigError, TrainConfig
from ftkit.data.formatting import pairs_dataset
from ftkit.evaluate.judge import fact_recall
from ftkit.models.generation import chat_batch
from ftkit.monitor.responses import IntentModel, answer_correct, topic_correct
from ftkit.monitor.signals import column
from ftkit.train import sft
from ftkit.train.assistant import publish


def labelled_window(frame: pd.DataFrame, first_day: int, last_day: int) -> pd.DataFrame:
    """Rows of days ``first_day``..``last_day`` that have an answer (``answer`` column not
    empty): what the agents answered, ready to train on."""
    for name in ("day", "prompt", "answer"):
        column(frame, name, name)
    if last_day < first_day:
        raise ConfigError(f"the window ends (day {last_day}) before it starts (day {first_day})")
    rows = frame[frame.day.between(first_day, last_day)]
    return rows[rows.answer.fillna("").str.strip() != ""]


def retrain(model_name: str, adapter_dir: str | Path, questions: list[str], answers: list[str],
            folder: str | Path, train: TrainConfig, max_length: int = 256, seed: int = 0,
            title: str = "a new adapter version") -> dict:
    """Train the adapter in ``adapter_dir`` further on the pairs. The new adapter lands in a
    subfolder of ``folder`` named by a hash of everything that shapes it (all or nothing), so
    the same retrain asked twice is read back, not repeated. Returns ``{"adapter", "rows",
    "fit_loss_before", "fit_loss_after", "train_seconds", "key"}``: the fit loss is the loss on
    the first 16 training pairs (how well it learnt them, not a held-out score; the held-out
    comparison is :func:`compare_versions`)."""
    from peft import PeftModel

    if not questions or len(questions) != len(answers):
        raise ConfigError(f"retrain needs pairs: got {len(questions)} questions and "
                          f"{len(answers)} answers")
    key = hashlib.sha256(json.dumps(
        [model_name, str(adapter_dir), list(questions), list(answers), asdict(train), max_length,
         seed], sort_keys=True).encode()).hexdigest()[:12]
    final = Path(folder) / key

    def build(tmp: Path) -> None:
        env.seed_everything(seed)
        base, tokenizer = models.load(model_name)
        model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=True)
        model.config.use_cache = False
        data = pairs_dataset(tokenizer, questions, answers, max_length)
        probe = data.select(range(min(len(data), 16)))
        trainer = sft.make_trainer(model, tokenizer, data, probe, train, str(tmp / "run"), seed,
                                   title=title)
        info = {"rows": len(questions), "key": key,
                "fit_loss_before": trainer.evaluate()["eval_loss"]}
        t0 = time.perf_counter()
        trainer.train()
        info["train_seconds"] = round(time.perf_counter() - t0, 1)
        info["fit_loss_after"] = trainer.evaluate()["eval_loss"]
        sft.unwrap(trainer).save_pretrained(str(tmp / "adapter"))
        shutil.rmtree(tmp / "run", ignore_errors=True)  # the trainer's scratch, not the result
        (tmp / "info.json").write_text(json.dumps(info, indent=1), encoding="utf-8")

    if not (final / "info.json").exists():
        publish(build, final)
    info = json.loads((final / "info.json").read_text(encoding="utf-8"))
    return {"adapter": str(final / "adapter"), **info}


def load_version(model_name: str, adapter: str | Path):
    """``(model, tokenizer)``: the base model with the adapter of one version, for inference."""
    from peft import PeftModel

    base, tokenizer = models.load(model_name)
    return PeftModel.from_pretrained(base, str(adapter)).eval(), tokenizer


def compare_versions(versions: dict, slices: dict[str, pd.DataFrame], judge: IntentModel,
                     max_new_tokens: int = 48, threshold: float = 0.5,
                     progress=None) -> pd.DataFrame:
    """One row per (version, slice) — versions as ``{name: (model, tokenizer)}``, slices as
    ``{name: table with prompt, intent and answer}`` — with ``answer_accuracy`` (replies that
    give the shop's answer, :func:`~ftkit.monitor.responses.answer_correct`), ``answer_recall``
    (the mean share of the answer's content words given), ``topic_accuracy`` (replies the
    judge reads as on the prompt's intent) and ``n``; the replies are in
    ``.attrs["replies"]``."""
    rows, replies = [], {}
    for name, (model, tokenizer) in versions.items():
        for part, frame in slices.items():
            said = chat_batch(model, tokenizer, frame.prompt.tolist(), max_new_tokens,
                              progress=progress)
            rows.append({"version": name, "slice": part, "n": len(frame),
                         "answer_accuracy": float(answer_correct(said, frame.answer.tolist(),
                                                                 threshold).mean()),
                         "answer_recall": float(np.nanmean([fact_recall(r, a) for r, a in
                                                            zip(said, frame.answer)])),
                         "topic_accuracy": float(topic_correct(judge, said,
                                                               frame.intent.tolist()).mean())})
            replies[(name, part)] = said
    table = pd.DataFrame(rows).set_index(["version", "slice"])
    table.attrs["replies"] = replies
    return table


def decide(scores: pd.DataFrame, old: str, new: str, new_slice: str, old_slice: str,
           min_gain: float = 0.2, max_drop: float = 0.02, won: str = "answer_accuracy",
           kept: tuple[str, ...] = ("answer_accuracy", "answer_recall")) -> tuple[bool, str]:
    """Promote ``new`` over ``old`` when it gains at least ``min_gain`` of ``won`` on
    ``new_slice`` and loses at most ``max_drop`` of each of ``kept`` on ``old_slice`` (a
    :func:`compare_versions` table); with the reason."""
    gain = scores.loc[(new, new_slice), won] - scores.loc[(old, new_slice), won]
    drops = {m: scores.loc[(old, old_slice), m] - scores.loc[(new, old_slice), m] for m in kept}
    if gain < min_gain:
        return False, (f"keep {old}: {new} gains {gain:+.2f} {won} on {new_slice} (needs "
                       f"≥ {min_gain:+.2f})")
    worst = max(drops, key=drops.get)
    if drops[worst] > max_drop:
        return False, (f"keep {old}: {new} loses {drops[worst]:.2f} {worst} on {old_slice} "
                       f"(at most {max_drop:.2f} allowed)")
    return True, (f"promote {new}: {gain:+.2f} {won} on {new_slice}; on {old_slice} "
                  + ", ".join(f"{m} {-d:+.2f}" for m, d in drops.items()))


@dataclass
class Version:
    """One adapter version: where it is, what it came from and how it scored."""
    name: str
    adapter: str
    parent: str = ""
    data_window: list = field(default_factory=list)
    rows: int = 0
    scores: dict = field(default_factory=dict)
    created: str = ""


class Versions:
    """Adapter versions and the live one, kept in ``<folder>/versions.json``."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / "versions.json"
        data = (json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists()
                else {"live": "", "history": [], "versions": {}})
        self.live: str = data["live"]
        self.history: list[str] = data["history"]
        self.versions = {k: Version(**v) for k, v in data["versions"].items()}

    def add(self, version: Version) -> Version:
        """Record ``version``; the same name again is accepted only for the same adapter
        (a rerun), whose record is then updated."""
        known = self.versions.get(version.name)
        if known is not None and known.adapter != version.adapter:
            raise ConfigError(f"version {version.name!r} exists already with adapter "
                              f"{known.adapter}")
        version.created = version.created or time.strftime("%Y-%m-%dT%H:%M:%S")
        self.versions[version.name] = version
        self._save()
        return version

    def promote(self, name: str) -> None:
        """Make ``name`` the live version; the one before stays for :meth:`rollback`."""
        if name not in self.versions:
            raise ConfigError(f"no version {name!r}; known: {sorted(self.versions)}")
        if name == self.live:
            return
        if self.live:
            self.history.append(self.live)
        self.live = name
        self._save()

    def rollback(self) -> str:
        """Go back to the version live before the current one; returns its name."""
        if not self.history:
            raise ConfigError("no earlier version to roll back to")
        self.live = self.history.pop()
        self._save()
        return self.live

    def table(self) -> pd.DataFrame:
        rows = {n: {**asdict(v), "live": n == self.live} for n, v in self.versions.items()}
        return pd.DataFrame(rows).T.drop(columns=["name"])

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"live": self.live, "history": self.history,
                "versions": {k: asdict(v) for k, v in self.versions.items()}}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(self.path)


__all__ = ["Version", "Versions", "compare_versions", "decide", "labelled_window",
           "load_version", "retrain"]
