"""Length-prefixed frames over a pair of pipes (never the worker's stdout).

A frame is ``b"GSF1"`` + u64 little-endian payload length + payload, where the payload is one
:mod:`grader.sandbox.encoding` message. The worker uses blocking pipes; the trusted side uses
non-blocking pipes with a deadline and an ``alive()`` probe, so a worker that stops reading or
writing (or dies while a grandchild still holds the pipe open) can never hang the grader.
"""

from __future__ import annotations

import errno
import os
import select
import struct
import time
from typing import Callable, Iterable, Optional, Union

import numpy as np

FRAME_MAGIC = b"GSF1"
_HEAD = struct.Struct("<4sQ")
_CHUNK = 1 << 20
_SLICE = 0.1  # seconds between liveness probes while waiting

Buffer = Union[bytes, bytearray, memoryview]


class ProtocolError(Exception):
    """The peer broke the framing (bad magic, oversized frame, ...)."""


class PeerClosed(ProtocolError):
    """The other end closed the pipe or its process died."""


#: the worker's exit status when its own ends of the pipes were closed under it (student code
#: closing file descriptors it did not open, e.g. ``os.closerange(3, 1024)``): sysexits'
#: EX_IOERR, so the client can say that instead of "os._exit(0)"
LOST_PIPES_EXIT = 74


class FrameTimeout(ProtocolError):
    """The deadline passed before the frame was completely read or written."""


def enlarge_pipe(fd: int, size: int = 1 << 20) -> None:
    """Bigger pipe buffers make large arrays cross faster; best effort (Linux only)."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except OSError:
        pass


def _wait(fd: int, events: int, deadline: Optional[float], alive: Optional[Callable[[], bool]]) -> None:
    poller = select.poll()
    poller.register(fd, events)
    while True:
        if deadline is None:
            slice_ = _SLICE if alive else None
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FrameTimeout()
            slice_ = min(left, _SLICE) if alive else left
        ready = poller.poll(None if slice_ is None else max(1, int(slice_ * 1000)))
        if ready:
            return
        if alive is not None and not alive():
            raise PeerClosed("the worker process died")


def write_frame(fd: int, parts: Iterable[Buffer], total: Optional[int] = None, *,
                deadline: Optional[float] = None, alive: Optional[Callable[[], bool]] = None) -> None:
    """Write one frame. ``fd`` may be blocking (worker) or non-blocking (trusted side)."""
    parts = list(parts)
    if total is None:
        total = sum(len(memoryview(p).cast("B")) for p in parts)
    for part in [_HEAD.pack(FRAME_MAGIC, total)] + parts:
        mv = memoryview(part).cast("B")
        pos = 0
        while pos < len(mv):
            try:
                pos += os.write(fd, mv[pos: pos + _CHUNK])
            except BlockingIOError:
                _wait(fd, select.POLLOUT, deadline, alive)
            except InterruptedError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise PeerClosed("the other end closed the pipe") from None
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.EBADF):
                    raise PeerClosed(str(exc)) from None
                raise


def _read_into(fd: int, mv: memoryview, deadline: Optional[float], alive: Optional[Callable[[], bool]], at_start: bool) -> bool:
    """Fill ``mv``; False on a clean EOF before the first byte (only when ``at_start``)."""
    pos = 0
    while pos < len(mv):
        try:
            n = os.readv(fd, [mv[pos: pos + _CHUNK]])
        except BlockingIOError:
            _wait(fd, select.POLLIN, deadline, alive)
            continue
        except InterruptedError:
            continue
        if n == 0:
            if at_start and pos == 0:
                return False
            raise PeerClosed("the other end closed the pipe in the middle of a message")
        pos += n
    return True


def _buffer(length: int) -> memoryview:
    """An uninitialised writable buffer: unlike bytearray(n) it is not zero-filled first, which
    for a 250 MB array saves a full pass of page faults."""
    return memoryview(np.empty(length, dtype=np.uint8)).cast("B")


def read_frame(fd: int, *, max_bytes: int, deadline: Optional[float] = None,
               alive: Optional[Callable[[], bool]] = None) -> Optional[memoryview]:
    """Read one frame's payload into a fresh writable buffer; None on EOF between frames."""
    head = bytearray(_HEAD.size)
    if not _read_into(fd, memoryview(head), deadline, alive, at_start=True):
        return None
    magic, length = _HEAD.unpack(head)
    if magic != FRAME_MAGIC:
        raise ProtocolError("bad frame magic (the stream is corrupted)")
    if length > max_bytes:
        raise ProtocolError(f"frame of {length} bytes exceeds the {max_bytes}-byte limit")
    buf = _buffer(length)
    _read_into(fd, buf, deadline, alive, at_start=False)
    return buf


def read_frame_header(fd: int) -> Optional[int]:
    """Blocking: the next frame's length, or None on EOF (used by the worker to drain frames)."""
    head = bytearray(_HEAD.size)
    if not _read_into(fd, memoryview(head), None, None, at_start=True):
        return None
    magic, length = _HEAD.unpack(head)
    if magic != FRAME_MAGIC:
        raise ProtocolError("bad frame magic (the stream is corrupted)")
    return length


def read_exact(fd: int, length: int, discard: bool = False) -> Optional[memoryview]:
    """Blocking: read ``length`` bytes (or skip them when ``discard``)."""
    if discard:
        scratch = bytearray(min(length, _CHUNK) or 1)
        left = length
        while left:
            n = os.readv(fd, [memoryview(scratch)[: min(left, len(scratch))]])
            if n == 0:
                raise PeerClosed("EOF while draining a frame")
            left -= n
        return None
    buf = _buffer(length)
    _read_into(fd, buf, None, None, at_start=False)
    return buf
