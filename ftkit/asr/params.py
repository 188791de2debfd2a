"""Parameter section of the speech-recognition notebook (paper §11.4).

Light on purpose (no torch): notebook schemas, panels and the ``ftkit`` command read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ftkit.core.config import Section, param

METHODS = ("full", "lora")


@dataclass(frozen=True)
class ASRConfig(Section):
    """The jargon data set, its augmentation and the decoder fine-tuning of notebook 16."""
    manifest_path: str = param("../data/asr_jargon/manifest.jsonl",
                               "Text manifest of the spoken data set (one clip per row).")
    n_train_domain: int = param(48, "Medical training sentences.", min=1, max=10_000)
    n_train_everyday: int = param(24, "Everyday training sentences (keep general speech).",
                                  min=0, max=10_000)
    renderings: int = param(2, "Voices per training sentence (the manifest holds two).",
                            min=1, max=2)
    n_val: int = param(12, "Validation clips for early stopping (3/4 medical).", min=2,
                       max=1000)
    n_test_domain: int = param(30, "Held-out medical test clips (new sentence frames).", min=1,
                               max=1000)
    n_test_everyday: int = param(30, "Held-out everyday test clips.", min=1, max=1000)
    augment_share: float = param(0.5, "Share of training clips that are augmented.", min=0.0,
                                 max=1.0, step=0.05)
    snr_choices: list[float] = param([5.0, 10.0, 20.0], "Noise SNRs in dB drawn for noisy clips.",
                                     min=-10.0, max=60.0)
    speed_delta: float = param(0.1, "Speed factors are drawn from 1 ± this.", min=0.0, max=0.5,
                               step=0.05)
    pitch_semitones: float = param(2.0, "Pitch shifts are drawn from ± this many semitones.",
                                   min=0.0, max=12.0, step=0.5)
    asr_methods: list[Literal["full", "lora"]] = param(["full", "lora"],
                                                       "Decoder fine-tuning methods to compare.")
    lora_lr: float = param(1e-3, "Learning rate of the LoRA run (TrainConfig.lr is full's).",
                           min=0.0, min_exclusive=True, max=1.0, log=True)
    patience: int = param(2, "Stop after this many evaluations without a better val WER.",
                          min=1, max=100)
    encode_batch_size: int = param(8, "Clips per encoder forward pass.", min=1, max=256)

    def check(self) -> None:
        if len(set(self.asr_methods)) != len(self.asr_methods):
            self.fail("asr_methods", "name each method once")
