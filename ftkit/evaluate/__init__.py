"""Stage 5: evaluation (paper ch. 7). One module per kind of measurement; none trains.

- :mod:`~ftkit.evaluate.perplexity` — cross-entropy and perplexity, per example, compared
  across models with bootstrap intervals;
- :mod:`~ftkit.evaluate.curves` — the diagnosis of train/eval loss curves, early stopping's
  summary, gradient noise by batch size;
- :mod:`~ftkit.evaluate.harness` — benchmarks through EleutherAI's lm-evaluation-harness on
  the project's task files (``data/eval_tasks``), offline;
- :mod:`~ftkit.evaluate.uncertainty` — calibration (ECE, reliability), selective answering,
  token probabilities;
- :mod:`~ftkit.evaluate.safety` — the guard classifier, refusals and over-refusals;
- :mod:`~ftkit.evaluate.card` — the model card written from the scores;
- :mod:`~ftkit.evaluate.tasks` — exact-match scores of generated answers per task;
- :mod:`~ftkit.evaluate.probes` — fixed probes of general ability (facts, general text);
- :mod:`~ftkit.evaluate.judge` — the rule-based judge of preference replies, win rates;
- :mod:`~ftkit.evaluate.classification` — the imbalance metrics, confusion matrices, a
  classifier on sentence embeddings;
- :mod:`~ftkit.evaluate.figures` — notebook 13's figures.
"""
