"""The labeling widget: compare two completions by hand, one click per judgement.

    labeler = Labeler("my_labels.jsonl", pairs)      # pairs: (prompt, completion A, completion B)
    labeler                                          # shows it in the notebook

Every click appends one record to the JSONL file and fsyncs it before the screen
moves on, so closing the browser or killing the kernel loses nothing already
clicked. Opening a Labeler on the same file resumes after the pairs already
judged. An existing file with a malformed line is refused with an error naming
the line, and the file is left exactly as it was. "Undo" removes the last record
of this session from the file and shows its pair again.

A live figure shows how often your choices agree with the simulated annotator's
(noise-free) taste, so you can see how your taste compares with VADER's.

Keyboard: ipywidgets gives buttons no key events, so the labeler has a small text box instead.
Click into it once, then type a, b, t (tie), s (skip) or u (undo): each key acts at once and the box
clears itself.
"""

from __future__ import annotations

import html
from pathlib import Path

from rlhf_lib.feedback import PreferenceRecord, append_record, gold_preference, read_records, undo_last

BUTTONS = (("a", "A is better"), ("b", "B is better"), ("tie", "Tie"), ("skip", "Skip"))
KEYS = {"a": "a", "b": "b", "t": "tie", "s": "skip", "u": "undo"}


def pair_key(prompt: str, a: str, b: str) -> tuple[str, str, str]:
    return (prompt, a, b)


class Labeler:
    def __init__(self, path, pairs, annotator: str = "you", model: str = "course model", reference=gold_preference):
        import ipywidgets as w

        self.path = Path(path)
        self.annotator, self.model, self.reference = annotator, model, reference
        existing = read_records(self.path, allow_empty=True) if self.path.exists() else []  # may raise: file untouched
        done = {pair_key(r["prompt"], r["completion_a"], r["completion_b"]) for r in existing}
        self.total = len(pairs)
        self.queue = [tuple(p) for p in pairs if pair_key(*p) not in done]
        self.records = [r for r in existing if r["annotator"] == annotator]
        self._undo: list[tuple[int, tuple]] = []  # (byte offset of the line, the pair) for this session

        self.prompt_html = w.HTML()
        self.a_html, self.b_html = w.HTML(), w.HTML()
        pane = w.Layout(width="48%", border="1px solid #bbb", padding="8px", margin="4px")
        self.a_box = w.VBox([w.HTML("<b>A</b>"), self.a_html], layout=pane)
        self.b_box = w.VBox([w.HTML("<b>B</b>"), self.b_html], layout=pane)
        self.buttons = {c: w.Button(description=label, tooltip=f"record '{c}'") for c, label in BUTTONS}
        for choice, button in self.buttons.items():
            button.on_click(lambda _, c=choice: self.choose(c))
        self.undo_button = w.Button(description="Undo", icon="undo", tooltip="remove the last record of this session")
        self.undo_button.on_click(lambda _: self.undo())
        self.keys = w.Text(placeholder="keys: a, b, t, s, u", description="keyboard:", continuous_update=True,
                           layout=w.Layout(width="260px"))
        self.keys.observe(self._on_keys, names="value")
        self.progress = w.HTML()
        self.agreement = w.HTML()
        self.widget = w.VBox([self.prompt_html, w.HBox([self.a_box, self.b_box]),
                              w.HBox(list(self.buttons.values()) + [self.undo_button, self.keys]), self.progress,
                              self.agreement])
        self._refresh()

    # ---- actions

    def choose(self, choice: str) -> None:
        """Record `choice` for the current pair (written and fsynced before returning)."""
        if not self.queue:
            return
        prompt, a, b = self.queue[0]
        record = PreferenceRecord(prompt, a, b, choice, self.annotator, self.model)
        offset = append_record(self.path, record)
        self._undo.append((offset, self.queue.pop(0)))
        self.records.append(vars(record))
        self._refresh()

    def undo(self) -> None:
        """Remove this session's last record from the file and show its pair again."""
        if not self._undo:
            return
        offset, pair = self._undo.pop()
        undo_last(self.path, offset)
        self.records.pop()
        self.queue.insert(0, pair)
        self._refresh()

    def _on_keys(self, change) -> None:
        typed = change["new"]
        if not typed:
            return
        self.keys.value = ""  # clear first: the next key arrives as a fresh one-letter value
        for key in typed.lower():
            action = KEYS.get(key)
            if action == "undo":
                self.undo()
            elif action is not None:
                self.choose(action)

    # ---- display

    def agreement_counts(self) -> tuple[int, int]:
        """(agreeing, compared): your "a"/"b" choices that match the reference taste."""
        agree = compared = 0
        for r in self.records:
            if r["choice"] in ("a", "b"):
                taste = self.reference(r["prompt"], r["completion_a"], r["completion_b"])
                if taste != "tie":
                    compared += 1
                    agree += taste == r["choice"]
        return agree, compared

    def _refresh(self) -> None:
        done = self.total - len(self.queue)
        self.progress.value = f"<b>{done} / {self.total}</b> pairs judged; saved to <code>{html.escape(str(self.path))}</code>"
        agree, compared = self.agreement_counts()
        self.agreement.value = (f"agreement with the simulated annotator's taste: {agree}/{compared} "
                                f"({agree / compared:.0%})" if compared else "agreement: no A/B choices yet")
        for button in self.buttons.values():
            button.disabled = not self.queue
        self.undo_button.disabled = not self._undo
        if self.queue:
            prompt, a, b = self.queue[0]
            self.prompt_html.value = f"<h4>Which continuation of <i>{html.escape(prompt)}</i> is better?</h4>"
            self.a_html.value = f"{html.escape(prompt)}<b>{html.escape(a)}</b>"
            self.b_html.value = f"{html.escape(prompt)}<b>{html.escape(b)}</b>"
        else:
            self.prompt_html.value = "<h4>All pairs judged. Thank you!</h4>"
            self.a_html.value = self.b_html.value = ""

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
