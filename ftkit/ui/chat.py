"""A chat box in the notebook over the served model, through the same ``openai`` client
the measurements use (notebook 14)."""
from __future__ import annotations

from ftkit.deploy.client import ask


def chat_box(chat_client, model: str, system: str | None = None, max_tokens: int = 64):
    """A text box and a Send button; each question goes to the server and the answer is
    printed below with its time. Interactive only: a batch run shows the empty box."""
    import ipywidgets as w

    box = w.Text(placeholder="Ask the shop's assistant…", layout=w.Layout(width="70%"))
    button, out = w.Button(description="Send", button_style="primary"), w.Output()

    def send(_=None) -> None:
        question = box.value.strip()
        if not question:
            return
        box.value = ""
        try:
            reply = ask(chat_client, model, question, system, max_tokens)
            answer = f"{reply['answer']}  ({reply['seconds']:.1f} s)"
        except Exception as err:  # noqa: BLE001 - shown in the box, the kernel carries on
            answer = f"[{type(err).__name__}: {err}]"
        with out:
            print(f"you: {question}\nassistant: {answer}\n")

    button.on_click(send)
    return w.VBox([w.HBox([box, button]), out])


__all__ = ["chat_box"]
