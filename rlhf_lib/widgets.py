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
(noise-free) taste, so you can see how your taste compares with the reading person's.

Rating mode scores one text at a time from 1 to 5 (`mode="rate"`; items are (prompt, completion)):

    rater = Labeler(DEFAULT_LABELS, texts, mode="rate")

Each click appends a rating record to the same kind of file (see rlhf_lib.feedback); undo and resume
work as for pairs. Keys 1-5 rate, u undoes.

A class on a shared server (rlhf_lib.classroom) labels from the notebook with the same widget:

    labeler = Labeler.from_server("http://teacher-machine:8000", "Ada")

Pairs then come one at a time from the server, each click is posted (and committed there before the
screen moves on), and undo withdraws the label on the server. Nothing is written locally. A server that
refuses or does not answer shows "Not saved: ..." in the widget and the pair stays on screen.

Keyboard: ipywidgets gives buttons no key events, so the labeler has a small text box instead.
Click into it once, then type a, b, t (tie), s (skip) or u (undo): each key acts at once and the box
clears itself.
"""

from __future__ import annotations

import html
from pathlib import Path

from rlhf_lib.feedback import (
    PreferenceRecord,
    RatingRecord,
    TornTailError,
    append_record,
    gold_preference,
    is_rating,
    read_records,
    remove_record,
    repair_torn_tail,
)

BUTTONS = (("a", "A is better"), ("b", "B is better"), ("tie", "Tie"), ("skip", "Skip"))
KEYS = {"a": "a", "b": "b", "t": "tie", "s": "skip", "u": "undo"}
RATE_BUTTONS = tuple((str(k), f"{k}" + (" (worst)" if k == 1 else " (best)" if k == 5 else "")) for k in range(1, 6))
RATE_KEYS = {**{str(k): str(k) for k in range(1, 6)}, "u": "undo"}
MODES = ("compare", "rate")
DEFAULT_LABELS = Path(__file__).resolve().parents[1] / "labels" / "my_labels.jsonl"


def pair_key(prompt: str, a: str, b: str) -> tuple[str, str, str]:
    return (prompt, a, b)


class Labeler:
    def __init__(self, path=DEFAULT_LABELS, pairs=(), annotator: str = "you", model: str = "course model",
                 reference=gold_preference, *, mode: str = "compare", server: str | None = None):
        import ipywidgets as w

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if server is not None and mode != "compare":
            raise ValueError("mode='rate' works on a file only; a classroom server collects pairwise choices")
        if server is not None and pairs:
            raise ValueError("with server=..., the pairs come from the server: leave 'pairs' out")
        self.mode, self.server, self.client = mode, server, None
        self.annotator, self.model, self.reference = annotator, model, reference
        self._undo: list[tuple[str, tuple]] = []  # (record or label id, the item) for this session
        if server is not None:
            from rlhf_lib.classroom.client import ClassroomClient

            self.path = None
            self.client = ClassroomClient(server, annotator, timeout=10.0, retries=2)
            self.total, self.queue, self.records, self.labeled, self._pair_id = None, [], [], 0, None
            self._build(w, [])
            self._shown(self._fetch)
            self._refresh()
            return
        self.path = Path(DEFAULT_LABELS if path is None else path).expanduser()
        notices = []
        try:
            existing = read_records(self.path, allow_empty=True) if self.path.exists() else []  # may raise
        except TornTailError:  # a crash cut the last line: keep the good records, set the rest aside
            side = repair_torn_tail(self.path)
            notices.append(f"The last line of this file was cut off by an interrupted write; its bytes were moved "
                           f"to <code>{html.escape(str(side))}</code> and every complete record was kept.")
            existing = read_records(self.path, allow_empty=True)
        if mode == "rate":
            rated = [r for r in existing if is_rating(r)]
            done = {(r["prompt"], r["completion"]) for r in rated}
            items = [tuple(t) for t in pairs]
            if any(len(t) != 2 for t in items):
                raise ValueError("mode='rate' takes (prompt, completion) items, one text each")
            self.total = len(items)
            self.queue = [t for t in items if t not in done]
            self.records = [r for r in rated if r["annotator"] == annotator]
            self._build(w, notices)
            self._refresh()
            return
        existing = [r for r in existing if not is_rating(r)]
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
        self._build(w, notices)
        self._refresh()

    @classmethod
    def from_server(cls, url: str, annotator: str, **kwargs) -> Labeler:
        """The widget on a classroom server: pairs from it, each click posted to it, undo on it."""
        return cls(None, (), annotator, server=url, **kwargs)

    def _build(self, w, notices: list[str]) -> None:
        self.prompt_html = w.HTML()
        self.a_html, self.b_html = w.HTML(), w.HTML()
        pane = w.Layout(width="48%", border="1px solid #bbb", padding="8px", margin="4px")
        self.a_box = w.VBox([w.HTML("<b>A</b>"), self.a_html], layout=pane)
        self.b_box = w.VBox([w.HTML("<b>B</b>"), self.b_html], layout=pane)
        self.buttons = {c: w.Button(description=label, tooltip=f"record '{c}'")
                        for c, label in (RATE_BUTTONS if self.mode == "rate" else BUTTONS)}
        for choice, button in self.buttons.items():
            button.on_click(lambda _, c=choice: self.choose(c))
        self.undo_button = w.Button(description="Undo", icon="undo", tooltip="remove the last record of this session")
        self.undo_button.on_click(lambda _: self.undo())
        self.keys = w.Text(placeholder="keys: 1-5, u" if self.mode == "rate" else "keys: a, b, t, s, u",
                           description="keyboard:", continuous_update=True, layout=w.Layout(width="260px"))
        self.keys.observe(self._on_keys, names="value")
        self.progress = w.HTML()
        self.agreement = w.HTML()
        self.message = w.HTML(" ".join(notices))
        self.widget = w.VBox([self.prompt_html, w.HBox([self.a_box, self.b_box]),
                              w.HBox(list(self.buttons.values()) + [self.undo_button, self.keys]), self.progress,
                              self.agreement, self.message])
        if self.mode == "rate":
            self.b_box.layout.display = "none"

    # ---- actions

    def choose(self, choice: str) -> None:
        """Record `choice` for the current pair (written and fsynced before returning)."""
        if not self.queue:
            return
        if self.client is not None:
            return self._post(choice)
        if self.mode == "rate":
            return self._rate(choice)
        prompt, a, b = self.queue[0]
        record = PreferenceRecord(prompt, a, b, choice, self.annotator, self.model)
        if self._shown(lambda: append_record(self.path, record)):
            self._undo.append((record.id, self.queue.pop(0)))
            self.records.append(vars(record))
        self._refresh()

    def _rate(self, rating) -> None:
        prompt, completion = self.queue[0]
        record = self._shown(lambda: RatingRecord(prompt, completion, int(rating), self.annotator, self.model))
        if record is not None and self._shown(lambda: append_record(self.path, record)):
            self._undo.append((record.id, self.queue.pop(0)))
            self.records.append(vars(record))
        self._refresh()

    def _post(self, choice: str) -> None:
        """Post `choice` for the server's pair; on success show the server's next pair."""
        pair = self.queue[0]
        ack = self._shown(lambda: self.client.label(self._pair_id, choice))
        if ack is not None:
            self._undo.append((ack["label_id"], pair))
            self.records.append(dict(prompt=pair[0], completion_a=pair[1], completion_b=pair[2], choice=choice,
                                     id=ack["label_id"]))
            self.labeled = ack.get("labeled", self.labeled + 1)
            self.queue = []
            self._shown(self._fetch)
        self._refresh()

    def _fetch(self) -> None:
        """Ask the server for this annotator's next pair (none left: an empty queue)."""
        pair = self.client.next_pair()
        self.queue = [] if pair is None else [(pair["prompt"], pair["completion_a"], pair["completion_b"])]
        self._pair_id = None if pair is None else pair["pair_id"]
        if pair is not None:
            self.labeled = pair.get("labeled", self.labeled)

    def undo(self) -> None:
        """Remove this session's last record (by its id) from the file, or withdraw it on the server, and
        show its pair again."""
        if not self._undo:
            return
        record_id, pair = self._undo[-1]
        if self.client is not None:
            if self._shown(lambda: self.client.undo(record_id)) is None:
                return
            self._undo.pop()
            self.records = [r for r in self.records if r.get("id") != record_id]
            self._shown(self._fetch)  # the server shows the withdrawn pair again
            self._refresh()
            return
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
            action = (RATE_KEYS if self.mode == "rate" else KEYS).get(key)
            if action == "undo":
                self.undo()
            elif action is not None:
                self.choose(action)

    # ---- display

    def agreement_counts(self) -> tuple[int, int]:
        """(agreeing, compared): your "a"/"b" choices that match the reference taste."""
        agree = compared = 0
        for r in self.records:
            if r.get("choice") in ("a", "b"):
                taste = self.reference(r["prompt"], r["completion_a"], r["completion_b"])
                if taste != "tie":
                    compared += 1
                    agree += taste == r["choice"]
        return agree, compared

    def _refresh(self) -> None:
        if self.client is not None:
            self.progress.value = (f"<b>{self.labeled}</b> pairs judged by <b>{html.escape(self.annotator)}</b>; "
                                   f"posted to <code>{html.escape(self.client.url)}</code>")
        elif self.mode == "rate":
            done = self.total - len(self.queue)
            self.progress.value = (f"<b>{done} / {self.total}</b> texts rated; saved to "
                                   f"<code>{html.escape(str(self.path))}</code>")
        if self.mode == "rate":
            ratings = [r["rating"] for r in self.records]
            self.agreement.value = (f"your mean rating: {sum(ratings) / len(ratings):.2f} over {len(ratings)} texts"
                                    if ratings else "no ratings yet")
            for button in self.buttons.values():
                button.disabled = not self.queue
            self.undo_button.disabled = not self._undo
            if self.queue:
                prompt, completion = self.queue[0]
                self.prompt_html.value = "<h4>How good is this text? 1 (worst) to 5 (best)</h4>"
                self.a_html.value = f"{html.escape(prompt)}<b>{html.escape(completion)}</b>"
            else:
                self.prompt_html.value = "<h4>All texts rated. Thank you!</h4>"
                self.a_html.value = ""
            return
        self._refresh_compare()

    def _refresh_compare(self) -> None:
        if self.client is None:
            done = self.total - len(self.queue)
            self.progress.value = (f"<b>{done} / {self.total}</b> pairs judged; saved to "
                                   f"<code>{html.escape(str(self.path))}</code>")
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
