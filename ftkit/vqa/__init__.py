"""Multimodal visual question answering, paper §11.1-11.2 (the Med-VQA recipe of §11.2.2).

One idea per module:

- :mod:`~ftkit.vqa.shapes` — procedurally generated scenes, captions and questions, with
  held-out colour-shape pairs (data/vqa_shapes/);
- :mod:`~ftkit.vqa.contrastive` — CLIP-style pretraining of a small vision encoder against the
  frozen MiniLM text encoder (§11.1.2);
- :mod:`~ftkit.vqa.model` — the LLaVA assembly (frozen vision encoder, projector, SmolLM2 with
  LoRA) or a hub VLM, and which parameters train in each stage;
- :mod:`~ftkit.vqa.train` — chat-formatted examples, the prompt-masking collator, one stage;
- :mod:`~ftkit.vqa.evaluate` — exact-match accuracy per question type and the prediction grid;
- :mod:`~ftkit.vqa.params` — the notebook's parameters (``VQAConfig``).

Used in notebooks/17_multimodal_vqa.ipynb.
"""
