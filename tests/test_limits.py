"""Waitress's limits as configured by the CLI, through the real server: slow clients cannot starve the workers or
the connection slots, and oversized or malformed requests get a JSON answer the client can read."""
import http.client
import io
import json
import select
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.buffers import ReadOnlyFileBasedBuffer

import server


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: these limits live in the HTTP server, in front of the database."""
    return str(tmp_path / 'movies.db')


@pytest.fixture
def small_server(server_factory):
    return server_factory(args=['--threads', '2'])


def answer(server, method, path, body=None, headers=None, **options):
    """(status, Content-Type, parsed JSON) of one request sent with http.client, which reads no early answer."""
    connection = http.client.HTTPConnection('127.0.0.1', server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {}, **options)
        response = connection.getresponse()
        return response.status, response.getheader('Content-Type'), json.loads(response.read())
    finally:
        connection.close()


def raw_answer(server, data):
    """The server's whole answer to raw bytes, read until it closes the connection."""
    with socket.create_connection(('127.0.0.1', server.port), timeout=10) as sock:
        sock.sendall(data)
        received = b''
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b'\r\n\r\n')
    return head.decode('latin-1'), json.loads(body)


def refused(status, message):
    return status, 'application/json', {'message': message, 'status': status}


TOO_LARGE = refused(413, 'Тело запроса слишком большое.')


def open_trickler(server):
    """A connection that has sent a request line and is still sending its headers."""
    sock = socket.create_connection(('127.0.0.1', server.port), timeout=10)
    sock.sendall(b'GET /genres HTTP/1.1\r\nHost: x\r\n')
    return sock


def is_open(sock):
    """Whether the server has neither closed the connection nor sent anything on it."""
    return not select.select([sock], [], [], 0)[0]


def seconds_until_closed(sock, started, timeout):
    """Send a header line every 0.2 s until the server closes the connection; the seconds since started."""
    while time.monotonic() - started < timeout:
        try:
            sock.sendall(b'X-Trickle: 1\r\n')
            if select.select([sock], [], [], 0.2)[0] and sock.recv(1) == b'':
                break
        except (ConnectionResetError, BrokenPipeError):
            break
    return time.monotonic() - started


