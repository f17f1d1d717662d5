#!/usr/bin/env python3
"""Benchmark the real moviesapi server against a bare-Waitress ceiling.

    python bench.py                     # seed data (about 2 minutes)
    python bench.py --movies 100000     # seed data, then a synthetic 100,000-movie catalogue
    python bench.py --nginx             # the proxy hop: direct vs through deploy/nginx.conf to 1 and 2 instances

Starts `moviesapi.py` on loopback, loads it with wrk (Debian's package) or, without wrk, a small
threaded Python client, and reads the server's CPU time from /proc/<pid>/stat. Each figure is the
median of --rounds interleaved runs. Targets are printed beside the figures with PASS/FAIL.
"""
import argparse
import http.client
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import namedtuple
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE_SIZE = 12
FIGURES = ('rps', 'p50', 'p99', 'cpu_1k')
# route name -> (max CPU/request vs ceiling, min req/s vs ceiling), seed data only
SEED_TARGETS = {'/genres/': (1.5, 0.7), '/movies/?page=1': (1.5, 0.7), '/movies/{random id}': (1.5, 0.7),
                '/user/': (3, 0.5), '/favorites/movies/': (3, 0.5)}
UNCACHED_FIRST, UNCACHED_LAST = 'new, pages 1-3000 (uncached)', 'new, last 3000 pages (uncached)'
UNCACHED_ID_ORDER = 'id order, last 3000 pages (uncached)'
STARTED = []  # every server started, stopped by main() however the run ends
Route = namedtuple('Route', 'name paths method body token', defaults=('GET', None, None))

# ---- servers --------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Server:
    """One server subprocess on loopback: started, health-checked, measured through /proc, stopped."""

    def __init__(self, argv, env, log_path):
        self.argv, self.env, self.log_path, self.proc = argv, env, log_path, None

    def start(self):
        self.port = free_port()
        argv = [a.replace('{port}', str(self.port)) for a in self.argv]
        with open(self.log_path, 'ab') as log:
            self.proc = subprocess.Popen(argv, cwd=HERE, env=self.env, stdout=log, stderr=log)
        STARTED.append(self)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f'server exited ({self.proc.returncode}): {argv}\n{self.log_tail()}')
            try:
                if fetch(self.port, 'GET', '/health')[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        sys.exit(f'server not healthy after 60 s: {argv}\n{self.log_tail()}')

    def stop(self):
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cpu_seconds(self):
        """utime + stime of the whole process (all threads), in seconds."""
        with open(f'/proc/{self.proc.pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')

    def wait_idle(self, timeout=10):
        """Wait until the server stops using CPU (requests queued by the previous run are finished)."""
        deadline, last = time.monotonic() + timeout, self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            last, previous = self.cpu_seconds(), last
            if last - previous < 0.01:
                return

    def peak_rss_mb(self):
        with open(f'/proc/{self.proc.pid}/status') as f:
            return int(re.search(r'VmHWM:\s+(\d+) kB', f.read()).group(1)) / 1024

    def log_tail(self):
        with open(self.log_path, 'rb') as f:
            return f.read()[-3000:].decode('utf-8', 'replace')


def serve_ceiling(port, response_file):
    """--ceiling-server mode: a bare WSGI callable returning one saved response, on Waitress."""
    import logging

    import waitress
    with open(response_file) as f:
        saved = json.load(f)
    headers = [tuple(h) for h in saved['headers']]
    if 'body_file' in saved:
        with open(saved['body_file'], 'rb') as f:
            body = f.read()
    else:
        body = saved['body'].encode('latin-1')

    def app(environ, start_response):
        start_response('200 OK', headers)
        return [body]

    # With more clients than threads, the "Task queue depth" warning fires on about half the requests and
    # costs ~20% of throughput; the ceiling is the best this Waitress can do, so it is silenced here.
    logging.getLogger('waitress.queue').setLevel(logging.ERROR)
    waitress.serve(app, host='127.0.0.1', port=port, threads=4, ident='moviesapi')

# ---- HTTP helpers, data ---------------------------------------------------------------------------

def fetch(port, method, path, body=None, token=None):
    """One request on a fresh connection; returns (status, headers, body bytes)."""
    headers = {'Content-Type': 'application/json'} if body is not None else {}
    if token:
        headers['Authorization'] = 'Bearer ' + token
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=120)
    try:
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def expect(result, *statuses):
    if result[0] not in statuses:
        sys.exit(f'expected {statuses}, got {result[0]}: {result[2][:300]!r}')
    return result


