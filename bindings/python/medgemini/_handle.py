"""Ownership of C handles: deterministic close(), finalizers as a safety net,
and borrowing so that a handle is never freed while another thread uses it."""
import contextlib
import threading
import weakref

from .errors import MisuseError


class HandleState:
    """Holds one C handle. close() frees it at once when nobody borrows it,
    otherwise when the last borrower returns. Never references its owner, so
    it can serve as a weakref.finalize callback."""

    def __init__(self, handle, free, what):
        self.handle = handle
        self._free = free
        self.what = what
        self.lock = threading.Lock()
        self.users = 0
        self.closed = False

    def _release(self):  # with self.lock held
        h, self.handle = self.handle, None
        if h:
            self.free_extra()
            self._free(h)

    def free_extra(self):
        pass

    def close(self):
        with self.lock:
            self.closed = True
            if self.users == 0:
                self._release()

    @contextlib.contextmanager
    def borrow(self):
        with self.lock:
            if self.closed or not self.handle:
                raise MisuseError("the %s is closed" % self.what)
            self.users += 1
            h = self.handle
        try:
            yield h
        finally:
            with self.lock:
                self.users -= 1
                if self.closed and self.users == 0:
                    self._release()


class Owned:
    """Base of the Python objects that own a C handle."""

    _state = None

    def _own(self, state):
        self._state = state
        self._finalizer = weakref.finalize(self, state.close)

    def close(self):
        """Frees the underlying C object now (later calls raise MisuseError).
        Safe to call more than once."""
        if self._state is not None:
            self._state.close()

    @property
    def closed(self):
        return self._state is None or self._state.closed

    def _borrow(self):
        if self._state is None:
            raise MisuseError("object is not initialised")
        return self._state.borrow()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
