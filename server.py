"""Waitress, hardened for direct exposure: its own errors answer JSON like the app's, a request refused as too
large is still read to its end so the client can read the answer, and each request's headers have a total
deadline, so slow clients cannot hold the connection slots; a fast reader of a big answer cannot hold the I/O
thread either. Wired in through Waitress's seams: the server's channel class and the channel's parser and
error-task classes."""
import logging
import resource
import time

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.receiver import ChunkedReceiver
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import BadRequest, RequestEntityTooLarge, RequestHeaderFieldsTooLarge, find_double_newline

from jsonio import error_body
from stack import answer_headers

SEND_TURN = 256 * 1024  # bytes one connection may send before the I/O loop serves the others
DRAIN_LIMIT = 64 * 1024 * 1024  # bytes of a refused request read and discarded; past them the answer is sent at once
SPARE_FILES = 64  # descriptors besides connections: listener, trigger pipe, logs, database connections
log = logging.getLogger('moviesapi')


class Discard:
    """A body buffer that keeps nothing."""

    def append(self, data):
        pass

    def close(self):
        pass

    def __len__(self):
        return 0


class HeaderTail:
    """A receiver that reads and forgets the rest of an oversized header block, up to its blank line."""
    completed, error, tail = False, None, b''

    def received(self, data):
        end = find_double_newline(self.tail + data)
        if end >= 0:
            self.completed = True
            return end - len(self.tail)
        self.tail = (self.tail + data)[-3:]
        return len(data)

    def getbuf(self):
        return Discard()


class BoundedChunkedReceiver(ChunkedReceiver):
    """Waitress's chunked-body reader with the limits it only sketches: a chunk-size line or trailer that never
    ends would otherwise grow (and be copied on every read) until the body limit."""

    def received(self, s):
        consumed = super().received(s)
        if len(self.control_line) > 1024 or len(self.trailer) > 64 * 1024:
            self.error = BadRequest('Chunk size line or trailer too long')
        return consumed


class RequestParser(HTTPRequestParser):
    """Waitress's parser; it also notes when the request began, and drains a request refused as too large."""
    draining = False
    drained = 0

    def __init__(self, adj):
        super().__init__(adj)
        self.started = time.monotonic()

    def received(self, data):
        if self.draining:
            return self.drain(data)
        header_plus = self.header_plus
        consumed = super().received(data)
        if self.completed and self.error:
            self.draining = self.start_draining(header_plus + data)
            self.completed = not self.draining
        return consumed

    def parse_header(self, header_plus):
        super().parse_header(header_plus)
        if self.chunked:
            self.body_rcv = BoundedChunkedReceiver(self.body_rcv.buf)

    def start_draining(self, received):
        """Whether to read on to the end of a refused request, sending nothing meanwhile."""
        if isinstance(self.error, RequestHeaderFieldsTooLarge):
            if find_double_newline(received) >= 0:
                return False
            self.body_rcv = HeaderTail()
            return True
        if not isinstance(self.error, RequestEntityTooLarge) or self.content_length > DRAIN_LIMIT:
            return False
        if self.expect_continue and not self.body_bytes_received:
            self.expect_continue = False  # the client waits for our word before sending: refuse at once
            return False
        self.body_rcv.getbuf().close()
        self.body_rcv.buf = Discard()
        return not self.body_rcv.completed

    def drain(self, data):
        consumed = self.body_rcv.received(data)
        self.drained += consumed
        if self.body_rcv.completed or self.body_rcv.error or self.drained > DRAIN_LIMIT:
            self.completed = True
        return consumed


class JSONErrorTask(ErrorTask):
    """Waitress's own error answers (400, 413, 431, 500, 501) as the app's JSON {"message", "status"}, with the
    app's CORS headers, so a page on another origin can read why."""

    def execute(self):
        error = self.request.error
        body = error_body(error.code)
        self.status = f'{error.code} {error.reason}'
        self.response_headers += [('Content-Type', 'application/json'), *self.channel.server.answer_headers]
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Channel(HTTPChannel):
    """One client connection, with the parser and error task above."""
    parser_class = RequestParser
    error_task_class = JSONErrorTask

    def __init__(self, server, sock, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map)
        self.request = self.parser_class(adj)  # a connection's first request is timed from the accept
        self.turn_left = SEND_TURN

    def _flush_some(self, do_close=True):
        self.turn_left = SEND_TURN
        return super()._flush_some(do_close)

    def send(self, data, do_close=True):
        # Waitress sends until the socket is full: to a fast reader, a whole 80 MB file at once, while every other
        # connection waits. Saying "nothing sent" ends this connection's turn; the I/O loop comes back to it.
        if self.turn_left <= 0:
            return 0
        sent = super().send(data, do_close)
        self.turn_left -= sent
        return sent

    def headers_overdue(self, cutoff):
        """Whether the request being received began before cutoff and its headers are still unfinished."""
        request = self.request
        return not self.requests and request is not None and not request.headers_finished and request.started < cutoff


class Server(TcpWSGIServer):
    """Waitress's TCP server with the channel above and a total deadline for receiving each request's headers."""
    channel_class = Channel

    def __init__(self, application, header_timeout, answer_headers, **settings):
        self.header_timeout, self.answer_headers = header_timeout, answer_headers
        super().__init__(application, **settings)

    def maintenance(self, now):
        super().maintenance(now)
        cutoff = time.monotonic() - self.header_timeout
        overdue = [channel for channel in self.active_channels.values() if channel.headers_overdue(cutoff)]
        for channel in overdue:
            channel.will_close = True
        if overdue:
            log.info('Closed %d connections whose headers took over %g s', len(overdue), self.header_timeout)


def open_file_limit(wanted):
    """Raise this process's limit on open files to wanted, or as near as the hard limit allows; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def serve(application, settings):
    """Serve application as the settings (settings.Settings) say, until SystemExit or KeyboardInterrupt."""
    limit = open_file_limit(settings.connection_limit + SPARE_FILES) - SPARE_FILES
    if limit < settings.connection_limit:
        log.warning('The open-file limit allows %d connections, not %d', limit, settings.connection_limit)
    proxy = {'trusted_proxy': settings.trusted_proxy, 'trusted_proxy_count': 1,
             'trusted_proxy_headers': 'x-forwarded-for x-forwarded-proto'} if settings.trusted_proxy else {}
    server = Server(application, settings.header_timeout, answer_headers(settings.cors_origin),
                    connection_limit=limit, host=settings.host,
                    port=settings.port, threads=settings.threads, ident='moviesapi', channel_timeout=30,
                    max_request_body_size=1024 * 1024, max_request_header_size=16 * 1024,
                    cleanup_interval=1,  # the header deadline is checked this often, s
                    asyncore_use_poll=True,  # select() fails on descriptors past 1024
                    **proxy)
    server.print_listen('Serving on http://{}:{}')
    server.run()