def make_user(port, movie_ids):
    """Register and log in a bench user with 10 favourite movies; returns (credentials, access token)."""
    creds = {'email': f'bench-{secrets.token_hex(4)}@example.com', 'password': 'Bench-' + secrets.token_hex(8)}
    expect(fetch(port, 'POST', '/auth/register', creds), 201)
    token = json.loads(expect(fetch(port, 'POST', '/auth/login', creds), 200)[2])['access_token']
    for movie_id in movie_ids[:10]:
        expect(fetch(port, 'POST', f'/favorites/movies/{movie_id}', token=token), 200, 201)
    return creds, token


WORDS = ('night city river last first dark silent red winter summer king road house star war love ghost '
         'island secret storm garden letter train mirror wolf sea mountain shadow glass iron golden '
         'брат сестра зима ночь город река дорога звезда').split()
FIRST = 'Anna Boris Clara David Elena Felix Greta Hugo Irina Jonas Karin Lev Maria Nikita Olga Pavel ' \
        'Quinn Rosa Sergei Tanya Ulrich Vera Walter Xenia Yuri Zoe Alexei Bianca Carlos Dasha'.split()
LAST = 'Ivanov Smith Petrova Kowalski Novak Rossi Weber Larsen Moreau Tanaka Silva Horvat Berg Dubois ' \
       'Volkov Kim Costa Fischer Nagy Popescu Jansen Lindqvist Orlov Santos Keller Frost Hale Marsh'.split()


def add_synthetic_catalogue(db_path, n_movies, n_directors, seed):
    """Top the sqlite catalogue up to n_movies movies and n_directors directors, reproducibly."""
    rng = random.Random(seed)
    con = sqlite3.connect(db_path)
    columns = ('id', 'title', 'description', 'trailer', 'year', 'rating', 'genre_id', 'director_id')
    required = [c[1] for c in con.execute('PRAGMA table_info(movie)') if c[3] and c[4] is None and not c[5]]
    if set(required) - set(columns):
        sys.exit(f'movie has required columns this bench does not fill: {set(required) - set(columns)}')
    genre_ids = [r[0] for r in con.execute('SELECT id FROM genre')]
    d_count, d_max = con.execute('SELECT count(*), coalesce(max(id), 0) FROM director').fetchone()
    names = rng.sample([f'{first} {m}. {last}' for first in FIRST for m in 'ABEKLMNRSV' for last in LAST],
                       max(0, n_directors - d_count))
    directors = [(d_max + 1 + i, name) for i, name in enumerate(names)]
    m_count, m_max = con.execute('SELECT count(*), coalesce(max(id), 0) FROM movie').fetchone()
    director_ids = [r[0] for r in con.execute('SELECT id FROM director')] + [d[0] for d in directors]

    def movie(movie_id):
        title = ' '.join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))).capitalize()
        description = ' '.join(rng.choice(WORDS) for _ in range(rng.randint(40, 120))).capitalize() + '.'
        trailer = 'https://www.youtube.com/watch?v=' + ''.join(rng.choices('abcdefghijkXYZ0123456789_-', k=11))
        return (movie_id, title, description, trailer, rng.randint(1930, 2024), round(rng.uniform(1, 10), 1),
                rng.choice(genre_ids), rng.choice(director_ids))

    with con:
        con.executemany('INSERT INTO director (id, name) VALUES (?, ?)', directors)
        con.executemany(f'INSERT INTO movie ({", ".join(columns)}) VALUES ({", ".join("?" * 8)})',
                        (movie(m_max + 1 + i) for i in range(max(0, n_movies - m_count))))
    con.close()


def movie_ids(db_path):
    with sqlite3.connect(db_path) as con:
        return [r[0] for r in con.execute('SELECT id FROM movie ORDER BY id')]

# ---- load generators ------------------------------------------------------------------------------

def lua_script(route, path):
    """Write a wrk script sending the route's method, body and headers, cycling through its paths."""
    lines = [f'wrk.method = "{route.method}"']
    if route.body is not None:
        lines += [f'wrk.body = {json.dumps(json.dumps(route.body))}',
                  'wrk.headers["Content-Type"] = "application/json"']
    if route.token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {route.token}"')
    if len(route.paths) > 1:  # a request() function costs wrk CPU: only when there is something to cycle
        lines += ['local paths = {' + ', '.join(json.dumps(p) for p in route.paths) + '}', 'local i = 0',
                  'request = function() i = i % #paths + 1; return wrk.format(nil, paths[i]) end']
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def to_ms(number, unit):
    return float(number) * {'us': 1e-3, 'ms': 1, 's': 1e3, 'm': 6e4}[unit]


