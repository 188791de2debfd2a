"""Parameter section of the deployment stage (paper ch. 8): what notebook 14 serves and how
hard it loads the server. Light on purpose (no torch): schemas and panels read it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ftkit.core.config import Section, param


@dataclass(frozen=True)
class DeployConfig(Section):
    """Serving the assistant behind an OpenAI-compatible API and measuring it (§8.1-8.4)."""
    n_questions: int = param(4, "Held-out support questions answered by the base model and by "
                             "the assistant.", min=1, max=100)
    system_prompt: str = param("You are the customer-support assistant of an online shop. "
                               "Answer in one or two sentences.",
                               "System prompt sent with each chat request.", empty_ok=True)
    max_tokens: int = param(48, "Tokens generated per answer shown to the reader.", min=1,
                            max=4096)
    load_tokens: int = param(16, "Tokens generated per request in the latency and load tests.",
                             min=1, max=4096)
    latency_requests: int = param(50, "Requests per server when timing base against merged "
                                  "assistant, one at a time.", min=2, max=10_000)
    concurrency_levels: list[int] = param([1, 2, 4, 8], "Requests in flight at once in the "
                                          "load tests.", min=1, max=256)
    requests_per_level: int = param(16, "Requests per load test (at least two per client).",
                                    min=1, max=10_000)
    engine: Literal["transformers", "vllm", "auto"] = param(
        "transformers", "What serves the model: transformers serve (any machine), vLLM (a CUDA "
        "GPU with vllm installed), or auto (vLLM where it can run).")
    served_weights: Literal["int8", "int4"] = param("int8", "Weight-only quantisation (torchao) "
                                                    "of the server compared for memory with "
                                                    "the assistant as saved.")
    continuous_batching: bool = param(True, "Also run the load tests on a server with "
                                      "continuous batching on, beside one without.")
    request_timeout: float = param(120.0, "Seconds before a request counts as failed.",
                                   min=1.0, max=3600.0)
    max_seconds: float = param(240.0, "Seconds a load test may take before it stops sending.",
                               min=1.0, max=36_000.0)

    def check(self) -> None:
        if len(set(self.concurrency_levels)) != len(self.concurrency_levels):
            self.fail("concurrency_levels", "name each level once")
