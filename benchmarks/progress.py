"""A text progress bar on stderr (no dependency).

On a terminal it redraws one line (``\\r``); otherwise (a log file, CI) it prints one line per
case and, during a long case (torch.compile), one line every 15 s, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, width: int = 24, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.done = 0
        self.label = ""
        self._last_draw = 0.0
        self._last_line = ""
        self.log_every_s = 15.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def begin(self, label: str) -> None:
        """A new case starts."""
        self.label = label
        self.update("", force=True)

    def update(self, status: str, fraction: float = 0.0, force: bool = False) -> None:
        """Status of the current case; ``fraction`` of it done (for the bar)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if not force and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            self.stream.write("\r" + self._line(status, fraction)[: self._columns()].ljust(self._columns()))
            self.stream.flush()
        elif force or now - self._last_draw >= self.log_every_s:
            # Not a terminal: one line per case, and one every log_every_s while a case lasts.
            line = self._line(status, fraction)
            if line != self._last_line:
                self.stream.write(line + "\n")
                self.stream.flush()
                self._last_line = line
                self._last_draw = now

    def finish_case(self) -> None:
        self.done += 1

    def close(self, message: str = "") -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + " " * self._columns() + "\r")
        if message:
            self.stream.write(message + "\n")
        self.stream.flush()

    def _line(self, status: str, fraction: float) -> str:
        frac = min(1.0, (self.done + min(max(fraction, 0.0), 1.0)) / self.total)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        mins, secs = divmod(int(self.elapsed()), 60)
        tail = f" {status}" if status else ""
        current = min(self.done + 1, self.total)
        return f"[{bar}] {current}/{self.total} {mins:02d}:{secs:02d} {self.label}{tail}"

    @staticmethod
    def _columns() -> int:
        try:
            import shutil

            return max(40, shutil.get_terminal_size((120, 20)).columns - 1)
        except Exception:
            return 119
