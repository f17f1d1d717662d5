"""Shared fixtures: a fresh database per test (SQLite, and PostgreSQL when configured), the app, live servers."""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

os.environ.setdefault('MOVIESAPI_HASH_ITERATIONS', '1000')  # production cost is 600,000; tests need speed

import moviesapi  # noqa: E402  (after the hashing cost is set)
from auth import PRODUCTION_HASH_ITERATIONS  # noqa: E402
from models import close_database  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
POSTGRES_URL = os.environ.get('MOVIESAPI_TEST_DATABASE_URL')


@pytest.fixture(params=['sqlite', 'postgresql'])
def database_url(request, tmp_path):
    """A URL of an empty database: a temp SQLite file, or a wiped PostgreSQL schema."""
    if request.param == 'sqlite':
        return str(tmp_path / 'movies.db')
    if not POSTGRES_URL:
        if os.environ.get('CI') == 'true':
            pytest.fail('CI must run the PostgreSQL tests: set MOVIESAPI_TEST_DATABASE_URL')
        pytest.skip('MOVIESAPI_TEST_DATABASE_URL is not set')
    import psycopg
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute('DROP SCHEMA IF EXISTS public CASCADE')
        connection.execute('CREATE SCHEMA public')
    return POSTGRES_URL


@pytest.fixture
def app(database_url):
    """A WebTest client over the real WSGI stack on a fresh, seeded database."""
    from webtest import TestApp
    moviesapi.configure(database_url, secrets.token_hex(32))
    yield TestApp(moviesapi.application)
    close_database()


class LiveServer:
    """`python moviesapi.py` as a real Waitress process on a free loopback port."""

    def __init__(self, db, args, env, log_path):
        self.db, self.args, self.log_path = db, list(args), log_path
        self.env = {**os.environ, 'MOVIESAPI_SECRET': secrets.token_hex(32), **(env or {})}
        self.port, self.proc = free_port(), None
        self.url = f'http://127.0.0.1:{self.port}'

    def start(self, timeout=15):
        """Start the process and wait until /health answers."""
        log = open(self.log_path, 'ab')
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, 'moviesapi.py'), '--host', '127.0.0.1',
             '--port', str(self.port), '--db', self.db, *self.args],
            cwd=os.path.dirname(self.log_path), env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f'server exited with {self.proc.returncode}:\n{self.log()}')
            try:
                with urllib.request.urlopen(self.url + '/health', timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f'server did not answer within {timeout} s:\n{self.log()}')

    def stop(self):
        """SIGTERM, then wait for a clean exit."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)

    def kill(self):
        """SIGKILL: no chance to clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def call(self, method, path, body=None, token=None, headers=None):
        """One HTTP request: (status, headers, parsed JSON body or None)."""
        request = urllib.request.Request(self.url + path, method=method, headers=headers or {},
                                         data=None if body is None else json.dumps(body).encode())
        if body is not None:
            request.add_header('Content-Type', 'application/json')
        if token:
            request.add_header('Authorization', 'Bearer ' + token)
        try:
            with urllib.request.urlopen(request, timeout=10) as res:
                status, head, raw = res.status, res.headers, res.read()
        except urllib.error.HTTPError as err:
            status, head, raw = err.code, err.headers, err.read()
        return status, head, json.loads(raw) if raw else None

    def log(self):
        with open(self.log_path, encoding='utf-8', errors='replace') as file:
            return file.read()


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


@pytest.fixture
def server_factory(database_url, tmp_path):
    """Make LiveServers (started) on this test's database; all are stopped at teardown. Tests of concurrency pass
    production_cost=True: a cheap password hash would hide the locks and CPU that real logins hold."""
    servers = []

    def make(db=None, args=(), env=None, start=True, production_cost=False):
        if production_cost:
            env = {**(env or {}), 'MOVIESAPI_HASH_ITERATIONS': str(PRODUCTION_HASH_ITERATIONS)}
        server = LiveServer(db or database_url, args, env, str(tmp_path / f'server{len(servers)}.log'))
        servers.append(server)
        return server.start() if start else server
    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def live_server(server_factory):
    return server_factory()


@pytest.fixture
def make_user(app):
    """Register and log in a user; returns a dict with email, password, tokens and auth headers."""
    count = 0

    def make(email=None, password='correct horse'):
        nonlocal count
        count += 1
        email = email or f'user{count}@example.com'
        app.post_json('/auth/register', {'email': email, 'password': password}, status=201)
        tokens = app.post_json('/auth/login', {'email': email, 'password': password}, status=200).json
        return {'email': email, 'password': password, **tokens,
                'headers': {'Authorization': 'Bearer ' + tokens['access_token']}}
    return make


@pytest.fixture
def user(make_user):
    return make_user()
