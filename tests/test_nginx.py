"""deploy/nginx.conf for real: nginx in front of three moviesapi processes on one database (a SQLite file, or
PostgreSQL), with one instance killed or restarted under load. Figures are printed even without `pytest -s`.

Tuning (environment): MOVIESAPI_NGINX_SECONDS (the SIGKILL load, 20), MOVIESAPI_NGINX_CLIENTS (32).
"""
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conftest import HERE, free_port

NGINX = shutil.which('nginx') or '/usr/sbin/nginx'
SECONDS = float(os.environ.get('MOVIESAPI_NGINX_SECONDS', 20))
CLIENTS = int(os.environ.get('MOVIESAPI_NGINX_CLIENTS', 32))
INSTANCES = 3
MOVIES = 20  # rows in seed.sql
SERVER_ARGS = ('--trusted-proxy', '127.0.0.1', '--threads', '8',
               '--password-hashes-per-minute', '100000')  # every client comes from 127.0.0.1
WRITES = ('POST', 'PUT', 'PATCH', 'DELETE')
NEVER_RESENT = ('POST', 'PUT', 'PATCH')  # nginx may resend a DELETE, which is idempotent here
ACCESS_LINE = re.compile(r'"(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d+) .* '
                         r'upstream=(?P<upstreams>.*) status=(?P<statuses>.*) sent=(?P<sent>.*)$')

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX) and os.environ.get('CI') != 'true',
                                reason='nginx is not installed (apt-get install nginx)')


class Nginx:
    """nginx in the foreground with deploy/nginx.conf, its ports replaced, everything under one directory."""

    def __init__(self, directory, upstream_ports, max_fails=None):
        self.directory, self.upstream_ports, self.max_fails = str(directory), list(upstream_ports), max_fails
        self.port, self.proc = free_port(), None
        self.conf = os.path.join(self.directory, 'nginx.conf')
        for sub in ('logs', 'temp'):
            os.makedirs(os.path.join(self.directory, sub), exist_ok=True)

    def write_conf(self, down=()):
        """The shipped configuration with this test's ports; instances whose ports are in down marked down."""
        with open(os.path.join(HERE, 'deploy', 'nginx.conf'), encoding='utf-8') as file:
            text = file.read()
        text = text.replace('listen 127.0.0.1:8080;', f'listen 127.0.0.1:{self.port};')
        for number, port in enumerate(self.upstream_ports, 1):
            text = re.sub(rf'server 127\.0\.0\.1:2500{number} (.*);',
                          lambda m: f'server 127.0.0.1:{port} {m[1]}{" down" * (port in down)};', text)
        if self.max_fails is not None:
            text = re.sub(r'max_fails=\d+', f'max_fails={self.max_fails}', text)
        with open(self.conf, 'w', encoding='utf-8') as file:
            file.write(text)

    def start(self):
        self.write_conf()
        log = open(os.path.join(self.directory, 'nginx.out'), 'ab')
        self.proc = subprocess.Popen([NGINX, '-e', 'stderr', '-p', self.directory, '-c', self.conf,
                                      '-g', 'daemon off;'], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f'nginx did not listen:\n{self.output()}')

    def reload(self, down=()):
        """Load the configuration with down marked, and wait until the old workers finished their requests."""
        old_workers = self.workers()
        self.write_conf(down)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while any(os.path.exists(f'/proc/{pid}') for pid in old_workers):
            assert time.monotonic() < deadline, 'old nginx workers did not exit'
            time.sleep(0.02)

    def workers(self):
        with open(f'/proc/{self.proc.pid}/task/{self.proc.pid}/children') as file:
            return file.read().split()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            self.proc.wait(timeout=15)

    def output(self):
        with open(os.path.join(self.directory, 'nginx.out'), encoding='utf-8', errors='replace') as file:
            return file.read()

    def access_log(self):
        """Parsed access log lines: dicts with method, path, status, and per attempt upstreams/statuses/sent."""
        lines = []
        with open(os.path.join(self.directory, 'logs', 'access.log'), encoding='utf-8') as file:
            for line in file:
                match = ACCESS_LINE.search(line.rstrip('\n'))
                fields = match.groupdict()
                for key in ('upstreams', 'statuses', 'sent'):
                    fields[key] = re.split(r', | : ', fields[key])
                lines.append(fields)
        return lines


