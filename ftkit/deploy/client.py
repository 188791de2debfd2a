"""Talking to a served model with the official ``openai`` client, and loading it (paper §8.3).

:func:`client` points ``openai.OpenAI`` at a :class:`ftkit.deploy.server.Server`;
:func:`ask` sends one chat request (optionally streamed) and times it. :func:`load_test` is a
load generator: real HTTP through ``openai.AsyncOpenAI``, ``concurrency`` requests in flight,
bounded in requests and in seconds, each request streamed so that the time to the first token
is measured; failures (a stopped server, a timeout, an HTTP error) are rows with their error,
never a hang. :func:`summarise` turns the rows into p50/p95 latency, time to first token,
output tokens per second and the error count.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from ftkit.core.config import ConfigError


def client(server, timeout: float = 120.0, max_retries: int = 0):
    """``openai.OpenAI`` for ``server`` (its base URL and key); no silent retries."""
    import openai

    return openai.OpenAI(base_url=server.base_url, api_key=server.key, timeout=timeout,
                         max_retries=max_retries)


def messages(question: str, system: str | None = None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}]


def ask(chat_client, model: str, question: str, system: str | None = None,
        max_tokens: int = 64, stream: bool = False) -> dict[str, Any]:
    """One chat request: the answer, seconds, time to first token (streamed) and tokens."""
    t0 = time.perf_counter()
    request = dict(model=model, messages=messages(question, system), max_tokens=max_tokens,
                   temperature=0.0)
    if not stream:
        reply = chat_client.chat.completions.create(**request)
        return {"answer": reply.choices[0].message.content, "seconds": time.perf_counter() - t0,
                "first_token_s": float("nan"), "tokens": reply.usage.completion_tokens}
    parts, first = [], None
    for chunk in chat_client.chat.completions.create(stream=True, **request):
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            first = first or time.perf_counter() - t0
            parts.append(delta)
    return {"answer": "".join(parts), "seconds": time.perf_counter() - t0,
            "first_token_s": first or float("nan"), "tokens": len(parts)}


async def _one(aclient, model: str, prompt: str, max_tokens: int,
               system: str | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    first, parts = None, []
    try:
        stream = await aclient.chat.completions.create(
            model=model, messages=messages(prompt, system), max_tokens=max_tokens,
            temperature=0.0, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter() - t0
                parts.append(chunk.choices[0].delta.content)
        error = ""
    except Exception as err:  # noqa: BLE001 - every failure is a measured outcome
        error = f"{type(err).__name__}: {str(err)[:120]}"
    return {"seconds": time.perf_counter() - t0, "first_token_s": first or float("nan"),
            "tokens": len(parts), "error": error, "reply": "".join(parts)}


async def _load(server, model: str, prompts: list[str], concurrency: int, n_requests: int,
                max_tokens: int, max_seconds: float, timeout: float,
                system: str | None = None) -> list[dict]:
    import openai

    aclient = openai.AsyncOpenAI(base_url=server.base_url, api_key=server.key,
                                 timeout=timeout, max_retries=0)
    queue = list(range(n_requests))
    rows: list[dict] = []
    start = time.perf_counter()
    deadline = start + max_seconds

    async def worker():
        while queue and time.perf_counter() < deadline:
            i = queue.pop(0)
            row = await _one(aclient, model, prompts[i % len(prompts)], max_tokens, system)
            rows.append({"request": i, "finished_s": round(time.perf_counter() - start, 3), **row})

    try:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))),
                               max_seconds + timeout)
    except asyncio.TimeoutError:
        pass
    finally:
        await aclient.close()
    return rows


def load_test(server, model: str, prompts: list[str], concurrency: int = 1,
              n_requests: int = 8, max_tokens: int = 32, max_seconds: float = 120.0,
              timeout: float = 60.0) -> pd.DataFrame:
    """``n_requests`` streamed chat requests, ``concurrency`` at a time, stopping after
    ``max_seconds``; one row per request (seconds, first-token seconds, tokens, error)."""
    if concurrency < 1 or n_requests < 1 or not prompts:
        raise ConfigError(f"load_test: concurrency = {concurrency} and n_requests = "
                          f"{n_requests} must be >= 1, with at least one prompt")
    t0 = time.perf_counter()
    rows = _run(_load(server, model, prompts, concurrency, n_requests, max_tokens, max_seconds,
                      timeout))
    frame = pd.DataFrame(rows, columns=["request", "finished_s", "seconds", "first_token_s",
                                        "tokens", "error"])
    frame.attrs.update(wall_seconds=time.perf_counter() - t0, concurrency=concurrency)
    return frame


def answer_all(server, prompts: list[str], concurrency: int = 4, max_tokens: int = 48,
               system: str | None = None, timeout: float = 120.0,
               max_seconds: float = 3600.0) -> list[dict]:
    """Every prompt answered once, ``concurrency`` requests in flight, in the prompts' order:
    rows ``{"reply", "seconds", "tokens", "error"}`` (an unanswered prompt, e.g. past
    ``max_seconds``, is a row with its error). ``ftkit.monitor.replay`` takes it as its
    ``answer`` function."""
    if concurrency < 1:
        raise ConfigError(f"answer_all: concurrency = {concurrency} must be >= 1")
    if not prompts:
        return []
    rows = _run(_load(server, server.model_name, prompts, concurrency, len(prompts), max_tokens,
                      max_seconds, timeout, system))
    by_request = {r["request"]: r for r in rows}
    missing = {"reply": "", "seconds": float("nan"), "tokens": 0, "error": "not sent: time ran out"}
    return [{k: by_request.get(i, missing)[k] for k in ("reply", "seconds", "tokens", "error")}
            for i in range(len(prompts))]


def _run(coroutine):
    """Run ``coroutine`` also from inside a running event loop (a Jupyter kernel)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as pool:  # a kernel's loop is running: use a thread's own
        return pool.submit(asyncio.run, coroutine).result()


