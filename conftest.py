"""Shared fixtures: a fresh database per test (SQLite, and PostgreSQL when configured), the app, live servers,
and the one way tests sign a user up.

A test that starts a real server (it uses `server_factory` or `live_server`) is marked `live` here; pytest.ini
leaves `live` tests out of the quick loop, and `python -m pytest -m ""` runs them too."""
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
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
IN_CI = os.environ.get('CI') == 'true'
ENGINES = ['sqlite', 'postgresql'] if POSTGRES_URL or IN_CI else ['sqlite']


def pytest_report_header():
    return f'database engines: {", ".join(ENGINES)}' + ('' if POSTGRES_URL else
                                                       ' (set MOVIESAPI_TEST_DATABASE_URL for PostgreSQL)')


def pytest_collection_modifyitems(items):
    """Mark `live` every test that starts a real server."""
    for item in items:
        if {'server_factory', 'live_server'} & set(item.fixturenames):
            item.add_marker(pytest.mark.live)


@pytest.fixture(params=ENGINES)
def database_url(request, tmp_path):
    """A URL of an empty database: a temp SQLite file, or a wiped PostgreSQL schema."""
    if request.param == 'sqlite':
        return str(tmp_path / 'movies.db')
    if not POSTGRES_URL:
        pytest.fail('CI must run the PostgreSQL tests: set MOVIESAPI_TEST_DATABASE_URL')
    import psycopg
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute('DROP SCHEMA IF EXISTS public CASCADE')
        connection.execute('CREATE SCHEMA public')
    return POSTGRES_URL


def load_old_schema(database_url, version):
    """Fill the empty test database with the schema and rows an earlier release made (tests/fixtures)."""
    fixtures = os.path.join(HERE, 'tests', 'fixtures')
    if database_url.startswith('postgresql://'):
        import psycopg
        with open(os.path.join(fixtures, f'schema_v{version}.postgresql.sql'), encoding='utf-8') as file:
            script = ''.join(line for line in file if not line.startswith('\\'))  # psql's meta-commands
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(script)
    else:
        with open(os.path.join(fixtures, f'schema_v{version}.sqlite.sql'), encoding='utf-8') as file:
            script = file.read()
        connection = sqlite3.connect(database_url)
        with connection:
            connection.executescript(script)
        connection.close()


@pytest.fixture(scope='session')
def seeded_sqlite(tmp_path_factory):
    """A SQLite file as the app creates and seeds it, made once: copying it is several times faster."""
    path = str(tmp_path_factory.mktemp('seeded') / 'movies.db')
    moviesapi.configure(path, secrets.token_hex(32))
    close_database()
    return path


@pytest.fixture
def app(database_url, seeded_sqlite):
    """A WebTest client over the real WSGI stack on a fresh, seeded database."""
    from webtest import TestApp
    if not database_url.startswith('postgres'):
        shutil.copyfile(seeded_sqlite, database_url)
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


PASSWORD = 'correct horse'
_user_numbers = itertools.count(1)


def sign_up(client, email=None, password=PASSWORD):
    """Register and log in a new user over WebTest (a TestApp) or real HTTP (a LiveServer); returns its email,
    password, token pair and bearer headers."""
    credentials = {'email': email or f'user{next(_user_numbers)}@example.com', 'password': password}
    status, registered = post_json(client, '/auth/register', credentials)
    assert status == 201, registered
    status, tokens = post_json(client, '/auth/login', credentials)
    assert status == 200, tokens
    return {**credentials, **tokens, 'headers': {'Authorization': 'Bearer ' + tokens['access_token']}}


def post_json(client, path, body):
    """(status, parsed JSON) of a POST through either transport."""
    if isinstance(client, LiveServer):
        status, _, parsed = client.call('POST', path, body)
        return status, parsed
    res = client.post_json(path, body, expect_errors=True)
    return res.status_int, res.json


@pytest.fixture
def make_user(app):
    """sign_up() over this test's WebTest client; the client keeps the device cookie of each login."""
    return lambda email=None, password=PASSWORD: sign_up(app, email, password)


@pytest.fixture
def user(make_user):
    return make_user()
