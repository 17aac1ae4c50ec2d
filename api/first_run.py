"""The first-run token file does not outlive its purpose.

On an empty database the service writes a therapist token to ``first-run-token.txt`` (mode
0600) so that someone can sign in and make real tokens. That file is a standing credential on
disk: it is deleted as soon as its token is first used (any authenticated request or sign-in)
or ``IGRT_FIRST_RUN_TOKEN_TTL_S`` after it was written (checked by a timer, and at every start),
whichever comes first. The token itself stays valid until revoked (``igrt token revoke``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from api.core.logging import log_event

__all__ = ["FirstRunFile"]


class FirstRunFile:
    """The first-run token file and the id of its token, once known.

    Parameters
    ----------
    path : Path
        The file.
    ttl_s : float
        Its lifetime after it was written, s.
    """

    def __init__(self, path: Path, ttl_s: float) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self.token_id: str | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def watch(self, token_id: str) -> None:
        """The file holds ``token_id``'s token: delete it on first use or when stale."""
        self.token_id = token_id
        try:
            age_s = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return
        if age_s >= self.ttl_s:
            self.remove("expired")
            return
        self.cancel()
        self._timer = threading.Timer(self.ttl_s - age_s, self.remove, args=("expired",))
        self._timer.daemon = True
        self._timer.start()

    def used_by(self, token_id: str) -> None:
        """Called on every authenticated request: the first use of the token removes the file."""
        if self.token_id is not None and token_id == self.token_id:
            self.remove("used")

    def remove(self, why: str) -> None:
        """Delete the file (once)."""
        with self._lock:
            if self.token_id is None:
                return
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            else:
                log_event("first-run token file deleted", reason=why, token_id=self.token_id)
            self.token_id = None
        self.cancel()

    def cancel(self) -> None:
        """Stop the timer (at shutdown)."""
        timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()
