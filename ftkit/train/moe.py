"""Sparse upcycling: a dense Llama-family model turned into a Mixtral mixture of experts
(paper §6.6; notebook 10).

:func:`upcycle` builds a ``MixtralForCausalLM`` from a dense model: embeddings, attention,
norms and head are copied, each layer's MLP is copied into ``n_experts`` identical experts,
and a new router (one small linear layer per layer) picks ``top_k`` of them per token. Mixtral
renormalises the chosen experts' weights to sum to one, so before any training the upcycled
model computes exactly what the dense one does (tested); training then lets the experts drift
apart. The result is a stock transformers architecture: it saves as safetensors and loads
with plain ``AutoModelForCausalLM``.

The router's load-balancing loss (Switch Transformer's, which Mixtral uses: the number of
experts times the sum over experts of the share of tokens sent there times the mean router
probability) is added to the language-model loss with weight ``aux_coef`` while :func:`train`
runs; with 0 nothing keeps the router from sending most tokens to a few experts. :func:`expert_load` measures where
the tokens go, per layer, and :func:`imbalance` summarises it as max/mean load.
"""
from __future__ import annotations

import numpy as np
import torch
from transformers import MixtralConfig, MixtralForCausalLM

from ftkit.core import env
from ftkit.core.config import ConfigError, TrainConfig
from ftkit.train import sft
from ftkit.train.finetune import StepTimer

# keys of a dense config that Mixtral's config does not take
_DENSE_ONLY = ("model_type", "architectures", "transformers_version", "mlp_bias",
               "attention_bias", "pretraining_tp", "dtype", "torch_dtype", "quantization_config")


def moe_config(dense_config, n_experts: int, top_k: int, aux_coef: float) -> MixtralConfig:
    """The Mixtral config with the dense model's shapes and ``n_experts`` experts per layer."""
    if dense_config.model_type != "llama":
        raise ConfigError(f"upcycling takes a Llama-family model (SmolLM2, tiny-llama); got "
                          f"model_type {dense_config.model_type!r}")
    if not 1 <= top_k <= n_experts:
        raise ConfigError(f"top_k = {top_k}: must be between 1 and n_experts = {n_experts}")
    if getattr(dense_config, "mlp_bias", False) or getattr(dense_config, "attention_bias", False):
        raise ConfigError("the dense model has biases in its MLP or attention; Mixtral has none")
    values = {k: v for k, v in dense_config.to_dict().items() if k not in _DENSE_ONLY}
    return MixtralConfig(**values, num_local_experts=n_experts, num_experts_per_tok=top_k,
                         router_aux_loss_coef=aux_coef, output_router_logits=False,
                         router_jitter_noise=0.0)


def upcycle(dense, n_experts: int = 4, top_k: int = 2, aux_coef: float = 0.02,
            router_std: float = 0.02, seed: int = 0) -> MixtralForCausalLM:
    """A Mixtral model whose experts all start as ``dense``'s MLPs (see the module)."""
    cfg = moe_config(dense.config, n_experts, top_k, aux_coef)  # bad input fails here
    with torch.no_grad():
        return _upcycled(dense, cfg, router_std, seed)


