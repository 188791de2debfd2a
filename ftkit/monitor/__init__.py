"""Monitoring a deployed model (paper ch. 9): drift statistics, alert thresholds and detector
scores, and service metrics a Prometheus server can scrape.

- :mod:`~ftkit.monitor.traffic` — a simulated month of support traffic with planted changes.
- :mod:`~ftkit.monitor.signals` — per-day drift, length and PII signals of any prompt stream.
- :mod:`~ftkit.monitor.drift` — MMD two-sample test with a permutation p-value, PSI.
- :mod:`~ftkit.monitor.alerts` — thresholds from calibration days; false alarms and delays.
- :mod:`~ftkit.monitor.metrics` — request counters and latency histogram (``prometheus_client``)
  behind a ``/metrics`` endpoint on 127.0.0.1 that needs a key.

Every function takes plain arrays or tables, so any stream of prompts and responses can be
monitored, not only a simulated one.
"""
