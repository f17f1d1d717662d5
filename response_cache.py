"""A store of encoded answers: each built once however many ask at the same time, all dropped when the catalogue
revision changes, bounded in memory and on disk, with a bound on the worker threads uncached work may take."""
import contextlib
import hashlib
import io
import os
import tempfile
import threading
import time
from collections import OrderedDict, namedtuple

from models import catalogue_revision, connection
from settings import MiB

ENTRY_OVERHEAD = 1792  # bytes an entry costs beside its body and header text (tracemalloc: ~1.9 KB in all)


class Busy(Exception):
    """No worker can be spared for uncached work now: the client should try again in a moment."""


class Workload:
    """Uncached work may hold at most `workers` threads (waiting up to `admit_wait` s for one), so cheap requests
    always find a free one; of those, `renders` render at once (the GIL runs one), the rest wait up to `wait` s
    (long: the waiters are within the cap, so waiting costs cheap requests nothing). At most `streams` answers
    are sent from files at once: Waitress's one I/O thread sends them, and every other connection waits its turn."""

    def __init__(self, workers, renders, wait=10.0, admit_wait=0.05, streams=2):
        self.workers, self.renders = threading.BoundedSemaphore(workers), threading.BoundedSemaphore(renders)
        self.streams = threading.BoundedSemaphore(streams)
        self.wait, self.admit_wait = wait, admit_wait

    @classmethod
    def for_threads(cls, threads):
        """Leave two of the server's threads to cached answers and other routes; render on as many as CPUs."""
        workers = max(1, threads - 2)
        return cls(workers, min(workers, os.cpu_count() or 1))

    def worker(self):
        return held(self.workers, self.admit_wait)

    def render(self):
        return held(self.renders, self.wait)


@contextlib.contextmanager
def held(slots, timeout):
    """One of the slots for the block, waiting up to timeout s for it; Busy if none frees."""
    if not slots.acquire(timeout=timeout):
        raise Busy
    try:
        yield
    finally:
        slots.release()


class Entry(namedtuple('Entry', 'body path size headers wsgi_headers')):
    """A cached answer: its body in memory (bytes) or in a file (path), and its headers twice over: a dict for
    Bottle and the WSGI list for answers served ahead of it."""

    @property
    def memory(self):
        header_text = sum(len(name) + len(value) for name, value in self.headers.items())
        return ENTRY_OVERHEAD + header_text + (len(self.body) if self.path is None else 0)

    @property
    def disk(self):
        return 0 if self.path is None else self.size

    def answer(self, streams):
        """(body, headers, WSGI headers); the body is the bytes, or the file opened for this response alone,
        holding one of the streams until it is closed. Busy when every stream is taken."""
        if self.path is None:
            return self.body, self.headers, self.wsgi_headers
        if not streams.acquire(blocking=False):
            raise Busy
        return StreamedFile(self.path, streams), self.headers, self.wsgi_headers


class StreamedFile(io.FileIO):
    """A cached answer's file, open for one response; closing it (Waitress does when it is sent) frees its stream."""

    def __init__(self, path, streams):
        super().__init__(path, 'rb')
        self.streams = streams

    def close(self):
        if not self.closed:
            self.streams.release()
        super().close()


