"""Sentence embeddings from an encoder (MiniLM): mean pooling over tokens, L2-normalised.

all-MiniLM-L6-v2 was trained with exactly this pooling (its 1_Pooling config: mean tokens,
then Normalize), so cosine similarity is a dot product. Used in notebooks 00, 02, 15.
"""
from __future__ import annotations

import torch


@torch.inference_mode()
def encode(model, tokenizer, texts: list[str], batch_size: int = 32,
           max_length: int = 256) -> torch.Tensor:
    """Embeddings ``(N, H)`` of ``texts``, unit length."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt").to(model.device)
        hidden = model(**enc).last_hidden_state  # (B, T, H)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        chunks.append(torch.nn.functional.normalize(pooled.float(), dim=-1))
    return torch.cat(chunks)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two unit-length vectors."""
    return float((a * b).sum())