class Client:
    """One keep-alive connection to nginx, JSON in and out. Like a browser, it resends a request once on a fresh
    connection when a reused one turns out closed before any answer (nginx closes idle ones on reload)."""

    def __init__(self, port):
        self.port, self.conn, self.used = port, None, False
        self.statuses, self.errors, self.resent = [], [], 0  # errors: (time.monotonic(), what)

    def call(self, method, path, body=None, token=None):
        """(status, parsed JSON or None), or (None, None) after a connection error (recorded)."""
        headers = {'Authorization': 'Bearer ' + token} if token else {}
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers['Content-Type'] = 'application/json'
        for attempt in (1, 2):
            if self.conn is None:
                self.conn, self.used = http.client.HTTPConnection('127.0.0.1', self.port, timeout=15), False
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                raw = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if attempt == 2 or not self.used:
                    self.errors.append((time.monotonic(), f'{method} {path}: {exc!r}'))
                    return None, None
                self.resent += 1
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                self.errors.append((time.monotonic(), f'{method} {path}: {exc!r}'))
                return None, None
        self.used = True
        self.statuses.append((method, path, response.status))
        return response.status, json.loads(raw) if raw else None

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn = None


class User:
    """One account played by one client. Each favourite is known saved, known absent, or unknown (a write
    whose answer was lost); every refresh token the server accepted is kept, to prove none works twice."""

    def __init__(self, client, number):
        self.client, self.number = client, number
        self.email, self.password = f'nginx-{number}-{uuid.uuid4().hex[:8]}@example.test', 'correct horse'
        self.saved, self.unknown, self.spent = set(), set(), []
        self.pair = None

    def log_in(self):
        status, pair = self.client.call('POST', '/auth/login', {'email': self.email, 'password': self.password})
        self.pair = pair if status == 200 else None

    def sign_up(self):
        status, _ = self.client.call('POST', '/auth/register', {'email': self.email, 'password': self.password})
        if status in (201, 409, None, 502):  # 409: a lost 201
            self.log_in()

    def write_favorite(self, method, movie):
        status, _ = self.client.call(method, f'/favorites/movies/{movie}', token=self.pair['access_token'])
        if status in (200, 201, 204, 404):
            self.unknown.discard(movie)
            (self.saved.add if method == 'POST' else self.saved.discard)(movie)
        elif status == 401:
            self.log_in()
        else:
            self.unknown.add(movie)

    def refresh(self):
        status, pair = self.client.call('PUT', '/auth/login', self.pair)
        if status == 200:
            self.spent.append(self.pair['refresh_token'])
            self.pair = pair
        else:  # lost, or spent by a request whose answer was lost: log in again
            self.log_in()

    def play(self, round_):
        movie = 1 + (self.number * 7 + round_ * 3) % MOVIES
        self.write_favorite('POST', movie)
        if round_ % 3 == 2:
            self.write_favorite('DELETE', movie)
        self.client.call('GET', f'/movies/?page={1 + round_ % 2}')
        self.client.call('GET', f'/movies/{movie}')
        if round_ % 4 == 3:
            self.refresh()

    def favorites(self):
        status, saved = self.client.call('GET', '/favorites/movies/', token=self.pair['access_token'])
        assert status == 200, (status, saved)
        return [movie['id'] for movie in saved]


def run_user(port, number, stop):
    """Sign up, then play rounds until stop is set; returns the User."""
    user = User(Client(port), number)
    user.sign_up()
    round_ = 0
    while not stop.is_set() and user.pair:
        user.play(round_)
        round_ += 1
    return user


