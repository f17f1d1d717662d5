"""Waitress's limits as configured by the CLI: slow clients cannot starve the workers, huge requests are refused."""
import http.client
import socket
import time

import pytest


@pytest.fixture
def small_server(server_factory):
    return server_factory(args=['--threads', '2'])


def status_of(server, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


def test_slow_clients_do_not_tie_up_the_worker_threads(small_server):
    trickling = []
    for _ in range(20):  # ten times the worker threads, each stuck mid-request
        sock = socket.create_connection(('127.0.0.1', small_server.port))
        sock.sendall(b'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                     b'Content-Length: 100\r\n\r\n{"email":')
        trickling.append(sock)
    try:
        started = time.monotonic()
        assert status_of(small_server, 'GET', '/genres/') == 200
        assert time.monotonic() - started < 1
    finally:
        for sock in trickling:
            sock.close()


def test_a_body_over_a_mebibyte_is_refused_before_the_app(small_server):
    with socket.create_connection(('127.0.0.1', small_server.port), timeout=10) as sock:
        sock.sendall(b'POST /auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                     b'Content-Length: 2097152\r\n\r\n{"email":')  # refused on the declared length alone
        assert sock.recv(64).startswith(b'HTTP/1.1 413')
    assert status_of(small_server, 'GET', '/health') == 200


def test_oversized_headers_are_refused(small_server):
    assert status_of(small_server, 'GET', '/genres/', headers={'X-Padding': 'x' * 20000}) == 431