def parse_wrk(text):
    """Requests, req/s, p50/p99 (ms) and error counts from `wrk --latency` output."""
    requests = int(re.search(r'(\d+) requests in', text).group(1))
    errors = sum(map(int, re.findall(r'Non-2xx or 3xx responses: (\d+)', text)))
    errors += sum(int(n) for n in re.findall(r'(?:connect|read|write|timeout) (\d+)', text))
    p50, p99 = (to_ms(*re.search(rf'^\s+{q}%\s+([\d.]+)(\w+)', text, re.MULTILINE).groups()) for q in (50, 99))
    rps = float(re.search(r'Requests/sec:\s+([\d.]+)', text).group(1))
    return {'requests': requests, 'rps': rps, 'p50': p50, 'p99': p99, 'errors': errors}


def run_wrk(port, route, duration, connections, tmp):
    script = os.path.join(tmp, 'route.lua')
    lua_script(route, script)
    out = subprocess.run(['wrk', '-t1', f'-c{connections}', f'-d{duration}s', '--timeout', '10s', '--latency',
                          '-s', script, f'http://127.0.0.1:{port}{route.paths[0]}'],
                         capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def run_python_client(port, route, duration, connections, tmp):
    """Fallback load generator: one keep-alive http.client connection per thread for `duration` seconds."""
    headers = {'Content-Type': 'application/json'} if route.body is not None else {}
    if route.token:
        headers['Authorization'] = 'Bearer ' + route.token
    body = None if route.body is None else json.dumps(route.body)
    latencies, errors, deadline = [[] for _ in range(connections)], [0] * connections, time.monotonic() + duration

    def client(k):
        conn, i = http.client.HTTPConnection('127.0.0.1', port, timeout=10), k
        while time.monotonic() < deadline:
            start, i = time.perf_counter(), i + 1
            try:
                conn.request(route.method, route.paths[i % len(route.paths)], body, headers)
                resp = conn.getresponse()
                resp.read()
                errors[k] += resp.status >= 400
                latencies[k].append((time.perf_counter() - start) * 1000)
            except (OSError, http.client.HTTPException):
                errors[k] += 1
                conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = sorted(x for per_thread in latencies for x in per_thread)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float('nan')
    return {'requests': len(lat), 'rps': len(lat) / (time.perf_counter() - started),
            'p50': pct(0.50), 'p99': pct(0.99), 'errors': sum(errors)}

# ---- measurement and report -----------------------------------------------------------------------

def measure(server, route, args, tmp, duration=None):
    """One load run; adds the server's CPU-seconds per 1,000 requests."""
    server.wait_idle()
    cpu = server.cpu_seconds()
    load = run_wrk if args.wrk else run_python_client
    result = load(server.port, route, duration or args.duration, args.connections, tmp)
    if not result['requests']:  # nothing finished: no figure rather than a wrong one
        result.update(rps=0.0, p50=math.nan, p99=math.nan)
    result['cpu_1k'] = (server.cpu_seconds() - cpu) / result['requests'] * 1000 if result['requests'] else math.nan
    return result


def measure_all(targets, args, tmp):
    """Warm every (server, route) up, then measure each `rounds` times, interleaved; medians per figure."""
    runs = {route.name: [] for _, route in targets}
    for server, route in targets:
        measure(server, route, args, tmp, duration=1)
    for n in range(args.rounds):
        for server, route in targets:
            r = measure(server, route, args, tmp)
            runs[route.name].append(r)
            print(f'  round {n + 1} {route.name:<38} {r["rps"]:8.0f} req/s  p50 {r["p50"]:7.2f} ms  '
                  f'p99 {r["p99"]:7.2f} ms  {r["cpu_1k"]:6.3f} CPU-s/1k' +
                  (f'  {r["errors"]} ERRORS' if r['errors'] else ''), flush=True)
    return {name: {k: statistics.median(r[k] for r in rs) for k in FIGURES + ('errors',)}
            for name, rs in runs.items()}


def ratio(a, b):
    return a / b if b else math.nan


def verdict(ok):
    return 'PASS' if ok else 'FAIL'


def print_table(title, results, seed_targets):
    """Medians, ratios to the ceiling and (seed data) the targets, one line a route."""
    ceiling = results['ceiling (bare Waitress)']
    print(f'\n{title}\n{"route":<38} {"req/s":>8} {"p50 ms":>8} {"p99 ms":>8} {"CPU-s/1k":>9} '
          f'{"CPU×ceil":>9} {"req/s÷ceil":>10}  target')
    for name, r in results.items():
        cpu_x, rps_x = ratio(r['cpu_1k'], ceiling['cpu_1k']), ratio(r['rps'], ceiling['rps'])
        target = seed_targets.get(name) if seed_targets else None
        check = (f'≤{target[0]}× ≥{target[1]:.0%}  {verdict(cpu_x <= target[0] and rps_x >= target[1])}'
                 if target else '')
        errors = f'  ({r["errors"]:.0f} errors/run)' if r['errors'] else ''
        print(f'{name:<38} {r["rps"]:8.0f} {r["p50"]:8.2f} {r["p99"]:8.2f} {r["cpu_1k"]:9.3f} '
              f'{cpu_x:9.2f} {rps_x:10.0%}  {check}{errors}')


def bench_routes(ids, creds, token, rng, synthetic):
    """The measured routes. At scale, 20,000 random ids and cycles of 3,000 pages defeat response caches."""
    last = math.ceil(len(ids) / PAGE_SIZE)
    new_pages = lambda numbers, order='status=new&': [f'/movies/?{order}page={n}' for n in numbers]
    return [Route('/genres/', ['/genres/']),
            Route('/movies/?page=1', ['/movies/?page=1']),
            Route('/movies/?status=new&page=1', ['/movies/?status=new&page=1']),
            Route(f'/movies/?status=new&page={last}', [f'/movies/?status=new&page={last}']),
            Route('/movies/{random id}', [f'/movies/{rng.choice(ids)}' for _ in range(20000)]),
            Route('/user/', ['/user/'], token=token),
            Route('/favorites/movies/', ['/favorites/movies/'], token=token),
            Route('POST /auth/login', ['/auth/login'], 'POST', creds),
            ] + ([Route(UNCACHED_FIRST, new_pages(range(1, 3001))),
                  Route(UNCACHED_LAST, new_pages(range(last - 2999, last + 1))),
                  Route(UNCACHED_ID_ORDER, new_pages(range(last - 2999, last + 1), ''))] if synthetic else [])


def start_server(args, tmp, movies):
    """The real server on a fresh database: seed data, or topped up to `movies` synthetic movies."""
    db = os.path.join(tmp, f'movies-{movies or "seed"}.db')
    env = {k: v for k, v in os.environ.items() if k not in ('MOVIESAPI_HASH_ITERATIONS', 'MOVIESAPI_DATABASE_URL')}
    env['MOVIESAPI_SECRET'] = secrets.token_hex(32)
    server = Server([sys.executable, 'moviesapi.py', '--host', '127.0.0.1', '--port', '{port}', '--db', db,
                     '--threads', '4', '--password-hashes-per-minute', '1000000'],  # the bench is one address
                    env, os.path.join(tmp, f'server-{movies or "seed"}.log')).start()
    if movies:
        server.stop()
        started = time.perf_counter()
        add_synthetic_catalogue(db, movies, 1000, args.seed)
        print(f'\nsynthetic catalogue: {movies} movies, 1000 directors in {time.perf_counter() - started:.1f} s')
        server.start()
    return server, movie_ids(db)


def start_server_on(db, tmp, name, threads):
    """The real server on an existing database file, with its own log."""
    env = {k: v for k, v in os.environ.items() if k not in ('MOVIESAPI_HASH_ITERATIONS', 'MOVIESAPI_DATABASE_URL')}
    env['MOVIESAPI_SECRET'] = secrets.token_hex(32)
    return Server([sys.executable, 'moviesapi.py', '--host', '127.0.0.1', '--port', '{port}', '--db', db,
                   '--threads', str(threads)], env, os.path.join(tmp, f'server-{name}.log')).start()


def start_ceiling(server, tmp):
    """The bare-Waitress ceiling, serving the bytes and headers of the real server's /movies/?page=1."""
    _, headers, body = expect(fetch(server.port, 'GET', '/movies/?page=1'), 200)
    response_file = os.path.join(tmp, 'page1.json')
    with open(response_file, 'w') as f:
        json.dump({'headers': [h for h in headers if h[0].lower() not in ('date', 'server', 'connection')],
                   'body': body.decode('latin-1')}, f)
    return Server([sys.executable, os.path.abspath(__file__), '--ceiling-server', '{port}', response_file],
                  server.env, os.path.join(tmp, 'ceiling.log')).start(), len(body)


def run_phase(args, tmp, movies=None, seed_page1=None):
    """Benchmark one catalogue (seed data, or `movies` synthetic movies); returns the medians."""
    server, ids = start_server(args, tmp, movies)
    token = make_user(server.port, ids)[1]
    login_creds = make_user(server.port, ids)[0]  # its own user: each login is a session, the 21st ends the oldest
    ceiling, page_bytes = start_ceiling(server, tmp)
    routes = bench_routes(ids, login_creds, token, random.Random(args.seed), bool(movies))
    for route in routes:
        expect(fetch(server.port, route.method, route.paths[0], route.body, route.token), 200)
    label = f'{movies} synthetic movies' if movies else f'seed data ({len(ids)} movies)'
    print(f'\n== {label}: /movies/?page=1 is {page_bytes} bytes; {args.rounds} rounds × {args.duration} s')
    targets = [(ceiling, Route('ceiling (bare Waitress)', ['/movies/?page=1']))] + [(server, r) for r in routes]
    results = measure_all(targets, args, tmp)
    print_table(f'{label}, medians of {args.rounds} runs', results, None if movies else SEED_TARGETS)
    ceiling.stop()
    if not movies:  # at scale /movies/?utm_source=N is the whole 80 MB list, each time on a cache keyed by raw URL
        report_junk_growth(server)
    if movies:
        report_scale(server, results, seed_page1, routes[3].paths[0], movies)
        report_full_list(server, tmp)
        server.stop()
        report_starvation(args, tmp, os.path.join(tmp, f'movies-{movies}.db'))
    server.stop()
    return results


def report_scale(server, results, seed, deep_path, movies):
    """The large-catalogue targets: deep paging, a cold deep page, page 1 vs seed data, full-list memory."""
    print(f'\n{movies}-movie targets')
    for label, first, last in (('same page repeated', '/movies/?status=new&page=1', deep_path),
                               ('3000 pages cycled', UNCACHED_FIRST, UNCACHED_LAST)):
        p50, first_p50 = results[last]['p50'], results[first]['p50']
        print(f'last status=new pages p50 ÷ first pages p50 ({label}): {p50:.2f} / {first_p50:.2f} ms = '
              f'{ratio(p50, first_p50):.2f}×   target ≤2×  {verdict(p50 <= 2 * first_p50)}')
    if seed:
        page1 = results['/movies/?page=1']
        cpu_x, slower = ratio(page1['cpu_1k'], seed['cpu_1k']), ratio(seed['rps'], page1['rps'])
        print(f'/movies/?page=1 vs seed data: CPU/request {cpu_x:.2f}×, req/s {page1["rps"]:.0f} vs {seed["rps"]:.0f} '
              f'(slowdown {slower:.2f}×)   target ≤1.5× on both  {verdict(max(cpu_x, slower) <= 1.5)}')
    server.stop()
    server.start()
    started = time.perf_counter()
    expect(fetch(server.port, 'GET', deep_path), 200)
    cold_ms = (time.perf_counter() - started) * 1000
    print(f'cold deep page (first request after a restart, {deep_path}): {cold_ms:.1f} ms   '
          f'target <10 ms  {verdict(cold_ms < 10)}')
    rss_before, cpu, started = server.peak_rss_mb(), server.cpu_seconds(), time.perf_counter()
    status, size = full_list(server.port)
    seconds, cpu, rss = time.perf_counter() - started, server.cpu_seconds() - cpu, server.peak_rss_mb()
    print(f'GET /movies/ (full list): status {status}, {size / 1e6:.1f} MB in {seconds:.2f} s, {cpu:.2f} server '
          f'CPU-s; peak RSS {rss_before:.1f} MB before, {rss:.1f} MB after   target <100 MB  {verdict(rss < 100)}')


def full_list(port, into=None, conn=None):
    """GET /movies/ without page, read in chunks (written to the file `into`, if given); returns (status, bytes)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection('127.0.0.1', port, timeout=300)
    conn.request('GET', '/movies/')
    resp, size = conn.getresponse(), 0
    while chunk := resp.read(1 << 16):
        size += len(chunk)
        if into:
            into.write(chunk)
    if own:
        conn.close()
    return resp.status, size


# ---- title search at scale ------------------------------------------------------------------------

def bench_search(args, tmp):
    """Uncached `GET /movies/?q=` on a synthetic catalogue: every request asks a query never asked before (a
    random piece of a real title in a random letter case), so no response cache can answer it."""
    movies = args.movies or 100000
    server, _ = start_server(args, tmp, movies)
    with sqlite3.connect(os.path.join(tmp, f'movies-{movies}.db')) as con:
        titles = [title for (title,) in con.execute('SELECT title FROM movie')]
    rng = random.Random(args.seed)
    print(f'\n== title search, {movies} synthetic movies')
    for label, lengths, count in (('3-8 characters', range(3, 9), 500), ('1-2 characters', (1, 2), 200)):
        queries = search_queries(titles, lengths, count, rng)
        latencies = sorted(get_each(server.port, [f'/movies/?q={quote(q)}&page=1' for q in queries]))
        p50 = statistics.median(latencies)
        print(f'uncached ?q= ({label}, {len(latencies)} distinct queries, one client): p50 {p50:.2f} ms, '
              f'p90 {latencies[int(0.9 * len(latencies))]:.2f} ms, max {latencies[-1]:.2f} ms' +
              (f'   target <10 ms  {verdict(p50 < 10)}' if lengths[0] == 3 else ''))
    search_pool = search_queries(titles, range(3, 9), 20000, rng)
    cached = get_each(server.port, ['/movies/1'] * 50)  # cached from the first request on
    searches, cached_under_load = searches_alongside(server.port, search_pool, 8, args.duration * 2)
    print(f'cached /movies/1 alone: p50 {statistics.median(cached):.2f} ms; while 8 clients search '
          f'({searches} uncached searches in {args.duration * 2} s): p50 {statistics.median(cached_under_load):.2f}'
          f' ms, max {max(cached_under_load):.2f} ms')
    server.stop()


def search_queries(titles, lengths, count, rng):
    """`count` distinct pieces of titles, each in a random letter case (distinct as the server sees them)."""
    queries = set()
    for _ in range(count * 50):
        title, length = rng.choice(titles), rng.choice(lengths)
        start = rng.randrange(max(1, len(title) - length + 1))
        piece = title[start:start + length]
        queries.add(''.join(rng.choice((c.lower(), c.upper())) for c in piece))
        if len(queries) == count:
            break
    return list(queries)


def get_each(port, paths):
    """GET each path in turn on one keep-alive connection; the latencies in ms."""
    conn, latencies = http.client.HTTPConnection('127.0.0.1', port, timeout=60), []
    for path in paths:
        started = time.perf_counter()
        conn.request('GET', path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            sys.exit(f'{path}: {response.status}')
        latencies.append((time.perf_counter() - started) * 1000)
    conn.close()
    return latencies


def searches_alongside(port, pool, clients, seconds):
    """`clients` threads search the pool's queries (each once) while this thread times cached /movies/1."""
    paths, deadline, done = iter(f'/movies/?q={quote(q)}&page=1' for q in pool), time.monotonic() + seconds, []

    def search():
        for path in paths:
            if time.monotonic() > deadline:
                break
            done.append(get_each(port, [path]))

    threads = [threading.Thread(target=search) for _ in range(clients)]
    for thread in threads:
        thread.start()
    cached = []
    while time.monotonic() < deadline:
        cached += get_each(port, ['/movies/1'])
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    return len(done), cached


def rss_mb(pid):
    with open(f'/proc/{pid}/status') as f:
        return int(re.search(r'VmRSS:\s+(\d+) kB', f.read()).group(1)) / 1024


def send_all(port, paths, connections=4):
    """GET every path over a few keep-alive connections; returns {status: count}."""
    counts, lock = {}, threading.Lock()

    def client(share):
        conn = http.client.HTTPConnection('127.0.0.1', port, timeout=120)
        for path in share:
            conn.request('GET', path)
            resp = conn.getresponse()
            resp.read()
            with lock:
                counts[resp.status] = counts.get(resp.status, 0) + 1
        conn.close()
    threads = [threading.Thread(target=client, args=(paths[k::connections],)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def report_junk_growth(server, count=10000):
    """(a) The server's RSS before and after `count` GETs whose query strings differ only in parameters no
    route uses: a cache keyed by the raw query string keeps one entry for each."""
    junk = lambda n: f'/movies/?utm_source={n}' if n % 2 else f'/movies/?page=1&session={n}'
    send_all(server.port, [junk(n) for n in range(200)])
    before, started = rss_mb(server.proc.pid), time.perf_counter()
    counts = send_all(server.port, [junk(n) for n in range(200, 200 + count)])
    print(f'junk query strings: {count} GETs (/movies/?utm_source=N, /movies/?page=1&session=N) in '
          f'{time.perf_counter() - started:.1f} s, statuses {counts}; RSS {before:.1f} MB before, '
          f'{rss_mb(server.proc.pid):.1f} MB after')


def report_full_list(server, tmp):
    """(b) GET /movies/ at scale, twice, against the bare ceiling sending the same bytes."""
    body_file = os.path.join(tmp, 'full-list.json')
    figures = []
    for label in ('first', 'second'):
        server.wait_idle()
        cpu, started = server.cpu_seconds(), time.perf_counter()
        with open(body_file, 'wb') as into:
            status, size = full_list(server.port, into)
        figures.append((label, status, size, time.perf_counter() - started, server.cpu_seconds() - cpu,
                        rss_mb(server.proc.pid), server.peak_rss_mb()))
    _, headers, _ = expect(fetch(server.port, 'GET', '/movies/?page=1'), 200)
    response_file = os.path.join(tmp, 'full-list-response.json')
    with open(response_file, 'w') as f:
        json.dump({'headers': [('Content-Type', 'application/json')], 'body_file': body_file}, f)
    ceiling = Server([sys.executable, os.path.abspath(__file__), '--ceiling-server', '{port}', response_file],
                     server.env, os.path.join(tmp, 'ceiling-full.log')).start()
    ceiling.wait_idle()
    cpu, started = ceiling.cpu_seconds(), time.perf_counter()
    status, size = full_list(ceiling.port)
    figures.append(('ceiling', status, size, time.perf_counter() - started, ceiling.cpu_seconds() - cpu,
                    rss_mb(ceiling.proc.pid), ceiling.peak_rss_mb()))
    ceiling.stop()
    print('GET /movies/ (full list)        status       MB   seconds  server CPU-s   RSS MB  peak RSS MB')
    for label, status, size, seconds, cpu, rss, peak in figures:
        print(f'  {label:<29} {status:>6} {size / 1e6:8.1f} {seconds:9.2f} {cpu:13.2f} {rss:8.1f} {peak:12.1f}')


def report_starvation(args, tmp, db, clients=8):
    """(c) Cached /movies/1 (one client, two connections) alone, then while `clients` clients pull the full
    list and `clients` more run distinct uncached searches, on a fresh server with --threads 8. Clients
    told 503 wait its Retry-After, as a polite client does."""
    server = start_server_on(db, tmp, 'starvation', threads=8)
    expect(fetch(server.port, 'GET', '/movies/1'), 200)
    probe, load = Route('/movies/1', ['/movies/1']), run_wrk if args.wrk else run_python_client
    alone = load(server.port, probe, args.duration * 2, 2, tmp)
    stop, done = threading.Event(), {'full lists': 0, 'searches': 0, '503': 0, 'errors': 0}
    lock = threading.Lock()

    def count(what):
        with lock:
            done[what] += 1

    def pull_full_lists():
        while not stop.is_set():
            try:
                status, _ = full_list(server.port)
            except OSError:
                count('errors')
                continue
            count('full lists' if status == 200 else '503' if status == 503 else 'errors')
            if status == 503:
                time.sleep(1)

    def search(k):
        conn, number = http.client.HTTPConnection('127.0.0.1', server.port, timeout=120), k
        while not stop.is_set():
            number += clients
            try:
                conn.request('GET', f'/movies/?q={quote(WORDS[number % len(WORDS)][:3])}&page={number}')
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                count('errors')
                conn.close()
                continue
            count('searches' if resp.status == 200 else '503' if resp.status == 503 else 'errors')
            if resp.status == 503:
                time.sleep(int(resp.getheader('Retry-After', '1')))
    threads = [threading.Thread(target=pull_full_lists) for _ in range(clients)]
    threads += [threading.Thread(target=search, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1)
    busy = load(server.port, probe, args.duration * 4, 2, tmp)
    stop.set()
    for t in threads:
        t.join()
    server.stop()
    print(f'cached /movies/1, server --threads 8: alone p50 {alone["p50"]:.2f} ms, p99 {alone["p99"]:.2f} ms; '
          f'with {clients} full-list clients and {clients} searchers p50 {busy["p50"]:.2f} ms, '
          f'p99 {busy["p99"]:.2f} ms, {busy["requests"]} requests, {busy["errors"]} errors   target p99 <50 ms  '
          f'{verdict(busy["requests"] > 0 and busy["p99"] < 50)}')
    print(f'  meanwhile (whole run): {done}')


def process_cpu_seconds(pid):
    """utime + stime of one process, in seconds."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


class NginxProxy:
    """deploy/nginx.conf in the foreground, its listen port and upstream servers replaced."""

    def __init__(self, tmp, name, upstream_ports):
        self.dir, self.port = os.path.join(tmp, name), free_port()
        for sub in ('logs', 'temp'):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        with open(os.path.join(HERE, 'deploy', 'nginx.conf')) as f:
            conf = f.read().replace('listen 127.0.0.1:8080;', f'listen 127.0.0.1:{self.port};')
        servers = ''.join(f'        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;\n' for port in upstream_ports)
        conf = re.sub(r'(        server 127\.0\.0\.1:2500\d .*;\n)+', servers, conf)
        with open(os.path.join(self.dir, 'nginx.conf'), 'w') as f:
            f.write(conf)
        self.proc = subprocess.Popen(['nginx', '-e', 'stderr', '-p', self.dir, '-c', 'nginx.conf', '-g', 'daemon off;'],
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while fetch_status(self.port, '/health') != 200:
            if time.monotonic() > deadline:
                sys.exit('nginx did not start')
            time.sleep(0.1)

    def cpu_seconds(self):
        with open(f'/proc/{self.proc.pid}/task/{self.proc.pid}/children') as f:
            workers = f.read().split()
        return sum(process_cpu_seconds(pid) for pid in [self.proc.pid, *workers])

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait(10)


def fetch_status(port, path):
    try:
        return fetch(port, 'GET', path)[0]
    except OSError:
        return None


def bench_nginx(args, tmp):
    """The proxy hop's cost: CPU per request of the app and of nginx, direct and through nginx to 1 and 2
    instances (the same SQLite file and secret, --trusted-proxy 127.0.0.1)."""
    first, ids = start_server(args, tmp, None)
    first.stop()
    first.argv += ['--trusted-proxy', '127.0.0.1']
    second = Server(list(first.argv), first.env, os.path.join(tmp, 'server-second.log'))
    first.start(), second.start()
    token = make_user(first.port, ids)[1]
    routes = [Route('/movies/?page=1', ['/movies/?page=1']), Route('/user/', ['/user/'], token=token)]
    setups = [('direct, 1 instance', first.port, [first], None),
              ('nginx, 1 instance', None, [first], NginxProxy(tmp, 'nginx1', [first.port])),
              ('nginx, 2 instances', None, [first, second], NginxProxy(tmp, 'nginx2', [first.port, second.port]))]
    load = run_wrk if args.wrk else run_python_client
    print(f'\n== the proxy hop: {args.rounds} rounds × {args.duration} s, {args.connections} connections')
    print(f'{"route":<18} {"setup":<20} {"req/s":>8} {"p50 ms":>8} {"app CPU-s/1k":>13} {"nginx CPU-s/1k":>15} '
          f'{"total ×direct":>14}')
    for route in routes:
        direct = None
        for name, port, apps, proxy in setups:
            runs = []
            for _ in range(args.rounds):
                for app in apps:
                    app.wait_idle()
                app_cpu, proxy_cpu = sum(a.cpu_seconds() for a in apps), proxy.cpu_seconds() if proxy else 0
                r = load(port or proxy.port, route, args.duration, args.connections, tmp)
                r['app'] = (sum(a.cpu_seconds() for a in apps) - app_cpu) / r['requests'] * 1000
                r['nginx'] = ((proxy.cpu_seconds() - proxy_cpu) / r['requests'] * 1000) if proxy else 0.0
                runs.append(r)
            m = {k: statistics.median(r[k] for r in runs) for k in ('rps', 'p50', 'app', 'nginx')}
            direct = direct or m['app']
            print(f'{route.name:<18} {name:<20} {m["rps"]:8.0f} {m["p50"]:8.2f} {m["app"]:13.3f} {m["nginx"]:15.3f} '
                  f'{(m["app"] + m["nginx"]) / direct:14.2f}')
    for _, _, _, proxy in setups:
        if proxy:
            proxy.stop()


def print_machine(args):
    with open('/proc/cpuinfo') as f:
        model = re.search(r'model name\s*:\s*(.*)', f.read()).group(1)
    load = subprocess.run(['wrk', '--version'], capture_output=True, text=True, check=False).stdout.split(' [')[0] \
        if args.wrk else 'bundled Python client (wrk not found)'
    print(f'machine: {os.cpu_count()} CPUs, {model}; Python {sys.version.split()[0]}; load: {load}, '
          f'{args.connections} connections; server --threads 4, production hash iterations')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--movies', type=int, help='also bench a synthetic catalogue of this many movies')
    parser.add_argument('--seed', type=int, default=4, help='random seed for the synthetic data and ids')
    parser.add_argument('--duration', type=int, default=3, help='seconds per measurement')
    parser.add_argument('--rounds', type=int, default=3, help='measurements per route (median reported)')
    parser.add_argument('--connections', type=int, default=8)
    parser.add_argument('--nginx', action='store_true',
                        help='only the proxy hop: direct vs deploy/nginx.conf with 1 and 2 instances')
    parser.add_argument('--python-client', action='store_true', help='use the bundled client even with wrk')
    parser.add_argument('--search', action='store_true', help='only the title search scenario (--movies, default 100000)')
    parser.add_argument('--ceiling-server', nargs=2, metavar=('PORT', 'RESPONSE_FILE'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling_server:
        return serve_ceiling(int(args.ceiling_server[0]), args.ceiling_server[1])
    args.wrk = bool(shutil.which('wrk')) and not args.python_client
    print_machine(args)
    with tempfile.TemporaryDirectory(prefix='moviesapi-bench-') as tmp:
        try:
            if args.search:
                return bench_search(args, tmp)
            if args.nginx:
                return bench_nginx(args, tmp)
            seed = run_phase(args, tmp)
            if args.movies:
                run_phase(args, tmp, args.movies, seed['/movies/?page=1'])
        finally:
            for server in STARTED:
                server.stop()


if __name__ == '__main__':
    main()
