"""The speed layer of the trainer factory: each lever keeps what is learned and can be switched off.

- :mod:`~ftkit.train.speed.packing` — padding-free batches with per-example attention;
- :mod:`~ftkit.train.speed.fastloss` — logits only where a label exists;
- :mod:`~ftkit.train.speed.fused_lora` — the LoRA update added inside one matmul;
- :mod:`~ftkit.train.speed.frozen_linear` — frozen weights cast to bf16 once per ``train()``.

``benchmarks/train_throughput.py`` measures each lever side by side.
"""