class ResponseCache:
    """Encoded catalogue answers, all dropped when the catalogue revision changes (checked every check_every s),
    the least recently used dropped to stay within `budget` bytes of memory and `disk_budget` bytes of files.
    A body over budget/64 bytes is written to a file in a private directory and sent from there."""

    def __init__(self, check_every, workload, budget, disk_budget=1024 * MiB):
        self.check_every, self.workload, self.budget, self.disk_budget = check_every, workload, budget, disk_budget
        self.revision, self.next_check = None, 0.0
        self.entries, self.memory, self.disk = OrderedDict(), 0, 0
        self.building = {}  # key -> an Event set when its build ends
        self.lock = threading.Lock()
        self.directory = tempfile.TemporaryDirectory(prefix='moviesapi-cache-')  # mode 0700, removed at exit

    def current_revision(self):
        """The catalogue revision, re-read from the database at most every check_every seconds."""
        if time.monotonic() >= self.next_check:
            with connection():
                revision = catalogue_revision()
            with self.lock:
                if revision != self.revision:
                    self.revision = revision
                    while self.entries:
                        self.drop(next(iter(self.entries)))
            self.next_check = time.monotonic() + self.check_every
        return self.revision

    def peek(self, key):
        """The cached answer for key, (body: bytes or an open file, headers, WSGI headers), or None."""
        self.current_revision()
        with self.lock:
            return self.lookup(key)

    def get(self, key, render):
        """The answer for key: cached, or built from render() → (body or its chunks, headers), once however many
        ask at the same time. Busy when no worker can be spared for the build, or it takes too long."""
        return self.peek(key) or self.build_once(key, render)

    def lookup(self, key):
        entry = self.entries.get(key)
        if entry is None:
            return None
        self.entries.move_to_end(key)
        return entry.answer(self.workload.streams)

    def build_once(self, key, render):
        with self.workload.worker():
            deadline = time.monotonic() + self.workload.wait
            while True:
                with self.lock:
                    answer = self.lookup(key)
                    building = self.building.get(key) if answer is None else None
                    if answer is None and building is None:
                        self.building[key] = done = threading.Event()
                if answer is not None:
                    return answer
                if building is None:
                    break
                if not building.wait(deadline - time.monotonic()):
                    raise Busy
            try:
                with self.workload.render():
                    return self.build(key, render)
            finally:
                with self.lock:
                    del self.building[key]
                done.set()

    def build(self, key, render):
        revision = self.revision
        body, headers = render()
        digest = hashlib.blake2b(repr(key).encode(), digest_size=8).hexdigest()
        headers = {**headers, 'ETag': f'"{revision[:16]}{digest}"', 'Cache-Control': 'public, no-cache',
                   'Content-Type': 'application/json'}
        entry = self.store([body] if isinstance(body, bytes) else body, headers)
        with self.lock:
            try:
                answer = entry.answer(self.workload.streams)  # opened before a file that is not kept is deleted
            finally:
                if revision != self.revision or not self.keep(key, entry):  # never keep a stale answer
                    self.remove_file(entry)
        return answer

    def store(self, chunks, headers):
        """An Entry of these chunks: bytes while they fit in budget/64, else a file written chunk by chunk."""
        held, size = [], 0
        chunks = iter(chunks)
        for chunk in chunks:
            held.append(chunk)
            size += len(chunk)
            if size > self.budget // 64:
                descriptor, path = tempfile.mkstemp(dir=self.directory.name)
                try:
                    with open(descriptor, 'wb') as file:
                        file.writelines(held)
                        for chunk in chunks:
                            file.write(chunk)
                            size += len(chunk)
                except BaseException:  # a failed render leaves no file behind
                    os.unlink(path)
                    raise
                return self.entry(None, path, size, headers)
        return self.entry(b''.join(held), None, size, headers)

    @staticmethod
    def entry(body, path, size, headers):
        headers = {**headers, 'Content-Length': str(size)}
        return Entry(body, path, size, headers, [(name.title(), value)  # the same spelling as Bottle's
                                                 for name, value in headers.items()])

    def keep(self, key, entry):
        """Store entry, dropping the least recently used to make room; False if it alone exceeds a budget."""
        if entry.memory > self.budget or entry.disk > self.disk_budget:
            return False
        if key in self.entries:
            self.drop(key)
        self.entries[key] = entry
        self.memory, self.disk = self.memory + entry.memory, self.disk + entry.disk
        while self.memory > self.budget or self.disk > self.disk_budget:
            self.drop(next(iter(self.entries)))
        return True

    def drop(self, key):
        entry = self.entries.pop(key)
        self.memory, self.disk = self.memory - entry.memory, self.disk - entry.disk
        self.remove_file(entry)

    @staticmethod
    def remove_file(entry):
        if entry.path is not None:
            os.unlink(entry.path)  # a response still sending it keeps its open file