def summarise(frame: pd.DataFrame) -> dict[str, float]:
    """p50/p95 latency and time to first token (successful requests), output tokens per
    second over the run's wall time, requests per second, and errors."""
    ok = frame[frame.error == ""]
    wall = frame.attrs.get("wall_seconds") or float("nan")
    pct = (lambda s, q: float(np.percentile(s, q)) if len(s) else float("nan"))
    return {"requests": len(frame), "errors": int((frame.error != "").sum()),
            "p50_s": pct(ok.seconds, 50), "p95_s": pct(ok.seconds, 95),
            "ttft_p50_s": pct(ok.first_token_s.dropna(), 50),
            "tokens_per_s": float(ok.tokens.sum() / wall), "requests_per_s": len(ok) / wall}


def compare_latency(servers: dict[str, Any], prompts: list[str], n_requests: int = 50,
                    rounds: int = 5, max_tokens: int = 32, **load: Any) -> pd.DataFrame:
    """One request at a time to each server, ``n_requests`` each, taken in ``rounds``
    alternating turns so that a slow spell of the machine hits every server alike; one row per
    request with its server's name."""
    frames = []
    share = [n_requests // rounds + (r < n_requests % rounds) for r in range(rounds)]
    for r, n in enumerate(share):
        for name, server in servers.items():
            if n:
                frame = load_test(server, server.model_name, prompts, 1, n, max_tokens, **load)
                frames.append(frame.assign(server=name, round=r))
    return pd.concat(frames, ignore_index=True)


def concurrency_sweep(server, prompts: list[str], levels: list[int],
                      requests_per_level: int = 16, max_tokens: int = 32,
                      progress=None, warmup: int = 1, **load: Any) -> pd.DataFrame:
    """:func:`summarise` of a load test at each concurrency level (at least two requests per
    concurrent client), one row per level, after ``warmup`` unmeasured requests (a server's
    first requests pay for one-time set-up, e.g. continuous batching's cache)."""
    if warmup:
        load_test(server, server.model_name, prompts, 1, warmup, max_tokens, **load)
    rows = []
    for level in (progress or iter)(levels):
        frame = load_test(server, server.model_name, prompts, level,
                          max(requests_per_level, 2 * level), max_tokens, **load)
        rows.append({"concurrency": level, **summarise(frame)})
    return pd.DataFrame(rows).set_index("concurrency")


__all__ = ["answer_all", "ask", "client", "compare_latency", "concurrency_sweep", "load_test",
           "messages", "summarise"]
