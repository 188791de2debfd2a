"""Parameter section of the monitoring stage (paper ch. 9): the simulated month, the detectors,
the replay and the retraining of notebook 15. Light on purpose (no torch): schemas and panels
read it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ftkit.core.config import Section, param

Detector = Literal["drift_launch", "drift_recent", "novel_share", "length_psi"]


@dataclass(frozen=True)
class MonitorConfig(Section):
    """A month of traffic, the signals watched, and the retrain an alert sets off."""
    days: int = param(30, "Days of simulated traffic.", min=4, max=3650)
    per_day: int = param(40, "Prompts per day.", min=5, max=100_000)
    reference_days: int = param(3, "The first days form the launch window every day is "
                                "compared with.", min=1, max=365)
    shift_start: int = param(12, "Day from which a growing share of customers write tersely "
                             "(all of them on the last day); the days between the launch "
                             "window and this day are the stable days thresholds come from.",
                             min=2, max=3650)
    new_intent_day: int = param(20, "Day a topic the assistant never saw (gift cards) starts.",
                                min=2, max=3650)
    new_intent_share: float = param(0.3, "Share of prompts about the new topic from then on.",
                                    min=0.0, max=1.0)
    burst_day: int = param(25, "Day of a burst of abusive and personal-data prompts.", min=2,
                           max=3650)
    burst_share: float = param(0.4, "Share of that day's prompts in the burst.", min=0.0,
                               max=1.0)
    window: int = param(3, "Days before each day that its recent drift is measured against.",
                        min=1, max=365)
    n_permutations: int = param(200, "Permutations per MMD test (the p-value's resolution is "
                                "1 / (n + 1)).", min=10, max=100_000)
    alert_k: float = param(3.0, "An alert fires above the stable days' mean + k standard "
                           "deviations (and never below their maximum).", min=0.0, max=20.0)
    detector: Detector = param("drift_recent", "The prompt signal whose first alert after the "
                               "new topic starts sets off the retrain.")
    replies_per_day: int = param(2, "Prompts per day replayed against the model for the "
                                 "service and response signals.", min=1, max=100_000)
    replay_tokens: int = param(16, "Tokens generated per replayed request.", min=1, max=4096)
    max_tokens: int = param(48, "Tokens generated per reply when old and new versions are "
                            "compared.", min=1, max=4096)
    use_server: bool = param(True, "Replay against the assistant served as in notebook 14 "
                             "(else against the model in this process).")
    continuous_batching: bool = param(False, "Serve with continuous batching (its first "
                                      "request pays a one-time set-up of tens of seconds; with "
                                      "a few requests in flight on a CPU it buys little).")
    concurrency: int = param(4, "Requests in flight during the replay.", min=1, max=256)
    request_timeout: float = param(120.0, "Seconds before a request counts as failed.",
                                   min=1.0, max=3600.0)
    label_delay: int = param(2, "Days until the shop's answers to a day's prompts arrive: "
                             "the answer signal of the last days is not known yet.", min=0,
                             max=365)
    retrain_days: int = param(3, "Days of labelled traffic, from the alert on, the new "
                              "adapter version is trained on.", min=1, max=365)
    new_topic_repeats: int = param(2, "Times each new-topic pair is repeated in the retraining "
                                   "data (it is rare next to everything else).", min=1,
                                   max=100)
    replay_rows: int = param(40, "Original training records mixed in, against forgetting.",
                             min=0, max=100_000)
    retrain_steps: int = param(120, "Optimiser steps of the retrain.", min=1, max=100_000)
    retrain_lr: float = param(2e-3, "Learning rate of the retrain.", min=0.0,
                              min_exclusive=True, max=1.0, log=True)
    retrain_batch: int = param(4, "Batch size of the retrain.", min=1, max=1024)
    eval_new: int = param(15, "Prompts of the new topic, after the training window, that old "
                          "and new versions answer.", min=1, max=100_000)
    eval_old: int = param(30, "Prompts of the old topics, after the window and not trained "
                          "on, that both versions answer.", min=1, max=100_000)
    fact_threshold: float = param(0.5, "A reply gives the shop's answer when it holds this "
                                  "share of the answer's content words.", min=0.0,
                                  min_exclusive=True, max=1.0)
    min_gain: float = param(0.5, "Answer accuracy the new version must gain on the new topic "
                            "to be promoted.", min=0.0, max=1.0)
    max_drop: float = param(0.02, "Answer accuracy and answer recall it may lose on the old "
                            "topics.", min=0.0, max=1.0)

    def check(self) -> None:
        if self.shift_start <= self.reference_days + 2:
            self.fail("shift_start", f"must leave at least two stable days after the "
                      f"{self.reference_days} launch days to set thresholds on")
        for name in ("shift_start", "new_intent_day", "burst_day"):
            if getattr(self, name) > self.days:
                self.fail(name, f"must be a day of the month (days = {self.days})")
        if self.new_intent_day < self.shift_start:
            self.fail("new_intent_day", "the new topic comes after the stable days "
                      f"(shift_start = {self.shift_start})")
        if self.new_intent_day + self.retrain_days > self.days:
            self.fail("retrain_days", "the training window must end before the last day, so "
                      "that later days are left to evaluate on")

    @property
    def stable_days(self) -> list[int]:
        """Days after the launch window and before any change."""
        return list(range(self.reference_days + 1, self.shift_start))
