"""ftkit.vqa: scene generator, processor, projector, collator, contrastive loss, training."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import ftkit as ft
from ftkit.core.config import ConfigError
from ftkit.train.adapters import trainable_summary
from ftkit.vqa import contrastive, evaluate, shapes
from ftkit.vqa import model as vm
from ftkit.vqa import train as vt
from ftkit.vqa.params import VQAConfig

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "data" / "vqa_shapes" / "manifest.json"


# -- generator ---------------------------------------------------------------------------

def test_scenes_are_deterministic_and_pinned():
    a, b = shapes.make_split("train", 20, seed=3), shapes.make_split("train", 20, seed=3)
    assert a == b and a != shapes.make_split("train", 20, seed=4)
    assert np.array_equal(np.asarray(shapes.render(a[0])), np.asarray(shapes.render(b[0])))
    first = shapes.make_split("train", 1)[0]
    assert first["caption"] == ("three shapes: a blue triangle on the left, a green square on "
                                "the left and a yellow circle on the right")
    assert [q["answer"] for q in first["qa"]] == ["blue", "triangle", "three", "left", "no"]


def test_manifest_digests_regenerate():
    spec = json.loads(MANIFEST.read_text())
    for split, info in spec["splits"].items():
        rows = shapes.make_split(split, info["n"], spec["seed"], spec["heldout"],
                                 spec["image_size"])
        assert shapes.digest(rows) == info["sha256"], split
    assert shapes.load_split(MANIFEST, "seen", 5) == shapes.make_split("seen", 5)
    with pytest.raises(ValueError, match="defines"):
        shapes.load_split(MANIFEST, "seen", 10**6)


def test_generator_script_writes_the_committed_manifest(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "make_vqa_shapes", ROOT / "data" / "vqa_shapes" / "make_vqa_shapes.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--out", str(tmp_path)])
    assert json.loads((tmp_path / "manifest.json").read_text()) == json.loads(MANIFEST.read_text())


def test_heldout_pairs_never_reach_training():
    held = shapes.parse_pairs(shapes.DEFAULT_HELDOUT)
    names = [f"{c} {s}" for c, s in held]
    for scene in shapes.make_split("train", 300) + shapes.make_split("seen", 100):
        assert not {(o["colour"], o["shape"]) for o in scene["objects"]} & set(held)
        assert not any(n in q["question"] for q in scene["qa"] for n in names)
    for scene in shapes.make_split("heldout", 100):
        first = scene["objects"][0]
        assert (first["colour"], first["shape"]) in held
        by_type = {q["type"]: q for q in scene["qa"]}
        assert by_type["colour"]["answer"] == first["colour"]
        assert by_type["shape"]["answer"] == first["shape"]


def test_every_question_has_one_right_answer():
    for scene in shapes.make_split("train", 200):
        objs = scene["objects"]
        assert len({o["colour"] for o in objs}) == len({o["shape"] for o in objs}) == len(objs)
        assert all(abs(o["x"] - scene["size"] / 2) >= 4 for o in objs)  # off the mid-line
        for q in scene["qa"]:
            assert q["answer"] in shapes.ANSWERS[q["type"]]
        assert scene["qa"][2]["answer"] == shapes.COUNT_WORDS[len(objs)]
    answers = [q["answer"] for s in shapes.make_split("train", 400) for q in s["qa"]
               if q["type"] == "yes/no"]
    assert 0.4 < answers.count("yes") / len(answers) < 0.6
    assert shapes.chance("colour") == pytest.approx(0.2) and shapes.chance("yes/no") == 0.5


def test_bad_pairs_and_splits_are_refused():
    with pytest.raises(ValueError, match="colour shape"):
        shapes.parse_pairs("red hexagon")
    with pytest.raises(ValueError, match="split"):
        shapes.make_scene(0, "validation")


# -- inputs, processor, model ------------------------------------------------------------

def test_bad_inputs_are_converted_or_refused():
    rgba = Image.new("RGBA", (50, 40), (255, 0, 0, 128))
    for image in (rgba, rgba.convert("L"), rgba.convert("P"), np.zeros((20, 20, 3), np.uint8)):
        out = vt.prepare_image(image, 32)
        assert out.mode == "RGB" and out.size == (32, 32)
    with pytest.raises(ValueError, match="missing image"):
        vt.prepare_image(None)
    with pytest.raises(TypeError, match="PIL image"):
        vt.prepare_image("picture.png")
    for empty in ("", "   ", None):
        with pytest.raises(ValueError, match="empty question"):
            vt.user_turn(empty)


def test_processor_round_trip(tiny_vlm, tmp_path):
    from transformers import LlavaProcessor

    _, processor = tiny_vlm
    image = shapes.render(shapes.make_split("seen", 1)[0])
    text = processor.apply_chat_template(vt.user_turn("How many shapes are there?"),
                                         add_generation_prompt=True)
    assert text.count(vm.IMAGE_TOKEN) == 1
    enc = processor(text=[text], images=[[image]], return_tensors="pt")
    assert (enc["input_ids"] == processor.image_token_id).sum() == 16  # (32 / 8)² patches
    assert enc["pixel_values"].shape == (1, 3, 32, 32)
    assert -1.0 <= enc["pixel_values"].min() and enc["pixel_values"].max() <= 1.0
    processor.save_pretrained(tmp_path)
    again = LlavaProcessor.from_pretrained(tmp_path)
    enc2 = again(text=[text], images=[[image]], return_tensors="pt")
    assert torch.equal(enc["input_ids"], enc2["input_ids"])
    assert torch.allclose(enc["pixel_values"], enc2["pixel_values"])
    assert processor.apply_chat_template(vt.user_turn("Hi?")) == again.apply_chat_template(
        vt.user_turn("Hi?"))


def test_projector_shapes(tiny_vlm):
    model, processor = tiny_vlm
    pixels = torch.zeros(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.model.vision_tower(pixel_values=pixels).last_hidden_state
        projected = model.model.multi_modal_projector(feats)
        image_features = model.get_image_features(pixel_values=pixels).pooler_output
    assert feats.shape == (2, 16, 32)  # (B, patches, vision width)
    hidden = model.config.text_config.hidden_size
    assert projected.shape == (2, 16, hidden)
    assert len(image_features) == 2 and image_features[0].shape == (16, hidden)
    assert len(vm.projector_parameters(model)) == 4  # two Linear layers, weight and bias


def test_collator_masks_everything_but_the_answer(tiny_vlm):
    _, processor = tiny_vlm
    examples = vt.qa_examples(shapes.make_split("train", 2))[:4]
    batch = vt.VLMCollator(processor, 32)(examples)
    assert batch["input_ids"].shape == batch["labels"].shape
    assert batch["pixel_values"].shape == (4, 3, 32, 32)
    for row, ex in zip(batch["labels"], examples):
        kept = processor.tokenizer.decode(row[row != -100])
        assert kept.startswith(ex["answer"]) and kept.strip().endswith("<|im_end|>")


def test_padding_free_batches_give_the_padded_loss(tiny_vlm):
    model, processor = tiny_vlm
    examples = vt.qa_examples(shapes.make_split("train", 2))[:6]
    padded = vt.VLMCollator(processor, 32)(examples)
    assert padded["attention_mask"].min() == 0  # the questions differ in length
    flat = vt.VLMCollator(processor, 32, flat=True)(examples)
    assert flat["input_ids"].shape == (1, int(padded["attention_mask"].sum()))
    assert flat["cu_seq_lens_q"].tolist()[-1] == flat["input_ids"].shape[1]
    assert torch.equal(flat["labels"][flat["labels"] != -100],
                       padded["labels"][padded["labels"] != -100])
    assert vt.use_packed_language_model(model)
    with torch.no_grad():
        torch.testing.assert_close(vt.label_only_loss(model.eval(), flat),
                                   vt.label_only_loss(model, padded))


def test_one_training_step_moves_only_what_should(tiny_vlm, tmp_path, built_trainers):
    model, processor = tiny_vlm
    examples = vt.caption_examples(shapes.make_split("train", 4))
    vm.train_projector_only(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train = ft.TrainConfig(lr=1e-2, batch_size=4, warmup_ratio=0.0, lr_scheduler="constant")
    model, row = vt.train_stage(model, processor, examples, train, 1, str(tmp_path))
    # frozen Linear weights were stored in bf16 while training: they may only be bf16-rounded,
    # which changes nothing that runs under bf16 autocast
    rounded = {n: p.bfloat16().float() for n, p in before.items()}
    changed = {n for n, p in model.named_parameters()
               if not torch.equal(p, before[n]) and not torch.equal(p, rounded[n])}
    assert changed and all("multi_modal_projector" in n for n in changed)
    assert np.isfinite(row["train_loss"]) and 0 < row["trainable_share"] < 0.5
    assert all(p.dtype == torch.float32 for p in model.parameters())  # bf16 storage undone
    lora = vm.add_lora(model, r=2, alpha=4.0)
    counts, parts = trainable_summary(lora), vm.part_counts(lora)
    assert parts["lora"] > 0 and counts["trainable"] == parts["lora"] + parts["projector"]
    assert not any(p.requires_grad for n, p in lora.named_parameters() if "vision_tower" in n)
    lora, row = vt.train_stage(lora, processor, examples, train, 1, str(tmp_path),
                               packing=False)
    assert np.isfinite(row["train_loss"])
    assert [t.data_collator.flat for t in built_trainers] == [True, False]
    assert [t.ftkit_levers.packing for t in built_trainers] == [True, False]
    preds = evaluate.answer(lora, processor, [e["image"] for e in examples[:2]],
                            ["How many shapes are there?"] * 2, max_new_tokens=2)
    assert len(preds) == 2 and all(isinstance(p, str) for p in preds)


def test_frozen_weights_kept_in_fp32_or_left_rounded(tmp_path):
    from ftkit.core.env import use_bf16
    from ftkit.models import load
    from ftkit.vqa import model as vlm

    lm, tokenizer = load("tiny-llama")
    vision = vlm.vision_encoder(vlm.vision_config(32, 8, hidden_size=32, num_layers=1))
    model, processor = vlm.assemble(lm, tokenizer, vision)
    vm.train_projector_only(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()
              if not p.requires_grad and p.dim() == 2 and "embed" not in n}
    train = ft.TrainConfig(lr=1e-2, batch_size=4, warmup_ratio=0.0, lr_scheduler="constant")
    examples = vt.caption_examples(shapes.make_split("train", 4))
    model, _ = vt.train_stage(model, processor, examples, train, 1, str(tmp_path),
                              frozen_bf16=False)
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in frozen.items())  # exact fp32 values
    model, _ = vt.train_stage(model, processor, examples, train, 1, str(tmp_path))
    after = dict(model.named_parameters())
    rounded = [n for n, p in frozen.items() if not torch.equal(after[n], p)]
    if not use_bf16(train.bf16):
        assert not rounded  # no bf16 autocast, nothing stored in bf16
        return
    assert rounded and all(torch.equal(after[n], frozen[n].bfloat16().float()) for n in rounded)


# -- contrastive stage, scoring, config --------------------------------------------------

def test_clip_loss_prefers_aligned_pairs_and_handles_duplicates():
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    same = contrastive.same_caption(["a", "b", "c", "d", "e", "f"])
    scale = torch.tensor(np.log(10.0))
    aligned = contrastive.clip_loss(text, text, same, scale)
    shuffled = contrastive.clip_loss(text.roll(1, 0), text, same, scale)
    assert aligned < shuffled
    dup = contrastive.same_caption(["a", "b", "a"])
    assert dup.tolist() == [[True, False, True], [False, True, False], [True, False, True]]


def test_contrastive_pretraining_runs_and_retrieval_scores():
    scenes = shapes.make_split("train", 16)
    captions = [s["caption"] for s in scenes]
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
    tower = contrastive.ImageTower(vm.vision_encoder(vm.vision_config(32, 8, 32, 1)), 8)
    pixels = contrastive.pixel_values(vm.image_processor(32), [shapes.render(s) for s in scenes])
    losses = contrastive.pretrain(tower, pixels, text, captions, steps=20, batch_size=16, lr=1e-2)
    assert len(losses) == 20 and losses[-1] < losses[0]
    result = contrastive.retrieval_accuracy(tower, pixels, text, captions)
    assert result["top1"] > result["chance"] and result["candidates"] == len(set(captions))


def test_scoring_helpers():
    assert evaluate.first_word(" Red.\n") == "red" and evaluate.first_word("...") == ""
    frame = pd.DataFrame({"type": ["colour", "colour", "count"], "correct": [True, False, True]})
    assert evaluate.accuracy_by_type(frame) == {"colour": 0.5, "count": 1.0, "all": 2 / 3}
    assert evaluate.chance_row()["position"] == 0.5
    preds = pd.DataFrame({"type": ["colour", "count", "yes/no"],
                          "prediction": ["Red!", "The image shows", "maybe"]})
    assert evaluate.valid_share(preds) == pytest.approx(1 / 3)
    assert evaluate.spread(4, 40) == [0, 6, 12, 18] and evaluate.spread(4, 7) == [0, 6]


def test_config_checks():
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        VQAConfig(image_size=36, patch_size=8)
    with pytest.raises(ConfigError, match="vlm_name"):
        VQAConfig(vlm_name=" ")
    with pytest.raises(ValueError, match="vision encoder"):
        vm.load_vlm("offline", "tiny-llama", vision=None)
