"""The WSGI layers around the Bottle app: answers served ahead of Bottle (the catalogue response cache among them),
headers every response gets, and a buffered access log."""
import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict, namedtuple

from models import catalogue_revision, connection


MiB = 2**20
BLOCK = 64 * 1024  # bytes per read when a body is sent from its file
ENTRY_OVERHEAD = 1792  # bytes an entry costs beside its body and header text (tracemalloc: ~1.9 KB in all)


class Busy(Exception):
    """No worker can be spared for uncached work now: the client should try again in a moment."""


class Workload:
    """Uncached work may tie up at most `workers` worker threads at once, building or waiting for a build, so
    that cheap requests always find one free; a request beyond them waits up to `admit_wait` s (a burst of short
    renders soon makes room). Of those workers at most `renders` render at the same time (rendering is Python
    work, which the GIL runs one thread at a time); the others wait up to `wait` s for their turn."""

    def __init__(self, workers, renders, wait=1.0, admit_wait=0.05):
        self.workers, self.renders = threading.BoundedSemaphore(workers), threading.BoundedSemaphore(renders)
        self.wait, self.admit_wait = wait, admit_wait

    @contextlib.contextmanager
    def worker(self):
        if not self.workers.acquire(timeout=self.admit_wait):
            raise Busy
        try:
            yield
        finally:
            self.workers.release()

    @contextlib.contextmanager
    def render(self):
        if not self.renders.acquire(timeout=self.wait):
            raise Busy
        try:
            yield
        finally:
            self.renders.release()


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

    def answer(self):
        """(body, headers, WSGI headers); the body is the bytes, or the file opened for this response alone."""
        return self.body if self.path is None else open(self.path, 'rb'), self.headers, self.wsgi_headers


class ResponseCache:
    """Encoded catalogue answers, all dropped when the catalogue revision changes (checked every check_every s),
    the least recently used dropped to stay within `budget` bytes of memory and `disk_budget` bytes of files.
    A body over budget/64 bytes is written to a file in a private directory and sent from there."""

    def __init__(self, check_every, workload, budget=64 * MiB, disk_budget=1024 * MiB):
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
        return entry.answer()

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
            answer = entry.answer()  # opened before a file that is not kept is deleted
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


def serve_ahead(wsgi_app, answer):
    """WSGI middleware in front of Bottle. It treats '/movies/' as '/movies', and a plain GET that answer(environ)
    can serve as (body, WSGI headers) never enters Bottle, whose routing, hooks and response objects cost more
    than the rest of such a request. None, and everything else, goes on to Bottle."""
    def serve(environ, start_response):
        path = environ['PATH_INFO']
        if len(path) > 1 and path.endswith('/'):
            environ['PATH_INFO'] = path.rstrip('/') or '/'
        if environ['REQUEST_METHOD'] == 'GET' and 'HTTP_IF_NONE_MATCH' not in environ:
            found = answer(environ)
            if found is not None:
                start_response('200 OK', found[1])
                return wsgi_body(found[0], environ)
        return wsgi_app(environ, start_response)
    return serve


def wsgi_body(body, environ):
    """A WSGI body for bytes or an open file. Waitress's file wrapper hands the file to its I/O thread, which
    sends it while the worker takes the next request; without one (WebTest) the file is read block by block."""
    if isinstance(body, bytes):
        return [body]
    wrapper = environ.get('wsgi.file_wrapper')
    return wrapper(body, BLOCK) if wrapper else file_blocks(body)


def file_blocks(file):
    with file:
        while block := file.read(BLOCK):
            yield block


# Pages load scripts, styles and data from this site only, and the posters' thumbnails from YouTube; no site may
# frame them. On JSON answers the policy is inert, and nosniff keeps a browser from running one as a script.
SECURITY_HEADERS = [
    ('Content-Security-Policy', "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                "img-src 'self' https://img.youtube.com; base-uri 'none'; form-action 'self'; "
                                "frame-ancestors 'none'"),
    ('X-Content-Type-Options', 'nosniff'),
    ('Referrer-Policy', 'no-referrer'),
]


def with_headers(wsgi_app, current_headers):
    """WSGI middleware: every response, errors included, gets the security headers above and the header list
    current_headers() returns."""
    def serve(environ, start_response):
        headers = current_headers() + SECURITY_HEADERS
        return wsgi_app(environ, lambda status, response_headers, exc_info=None:
                        start_response(status, response_headers + headers, exc_info))
    return serve


def access_log(wsgi_app, write):
    """WSGI middleware: write(line) once per request with method, path, status and duration (never the query)."""
    def logged(environ, start_response):
        started, status = time.perf_counter(), []

        def start(line, headers, exc_info=None):
            status.append(line.split(' ', 1)[0])
            return start_response(line, headers, exc_info)
        try:
            return wsgi_app(environ, start)
        finally:
            write(f"{loggable(environ['REQUEST_METHOD'])} {loggable(environ.get('PATH_INFO', ''))} "
                  f"{status[0] if status else '-'} {(time.perf_counter() - started) * 1000:.1f}ms")
    return logged


def loggable(text):
    """text with backslashes and unprintable characters (line breaks, controls, bidi overrides) escaped, so a value
    a client chose can neither start a forged log line nor disguise one."""
    if text.isprintable() and '\\' not in text:
        return text
    return ''.join(char if char.isprintable() and char != '\\' else repr(char)[1:-1] for char in text)


class BufferedLogHandler(logging.StreamHandler):
    """Log lines go to a buffered stream flushed every half second: a write per line costs a system call per
    request, as much CPU as serving a cached page. Access lines skip logging's records and formatting (~4 µs a
    line in a loop, some 20 µs under load) and come out in the same format as the rest."""

    def __init__(self, stream, interval=0.5):
        super().__init__(stream)
        self.clock = None, ''  # (second, its timestamp): strftime once a second, not once a line
        threading.Thread(target=self._flush_every, args=(interval,), daemon=True).start()

    def access(self, message):
        now = time.time()
        second, stamp = self.clock
        if int(now) != second:
            stamp = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))
            self.clock = int(now), stamp
        with self.lock:
            self.stream.write(f'{stamp},{int(now % 1 * 1000):03d} INFO moviesapi: {message}\n')

    def emit(self, record):
        try:
            self.stream.write(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

    def _flush_every(self, interval):
        while True:
            time.sleep(interval)
            self.flush()
