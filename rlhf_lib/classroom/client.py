"""Label on a class's server from Python (a notebook on JupyterHub, a script), with the standard library only.

    client = ClassroomClient("http://teacher-machine:8000", "Ada")
    pair = client.next_pair()              # {"pair_id", "prompt", "completion_a", "completion_b", "labeled"} or None
    client.label(pair["pair_id"], "a")     # returns once the server has committed it
    client.undo()                          # withdraws Ada's last label; next_pair() shows that pair again

A label gets a fresh label_id, and a post that got no answer (the server restarting, a dropped
connection) is sent again with the same label_id, so it is stored exactly once.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import quote


class ClassroomError(RuntimeError):
    """The server refused a request; `status` is its HTTP status, the message is the server's."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


class ClassroomClient:
    def __init__(self, url: str, annotator: str, timeout: float = 10.0, retries: int = 20, backoff: float = 0.25):
        self.url, self.annotator = url.rstrip("/"), annotator
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    def next_pair(self) -> dict | None:
        """The next pair to judge, or None when this annotator has seen every pair."""
        pair = self._call("GET", f"/api/pair?annotator={quote(self.annotator)}")
        return None if pair["pair_id"] is None else pair

    def label(self, pair_id: int, choice: str, label_id: str | None = None) -> dict:
        """Record `choice` ("a", "b", "tie" or "skip") for the pair; returns the server's acknowledgement."""
        body = dict(pair_id=pair_id, annotator=self.annotator, choice=choice, label_id=label_id or uuid.uuid4().hex)
        return self._call("POST", "/api/label", body)

    def undo(self, label_id: str | None = None) -> dict:
        """Withdraw this annotator's last label (or the one named)."""
        body = dict(annotator=self.annotator) if label_id is None else dict(annotator=self.annotator, label_id=label_id)
        return self._call("POST", "/api/undo", body)

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url + path, data=data, method=method,
                                             headers={"content-type": "application/json"} if data else {})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as err:  # the server answered: no point in asking again
                try:
                    message = json.loads(err.read()).get("error", err.reason)
                except (ValueError, AttributeError):
                    message = err.reason
                raise ClassroomError(err.code, message) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError):
                if attempt == self.retries:
                    raise
                time.sleep(self.backoff * min(attempt + 1, 8))
        raise AssertionError("unreachable")
