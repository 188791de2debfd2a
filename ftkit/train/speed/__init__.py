"""The speed layer of the trainer factory: each lever keeps what is learned and can be switched off.

- :mod:`~ftkit.train.speed.layer` — the one entry point: ``factory.build`` applies it to every
  training path (:class:`~ftkit.train.speed.layer.Levers` says which levers are on; each run
  prints one line naming them);
- :mod:`~ftkit.train.speed.packing` — padding-free batches with per-example attention;
- :mod:`~ftkit.train.speed.fastloss` — logits only where a label exists;
- :mod:`~ftkit.train.speed.fused_lora` — the LoRA update added inside one matmul;
- :mod:`~ftkit.train.speed.frozen_linear` — frozen weights cast to bf16 once per ``train()``.

``benchmarks/train_throughput.py`` (SFT), ``benchmarks/dpo_step.py`` (DPO) and
``benchmarks/grpo_step.py`` (GRPO) measure the levers side by side with the libraries' trainers.
"""
