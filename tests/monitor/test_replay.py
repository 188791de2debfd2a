"""Replaying traffic: a sample per day, every request counted on a live /metrics endpoint."""
import threading
import time

import pandas as pd
import pytest

from ftkit.core.config import ConfigError
from ftkit.monitor import metrics, replay


def month(days=4, per_day=10):
    return pd.DataFrame({"day": [d for d in range(1, days + 1) for _ in range(per_day)],
                         "prompt": [f"question {i}" for i in range(days * per_day)]})


def echo(prompts):
    time.sleep(0.05)
    return [{"reply": f"re: {p}", "seconds": 0.05, "tokens": 3, "error": ""} for p in prompts]


def test_counters_move_on_the_endpoint_while_traffic_is_replayed():
    frame = month(days=8, per_day=6)
    with metrics.ServiceMetrics("assistant") as service:
        url = service.serve()
        seen, done = [], threading.Event()

        def watch():
            while not done.is_set():
                seen.append(metrics.scrape(url, service.key).get(
                    'ftkit_requests_total{outcome="ok",service="assistant"}', 0.0))
                time.sleep(0.02)
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            replies = replay.replay(frame, echo, per_day=3, seed=1, metrics=service)
        finally:
            done.set()
            watcher.join()
        final = metrics.scrape(url, service.key)
    assert len(replies) == 24 and (replies.reply == "re: " + replies.prompt).all()
    assert replies.day_wall_s.between(0.05, 5).all()
    assert final['ftkit_requests_total{outcome="ok",service="assistant"}'] == 24
    assert final['ftkit_output_tokens_total{service="assistant"}'] == 72
    moving = sorted(set(seen))
    assert len(moving) >= 3 and 0 < moving[1] < 24, f"scrapes saw {moving}"


def test_sample_days_is_seeded_and_bounded():
    frame = month()
    a, b = replay.sample_days(frame, 3, seed=0), replay.sample_days(frame, 3, seed=0)
    assert a.equals(b) and a.groupby("day").size().tolist() == [3, 3, 3, 3]
    assert len(replay.sample_days(frame, 50)) == len(frame)
    with pytest.raises(ConfigError, match="at least one prompt a day"):
        replay.sample_days(frame, 0)


def test_an_answer_function_that_loses_rows_is_refused():
    with pytest.raises(ConfigError, match="returned 1 rows for 2 prompts on day 1"):
        replay.replay(month(1, 2), lambda prompts: echo(prompts)[:1], per_day=2)
