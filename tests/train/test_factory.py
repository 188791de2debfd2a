"""Every training path gets its trainer from the one factory, with the shared callbacks."""
from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from ftkit.align import dpo, family, grpo, reward
from ftkit.align.params import GRPOSettings
from ftkit.asr import whisper
from ftkit.core.config import AdapterConfig, TrainConfig
from ftkit.data import formatting
from ftkit.models.tiny import tiny_llama
from ftkit.train import factory, lora_classifier, sft, toplayers
from ftkit.train.callbacks import LivePlotCallback
from ftkit.train.checkpoints import IntegrityCallback
from ftkit.vqa import contrastive
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


PAIRS = [{"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."}] * 4


def run_family(method):
    def run(tmp_path, request):
        family.METHODS[method](PAIRS, "tiny-llama", AdapterConfig(lora_r=2, lora_alpha=4.0),
                               TRAIN, str(tmp_path), max_length=32)
    return run


def run_grpo(tmp_path, request):
    model, tok = tiny_llama()
    row = {"message": "Order #12345, 80 euros.", "order": "12345", "total": 80}
    settings = GRPOSettings(grpo_steps=1, prompts_per_step=2, group_size=2, max_completion=4)
    grpo.train_grpo(model, tok, AdapterConfig(lora_r=2), settings, [row, row],
                    grpo.rewards_by_name(["valid_json"]), str(tmp_path))


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


def run_classifier(tmp_path, request):
    clf = lora_classifier.lora_classifier(tiny_llama()[0], 2, lora_r=2)
    lora_classifier.finetune(clf, tiny_llama()[1], ["a b", "c d", "e f", "g h"],
                             np.array([0, 1, 0, 1]), steps=2, batch_size=2, bf16=False,
                             sampler="balanced", output_dir=str(tmp_path))


def run_reward(tmp_path, request):
    model, tok = reward.load_reward_model("tiny-bert")
    rows = [{"prompt": "q", "chosen": "yes", "rejected": "no no"}] * 4
    reward.train_reward_model(model, tok, rows, reward.RewardConfig(rm_epochs=1, rm_batch_size=2),
                              output_dir=str(tmp_path))


def run_contrastive(tmp_path, request):
    scenes = shapes.make_split("train", 4)
    tower = contrastive.ImageTower(vm.vision_encoder(vm.vision_config(32, 8, 32, 1)), 8)
    pixels = contrastive.pixel_values(vm.image_processor(32), [shapes.render(s) for s in scenes])
    text = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    contrastive.pretrain(tower, pixels, text, ["a", "b", "c", "d"], steps=2, batch_size=4,
                         output_dir=str(tmp_path))


def run_top_layers(tmp_path, request):
    model, tok = tiny_llama()
    task = toplayers.TopLayers(model, tok, (["q1", "q2"], ["a1", "a2"]), (["q3"], ["a3"]), 1, 32)
    task.run(toplayers.RunSpec(steps=1, batch_size=2, report_to="tensorboard"),
             output_dir=str(tmp_path), live=True)


RUNS = {"sft": run_sft, "dpo": run_dpo, "cpo": run_family("simpo"), "orpo": run_family("orpo"),
        "kto": run_family("kto"), "grpo": run_grpo, "whisper": run_whisper, "vqa": run_vqa,
        "classifier": run_classifier, "reward": run_reward, "contrastive": run_contrastive,
        "top_layers": run_top_layers}


def test_every_path_is_listed():
    assert set(RUNS) == set(factory.PATHS)


def test_every_training_function_is_a_path_or_a_loop():
    """No module outside the factory and the hand-written loops steps an optimiser itself:
    each training function reaches its trainer through factory.build or train.loop."""
    import ast
    import pathlib

    import ftkit

    root = pathlib.Path(ftkit.__file__).parent
    stepping = set()
    for file in root.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "step" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in {"opt", "optimizer", "optimiser"}):
                stepping.add(str(file.relative_to(root)))
    # PPO (one iteration = rollout + several updates) runs under train.loop.CallbackLoop; the
    # linear heads on frozen embeddings (milliseconds each) are the one plain loop left
    assert stepping == {"align/ppo.py", "train/classifier.py"}


@pytest.mark.parametrize("path", factory.PATHS)
def test_each_path_trains_through_the_factory(path, tmp_path, request, built_trainers):
    RUNS[path](tmp_path, request)
    assert [t.ftkit_path for t in built_trainers] == [path]
    (trainer,) = built_trainers
    assert_shared_callbacks(trainer, tmp_path)


def assert_shared_callbacks(trainer, tmp_path):
    (plot,) = [c for c in trainer.callback_handler.callbacks
               if isinstance(c, (LivePlotCallback, dpo.LiveCurves))]
    key = "reward" if trainer.ftkit_path == "grpo" else "loss"  # GRPO plots its reward
    losses = plot.train if isinstance(plot, LivePlotCallback) else plot.points[key]
    assert losses and np.isfinite(losses[-1][1]), "the live plot saw the training loss"
    assert list(tmp_path.rglob("events.out.tfevents.*")), "TensorBoard event files by default"


def test_the_ppo_loop_gets_the_shared_callbacks(tmp_path, policy, monkeypatch):
    from ftkit.align import ppo
    from ftkit.train import loop

    loops = []
    monkeypatch.setattr(ppo, "CallbackLoop",
                        lambda *a, **k: loops.append(loop.CallbackLoop(*a, **k)) or loops[-1])
    model, tok = policy
    cfg = ppo.PPOSettings(ppo_iterations=1, ppo_prompts=2, ppo_samples=2, ppo_epochs=1)
    curves = dpo.LiveCurves({"loss": "loss"}, every=1)
    ppo.train_ppo(model, tok, ["hi", "yo"], lambda p, r: torch.zeros(len(r)), cfg,
                  max_new_tokens=2, curves=curves, output_dir=str(tmp_path))
    assert [lp.ftkit_path for lp in loops] == list(factory.LOOPS)
    assert_shared_callbacks(loops[0], tmp_path)


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
