"""Live training feedback: a loss/eval plot updated in place, and one compact line per evaluation.

The plot is shown through a display handle, so each update replaces the previous figure in the
same output; in a headless (papermill) run the last update stays in the executed notebook.
The printed lines go to stdout, so batch logs (``--log-output``) show progress too.
Used in every notebook that trains (via ``ft.live_plot()``).
"""
from __future__ import annotations

import math
import time

from transformers import TrainerCallback

from ftkit.core.env import headless


class LivePlotCallback(TrainerCallback):
    """A Trainer callback that plots training and evaluation loss while training runs.

    The same object serves hand-written training loops: call :meth:`add_train` per logged
    step, :meth:`add_eval` per evaluation and :meth:`finish` at the end.

    Args:
        title: figure title.
        every: redraw after this many logging events (headless runs redraw only at the end).
        metric: an extra eval metric to print besides ``eval_loss`` (e.g. ``"eval_accuracy"``).
    """

    def __init__(self, title: str = "training", every: int = 1, metric: str | None = None):
        self.title, self.every, self.metric = title, max(1, every), metric
        self.train: list[tuple[int, float]] = []
        self.evals: list[tuple[int, float]] = []
        self.handle, self.started, self._events = None, time.perf_counter(), 0

    # -- plain interface, for any training loop
    def add_train(self, step: int, loss: float) -> None:
        """Record a training loss; redraw every ``every`` calls when interactive."""
        if math.isfinite(loss):
            self.train.append((step, float(loss)))
        self._events += 1
        if not headless() and self._events % self.every == 0:
            self.draw()

    def add_eval(self, step: int, metrics: dict, max_steps: int = 0) -> None:
        """Record an evaluation (``eval_loss`` and others) and print its one-line summary."""
        if "eval_loss" in metrics:
            self.evals.append((step, float(metrics["eval_loss"])))
        print(self.line(step, max_steps, metrics), flush=True)

    def finish(self) -> None:
        """Draw the final figure (the one a headless run keeps)."""
        self.draw()

    # -- transformers Trainer hooks
    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.add_train(state.global_step, logs["loss"])
            if getattr(args.eval_strategy, "value", args.eval_strategy) == "no":
                print(self.line(state.global_step, state.max_steps, {}), flush=True)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.add_eval(state.global_step, metrics or {}, state.max_steps)

    def on_train_end(self, args, state, control, **kwargs):
        self.finish()

    def line(self, step: int, max_steps: int, metrics: dict) -> str:
        """``step 40/120 | train 1.234 | eval 1.456 | eval_accuracy 0.812 | 35 s``."""
        parts = [f"step {step}/{max_steps}"]
        if self.train:
            parts.append(f"train {self.train[-1][1]:.3f}")
        if "eval_loss" in metrics:
            parts.append(f"eval {metrics['eval_loss']:.3f}")
        if self.metric and self.metric in metrics:
            parts.append(f"{self.metric} {metrics[self.metric]:.3f}")
        parts.append(f"{time.perf_counter() - self.started:.0f} s")
        return " | ".join(parts)

    def figure(self):
        """The current loss figure (train and eval curves against the optimiser step)."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.2))
        for points, label, style in ((self.train, "train loss", "-"),
                                     (self.evals, "eval loss", "o-")):
            if points:
                ax.plot(*zip(*points), style, label=label)
        ax.set(xlabel="optimiser step", ylabel="loss", title=self.title)
        if self.train or self.evals:
            ax.legend()
        fig.tight_layout()
        return fig

    def draw(self) -> None:
        """Show the figure, replacing the previous one in the same output."""
        self.handle = show_in_place(self.figure(), self.handle)


def show_in_place(fig, handle=None):
    """Display ``fig`` (or replace what ``handle`` shows) and close it; returns the handle.

    A display handle keeps one output that is updated in place, so an executed notebook
    keeps the final figure and an interactive one does not grow a figure per update. Outside
    IPython (a script, the benchmarks) there is nowhere to show it: the figure is only closed,
    instead of ``display`` printing its repr (``Figure(600x320)``) into the log.
    """
    import matplotlib.pyplot as plt
    from IPython import get_ipython
    from IPython.display import display

    if get_ipython() is None:
        plt.close(fig)
        return None
    if handle is None:
        handle = display(fig, display_id=True)
    else:
        handle.update(fig)
    plt.close(fig)
    return handle


def compact_logs(trainer):
    """Drop the Trainer's raw log-dict printer (added when progress bars are off, i.e. headless):
    the live plot already prints one compact line per evaluation. Returns the trainer."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def live_plot(title: str = "training", every: int = 1, metric: str | None = None):
    """A LivePlotCallback to pass to a Trainer's ``callbacks``."""
    return LivePlotCallback(title=title, every=every, metric=metric)
