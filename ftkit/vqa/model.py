"""The vision-language model of paper §11.2.2, assembled from parts or loaded from the hub.

Offline there is no pretrained vision encoder, so the model is built from three pieces with
transformers' own LLaVA classes: a small SigLIP-style vision transformer (pretrained in the
notebook, :mod:`ftkit.vqa.contrastive`, then frozen), LLaVA's projector from patch features into
the language model's embedding space, and the offline SmolLM2 as the language model. An
``<image>`` token is added to the tokenizer; :class:`transformers.LlavaProcessor` expands it into
one placeholder per image patch and the model swaps the projected patches in there.

Any other ``vlm_name`` loads a hub VLM (e.g. SmolVLM) with the Auto classes; the rest of the
pipeline (chat-formatted prompts, the projector/LoRA split, training, scoring) is the same.
Used in notebooks/17_multimodal_vqa.ipynb.
"""
from __future__ import annotations

import torch

from ftkit import models
from ftkit.core.env import best_device
from ftkit.vqa.params import OFFLINE

IMAGE_TOKEN = "<image>"
# ChatML like SmolLM2-Instruct, without its default system prompt (fewer tokens per example);
# message content may be a string or a list of {"type": "image"} / {"type": "text"} parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# Where the projector lives in the VLM families the notebook knows (LLaVA, Idefics3/SmolVLM).
PROJECTOR_NAMES = ("multi_modal_projector", "connector")
LANGUAGE_NAMES = ("language_model", "text_model")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def vision_config(image_size: int = 32, patch_size: int = 8, hidden_size: int = 128,
                  num_layers: int = 4, num_heads: int = 4):
    """A small SigLIP vision transformer: ``(image_size / patch_size)²`` patch tokens."""
    from transformers import SiglipVisionConfig

    if image_size % patch_size:
        raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}")
    return SiglipVisionConfig(image_size=image_size, patch_size=patch_size,
                              hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                              num_hidden_layers=num_layers, num_attention_heads=num_heads,
                              vision_use_head=False)


def vision_encoder(config, seed: int = 0):
    """A randomly initialised :class:`transformers.SiglipVisionModel` for ``config``."""
    from transformers import SiglipVisionModel

    torch.manual_seed(seed)
    return SiglipVisionModel(config)


def image_processor(image_size: int):
    """SigLIP's slow (PIL) image processor: RGB, resized to ``image_size``, scaled to [-1, 1]."""
    from transformers.models.siglip.image_processing_pil_siglip import (
        SiglipImageProcessorPil,
    )

    return SiglipImageProcessorPil(size={"height": image_size, "width": image_size},
                                   image_mean=[0.5] * 3, image_std=[0.5] * 3)


def make_processor(tokenizer, image_size: int, patch_size: int):
    """A :class:`LlavaProcessor` for ``tokenizer`` (gains an ``<image>`` token if missing)."""
    from transformers import LlavaProcessor

    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    return LlavaProcessor(image_processor=image_processor(image_size), tokenizer=tokenizer,
                          patch_size=patch_size, vision_feature_select_strategy="full",
                          chat_template=CHAT_TEMPLATE, image_token=IMAGE_TOKEN)


def assemble(lm, tokenizer, vision, seed: int = 0):
    """``(model, processor)``: a LLaVA model with ``vision``'s and ``lm``'s weights.

    Args:
        lm: a causal LM (e.g. SmolLM2) whose decoder becomes ``model.model.language_model``.
        tokenizer: its tokenizer; an ``<image>`` token is added and the embeddings resized.
        vision: a SiglipVisionModel; its patch features (last layer, all patches) are projected.
        seed: seed of the projector's random initialisation.
    """
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    vcfg = vision.config
    processor = make_processor(tokenizer, vcfg.image_size, vcfg.patch_size)
    lm.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    config = LlavaConfig(vision_config=vcfg.to_dict(), text_config=lm.config.to_dict(),
                         image_token_index=processor.image_token_id,
                         image_seq_length=(vcfg.image_size // vcfg.patch_size) ** 2,
                         vision_feature_select_strategy="full", vision_feature_layer=-1,
                         tie_word_embeddings=bool(lm.config.tie_word_embeddings))
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.model.vision_tower.load_state_dict(vision.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return model.eval(), processor


def load_vlm(vlm_name: str, llm_name: str, vision=None, seed: int = 0):
    """``(model, processor)``: the offline assembly (``vlm_name="offline"``) or a hub VLM.

    Offline, ``llm_name`` is loaded through the ftkit registry and joined to ``vision``. Any
    other name is a hub id or a folder, loaded with ``AutoModelForImageTextToText`` and
    ``AutoProcessor`` (needs the hub or its cache; not testable on the offline machines).
    """

    if vlm_name == OFFLINE:

        if vision is None:
            raise ValueError("the offline VLM needs the pretrained vision encoder (vision=...)")
        lm, tokenizer = models.load(llm_name)
        model, processor = assemble(lm, tokenizer, vision, seed)
        return model.to(best_device()), processor
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return (AutoModelForImageTextToText.from_pretrained(vlm_name).to(best_device()).eval(),
            AutoProcessor.from_pretrained(vlm_name))


def _named(model, names: tuple[str, ...]) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if any(k in n.split(".") for k in names)]


def projector_parameters(model) -> list[torch.nn.Parameter]:
    """The projector's parameters (LLaVA ``multi_modal_projector``, Idefics3 ``connector``)."""
    params = [p for _, p in _named(model, PROJECTOR_NAMES)]
    if not params:
        raise ValueError(f"{type(model).__name__} has no module named one of {PROJECTOR_NAMES}")
    return params


def train_projector_only(model):
    """Freeze everything except the projector (stage 1 of §11.2.2); returns ``model``."""
    model.requires_grad_(False)
    for p in projector_parameters(model):
        p.requires_grad_(True)
    return model


def train_everything(model):
    """Make every parameter trainable (the full fine-tuning the PEFT stages are priced
    against); returns ``model``."""
    model.requires_grad_(True)
    return model


def add_lora(model, r: int = 8, alpha: float = 16.0, dropout: float = 0.05, seed: int = 0):
    """LoRA on the language model's linear layers only, the projector kept trainable.

    The vision encoder stays frozen; peft's ``modules_to_save`` is not used for the projector
    (its parameters just keep ``requires_grad``), so the model's module names do not change.
    """
    from peft import LoraConfig, get_peft_model

    lang = "|".join(LANGUAGE_NAMES)
    targets = rf".*\.({lang})\..*\.({'|'.join(LORA_TARGETS)})$"
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                                  target_modules=targets, bias="none"))
    for p in projector_parameters(peft_model):
        p.requires_grad_(True)
    return peft_model


def part_counts(model) -> dict[str, int]:
    """Parameters of the vision encoder, projector and language model (LoRA weights apart)."""
    counts = {"vision": 0, "projector": 0, "language": 0, "lora": 0}
    for name, p in model.named_parameters():
        parts = name.split(".")
        key = ("lora" if any(s.startswith("lora_") for s in parts) else
               "projector" if set(parts) & set(PROJECTOR_NAMES) else
               "language" if set(parts) & set(LANGUAGE_NAMES) or "lm_head" in parts else
               "vision")
        counts[key] += p.numel()
    return counts
