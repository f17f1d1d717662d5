"""The WSGI layers around the Bottle app: answers served ahead of Bottle (the catalogue response cache among them),
headers every response gets, and a buffered access log."""
import hashlib
import logging
import threading
import time

from models import catalogue_revision, connection


class ResponseCache:
    """Encoded catalogue answers, dropped when the catalogue revision changes (checked every check_every s).
    An entry is (body, headers, the WSGI header list), so a hit can skip Bottle altogether."""

    def __init__(self, check_every, max_entries=4096):
        self.check_every, self.max_entries = check_every, max_entries
        self.revision, self.entries, self.next_check = None, {}, 0.0
        self.evicting = threading.Lock()  # two threads must not evict the same oldest entry

    def current_revision(self):
        """The catalogue revision, re-read from the database at most every check_every seconds."""
        if time.monotonic() >= self.next_check:
            with connection():
                revision = catalogue_revision()
            if revision != self.revision:
                self.revision, self.entries = revision, {}
            self.next_check = time.monotonic() + self.check_every
        return self.revision

    def peek(self, key):
        self.current_revision()
        return self.entries.get(key)

    def get(self, key, render):
        """The entry for key: cached, or from render() → (body, headers) with an ETag, kept unless streamed."""
        revision = self.current_revision()
        entries = self.entries  # a revision change meanwhile swaps in a new dict: never store stale answers
        entry = entries.get(key)
        if entry is None:
            body, headers = render()
            digest = hashlib.blake2b(repr(key).encode(), digest_size=8).hexdigest()
            headers = {**headers, 'ETag': f'"{revision[:16]}{digest}"', 'Cache-Control': 'public, no-cache',
                       'Content-Type': 'application/json'}
            if not isinstance(body, bytes):
                return body, headers, None
            entry = body, headers, [(name.title(), value)  # the same spelling as Bottle's
                                    for name, value in {**headers, 'Content-Length': str(len(body))}.items()]
            with self.evicting:
                if len(entries) >= self.max_entries:
                    del entries[next(iter(entries))]  # the oldest
                entries[key] = entry
        return entry


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
                return [found[0]]
        return wsgi_app(environ, start_response)
    return serve


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
