"""Tests of ftkit.asr.whisper: WER/CER against hand-made cases and a reference edit distance, the
jargon data set builder, augmentation, bad audio/transcript input and the decoder training
pieces (on a tiny random Whisper)."""
import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ftkit.asr import audio, cross_attention, speech, whisper
from ftkit.asr import params as asr_params
from ftkit.core.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "data" / "asr_jargon" / "manifest.jsonl"
needs_backend = pytest.mark.skipif(not speech.available_backends(), reason=speech.INSTALL_HINT)


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_manifest",
                                                  MANIFEST.with_name("make_manifest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows():
    return audio.load_manifest(MANIFEST)


# ---------------------------------------------------------------- WER / CER

def _edit_distance(ref: list, hyp: list) -> int:
    """Levenshtein distance by the textbook dynamic programme (reference for jiwer)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


@pytest.mark.parametrize("ref, hyp, expected", [
    ("the cat sat on the mat", "the cat sit on mat", 2 / 6),  # 1 substitution + 1 deletion
    ("hello world", "hello big world", 1 / 2),  # 1 insertion
    ("Hello, World!", "hello world", 0.0),  # case and punctuation are normalised away
    ("Mr. Smith takes twenty five milligrams", "mister smith takes 25 milligrams", 0.0),
    ("a b c", "x y z", 1.0),
    ("a b", "", 1.0),
])
def test_wer_hand_made_cases(ref, hyp, expected):
    assert whisper.wer([ref], [hyp]) == pytest.approx(expected)


def test_wer_is_corpus_level_not_a_mean_of_sentences():
    # 2 errors over 4 + 2 = 6 reference words; a per-sentence mean would give 0.5
    assert whisper.wer(["a b c d", "e f"], ["a b c d", "x y"]) == pytest.approx(2 / 6)


def test_cer_hand_made_cases():
    assert whisper.cer(["abcd"], ["abxd"]) == pytest.approx(1 / 4)
    assert whisper.cer(["warfarin"], ["warfrin"]) == pytest.approx(1 / 8)  # one deletion
    assert whisper.cer(["warfarin"], ["water in"]) == pytest.approx(
        _edit_distance(list("warfarin"), list("water in")) / 8)


def test_wer_agrees_with_a_reference_edit_distance():
    words = "the a dose of drug was given to him today at night".split()
    rng = random.Random(0)
    for _ in range(50):
        ref = [rng.choice(words) for _ in range(rng.randint(1, 9))]
        hyp = [rng.choice(words) for _ in range(rng.randint(0, 9))]
        expected = _edit_distance(ref, hyp) / len(ref)
        assert whisper.wer([" ".join(ref)], [" ".join(hyp)]) == pytest.approx(expected)


def test_error_words_counts_substitutions_and_deletions():
    counts = whisper.error_words(["the doctor prescribed amoxicillin today"],
                             ["the doctor prescribed a moxie cillin"])
    assert counts == {"amoxicillin": 1, "today": 1}
    table = whisper.error_word_table(["stop warfarin now", "stop warfarin"],
                                 ["stop water in now", "stop water in"],
                                 ["stop warfarin now", "stop water in"])
    assert table.iloc[0].to_dict() == {"word": "warfarin", "errors_before": 2, "errors_after": 1}


def test_wer_refuses_bad_pairs():
    with pytest.raises(ValueError, match="same"):
        whisper.wer(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        whisper.wer(["?!"], ["a"])


# ---------------------------------------------------------------- the data set

def test_committed_manifest_is_what_the_generator_writes(rows):
    assert _load_generator().build(16) == rows


def test_splits_share_no_sentence_and_no_domain_frame(rows):
    split_of = {}
    for r in rows:
        assert split_of.setdefault(r["text"], r["split"]) == r["split"]
    domain = [r for r in rows if r["kind"] == "domain"]
    frame = {r["id"]: r["text"].replace(r["terms"][0], "{t}") for r in domain}
    train_frames = {frame[r["id"]] for r in domain if r["split"] == "train"}
    for r in domain:
        if r["split"] != "train":  # known contexts reuse a training frame; new ones never do
            assert (frame[r["id"]] in train_frames) == (r["context"] == "known"), r["text"]
    train_terms = {t for r in domain if r["split"] == "train" for t in r["terms"]}
    for context in ("known", "new"):
        test_terms = {t for r in domain if r["split"] == "test" and r["context"] == context
                      for t in r["terms"]}
        assert test_terms == train_terms  # every term is tested in both kinds of context


def test_training_sentences_have_two_different_voices(rows):
    voices = {}
    for r in rows:
        if r["split"] == "train":
            voices.setdefault(r["sentence_id"], []).append(r["voice"])
    assert all(len(v) == 2 and len(set(v)) == 2 for v in voices.values())


def test_select_covers_terms_and_counts_renderings(rows):
    picked = audio.select(rows, "domain", "train", 30, seed=1, renderings=2)
    assert len(picked) == 60
    assert len({t for r in picked for t in r["terms"]}) == 30  # one sentence per term
    assert audio.select(rows, "domain", "train", 30, seed=1, renderings=2) == picked
    assert len(audio.select(rows, "everyday", "test", 5, seed=1)) == 5
    known = audio.select(rows, "domain", "test", 30, seed=1, context="known")
    assert {r["context"] for r in known} == {"known"} and len(known) == 30
    with pytest.raises(ConfigError, match="known context"):
        audio.select(rows, "domain", "test", 31, context="known")
    with pytest.raises(ConfigError, match="holds"):
        audio.select(rows, "everyday", "val", 1000)


def test_split_summary_refuses_a_shared_sentence(rows):
    train = audio.select(rows, "domain", "train", 3)
    summary = audio.split_summary({"train": train, "test": audio.select(rows, "domain", "test", 2)})
    assert summary.loc["train", "sentences"] == 3
    with pytest.raises(ValueError, match="both"):
        audio.split_summary({"train": train, "test": train[:1]})


@needs_backend
def test_synthesis_is_cached(rows, tmp_path, monkeypatch):
    monkeypatch.setenv("FTKIT_CACHE", str(tmp_path))
    picked = audio.select(rows, "everyday", "val", 2)
    first = audio.synthesize_rows(picked)
    assert len(list((tmp_path / "asr_audio").glob("*.npy"))) == 2
    monkeypatch.setattr(speech, "synthesize", lambda *a, **k: pytest.fail("not cached"))
    again = audio.synthesize_rows(picked)
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    assert all(x.dtype == np.float32 and 0.5 < len(x) / audio.SAMPLE_RATE < 10 for x in first)


# ---------------------------------------------------------------- augmentation

SR = 16000
TONE = (0.5 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)


def _peak_hz(audio):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.argmax(spectrum) * SR / len(audio)


@pytest.mark.parametrize("colour", ["white", "pink"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_noise_has_the_requested_snr(colour, snr):
    quiet = TONE * 0.2  # far from full scale, so clipping at ±1 does not change the noise
    noisy = speech.add_noise(quiet, snr, np.random.default_rng(0), colour)
    noise = noisy - quiet
    assert 10 * np.log10(np.mean(quiet ** 2) / np.mean(noise ** 2)) == pytest.approx(snr, abs=0.1)
    assert noisy.dtype == np.float32 and len(noisy) == len(quiet)


def test_pink_noise_has_more_low_than_high_frequencies():
    noise = speech.add_noise(TONE, 0.0, np.random.default_rng(1), "pink") - TONE
    power = np.abs(np.fft.rfft(noise)) ** 2
    assert power[10:800].mean() > 10 * power[4000:8000].mean()  # 10-800 Hz vs 4-8 kHz


def test_speed_change_shortens_and_raises_pitch():
    fast = speech.change_speed(TONE, 1.25)
    assert len(fast) == 12800
    assert _peak_hz(fast) == pytest.approx(550, abs=2)


@pytest.mark.parametrize("semitones", [-2.0, 2.0, 12.0])
def test_pitch_shift_keeps_duration(semitones):
    shifted = speech.shift_pitch(TONE, semitones)
    assert len(shifted) == len(TONE)
    expected = 440 * 2 ** (semitones / 12)
    assert _peak_hz(shifted[2000:-2000]) == pytest.approx(expected, rel=0.01)
    assert np.sqrt(np.mean(shifted ** 2)) == pytest.approx(np.sqrt(np.mean(TONE ** 2)), rel=0.01)


def test_time_stretch_keeps_pitch():
    slow = speech.time_stretch(TONE, 0.8)
    assert len(slow) == 20000 and _peak_hz(slow[2000:-2000]) == pytest.approx(440, abs=2)


def test_augment_clips_share_and_determinism():
    clips = [TONE] * 20
    same, labels = audio.augment_clips(clips, 0.0, 0, [10.0], 0.1, 2.0)
    assert labels == ["clean"] * 20 and all(np.array_equal(c, TONE) for c in same)
    out, labels = audio.augment_clips(clips, 1.0, 3, [10.0], 0.1, 2.0)
    assert "clean" not in labels
    assert {l.split()[0] for l in labels} <= {"white", "pink", "speed", "pitch"}
    again, labels_again = audio.augment_clips(clips, 1.0, 3, [10.0], 0.1, 2.0)
    assert labels == labels_again and all(np.array_equal(x, y) for x, y in zip(out, again))


def test_bad_augmentation_settings_are_refused():
    with pytest.raises(ValueError):
        speech.add_noise(TONE, 10, np.random.default_rng(0), "blue")
    with pytest.raises(ValueError):
        speech.change_speed(TONE, 10.0)
    with pytest.raises(ConfigError, match="snr_choices"):
        asr_params.ASRConfig(snr_choices=["loud"])
    with pytest.raises(ConfigError, match="snr_choices.*<= 60"):
        asr_params.ASRConfig(snr_choices=[5.0, 90.0])
    with pytest.raises(ConfigError, match="asr_methods.*'dora'"):
        asr_params.ASRConfig(asr_methods=["full", "dora"])
    with pytest.raises(ConfigError, match="asr_methods.*once"):
        asr_params.ASRConfig(asr_methods=["full", "full"])


# ---------------------------------------------------------------- bad input

def test_stereo_is_downmixed_on_either_axis():
    stereo = np.stack([TONE, np.zeros_like(TONE)], axis=1)
    assert np.allclose(audio.prepare_audio(stereo, SR), TONE / 2)
    assert np.allclose(audio.prepare_audio(stereo.T, SR), TONE / 2)


def test_other_sample_rates_are_resampled_and_int16_scaled():
    at44 = (np.sin(2 * np.pi * 440 * np.arange(44100) / 44100) * 16000).astype(np.int16)
    out = audio.prepare_audio(at44, 44100)
    assert out.dtype == np.float32 and len(out) == 16000
    assert np.abs(out).max() == pytest.approx(16000 / 32767, rel=0.01)
    assert np.abs(audio.prepare_audio(TONE * 4, SR)).max() == pytest.approx(1.0)


@pytest.mark.parametrize("clip, sample_rate, message", [
    (np.zeros(0, np.float32), SR, "empty"),
    (np.zeros(SR, np.float32), SR, "silent"),
    (np.full(31 * SR, 0.1, np.float32), SR, "30 s"),
    (np.full(SR, np.nan, np.float32), SR, "NaN"),
    (np.zeros((2, 2, 2)), SR, "shape"),
    (TONE, 0, "sample_rate"),
])
def test_bad_audio_is_refused_with_a_reason(clip, sample_rate, message):
    with pytest.raises(ValueError, match=message):
        audio.prepare_audio(clip, sample_rate)


def test_bad_transcripts_are_refused(processor):
    tok = processor.tokenizer
    assert audio.check_transcript(tok, "Take metoprolol daily.") == "Take metoprolol daily."
    for text, message in [("", "empty"), ("dose\x07", "U\\+0007"), ("a\ud800", "U\\+D800"),
                          ("word " * 500, "tokens")]:
        with pytest.raises(ValueError, match=message):
            audio.check_transcript(tok, text)


def test_labels_wrap_the_text_in_whisper_tokens(processor):
    (ids,) = whisper.label_ids(processor, ["Take warfarin."])
    tok = processor.tokenizer
    assert ids[0] == tok.convert_tokens_to_ids("<|notimestamps|>")
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids[1:-1]) == " Take warfarin."


def test_score_splits_adds_per_context_rows(rows, monkeypatch):
    splits = {"test": audio.select(rows, "domain", "test", 1, context="known")
              + audio.select(rows, "domain", "test", 1, context="new")}
    wrong_last = [r["text"] for r in splits["test"][:-1]] + ["nothing like it"]
    monkeypatch.setattr(whisper, "decode", lambda *a, **k: wrong_last)
    hyps, results = whisper.score_splits(None, None, {"test": None}, splits, ("test",), "m")
    by_test = {r["test"]: r["wer"] for r in results}
    assert set(by_test) == {"test", "test_known_context", "test_new_context"}
    assert by_test["test_known_context"] == 0.0 and by_test["test_new_context"] == 1.0
    assert 0 < by_test["test"] < 1 and hyps["test"] == wrong_last


# ---------------------------------------------------------------- training pieces

def test_collate_pads_labels_with_ignore_index():
    ds = whisper.CachedStatesDataset(torch.zeros(2, 5, 4, dtype=torch.bfloat16), [[1, 2, 3], [4]])
    batch = whisper.collate([ds[0], ds[1]])
    assert batch["labels"].tolist() == [[1, 2, 3], [4, -100, -100]]
    assert batch["encoder_hidden_states"].dtype == torch.float32
    kept = whisper.collate([ds[0], ds[1]], dtype=torch.bfloat16)["encoder_hidden_states"]
    assert kept.dtype == torch.bfloat16  # what bf16 autocast multiplies by anyway
    with pytest.raises(ValueError):
        whisper.CachedStatesDataset(torch.zeros(2, 5, 4), [[1]])


def test_apply_method_trains_only_the_decoder(tiny_whisper):
    full = whisper.apply_method(tiny_whisper, "full")
    trainable = {n for n, p in full.named_parameters() if p.requires_grad}
    assert trainable and all(".decoder." in n for n in trainable)


def test_lora_leaves_cross_attention_keys_and_values_frozen(tiny_whisper):
    lora = whisper.apply_method(tiny_whisper, "lora", lora_r=2, lora_alpha=4.0)
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ".decoder." in n for n in trainable)
    assert not any("encoder_attn.k_proj" in n or "encoder_attn.v_proj" in n for n in trainable)
    assert any("encoder_attn.q_proj" in n for n in trainable)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_train_decoder_runs_and_returns_a_plain_model(tiny_whisper, processor, method, tmp_path):
    from ftkit.core.config import TrainConfig

    texts = ["Take warfarin.", "Stop metformin.", "Hello there.", "Good morning."]
    states = torch.randn(4, 8, 16).to(torch.bfloat16)
    ds = whisper.CachedStatesDataset(states, whisper.label_ids(processor, texts))
    model = whisper.apply_method(tiny_whisper, method, lora_r=2, lora_alpha=4.0)
    train = TrainConfig(lr=1e-3, max_steps=2, batch_size=2, eval_steps=1, bf16=False)
    tuned, row = whisper.train_decoder(model, processor, ds, states[:2], texts[:2], train, method,
                                   str(tmp_path), max_new_tokens=4)
    assert not hasattr(tuned, "peft_config")  # LoRA comes back merged
    assert row["steps"] <= 2 and row["trainable_params"] > 0
    assert 0 <= row["best_val_wer"] and np.isfinite(row["train_loss"])
    # evaluated at steps 0 (baseline), 1 and 2: the best one is recorded with a finite WER
    assert row["best_step"] in (0, 1, 2) and np.isfinite(row["best_val_wer"])
    hyps = whisper.decode(tuned, processor, states[:2], max_new_tokens=4)
    assert len(hyps) == 2


def _loss_and_grads(model, states, labels, absorbed):
    model.zero_grad()
    with cross_attention.AbsorbedCrossAttention(model, absorbed):
        loss = whisper.CachedEncoderWhisper(model)(states, labels).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", ["full", "lora"])
def test_absorbed_cross_attention_computes_what_whisper_computes(tiny_whisper, processor, method,
                                                                  monkeypatch):
    model = whisper.apply_method(tiny_whisper, method, lora_r=2, lora_alpha=4.0, lora_dropout=0.0)
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.1)  # adapters that change the queries and outputs
    states = torch.randn(2, 8, 16)  # (B, source positions, d_model)
    labels = whisper.collate([{"encoder_hidden_states": s, "labels": ids} for s, ids in zip(
        states, whisper.label_ids(processor, ["Take warfarin.", "Hello."]))])["labels"]
    assert labels.shape[1] < 8  # shorter than the head width: the absorbed form is taken
    calls = []
    plain = cross_attention.absorbed_cross_attention
    monkeypatch.setattr(cross_attention, "absorbed_cross_attention",
                        lambda *a: calls.append(1) or plain(*a))
    loss, grads = _loss_and_grads(model, states, labels, absorbed=False)
    assert not calls
    loss_abs, grads_abs = _loss_and_grads(model, states, labels, absorbed=True)
    assert len(calls) == 2  # one per decoder layer
    assert loss_abs == pytest.approx(loss, rel=1e-5)
    assert any(".encoder_attn.k_proj." in n for n in grads) == (method == "full")
    for name, grad in grads.items():
        torch.testing.assert_close(grads_abs[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_absorbed_cross_attention_leaves_long_labels_and_restores_the_model(tiny_whisper,
                                                                           monkeypatch):
    model = whisper.apply_method(tiny_whisper, "lora", lora_r=2, lora_alpha=4.0)
    monkeypatch.setattr(cross_attention, "absorbed_cross_attention",
                        lambda *a: pytest.fail("labels as long as the head width"))
    labels = torch.full((1, 8), 50257)  # 8 labels = the tiny model's head width
    with cross_attention.AbsorbedCrossAttention(model) as switch:
        assert len(switch.layers) == 2
        whisper.CachedEncoderWhisper(model)(torch.randn(1, 8, 16), labels)
    assert all("forward" not in attn.__dict__ for attn in switch.layers)


def test_train_decoder_without_validation_takes_every_step(tiny_whisper, processor, tmp_path,
                                                          monkeypatch):
    from ftkit.core.config import TrainConfig

    monkeypatch.setattr(whisper, "decode", lambda *a, **k: pytest.fail("no validation asked"))
    texts = ["Take warfarin.", "Stop metformin."]
    ds = whisper.CachedStatesDataset(torch.randn(2, 8, 16).to(torch.bfloat16),
                                     whisper.label_ids(processor, texts))
    model = whisper.apply_method(tiny_whisper, "lora", lora_r=2, lora_alpha=4.0)
    train = TrainConfig(lr=1e-3, max_steps=3, batch_size=2, eval_steps=1, bf16=False,
                        report_to="none")
    _, row = whisper.train_decoder(model, processor, ds, None, None, train, "lora",
                                   str(tmp_path))
    assert row["steps"] == 3 and row["best_step"] is None and np.isfinite(row["train_loss"])


class _Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def test_wer_stopping_keeps_the_best_weights_and_stops(monkeypatch):
    from transformers import TrainerControl, TrainerState

    model = _Linear()
    script = iter(["a x", "a b", "x x", "x y", "a b"])  # WER 0.5, 0.0, 1.0, 1.0, ...
    monkeypatch.setattr(whisper, "decode", lambda *a, **k: [next(script)])
    stop = whisper.WERStopping(model, None, None, ["a b"], patience=2)
    state, control = TrainerState(), TrainerControl()
    for step, weight in enumerate([1.0, 2.0, 3.0, 4.0]):
        model.w.data[:] = weight
        state.global_step = step
        metrics = {}
        stop.on_evaluate(None, state, control, metrics=metrics)
        assert "eval_wer" in metrics
    assert control.should_training_stop and stop.best == 0.0 and stop.best_step == 1
    stop.on_train_end(None, state, control)
    assert model.w.item() == 2.0  # the weights of the best evaluation are back


def test_wer_stopping_never_clears_a_stop_set_by_another_callback(monkeypatch):
    from transformers import TrainerControl, TrainerState

    monkeypatch.setattr(whisper, "decode", lambda *a, **k: ["x"])  # WER 1.0, never better
    stop = whisper.WERStopping(_Linear(), None, None, ["a"], patience=5)
    state, control = TrainerState(), TrainerControl()
    stop.on_evaluate(None, state, control, metrics={})  # the first value is the best so far
    control.should_training_stop = True  # e.g. a max-time callback
    stop.on_evaluate(None, state, control, metrics={})  # worse, but patience not used up
    assert control.should_training_stop


def test_term_errors_group_sentences_by_term():
    rows = [{"text": "give warfarin now", "terms": ["warfarin"]},
            {"text": "check the troponin and warfarin", "terms": ["troponin", "warfarin"]}]
    before = ["give war for in now", "check the trope and war for in"]
    after = ["give warfarin now", "check the troponin and warfarin"]
    table = whisper.term_errors(rows, before, after)
    assert table.loc["warfarin", "clips"] == 2 and table.loc["troponin", "clips"] == 1
    assert (table.wer_after == 0).all() and (table.wer_before > 0).all()
    assert table.loc["troponin", "cer_before"] == pytest.approx(whisper.cer(
        [rows[1]["text"]], [before[1]]))
    whisper.term_error_figure(table)
