"""The live training plot: collects losses, prints one line per evaluation, keeps a figure."""
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from ftkit import models
from ftkit.train.callbacks import LivePlotCallback, compact_logs


def _tiny_run(tmp_path, callback, evaluate=True, compact=False):
    model, tok = models.load("tiny-llama")
    enc = tok(["The quick brown fox jumps over the lazy dog."] * 16, padding="max_length",
              max_length=16, truncation=True)
    ds = Dataset.from_dict({**enc, "labels": enc["input_ids"]})
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4,
                             logging_steps=1, eval_strategy="steps" if evaluate else "no",
                             eval_steps=3, report_to=[], use_cpu=True, save_strategy="no",
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      eval_dataset=ds.select(range(4)) if evaluate else None,
                      callbacks=[callback])
    if compact:
        compact_logs(trainer)
    trainer.train()


def test_losses_lines_and_final_figure(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FTKIT_HEADLESS", "1")
    cb = LivePlotCallback(title="tiny")
    draws = []
    monkeypatch.setattr(cb, "draw", lambda: draws.append(len(cb.train)))
    _tiny_run(tmp_path, cb)
    assert draws == [6]  # headless: one figure, drawn at the end
    assert [s for s, _ in cb.train] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in cb.evals] == [3, 6]
    out = capsys.readouterr().out
    assert "step 3/6 | train" in out and "step 6/6" in out and "| eval " in out
    fig = cb.figure()
    assert len(fig.axes[0].lines) == 2 and fig.axes[0].get_title() == "tiny"


def test_interactive_redraws_in_place(tmp_path, monkeypatch):
    monkeypatch.delenv("FTKIT_HEADLESS", raising=False)
    cb = LivePlotCallback(every=2)
    draws = []
    monkeypatch.setattr(cb, "draw", lambda: draws.append(len(cb.train)))
    _tiny_run(tmp_path, cb)
    assert len(draws) >= 4 and draws[-1] == 6  # every 2nd log event, plus the final draw
    assert torch.isfinite(torch.tensor([l for _, l in cb.train])).all()


def test_plain_loop_interface(capsys, monkeypatch):
    monkeypatch.setenv("FTKIT_HEADLESS", "1")
    cb = LivePlotCallback(title="loop", metric="eval_f1")
    drawn = []
    monkeypatch.setattr(cb, "draw", lambda: drawn.append(True))
    for step in range(1, 5):
        cb.add_train(step, 1.0 / step)
    cb.add_train(5, float("nan"))  # a diverged step is not plotted
    cb.add_eval(4, {"eval_loss": 0.3, "eval_f1": 0.75}, max_steps=4)
    cb.finish()
    assert len(cb.train) == 4 and cb.evals == [(4, 0.3)] and drawn == [True]
    assert "step 4/4 | train 0.250 | eval 0.300 | eval_f1 0.750" in capsys.readouterr().out


def test_headless_logs_are_compact_lines_not_log_dicts(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FTKIT_HEADLESS", "1")
    cb = LivePlotCallback(title="tiny")
    monkeypatch.setattr(cb, "draw", lambda: None)
    _tiny_run(tmp_path, cb, evaluate=False, compact=True)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    # without evaluation, one compact line per logged step; the Trainer's dict printer is gone
    assert [line.split(" | ")[0] for line in lines] == [f"step {i}/6" for i in range(1, 7)]
    assert "{'loss'" not in out and "train_runtime" not in out


def test_outside_ipython_the_figure_is_closed_without_printing(capsys):
    import matplotlib.pyplot as plt

    from ftkit.train.callbacks import show_in_place

    fig = plt.figure()
    assert show_in_place(fig) is None
    assert not plt.fignum_exists(fig.number)
    assert "Figure(" not in capsys.readouterr().out
