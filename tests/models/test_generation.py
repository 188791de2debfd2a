"""Timing helpers of ftkit.models.generation."""
import torch


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
