"""The WSGI stack around the Bottle app, one for the server and the tests alike (build_stack), from the socket in:

    access log → trailing slash → CORS and security headers → answers ahead of Bottle → Bottle

Answers ahead of Bottle skip its routing, hooks and response objects, which cost more than the rest of a hot
request (docs/benchmarks.md): cached catalogue answers, and the fast reads a caller declares."""
import inspect
import logging
import time

from bottle import HTTPError

from jsonio import PRIVATE, encode
from logs import write_access
from models import connection

BLOCK = 64 * 1024  # bytes per read when a body is sent from its file
log = logging.getLogger('moviesapi')


def build_stack(app, cached_answers, fast_reads):
    """The app behind its layers. The CORS origin and the tokens are read from app.config on each request, so a
    later configure() applies to a stack built before it."""
    ahead = serve_ahead(app, cached_answers.peek, FastReads(app, fast_reads))
    return access_log(without_trailing_slash(with_headers(ahead, app.config)))


def access_log(wsgi_app):
    """One line per request with method, path, status and duration (never the query)."""
    def logged(environ, start_response):
        started, status = time.perf_counter(), []

        def start(line, headers, exc_info=None):
            status.append(line.split(' ', 1)[0])
            return start_response(line, headers, exc_info)
        try:
            return wsgi_app(environ, start)
        finally:
            write_access(f"{loggable(environ['REQUEST_METHOD'])} {loggable(environ.get('PATH_INFO', ''))} "
                         f"{status[0] if status else '-'} {(time.perf_counter() - started) * 1000:.1f}ms")
    return logged


def loggable(text):
    """text with backslashes and unprintable characters (line breaks, controls, bidi overrides) escaped, so a value
    a client chose can neither start a forged log line nor disguise one."""
    if text.isprintable() and '\\' not in text:
        return text
    return ''.join(char if char.isprintable() and char != '\\' else repr(char)[1:-1] for char in text)


def without_trailing_slash(wsgi_app):
    """Every path answers with and without a trailing slash: '/movies/' is routed as '/movies'."""
    def serve(environ, start_response):
        path = environ['PATH_INFO']
        if len(path) > 1 and path.endswith('/'):
            environ['PATH_INFO'] = path.rstrip('/') or '/'
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
CORS_EXPOSED = ('Access-Control-Expose-Headers', 'ETag, Link, X-Total-Count, Retry-After, WWW-Authenticate')
CORS_PREFLIGHT = [('Access-Control-Max-Age', '600'),
                  ('Access-Control-Allow-Methods', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'),
                  ('Access-Control-Allow-Headers', 'Authorization, Content-Type, If-None-Match')]


def answer_headers(cors_origin):
    """The CORS and security headers of every answer, Waitress's own errors included (server.py)."""
    return [('Access-Control-Allow-Origin', cors_origin), CORS_EXPOSED, *SECURITY_HEADERS]


def with_headers(wsgi_app, config):
    """Every response, errors included, gets the CORS and security headers; a CORS preflight (any OPTIONS
    request) is answered here, 204."""
    def serve(environ, start_response):
        headers = answer_headers(config['moviesapi.settings'].cors_origin)
        if environ['REQUEST_METHOD'] == 'OPTIONS':
            start_response('204 No Content', CORS_PREFLIGHT + headers)
            return []
        return wsgi_app(environ, lambda status, response_headers, exc_info=None:
                        start_response(status, response_headers + headers, exc_info))
    return serve


def serve_ahead(wsgi_app, *answerers):
    """A plain GET that one of answerers(environ) can serve as (body, WSGI headers) never enters Bottle; None, and
    everything else, goes on to Bottle."""
    def serve(environ, start_response):
        if environ['REQUEST_METHOD'] == 'GET' and 'HTTP_IF_NONE_MATCH' not in environ:
            for answer in answerers:
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


class FastReads:
    """GET routes of the signed-in user's own data answered ahead of Bottle for a good token, declared as
    (method, path) pairs. Their contract, checked at start-up: a GET declared auth=True, called with `user` alone,
    using neither `request` nor `response`; at run time it must return JSON data (dict, list or encoded bytes).
    A bad token, or any failure, goes on to Bottle, which answers in full."""

    def __init__(self, app, declared):
        self.app = app
        self.callbacks = {path: self.checked(app, method, path) for method, path in declared}

    @staticmethod
    def checked(app, method, path):
        [route] = [route for route in app.routes if (route.method, route.rule) == (method, path)]
        callback = route.callback
        if (method != 'GET' or not route.config.get('auth') or route.config.get('cache')
                or list(inspect.signature(callback).parameters) != ['user']
                or {'request', 'response'} & {*callback.__code__.co_names, *callback.__code__.co_freevars}):
            raise TypeError(f'{method} {path} cannot be a fast read: it must be a GET declared auth=True that takes '
                            'only `user` and uses neither `request` nor `response`')
        return callback

    def __call__(self, environ):
        """(body, WSGI headers) for a fast read with a good token, or None."""
        callback = self.callbacks.get(environ['PATH_INFO'])
        if callback is None:
            return None
        try:
            with connection():
                body = encode(callback(user=self.app.config['moviesapi.tokens'].user_of(environ)))
        except HTTPError:  # a bad token
            return None
        except Exception:
            log.exception('%s failed ahead of Bottle; Bottle tries again', environ['PATH_INFO'])
            return None
        return body, [('Content-Type', 'application/json'), ('Content-Length', str(len(body))), PRIVATE]
