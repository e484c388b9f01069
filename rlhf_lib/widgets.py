"""The labeling widget: compare two completions by hand, one click per judgement.

    labeler = Labeler(DEFAULT_LABELS, pairs)        # pairs: (prompt, completion A, completion B)
    labeler                                          # shows it in the notebook

Every click appends one record to the JSONL file and fsyncs it before the screen
moves on, so closing the browser or killing the kernel loses nothing already
clicked. Opening a Labeler on the same file resumes after the pairs already
judged: `DEFAULT_LABELS` is `labels/my_labels.jsonl` at the top of the course (git
ignores it), the same file after a restart. An existing file with a malformed line
is refused with an error naming the line, and the file is left exactly as it was;
a last line cut off by a crash is moved aside to `<file>.torn` (the widget says so)
and the complete records are kept. "Undo" removes this session's last record, by its
id, and shows its pair again; records written by anyone else on the same file stay.
Pairs whose two completions are identical are left out (there is nothing to prefer).
An error inside a click is shown in the widget, not lost in a log.

A live figure shows how often your choices agree with the simulated annotator's
(noise-free) taste, so you can see how your taste compares with VADER's.

Keyboard: ipywidgets gives buttons no key events, so the labeler has a small text box instead.
Click into it once, then type a, b, t (tie), s (skip) or u (undo): each key acts at once and the box
clears itself.
"""

from __future__ import annotations

import html
from pathlib import Path

from rlhf_lib.feedback import PreferenceRecord, TornTailError, append_record, gold_preference, read_records, \
    remove_record, repair_torn_tail

BUTTONS = (("a", "A is better"), ("b", "B is better"), ("tie", "Tie"), ("skip", "Skip"))
KEYS = {"a": "a", "b": "b", "t": "tie", "s": "skip", "u": "undo"}
DEFAULT_LABELS = Path(__file__).resolve().parents[1] / "labels" / "my_labels.jsonl"


def pair_key(prompt: str, a: str, b: str) -> tuple[str, str, str]:
    return (prompt, a, b)


class Labeler:
    def __init__(self, path=DEFAULT_LABELS, pairs=(), annotator: str = "you", model: str = "course model",
                 reference=gold_preference):
        import ipywidgets as w

        self.path = Path(DEFAULT_LABELS if path is None else path).expanduser()
        self.annotator, self.model, self.reference = annotator, model, reference
        notices = []
        try:
            existing = read_records(self.path, allow_empty=True) if self.path.exists() else []  # may raise
        except TornTailError:  # a crash cut the last line: keep the good records, set the rest aside
            side = repair_torn_tail(self.path)
            notices.append(f"The last line of this file was cut off by an interrupted write; its bytes were moved "
                           f"to <code>{html.escape(str(side))}</code> and every complete record was kept.")
            existing = read_records(self.path, allow_empty=True)
        done = {pair_key(r["prompt"], r["completion_a"], r["completion_b"]) for r in existing}
        pairs = [tuple(p) for p in pairs]
        identical = [p for p in pairs if p[1] == p[2]]
        if identical:
            notices.append(f"{len(identical)} pair(s) with two identical completions were left out: "
                           "there is nothing to prefer.")
        pairs = [p for p in pairs if p[1] != p[2]]
        self.total = len(pairs)
        self.queue = [p for p in pairs if pair_key(*p) not in done]
        self.records = [r for r in existing if r["annotator"] == annotator]
        self._undo: list[tuple[str, tuple]] = []  # (record id, the pair) for this session

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
        self.message = w.HTML(" ".join(notices))
        self.widget = w.VBox([self.prompt_html, w.HBox([self.a_box, self.b_box]),
                              w.HBox(list(self.buttons.values()) + [self.undo_button, self.keys]), self.progress,
                              self.agreement, self.message])
        self._refresh()

    # ---- actions

    def choose(self, choice: str) -> None:
        """Record `choice` for the current pair (written and fsynced before returning)."""
        if not self.queue:
            return
        prompt, a, b = self.queue[0]
        record = PreferenceRecord(prompt, a, b, choice, self.annotator, self.model)
        if self._shown(lambda: append_record(self.path, record)):
            self._undo.append((record.id, self.queue.pop(0)))
            self.records.append(vars(record))
        self._refresh()

    def undo(self) -> None:
        """Remove this session's last record (by its id) from the file and show its pair again."""
        if not self._undo:
            return
        record_id, pair = self._undo[-1]
        removed = self._shown(lambda: remove_record(self.path, record_id))
        if removed is None:
            return
        self._undo.pop()
        if not removed:
            self.message.value = "That record was no longer in the file (removed elsewhere); its pair is shown again."
        self.records = [r for r in self.records if r.get("id") != record_id]
        self.queue.insert(0, pair)
        self._refresh()

    def _shown(self, action):
        """Run `action`; an error goes into the widget (a click handler's exception is lost otherwise)."""
        try:
            result = action()
        except Exception as err:  # any failure must reach the person clicking, whatever its type
            self.message.value = f"<b style='color:#b00'>Not saved: {html.escape(str(err))}</b>"
            return None
        self.message.value = ""
        return True if result is None else result

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
