"""ipywidgets panels generated from a notebook's parameter schema.

``panel = ft.panel(params)`` shows exactly the fields the notebook declares, one collapsible
group per stage section; numbers get bounded inputs (log-scale sliders for learning rates),
``Literal`` fields dropdowns, booleans checkboxes, strings and lists text boxes (lists written
as Python lists), each with its help text. Choosing another ``profile`` loads that profile's
values into the form. ``panel.value`` is a new validated parameter set; a bad entry shows its
validation message in the panel. In a batch run nothing fires events, so ``panel.value`` is
the injected parameters, unchanged (only fields a person edited are read back).
Used in every notebook.
"""
from __future__ import annotations

import ast
import dataclasses
import html
import os
import typing
from pathlib import Path
from typing import Any, Literal

from ftkit.core import results
from ftkit.core.config import ConfigError
from ftkit.core.env import headless
from ftkit.core.profiles import save_notebook_params
from ftkit.core.schema import NotebookParams, profile_values

_STYLE = {"description_width": "140px"}


def _number_widget(f: dataclasses.Field, value: Any, kind: type):
    import ipywidgets as w

    meta, common = f.metadata, {"description": f.name, "style": _STYLE, "value": value}
    lo, hi = meta.get("min"), meta.get("max")
    if meta.get("log") and kind is float:
        return w.FloatLogSlider(base=10, min=-7, max=0, step=0.1, readout_format=".1e", **common)
    if kind is int:
        return w.BoundedIntText(min=int(lo if lo is not None else -2**31),
                                max=int(hi if hi is not None else 2**31), **common)
    return w.BoundedFloatText(min=lo if lo is not None else -1e12,
                              max=hi if hi is not None else 1e12,
                              step=meta.get("step") or 0.01, **common)


def field_widget(f: dataclasses.Field, hint: Any, value: Any):
    """The widget for one config field, with the field's help text as tooltip."""
    import ipywidgets as w

    if typing.get_origin(hint) is Literal:
        widget = w.Dropdown(options=list(typing.get_args(hint)), value=value,
                            description=f.name, style=_STYLE)
    elif hint is bool:
        widget = w.Checkbox(value=value, description=f.name, style=_STYLE, indent=True)
    elif hint in (int, float):
        widget = _number_widget(f, value, hint)
    elif typing.get_origin(hint) in (list, dict):
        widget = w.Text(value=repr(value), description=f.name, style=_STYLE)
    else:
        widget = w.Text(value=str(value), description=f.name, style=_STYLE)
    widget.tooltip = f.metadata.get("help", "")
    return widget


