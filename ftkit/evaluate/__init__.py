"""Stage 5: evaluation (paper §7). One module per kind of measurement; none needs training.

- :mod:`~ftkit.evaluate.perplexity` — perplexity on held-out text;
- :mod:`~ftkit.evaluate.tasks` — exact-match scores of generated answers per task;
- :mod:`~ftkit.evaluate.probes` — fixed probes of general ability (facts, general text);
- :mod:`~ftkit.evaluate.judge` — the rule-based judge of preference replies, win rates;
- :mod:`~ftkit.evaluate.classification` — the imbalance metrics, confusion matrices.
"""