def _upcycled(dense, cfg: MixtralConfig, router_std: float, seed: int) -> MixtralForCausalLM:
    n_experts = cfg.num_local_experts
    moe = MixtralForCausalLM(cfg).to(dense.dtype)
    source = dense.state_dict()
    state = {k: source[k] for k in moe.state_dict() if ".mlp." not in k and k in source}
    gen = torch.Generator().manual_seed(seed)
    for i, layer in enumerate(dense.model.layers):
        mlp, prefix = layer.mlp, f"model.layers.{i}.mlp"
        gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], 0)
        state[f"{prefix}.experts.gate_up_proj"] = gate_up.unsqueeze(0).repeat(n_experts, 1, 1)
        state[f"{prefix}.experts.down_proj"] = mlp.down_proj.weight.unsqueeze(0).repeat(
            n_experts, 1, 1)
        state[f"{prefix}.gate.weight"] = (torch.randn(n_experts, cfg.hidden_size, generator=gen)
                                          * router_std).to(dense.dtype)
    missing, unexpected = moe.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (cfg.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ConfigError(f"upcycling left weights unset {missing[:4]} or unused {unexpected[:4]}")
    if cfg.tie_word_embeddings:
        moe.tie_weights()
    return moe.eval()


def trainable(model, what: str = "mlp") -> int:
    """Freeze all but ``what``: "mlp" (every MLP weight: a MoE's experts and routers, a dense
    model's MLPs), "router" (a MoE's routers) or "all"; returns the trainable weight count."""
    if what not in {"mlp", "router", "all"}:
        raise ConfigError(f"train must be 'mlp', 'router' or 'all', got {what!r}")
    for name, p in model.named_parameters():
        p.requires_grad = (what == "all" or ".mlp.gate." in name
                           or (what == "mlp" and ".mlp." in name))
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if not count:
        raise ConfigError(f"nothing to train: {type(model).__name__} has no {what} weights")
    return count


def train(model, tokenizer, train_ds, train_cfg: TrainConfig, output_dir: str, seed: int = 42,
          part: str = "mlp", title: str = "MoE"):
    """Train ``part`` of ``model`` (a MoE or its dense origin) through the trainer factory,
    with the model's own loss (for a MoE with a balancing coefficient: the language-model
    loss plus the router's auxiliary loss); returns ``(model, cost row)``."""
    env.seed_everything(seed)
    count = trainable(model, part)
    model.config.use_cache = False
    # the balancing loss joins the model's loss only while router logits are returned; they
    # stay off outside training (transformers' Mixtral cannot add it up under a KV cache)
    model.config.output_router_logits = bool(getattr(model.config, "router_aux_loss_coef", 0))
    timer = StepTimer()
    trainer = sft.make_trainer(model, tokenizer, train_ds, None, train_cfg, output_dir, seed,
                               title=title, callbacks=[timer], label_only_logits=False,
                               fused_lora=False)
    with env.MemoryTracker() as mem:
        result = trainer.train()
    model = sft.unwrap(trainer)
    model.config.use_cache, model.config.output_router_logits = True, False
    tokens = sum(len(x) for x in train_ds["input_ids"]) * result.global_step * train_cfg.batch_size / len(train_ds)
    return model.eval(), {"trainable_params": count, "step_seconds": timer.median,
                          "train_seconds": result.metrics["train_runtime"],
                          "tokens_per_second": tokens / result.metrics["train_runtime"],
                          "train_loss": result.training_loss, "peak_memory_mb": mem.delta_mb}


def parameter_counts(moe) -> dict:
    """Total weights, and the weights one token passes through (its ``top_k`` experts)."""
    cfg = moe.config
    total = sum(p.numel() for p in moe.parameters())
    expert = sum(p.numel() for n, p in moe.named_parameters() if ".mlp.experts." in n)
    active = total - expert + expert * cfg.num_experts_per_tok // cfg.num_local_experts
    return {"total_params": total, "active_params": active}


@torch.inference_mode()
def expert_load(moe, tokenizer, texts: list[str], batch_size: int = 8,
                max_length: int = 128) -> np.ndarray:
    """Share of routed token slots per expert, per layer: ``(layers, experts)``, rows sum to 1
    (each token counts ``top_k`` times; padding left out)."""
    if not texts:
        raise ConfigError("expert_load needs at least one text")
    cfg = moe.config
    counts = np.zeros((cfg.num_hidden_layers, cfg.num_local_experts))
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                        truncation=True, max_length=max_length).to(moe.device)
        out = moe(**enc, output_router_logits=True)
        keep = enc["attention_mask"].reshape(-1).bool()
        for layer, logits in enumerate(out.router_logits):
            chosen = logits[keep].topk(cfg.num_experts_per_tok, dim=-1).indices.reshape(-1)
            counts[layer] += np.bincount(chosen.cpu().numpy(), minlength=cfg.num_local_experts)
    return counts / counts.sum(1, keepdims=True)


def imbalance(load: np.ndarray) -> float:
    """Mean over layers of the busiest expert's load over the mean load (1 = perfectly even,
    ``n_experts / top_k`` at worst)."""
    return float((load.max(1) / load.mean(1)).mean())


def load_figure(loads: dict[str, np.ndarray]):
    """Expert load per layer (rows) and expert (columns) for each named model, side by side."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(loads), figsize=(3.6 * len(loads), 4.2), squeeze=False)
    top = max(float(v.max()) for v in loads.values())
    for ax, (name, load) in zip(axes[0], loads.items()):
        im = ax.imshow(load, aspect="auto", cmap="viridis", vmin=0, vmax=top)
        ax.set(title=f"{name}\nmax/mean {imbalance(load):.2f}", xlabel="expert", ylabel="layer",
               xticks=range(load.shape[1]))
    fig.colorbar(im, ax=axes[0].tolist(), label="share of routed tokens")
    return fig