@pytest.fixture
def cluster(server_factory, tmp_path):
    """Three instances on one database with one secret, and nginx in front of them."""
    first = server_factory(args=SERVER_ARGS)
    secret = {'MOVIESAPI_SECRET': first.env['MOVIESAPI_SECRET']}
    instances = [first] + [server_factory(db=first.db, args=SERVER_ARGS, env=secret)
                           for _ in range(INSTANCES - 1)]
    nginx = Nginx(tmp_path / 'nginx', [instance.port for instance in instances]).start()
    yield nginx, instances
    nginx.stop()


def call(port, method, path, body=None, token=None, headers=None):
    """One request on a new connection: (status, headers, parsed JSON or None)."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    headers = dict(headers or {})
    if token:
        headers['Authorization'] = 'Bearer ' + token
    if body is not None:
        headers['Content-Type'] = 'application/json'
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body).encode(), headers=headers)
        response = conn.getresponse()
        raw = response.read()
        content_type = response.getheader('Content-Type', '')
        return response.status, response.headers, json.loads(raw) if 'json' in content_type else raw
    finally:
        conn.close()


def engine_of(instance):
    return 'postgresql' if str(instance.db).startswith('postgres') else 'sqlite'


def test_accounts_tokens_and_favourites_through_nginx(cluster):
    nginx, instances = cluster
    port = nginx.port
    credentials = {'email': 'anna@example.com', 'password': 'correct horse'}
    assert call(port, 'POST', '/auth/register', credentials)[0] == 201
    status, _, first = call(port, 'POST', '/auth/login', credentials)
    assert status == 200
    second = call(port, 'PUT', '/auth/login', first)[2]
    third = call(port, 'PUT', '/auth/login', second)[2]
    assert 'refresh_token' in third
    assert call(port, 'PUT', '/auth/login', first)[0] == 401  # reuse: the session ends, its newest token too
    assert call(port, 'PUT', '/auth/login', third)[0] == 401

    pair = call(port, 'POST', '/auth/login', credentials)[2]
    token = pair['access_token']
    assert [call(port, 'POST', f'/favorites/movies/{movie}', token=token)[0] for movie in (3, 5, 3)] == [201, 201, 200]
    for instance in instances:  # every instance sees the same favourites
        assert [m['id'] for m in call(instance.port, 'GET', '/favorites/movies/', token=token)[2]] == [3, 5]
    assert call(port, 'DELETE', '/favorites/movies/3', token=token)[0] == 204

    change = {'password_1': 'correct horse', 'password_2': 'battery staple'}
    assert call(port, 'PUT', '/user/password', change, token=token)[0] == 204
    for instance in instances:  # every older token stops working everywhere
        assert call(instance.port, 'GET', '/user/', token=token)[0] == 401
        assert call(instance.port, 'PUT', '/auth/login', pair)[0] == 401
    credentials['password'] = 'battery staple'
    assert call(port, 'POST', '/auth/login', credentials)[0] == 200


def test_login_throttling_counts_across_instances(cluster):
    nginx, instances = cluster
    credentials = {'email': 'boris@example.com', 'password': 'correct horse'}
    assert call(nginx.port, 'POST', '/auth/register', credentials)[0] == 201
    wrong = {**credentials, 'password': 'wrong'}
    for instance in instances + instances[:2]:  # five failures, spread over all three processes
        assert call(instance.port, 'POST', '/auth/login', wrong)[0] == 401
    status, headers, body = call(nginx.port, 'POST', '/auth/login', credentials)
    assert (status, body['status']) == (429, 429) and int(headers['Retry-After']) > 0

    credentials = {'email': 'vera@example.com', 'password': 'correct horse'}
    assert call(nginx.port, 'POST', '/auth/register', credentials)[0] == 201
    wrong = {**credentials, 'password': 'wrong'}
    assert [call(nginx.port, 'POST', '/auth/login', wrong)[0] for _ in range(6)] == [401] * 5 + [429]
    logins = [line for line in nginx.access_log() if line['path'] == '/auth/login']
    assert {line['upstreams'][0] for line in logins[-6:]} == {f'127.0.0.1:{i.port}' for i in instances}


def test_catalogue_answers_pass_through_untouched(cluster):
    nginx, instances = cluster
    direct = call(instances[0].port, 'GET', '/movies/?page=1')
    status, headers, body = call(nginx.port, 'GET', '/movies/?page=1')
    assert (status, body) == (200, direct[2])
    assert headers['ETag'] == direct[1]['ETag'] and headers['Link'] == direct[1]['Link']
    assert 'Content-Encoding' not in headers
    assert call(nginx.port, 'GET', '/movies/?page=1', headers={'If-None-Match': headers['ETag'],
                                                               'Accept-Encoding': 'gzip'})[0] == 304
    page = call(nginx.port, 'GET', '/')
    assert page[0] == 200 and page[2] == call(instances[1].port, 'GET', '/')[2]
    assert "script-src 'self'" in page[1]['Content-Security-Policy']


def test_forwarded_headers_are_set_by_nginx_alone(cluster):
    nginx, instances = cluster
    credentials = {'email': 'gleb@example.com', 'password': 'correct horse'}
    assert call(nginx.port, 'POST', '/auth/register', credentials)[0] == 201
    https = {'X-Forwarded-Proto': 'https'}
    direct = call(instances[0].port, 'POST', '/auth/login', credentials, headers=https)[1]['Set-Cookie']
    assert 'Secure' in direct  # the instance trusts its proxy's word on the scheme ...
    proxied = call(nginx.port, 'POST', '/auth/login', credentials, headers=https)[1]['Set-Cookie']
    assert 'Secure' not in proxied  # ... and nginx replaces a client's claim with the scheme it saw


@pytest.mark.parametrize('size, status', [(2 * 1024 * 1024, 413), (70 * 1024, 413)])
def test_nginx_refuses_large_bodies_as_json(cluster, size, status):
    nginx, _ = cluster
    conn = http.client.HTTPConnection('127.0.0.1', nginx.port, timeout=10)
    conn.request('POST', '/auth/register', body=b'{"email": "' + b'a' * size + b'"}',
                 headers={'Content-Type': 'application/json'})
    response = conn.getresponse()
    assert (response.status, json.loads(response.read())['status']) == (status, status)
    assert response.getheader('Content-Type').startswith('application/json')


@pytest.mark.parametrize('headers, path', [({'X-Big': 'a' * 20000}, '/'), ({}, '/movies/?q=' + 'a' * 70000),
                                           ({'X-A': 'a' * 9000, 'X-B': 'b' * 9000}, '/')])
def test_oversized_headers_answer_json_431(cluster, headers, path):
    nginx, _ = cluster
    status, response_headers, body = call(nginx.port, 'GET', path, headers=headers)
    assert (status, body['status']) == (431, 431)  # from nginx, or from the instance past 16 KiB in all


def test_catalogue_import_reaches_every_instance(cluster, tmp_path):
    nginx, instances = cluster
    catalogue = {'movies': [{'pk': 21, 'title': 'Новый фильм', 'description': 'Импорт.', 'trailer': '',
                             'year': 2025, 'rating': 7.5, 'genre_id': 1, 'director_id': 1}]}
    path = tmp_path / 'new.json'
    path.write_text(json.dumps(catalogue, ensure_ascii=False), encoding='utf-8')
    for instance in instances:  # each caches the catalogue's first page
        assert len(call(instance.port, 'GET', '/movies/?page=2')[2]) == MOVIES - 12
    subprocess.run([sys.executable, os.path.join(HERE, 'moviesapi.py'), '--db', instances[0].db,
                    '--import', str(path)], env=instances[0].env, check=True, capture_output=True)
    imported = time.monotonic()
    seen = {}
    while len(seen) < INSTANCES and time.monotonic() < imported + 5:
        for instance in instances:
            if instance.port not in seen and len(call(instance.port, 'GET', '/movies/?page=2')[2]) == MOVIES - 11:
                seen[instance.port] = time.monotonic() - imported
        time.sleep(0.05)
    assert len(seen) == INSTANCES and max(seen.values()) < 1 + 0.5, seen  # --cache-seconds 1, plus slack
    assert call(nginx.port, 'GET', '/movies/21')[2]['title'] == 'Новый фильм'


class DyingUpstream:
    """A TCP server that reads one request per connection, counts it by method and path, and closes the
    connection without answering: an instance killed while it held the request."""

    def __init__(self):
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.port = self.listener.getsockname()[1]
        self.received = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b''
                while b'\r\n\r\n' not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    self.received.append(data.split(b' ', 2)[:2])

    def close(self):
        self.listener.close()


@pytest.mark.parametrize('method, path, attempts', [
    ('POST', '/favorites/movies/1', 1), ('PATCH', '/user/', 1),
    ('PUT', '/auth/login', 1), ('PUT', '/user/password', 1),
    ('GET', '/movies/', 3),              # reads are passed on to the next instance
    ('DELETE', '/favorites/movies/1', 3),  # nginx counts DELETE as idempotent; here it is (404 the second time)
])
def test_writes_sent_to_a_dying_instance_are_not_resent(tmp_path, method, path, attempts):
    upstreams = [DyingUpstream() for _ in range(INSTANCES)]
    nginx = Nginx(tmp_path, [u.port for u in upstreams], max_fails=0).start()  # never skip one: count attempts
    try:
        status, headers, body = call(nginx.port, method, path, body={} if method != 'GET' else None)
        assert (status, body['status']) == (502, 502) and headers['Content-Type'] == 'application/json'
        assert sum(len(u.received) for u in upstreams) == attempts
    finally:
        nginx.stop()
        for upstream in upstreams:
            upstream.close()


def test_a_refused_connection_is_passed_on_for_writes_too(server_factory, tmp_path):
    """Nothing was sent to a port that refuses, so even a POST goes on to the next instance."""
    instance = server_factory(args=SERVER_ARGS)
    nginx = Nginx(tmp_path / 'nginx', [free_port(), free_port(), instance.port], max_fails=0).start()
    try:
        for number in range(6):
            credentials = {'email': f'refused{number}@example.com', 'password': 'correct horse'}
            assert call(nginx.port, 'POST', '/auth/register', credentials)[0] == 201
    finally:
        nginx.stop()


def run_load(nginx, clients, during):
    """clients users play through nginx while during() runs; returns (users, seconds)."""
    stop = threading.Event()
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(run_user, nginx.port, number, stop) for number in range(clients)]
        try:
            during()
        finally:
            stop.set()
        users = [future.result() for future in futures]
    return users, time.monotonic() - started


def check_durable(nginx, users):
    """Every acknowledged favourite is saved and nothing twice; no refresh token the server accepted works again.
    Returns the number of checks made."""
    checks = 0
    for user in users:
        user.client.close()
        user.log_in()
        saved = user.favorites()
        assert len(saved) == len(set(saved)), (user.email, saved)
        assert user.saved - user.unknown <= set(saved) <= user.saved | user.unknown, (user.email, saved, user.saved)
        for token in user.spent:
            assert user.client.call('PUT', '/auth/login', {'refresh_token': token})[0] == 401
        checks += 1 + len(user.spent)
    return checks


def resent(nginx, methods):
    """Access-log lines of requests with these methods that nginx sent (bytes > 0) to more than one instance."""
    return [line for line in nginx.access_log() if line['method'] in methods
            and sum(sent not in ('0', '-') for sent in line['sent']) > 1]


def summary(users):
    statuses = [s for user in users for s in user.client.statuses]
    failed = [s for s in statuses if s[2] >= 500]
    errors = [e for user in users for e in user.client.errors]
    return statuses, failed, errors


def test_an_instance_killed_under_load_loses_no_acknowledged_write(cluster, capsys):
    nginx, instances = cluster
    victim = instances[1]
    killed = []

    def kill_and_restart():
        time.sleep(SECONDS * 0.3)
        victim.kill()
        killed.append(time.monotonic())
        time.sleep(SECONDS * 0.3)
        victim.start()  # the same port
        time.sleep(SECONDS * 0.4)

    users, duration = run_load(nginx, CLIENTS, kill_and_restart)
    statuses, failed, errors = summary(users)
    checks = check_durable(nginx, users)
    log = nginx.access_log()
    retried_reads = [line for line in log if line['method'] == 'GET' and len(line['upstreams']) > 1]
    lost_writes = [line for line in log if line['method'] in WRITES and line['status'] == '502']
    with capsys.disabled():
        print(f'\n[nginx/{engine_of(victim)}] {CLIENTS} clients, {INSTANCES} instances, one SIGKILLed and '
              f'restarted: {len(statuses)} requests in {duration:.1f} s = {len(statuses) / duration:.0f} req/s; '
              f'2xx {sum(200 <= s[2] < 300 for s in statuses)}, 4xx {sum(400 <= s[2] < 500 for s in statuses)}, '
              f'502 {len(failed)} (writes whose instance died: {len(lost_writes)}), connection errors '
              f'{len(errors)}; reads passed on to another instance {len(retried_reads)}; DELETEs resent '
              f'{len(resent(nginx, ["DELETE"]))}, other writes resent {len(resent(nginx, NEVER_RESENT))}; '
              f'durability checks {checks}')

    # An answer whose headers had left the victim when it died is cut short: nothing can resend it, reads included
    assert all(-1 < at - killed[0] < 2 for at, _ in errors), errors[:5]
    assert len(errors) <= int(SERVER_ARGS[SERVER_ARGS.index('--threads') + 1]), errors[:5]  # one per worker
    assert all(s[0] in WRITES and s[2] == 502 for s in failed), failed[:5]  # reads never fail
    assert len(failed) <= CLIENTS, failed[:5]  # only requests in flight, or sent to the dead port unretried
    assert not resent(nginx, NEVER_RESENT)
    assert any(f'127.0.0.1:{victim.port}' in line['upstreams'][-1] and line['status'].startswith('2')
               for line in log[-len(log) // 4:]), 'the restarted instance got no traffic'
    assert len(statuses) >= CLIENTS * 50, 'too few requests to call this a load test'


def test_rolling_restart_under_load_fails_no_request(cluster, capsys):
    nginx, instances = cluster
    ports = [instance.port for instance in instances]
    steps = []

    def roll():
        time.sleep(1)
        for instance in instances:
            started = time.monotonic()
            nginx.reload(down={instance.port})  # drain: no new requests, the old workers' ones finished
            instance.stop()  # SIGTERM
            instance.start()
            nginx.reload()
            steps.append(time.monotonic() - started)
        time.sleep(1)

    users, duration = run_load(nginx, CLIENTS // 2, roll)
    statuses, failed, errors = summary(users)
    checks = check_durable(nginx, users)
    unexpected = [s for s in statuses if s[2] not in (200, 201, 204, 404)]
    with capsys.disabled():
        print(f'\n[nginx/{engine_of(instances[0])}] rolling restart of {len(ports)} instances under '
              f'{CLIENTS // 2} clients: {len(statuses)} requests in {duration:.1f} s, '
              f'failed {len(failed) + len(errors)}, other statuses {len(unexpected)}, resent by the client on a '
              f'reused connection nginx had closed {sum(u.client.resent for u in users)}; per instance '
              f'{", ".join(f"{s:.1f}" for s in steps)} s; durability checks {checks}')
    assert not errors, errors[:5]
    assert not failed, failed[:5]
    assert not unexpected, unexpected[:5]
    assert not resent(nginx, NEVER_RESENT)
