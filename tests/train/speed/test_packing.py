"""Padding-free batches: same hidden states, same loss, evaluation and generation unchanged."""
import pytest
import torch
from transformers import DataCollatorForSeq2Seq

from ftkit import models
from ftkit.core.config import AdapterConfig, TrainConfig
from ftkit.data import formatting
from ftkit.train import adapters, sft
from ftkit.train.speed import packing
from ftkit.train.speed.fastloss import PACKED_KEYS, label_only_loss

TEXTS = ["Hello there, how are you today?", "Short.",
         "A somewhat longer sentence about fine-tuning language models on CPUs.",
         "Numbers: 1 2 3."]


def _features(tok):
    rows = []
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        rows.append({"input_ids": ids, "labels": [-100] * 2 + ids[2:]})
    return rows


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    model, tok = models.load("tiny-llama")
    return model.eval(), tok


def test_packed_hidden_states_equal_the_padded_batch_at_every_real_token(tiny):
    model, tok = tiny
    feats = _features(tok)
    padded = DataCollatorForSeq2Seq(tok, padding=True)(feats)
    with torch.no_grad():
        ref = model.model(input_ids=padded["input_ids"],
                          attention_mask=padded["attention_mask"]).last_hidden_state
        assert packing.use_packed_attention(model)
        flat = packing.flatten_collator()(feats)
        assert flat["input_ids"].shape == (1, int(padded["attention_mask"].sum()))
        out = model.model(input_ids=flat["input_ids"],
                          **{k: flat[k] for k in PACKED_KEYS}).last_hidden_state
    real = padded["attention_mask"].bool()
    torch.testing.assert_close(out[0], ref[real], atol=1e-5, rtol=1e-4)


def test_packed_loss_equals_the_padded_loss_and_its_gradients(tiny):
    model, tok = tiny
    feats = _features(tok)
    padded = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)(feats)
    ref = label_only_loss(model, padded["input_ids"], padded["attention_mask"], padded["labels"])
    ref.backward()
    ref_grad = model.model.embed_tokens.weight.grad.clone()
    model.zero_grad()
    packing.use_packed_attention(model)
    flat = packing.flatten_collator()(feats)
    loss = label_only_loss(model, flat["input_ids"], None, flat["labels"],
                           **{k: flat[k] for k in PACKED_KEYS})
    loss.backward()
    # the first label of each example is masked by the collator; here those are prompt
    # tokens anyway, so both count the same label tokens
    assert int((flat["labels"] != -100).sum()) == int((padded["labels"] != -100).sum())
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.model.embed_tokens.weight.grad, ref_grad,
                               atol=1e-5, rtol=1e-3)


def test_generation_is_unchanged_by_the_packed_attention(tiny):
    model, tok = tiny
    tok.padding_side = "left"
    batch = tok(["Capital of France?", "Hi"], return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    before = model.generate(**batch, **kwargs)
    assert packing.use_packed_attention(model)
    assert torch.equal(model.generate(**batch, **kwargs), before)


def test_make_trainer_packs_training_batches_only(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("FTKIT_HEADLESS", "1")
    model, tok = tiny
    model = adapters.apply_method(model, AdapterConfig(lora_r=4, lora_alpha=8))
    ds = formatting.pairs_dataset(tok, ["Capital of France?", "Two plus two?"] * 4,
                           ["Paris.", "Four."] * 4, max_length=32)
    train = TrainConfig(lr=1e-3, batch_size=4, max_steps=2, eval_steps=1, warmup_ratio=0.0)
    trainer = sft.make_trainer(model, tok, ds, ds.select(range(4)), train, str(tmp_path))
    train_batch = next(iter(trainer.get_train_dataloader()))
    eval_batch = next(iter(trainer.get_eval_dataloader()))
    assert train_batch["input_ids"].shape[0] == 1 and "cu_seq_lens_q" in train_batch
    assert eval_batch["input_ids"].shape[0] == 4 and "attention_mask" in eval_batch
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    padded = sft.make_trainer(model, tok, ds, None, train, str(tmp_path), packing=False)
    assert next(iter(padded.get_train_dataloader()))["input_ids"].shape[0] == 4
    # the model's own full-sequence loss reads the packed batch too
    full = sft.make_trainer(model, tok, ds, None, train, str(tmp_path), label_only_logits=False)
    batch = next(iter(full.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 1
    with torch.no_grad():
        own = full.compute_loss(model, dict(batch))
        full.label_only = True
        torch.testing.assert_close(full.compute_loss(model, dict(batch)), own)


def test_encoders_and_other_models_keep_their_attention():
    model, _ = models.load("tiny-bert", task="sequence-classification", num_labels=2)
    before = model.config._attn_implementation
    assert not packing.use_packed_attention(model)
    assert model.config._attn_implementation == before
    assert not packing.use_packed_attention(torch.nn.Linear(2, 2))