def test_slow_clients_do_not_tie_up_the_worker_threads(small_server):
    trickling = []
    for _ in range(20):  # ten times the worker threads, each stuck mid-request
        sock = socket.create_connection(('127.0.0.1', small_server.port))
        sock.sendall(b'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                     b'Content-Length: 100\r\n\r\n{"email":')
        trickling.append(sock)
    try:
        started = time.monotonic()
        assert answer(small_server, 'GET', '/genres/')[0] == 200
        assert time.monotonic() - started < 1
    finally:
        for sock in trickling:
            sock.close()


def test_300_trickling_connections_leave_room_for_real_clients(small_server):
    tricklers = [open_trickler(small_server) for _ in range(300)]
    try:
        for _ in range(3):
            for sock in tricklers:
                sock.sendall(b'X-Trickle: 1\r\n')
            started = time.monotonic()
            assert answer(small_server, 'GET', '/genres/')[0] == 200
            assert time.monotonic() - started < 1
            time.sleep(1.5)
        assert all(is_open(sock) for sock in tricklers)  # still held, within the 10 s header deadline
    finally:
        for sock in tricklers:
            sock.close()


def test_the_header_deadline_closes_a_trickler_however_steadily_it_sends(server_factory):
    server = server_factory(args=['--header-timeout', '1'])
    started = time.monotonic()
    with open_trickler(server) as sock:
        assert 1 <= seconds_until_closed(sock, started, timeout=5) < 5
    assert answer(server, 'GET', '/health')[0] == 200


def test_the_header_deadline_spares_an_idle_kept_alive_connection(server_factory):
    server = server_factory(args=['--header-timeout', '1'])
    connection = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
    try:
        connection.request('GET', '/health')
        assert connection.getresponse().read() == b'{"status":"ok"}'
        kept_alive = connection.sock
        time.sleep(2.5)  # the deadline counts from a request's first byte, not from the previous answer
        connection.request('GET', '/health')
        assert connection.getresponse().read() == b'{"status":"ok"}'
        assert connection.sock is kept_alive  # not silently reconnected
    finally:
        connection.close()


def test_a_50_mb_body_is_read_and_refused_with_json(small_server):
    body = b'x' * (50 * 1000 * 1000)  # http.client sends it all before reading: a reset would raise here
    assert answer(small_server, 'POST', '/auth/register', body, {'Content-Type': 'application/json'}) == TOO_LARGE
    assert answer(small_server, 'GET', '/health')[0] == 200


def test_an_oversized_chunked_body_is_refused_with_json(small_server):
    chunks = (b'x' * 64 * 1024 for _ in range(64))  # 4 MiB, over the 1 MiB limit
    assert answer(small_server, 'POST', '/auth/register', chunks, {'Content-Type': 'application/json'},
                  encode_chunked=True) == TOO_LARGE
    assert answer(small_server, 'GET', '/health')[0] == 200


def test_a_client_that_waits_to_continue_is_refused_before_it_sends(small_server):
    head, body = raw_answer(small_server, b'POST /auth/register HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n'
                                          b'Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n')
    assert head.startswith('HTTP/1.1 413 ') and body == TOO_LARGE[2]
    assert 'Access-Control-Allow-Origin: *' in head  # a page on another origin can read why


@pytest.mark.parametrize('size', [20_000, 1_000_000])
def test_oversized_headers_are_refused_with_json(small_server, size):
    assert answer(small_server, 'GET', '/genres/', headers={'X-Padding': 'x' * size}) == \
        refused(431, 'Заголовки запроса слишком большие.')
    assert answer(small_server, 'GET', '/health')[0] == 200


def test_a_malformed_request_is_refused_with_json(small_server):
    head, body = raw_answer(small_server, b'GET /genres HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n')
    assert head.split()[1] == '400' and 'Content-Type: application/json' in head
    assert 'Access-Control-Allow-Origin: *' in head and 'X-Content-Type-Options: nosniff' in head  # CORS too
    assert body == {'message': 'Некорректный запрос.', 'status': 400}


def crash(environ, start_response):
    raise RuntimeError('a crash before any answer')


@pytest.mark.live
def test_a_crash_before_the_answer_is_answered_with_json():
    crashing = server.Server(crash, header_timeout=10, answer_headers=[], host='127.0.0.1', port=0, threads=1)
    running = threading.Thread(target=crashing.run)
    running.start()
    try:
        assert answer(SimpleNamespace(port=int(crashing.effective_port)), 'GET', '/') == \
            refused(500, 'Внутренняя ошибка сервера.')
    finally:
        crashing.trigger.pull_trigger(lambda: wasyncore.close_all(crashing._map))  # in its own I/O thread
        running.join(5)
        crashing.task_dispatcher.shutdown()


def test_one_connection_sends_a_turn_at_a_time_so_a_big_answer_cannot_hold_the_io_thread():
    big, served = 3 * 2**20, socket.socketpair()
    channel = server.Channel(IdleServer(), served[0], ('127.0.0.1', 1), Adjustments(), map={})
    file_answer = ReadOnlyFileBasedBuffer(io.BytesIO(b'x' * big))
    file_answer.prepare()
    channel.outbufs.insert(0, file_answer)
    channel.total_outbufs_len = big
    reader = threading.Thread(target=lambda: [served[1].recv(big) for _ in iter(lambda: channel.total_outbufs_len, 0)],
                              daemon=True)
    reader.start()  # a reader as fast as loopback allows: the socket never fills
    turns = []
    while channel.total_outbufs_len:
        left = channel.total_outbufs_len
        channel._flush_some()
        turns.append(left - channel.total_outbufs_len)
    assert len(turns) > 1 and max(turns) < server.SEND_TURN + channel.sendbuf_len, turns
    served[0].close()
    served[1].close()


class IdleServer:
    """What a channel needs of its server when no I/O loop runs."""
    adj, active_channels = Adjustments(), {}

    def pull_trigger(self):
        pass
