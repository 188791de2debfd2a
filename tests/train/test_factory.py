"""Every training path gets its trainer from the one factory, with the shared callbacks."""
from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from ftkit.align import dpo
from ftkit.asr import whisper
from ftkit.core.config import TrainConfig
from ftkit.data import formatting
from ftkit.train import factory, sft
from ftkit.train.callbacks import LivePlotCallback
from ftkit.train.checkpoints import IntegrityCallback
from ftkit.vqa import model as vm
from ftkit.vqa import shapes
from ftkit.vqa import train as vt

TRAIN = TrainConfig(lr=1e-3, max_steps=1, batch_size=2, eval_steps=1, bf16=False)


def run_sft(tmp_path, request):
    model, tok = request.getfixturevalue("policy")
    ds = formatting.pairs_dataset(tok, ["Capital of France?", "Two plus two?"] * 2,
                                  ["Paris.", "Four."] * 2, 32)
    trainer = sft.make_trainer(model, tok, ds, ds, TRAIN, str(tmp_path), save_steps=1)
    assert any(isinstance(c, IntegrityCallback) for c in trainer.callback_handler.callbacks)
    trainer.train()


def run_dpo(tmp_path, request):
    model, tok = request.getfixturevalue("policy")
    pairs = datasets.Dataset.from_list([{"prompt": "Capital of France?", "chosen": "Paris.",
                                         "rejected": "Rome."}] * 4)
    dpo.make_dpo_trainer(model, tok, pairs, TRAIN, 0.1, str(tmp_path), max_length=32).train()


def run_whisper(tmp_path, request):
    processor = request.getfixturevalue("processor")
    model = whisper.apply_method(request.getfixturevalue("tiny_whisper"), "lora", lora_r=2,
                                 lora_alpha=4.0)
    texts = ["Take warfarin.", "Hello there."]
    states = torch.randn(2, 8, 16).to(torch.bfloat16)
    ds = whisper.CachedStatesDataset(states, whisper.label_ids(processor, texts))
    whisper.train_decoder(model, processor, ds, states, texts, TRAIN, "lora", str(tmp_path),
                          max_new_tokens=2)


def run_vqa(tmp_path, request):
    model, processor = request.getfixturevalue("tiny_vlm")
    vm.train_projector_only(model)
    examples = vt.caption_examples(shapes.make_split("train", 2))
    vt.train_stage(model, processor, examples, TRAIN, 1, str(tmp_path))


RUNS = {"sft": run_sft, "dpo": run_dpo, "whisper": run_whisper, "vqa": run_vqa}


def test_every_path_is_listed():
    assert set(RUNS) == set(factory.PATHS)


@pytest.mark.parametrize("path", factory.PATHS)
def test_each_path_trains_through_the_factory(path, tmp_path, request, built_trainers):
    RUNS[path](tmp_path, request)
    assert [t.ftkit_path for t in built_trainers] == [path]
    (trainer,) = built_trainers
    (plot,) = [c for c in trainer.callback_handler.callbacks
               if isinstance(c, (LivePlotCallback, dpo.LiveCurves))]
    losses = plot.train if isinstance(plot, LivePlotCallback) else plot.points["loss"]
    assert losses and np.isfinite(losses[-1][1]), "the live plot saw the training loss"
    assert list(tmp_path.rglob("events.out.tfevents.*")), "TensorBoard event files by default"


def test_a_tracker_without_its_package_is_refused_by_name(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(Exception, match="report_to = 'mlflow' needs its package: pip install "
                                        "mlflow"):
        sft.training_arguments(TrainConfig(report_to="mlflow"), "out")
    assert sft.training_arguments(TrainConfig(report_to="none"), "out").report_to == []


def test_an_unknown_path_is_refused():
    with pytest.raises(ValueError, match="unknown training path 'ppo'"):
        factory.build(object, None, None, path="ppo")