class Panel:
    """A form over a notebook's parameters; ``.value`` gives the validated parameters."""
    def __init__(self, params: NotebookParams) -> None:
        import ipywidgets as w

        self.base, self.edited, self.widgets = params, set(), {}
        self.hints = typing.get_type_hints(type(params))
        self.message = w.HTML("")
        groups: dict[str, list] = {}
        for f in dataclasses.fields(params):
            widget = field_widget(f, self.hints[f.name], getattr(params, f.name))
            widget.observe(self._on_change(f.name), names="value")
            self.widgets[f.name] = widget
            groups.setdefault(f.metadata["group"], []).append(
                w.HBox([widget, w.HTML(f"<small>{f.metadata.get('help', '')}</small>")]))
        # One collapsible group per stage section, all open: every value is visible at a glance.
        self.sections = [w.Accordion(children=[w.VBox(items)], titles=(name,), selected_index=0)
                         for name, items in groups.items()]
        self.box = w.VBox([*self.sections, self.message, self._save_row()])

    def load_profile(self, name: str) -> None:
        """Fill the form with profile ``name``'s values for this notebook."""
        schema = type(self.base)
        values = {**schema.defaults(), **profile_values(schema, name), "profile": name}
        for key, value in values.items():
            widget = self.widgets[key]
            shown = repr(value) if typing.get_origin(self.hints[key]) in (list, dict) else value
            if widget.value != shown:
                widget.value = shown  # fires _on_change, which marks the field edited

    def _save_row(self):
        """A name box and a button that save the current values as a papermill profile."""
        import ipywidgets as w

        self.profile_name = w.Text(value="my-run", description="profile name", style=_STYLE)
        button = w.Button(description="Save as profile", icon="save")
        self.saved = w.HTML("")
        button.on_click(lambda _: self._save_clicked())
        return w.VBox([w.HBox([self.profile_name, button]), self.saved])

    def _save_clicked(self) -> None:
        try:
            path = self.save_profile(self.profile_name.value)
        except (ConfigError, ValueError) as err:
            self.saved.value = f"<b style='color:#b00'>Not saved:</b> {html.escape(str(err))}"
            return
        self.saved.value = (f"Saved {html.escape(str(path))}. Reproduce in batch with "
                            f"<code>{html.escape(self.command(self.profile_name.value))}</code>")

    def save_profile(self, name: str, notebook: str | None = None) -> Path:
        """Save the panel's values as ``papermill_runs/profiles/<name>.yaml``; see ftkit.core.profiles."""

        params = {k: v for k, v in self.value.to_params().items() if k != "output_dir"}
        return save_notebook_params(name, notebook or self.base.NOTEBOOK, params)

    def command(self, name: str, notebook: str | None = None) -> str:
        """The one command that reruns this notebook in batch with profile ``name``."""
        stem = notebook or self.base.NOTEBOOK
        return f"ftkit run --profile {name}" + (f" --only {stem}" if stem else "")

    def _on_change(self, name: str):
        def handler(change: dict) -> None:
            self.edited.add(name)
            if name == "profile" and not self._loading:
                self._loading = True
                try:
                    self.load_profile(change["new"])
                finally:
                    self._loading = False
            self._validate()
        return handler

    _loading = False

    def _read(self, name: str):
        value = self.widgets[name].value
        if typing.get_origin(self.hints[name]) in (list, dict):
            try:
                return ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise ConfigError(f"{name} = {value!r}: write a Python list or dict, e.g. "
                                  "[2, 4, 8]") from None
        return value

    def _validate(self) -> NotebookParams | None:
        try:
            cfg = self.base.replace(**{n: self._read(n) for n in self.edited})
        except ConfigError as err:
            self.message.value = f"<b style='color:#b00'>Not valid:</b> {err}"
            return None
        self.message.value = "<span style='color:#060'>Valid: re-run the next cell to use it.</span>"
        return cfg

    @property
    def value(self) -> NotebookParams:
        """The parameters as edited; raises ConfigError with the panel's message if invalid."""
        if not self.edited:
            return self.base
        cfg = self._validate()
        if cfg is None:
            raise ConfigError(self.message.value.split("</b> ", 1)[-1])

        results.set_output_dir(cfg.run.output_dir)
        results.record_params(cfg.to_params())  # the metrics file tells which values were used
        return cfg

    def _repr_mimebundle_(self, **kwargs: Any):

        if headless():  # batch run: a readable table instead of an inert widget
            params = self.base.to_params()
            rows = "".join(f"<tr><td>{k}</td><td>{v!r}</td></tr>" for k, v in params.items())
            text = "\n".join(f"{k:>16} = {v!r}" for k, v in params.items())
            return {"text/plain": text, "text/html": f"<table>{rows}</table>"}
        return self.box._repr_mimebundle_(**kwargs)


def current_notebook() -> str | None:
    """Stem of the notebook this kernel serves (JupyterLab sets JPY_SESSION_NAME), if known."""
    session = os.environ.get("JPY_SESSION_NAME", "")
    return Path(session).stem if session.endswith(".ipynb") else None


def panel(params: NotebookParams) -> Panel:
    """Show ``params`` as an editable form; read the result back with ``panel.value``."""
    return Panel(params)
