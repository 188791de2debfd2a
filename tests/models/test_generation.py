"""Timing helpers and grouped sampling of ftkit.models.generation."""
import torch

from ftkit.models import generation
from ftkit.models.tiny import tiny_llama


def test_forward_ms_times_each_model_per_round_and_rotates_who_goes_first():
    from ftkit.models.generation import forward_ms

    calls = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def __call__(self, input_ids, logits_to_keep):
            assert logits_to_keep == 1
            calls.append(self.name)

    ms = forward_ms({n: Fake(n) for n in "abc"}, torch.zeros(1, 4, dtype=torch.long), rounds=3)
    assert set(ms) == {"a", "b", "c"} and all(v >= 0 for v in ms.values())
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")  # warm-up, 3 rounds


def test_sample_groups_computes_each_prompt_once_with_the_same_answers():
    model, tok = tiny_llama(seed=3)
    model.eval()
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                     add_generation_prompt=True)
             for p in ["hi", "a much longer prompt here"]]
    groups = generation.sample_groups(model, tok, texts, 3, max_new_tokens=5)
    assert [len(g) for g in groups] == [3, 3]
    side, tok.padding_side = tok.padding_side, "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    tok.padding_side = side
    with torch.no_grad():
        plain = model.generate(**enc, max_new_tokens=5, do_sample=False,
                               pad_token_id=tok.pad_token_id)
    want = [t.strip() for t in tok.batch_decode(plain[:, enc["input_ids"].shape[1]:],
                                                skip_special_tokens=True)]
    assert [g[0] for g in groups] == want  # the greedy answers agree with plain generate
    torch.manual_seed(0)
    a = generation.sample_groups(model, tok, texts, 4, 5, greedy_first=False)
    torch.manual_seed(0)
    assert generation.sample_groups(model, tok, texts, 4, 5, greedy_first=False) == a


def test_generate_groups_needs_runs_of_equal_prompts_and_cuts_at_the_end_token():
    from transformers import GenerationConfig

    model, tok = tiny_llama(seed=4)
    model.eval()
    prompts = [[5, 6, 7], [5, 6, 7], [9, 10], [9, 10]]
    config = GenerationConfig(max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert generation.generate_groups(model, prompts[1:], 2, config, tok.pad_token_id, [1]) is None
    out = generation.generate_groups(model, prompts, 2, config, tok.pad_token_id,
                                     [tok.eos_token_id])
    assert len(out) == 4 and out[0] == out[1] and out[2] == out[3]  # greedy: same per group
    with torch.no_grad():
        plain = model.generate(input_ids=torch.tensor([[5, 6, 7]]), max_new_tokens=4,
                               do_sample=False, pad_token_id=tok.pad_token_id)[0, 3:].tolist()
    cut = plain[:plain.index(tok.eos_token_id) + 1] if tok.eos_token_id in plain else plain
    assert out[0] == cut
