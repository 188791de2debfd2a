"""The top layer: the papermill runner, reports and the ``ftkit`` command.

- :mod:`~ftkit.batch.runner` — runs notebooks with a profile into ``papermill_runs/<run-id>/``;
- :mod:`~ftkit.batch.nbexec` — one notebook in one papermill process, with time limits;
- :mod:`~ftkit.batch.report` — report.md and report.html from a run's metrics;
- :mod:`~ftkit.batch.runinfo` — the machine and software a run used;
- :mod:`~ftkit.batch.packcheck` — each offline pack loaded and used once;
- :mod:`~ftkit.batch.cli` — the ``ftkit`` command.
"""
