"""Parameters of the multimodal VQA notebook (paper §11.1-11.2), one validated section.

Light on purpose (no torch): notebook schemas, panels and the ``ftkit`` command read it. Used in notebooks/17_multimodal_vqa.ipynb.
"""
from __future__ import annotations

from dataclasses import dataclass

from ftkit.core.config import Section, param

OFFLINE = "offline"  # assemble the model from the offline packs (ftkit.vqa.model)


@dataclass(frozen=True)
class VQAConfig(Section):
    """Data, vision encoder, contrastive pretraining and the three fine-tuning stages."""
    vlm_name: str = param(OFFLINE, "'offline' assembles SigLIP-style encoder + projector + "
                          "model_name (LLaVA classes); a hub id (e.g. a SmolVLM) loads that VLM.")
    text_encoder: str = param("minilm-l6", "Frozen sentence encoder for contrastive pretraining.")
    vqa_data: str = param("../data/vqa_shapes/manifest.json",
                          "Manifest of the generated scenes (seed, sizes, held-out pairs).")
    n_scenes: int = param(1200, "Training scenes (each gives a caption and 5 questions).",
                          min=8, max=100_000)
    n_eval_scenes: int = param(24, "Scenes per evaluation split (seen, held-out); 5 questions "
                               "each.", min=1, max=10_000)
    image_size: int = param(32, "Image side in pixels.", min=8, max=512, step=8)
    patch_size: int = param(8, "Vision patch side: (image_size/patch_size)^2 image tokens.",
                            min=2, max=64)
    vision_hidden: int = param(128, "Vision transformer width.", min=16, max=1024, step=16)
    vision_layers: int = param(4, "Vision transformer layers.", min=1, max=24)
    clip_steps: int = param(200, "Contrastive pretraining steps (0 = keep the random encoder).",
                            min=0, max=100_000)
    clip_batch_size: int = param(128, "Image-caption pairs per contrastive step.", min=2,
                                 max=8192)
    clip_lr: float = param(2e-3, "Contrastive learning rate.", min=0.0, min_exclusive=True,
                           max=1.0, log=True)
    caption_steps: int = param(10, "Stage 1a: captioning steps, projector only.", min=1)
    caption_lora_steps: int = param(10, "Stage 1b: captioning steps, projector + LoRA.", min=1)
    vqa_steps: int = param(100, "Stage 2: VQA steps, projector + LoRA.", min=1)
    full_steps: int = param(3, "Steps of a timing run that trains every parameter of a copy of "
                            "the model (discarded), to price what PEFT saves.", min=1, max=100)
    projector_lr: float = param(2e-3, "Learning rate of the projector-only stage.", min=0.0,
                                min_exclusive=True, max=1.0, log=True)
    vqa_batch_size: int = param(40, "Questions answered at once when scoring.", min=1, max=1024)
    grid_images: int = param(8, "Images in the prediction grid.", min=1, max=64)

    def check(self) -> None:
        if self.image_size % self.patch_size:
            self.fail("image_size", f"must be a multiple of patch_size ({self.patch_size})")
        if not self.vlm_name.strip():
            self.fail("vlm_name", f"'{OFFLINE}' or a hub id such as "
                      "'HuggingFaceTB/SmolVLM-256M-Instruct'")


