"""Background WAL checkpoints for the run store, so a commit never pays for one.

SQLite's automatic checkpoint runs inside the commit that crosses the threshold (1000 pages):
measured here, every ~15th ``record_turns`` of 50 turns took 12-16 ms instead of ~1.3 ms, more
than the ~5 ms a call may take inline on the host loop. So the store turns automatic
checkpoints off on its own connection and this thread, with a connection of its own, runs a
``PASSIVE`` checkpoint (which never blocks writers or readers) shortly after writes.

The WAL only restarts from its beginning when a checkpoint has copied *every* frame before the
next write begins. Under a steady stream of writes a concurrent checkpoint never quite catches
up and the WAL would grow without bound. So while the WAL is past ``restart_frames`` and still
growing, a few more passes follow (each copies only what was written during the previous one),
and if writes still outpace them, a last pass runs holding the store's write lock: it copies
the little that remains, and the next commit restarts the WAL. Closing the
store's last connection still checkpoints and removes the WAL, as SQLite always does.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Protocol

log = logging.getLogger("carnb.runs")


class Lock(Protocol):
    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...
    def release(self) -> None: ...


class Checkpointer:
    """One daemon thread; :meth:`poke` after a commit; idempotent :meth:`start`/:meth:`close`."""

    def __init__(
        self,
        path: str,
        writer_lock: Lock,
        *,
        delay_s: float = 0.1,
        restart_frames: int = 1000,
        unlocked_passes: int = 3,
        timeout_s: float = 5.0,
    ) -> None:
        self.path = path
        self.writer_lock = writer_lock  # held by every write of the store
        self.delay_s = delay_s  # coalesce the writes of this long into one checkpoint
        self.restart_frames = restart_frames
        self.unlocked_passes = unlocked_passes
        self.timeout_s = timeout_s
        self.checkpoints = 0  # completed checkpoint passes (for tests and diagnostics)
        self.locked_passes = 0  # of which under the writer lock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Checkpointer:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="carnb-runs-checkpoint", daemon=True
            )
            self._thread.start()
        return self

    def poke(self) -> None:
        self._wake.set()

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(self.timeout_s + 5)
        if thread.is_alive():
            log.warning("run store checkpoint thread did not stop within %.0f s", self.timeout_s)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=self.timeout_s)
        try:
            while not self._stop.is_set():
                self._wake.wait()
                if self._stop.wait(self.delay_s):
                    break
                self._wake.clear()
                try:
                    self._checkpoint(conn)
                except sqlite3.Error as exc:  # the next poke tries again
                    log.warning("run store checkpoint of %s failed: %s", self.path, exc)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL into the database; make sure a large WAL gets restarted.

        Unlocked passes first (each copies what was written during the previous one); if the
        WAL is still large and still growing after ``unlocked_passes``, one last pass under the
        writer lock finishes the job, so the next commit starts the WAL from its beginning.
        """
        previous = -1
        for _ in range(self.unlocked_passes):
            _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if frames < self.restart_frames or (frames == previous and copied == frames):
                return  # small enough, or nothing written since the last pass: all copied
            previous = frames
        # Never wait long for the lock (the store may be closing and waiting for this thread).
        if self._stop.is_set() or not self.writer_lock.acquire(timeout=self.delay_s):
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            self.writer_lock.release()
        self.checkpoints += 1
        self.locked_passes += 1
