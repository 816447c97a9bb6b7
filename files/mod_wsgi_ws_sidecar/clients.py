"""Who may open one more WebSocket: the client cap of a built-in sidecar.

A sidecar of one process counts its clients in memory (LocalCount). A
sidecar of several processes (they share one TCP port with SO_REUSEPORT, and
the kernel spreads new connections over them) keeps the count in a small
file all of them map (SharedCount), so that `max_clients` holds for the
sidecar as a whole, not per process:

- the file has SLOTS counters; each process owns one, claimed with a POSIX
  record lock on its bytes, which the kernel releases when the process ends,
  however it ends;
- admitting and releasing take a record lock on the file's first byte, so
  the sum read and the increment are one step for every process;
- the count of a slot whose owner is gone (killed, or an old Apache
  generation) is cleared by the next process that claims a slot, and by any
  process that finds the sidecar full, so a dead process never holds places.

Besides the cap, every process refuses a client it could not give a file
descriptor: its own open-files limit (read at each admission, so a limit
lowered on the running process counts), less a reserve for what the process
needs itself, bounds its own count.

Standard library only; Linux (fcntl record locks on a tmpfs file).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import resource
import struct
from collections.abc import Iterator

# Slots in a shared file: the processes of one Apache generation and the
# ones of the generation before it, still ending after a reload.
SLOTS = 64
MAX_PROCESSES = SLOTS // 2
_HEADER = 8  # the byte every admission locks, padded to the counters' alignment
_SLOT = struct.Struct("=q")
_ALL = struct.Struct(f"={SLOTS}q")
FILE_SIZE = _HEADER + _ALL.size
# Descriptors a process keeps for itself beyond its clients: its listener,
# logs and mod_wsgi's pipes, the counter and client-count files, Python's
# own, and Redis: a push sidecar's relay and its bounded pool of at most
# push_sidecar.REDIS_POOL more (a dashboard with a fleet: one).
FD_RESERVE = 256

log = logging.getLogger("sidecar")


def fd_room(reserve: int = FD_RESERVE) -> int:
    """How many clients this process can hold a descriptor for."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(1, soft - reserve)


class LocalCount:
    """The cap of a sidecar of one process: a count in memory."""

    slot = 0  # the only process

    def __init__(self, max_clients: int, room: int | None = None) -> None:
        self.max_clients = max_clients
        # None: the open-files limit's, read at each admission.
        self.fixed_room = room
        self.mine = 0
        self.warned = False

    @property
    def room(self) -> int:
        return fd_room() if self.fixed_room is None else self.fixed_room

    def admit(self) -> str | None:
        """Take a place, or say why not ("cap" or "files")."""
        if self.mine >= self.room:
            if not self.warned:  # once each time it fills, not once per refused client
                log.warning(
                    "refusing clients: this process holds %d, as many as its open-files"
                    " limit allows",
                    self.mine,
                )
                self.warned = True
            return "files"
        self.warned = False  # room again: the next time it is full is logged too
        return None if self._take() else "cap"

    def _take(self) -> bool:
        if self.mine >= self.max_clients:
            return False
        self.mine += 1
        return True

    def release(self) -> None:
        self.mine -= 1

    def close(self) -> None:
        pass


class SharedCount(LocalCount):
    """The cap of a sidecar of several processes, kept in the file `path`."""

    def __init__(self, path: str, max_clients: int, room: int | None = None) -> None:
        super().__init__(max_clients, room)
        self._closed = False
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(self._fd).st_size < FILE_SIZE:
                os.ftruncate(self._fd, FILE_SIZE)
            self._map = mmap.mmap(self._fd, FILE_SIZE)
            self.slot = self._claim()
        except BaseException:
            os.close(self._fd)
            raise

    def _offset(self, slot: int) -> int:
        return _HEADER + slot * _SLOT.size

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, 0)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, 0)

    def _owned_elsewhere(self, slot: int) -> bool:
        """Does a live process hold this slot? (Ours never counts: a process's
        own record locks never conflict with its own.)"""
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, _SLOT.size, self._offset(slot))
        except OSError:
            return True
        fcntl.lockf(self._fd, fcntl.LOCK_UN, _SLOT.size, self._offset(slot))
        return False

    def _reap(self, skip: int | None) -> None:
        """Clear the counts of slots no live process owns (under the lock)."""
        counts = _ALL.unpack_from(self._map, _HEADER)
        for slot, count in enumerate(counts):
            if count and slot != skip and not self._owned_elsewhere(slot):
                _SLOT.pack_into(self._map, self._offset(slot), 0)

    def _claim(self) -> int:
        with self._locked():
            for slot in range(SLOTS):
                offset = self._offset(slot)
                try:
                    fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, _SLOT.size, offset)
                except OSError:
                    continue
                _SLOT.pack_into(self._map, offset, 0)
                self._reap(skip=slot)
                return slot
        raise RuntimeError(f"all {SLOTS} client-count slots are taken by live processes")

    def total(self) -> int:
        """Clients of every process of the sidecar."""
        return sum(_ALL.unpack_from(self._map, _HEADER))

    def _take(self) -> bool:
        with self._locked():
            if self.total() >= self.max_clients:
                self._reap(skip=self.slot)
                if self.total() >= self.max_clients:
                    return False
            self.mine += 1
            _SLOT.pack_into(self._map, self._offset(self.slot), self.mine)
        return True

    def release(self) -> None:
        if self._closed:  # a handler ending after the app's cleanup
            return
        with self._locked():
            self.mine -= 1
            _SLOT.pack_into(self._map, self._offset(self.slot), self.mine)

    def close(self) -> None:
        """Give the slot back (a process that ends gives it back anyway)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, ValueError):
            with self._locked():
                _SLOT.pack_into(self._map, self._offset(self.slot), 0)
            self._map.close()
        os.close(self._fd)


def slot_counts(path: str) -> tuple[int, ...]:
    """Each slot's count in a shared file, as its processes last wrote them."""
    with open(path, "rb") as fh:
        return _ALL.unpack_from(fh.read(FILE_SIZE), _HEADER)


def client_count(
    max_clients: int, clients_file: str | None, room: int | None = None
) -> LocalCount | SharedCount:
    """The cap for a sidecar's settings: shared when it names a file."""
    if clients_file is None:
        return LocalCount(max_clients, room)
    return SharedCount(clients_file, max_clients, room)
