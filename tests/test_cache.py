"""The catalogue response cache: canonical keys, a memory budget, long lists in files, bounded uncached work."""
import contextlib
import http.client
import json
import os
import re
import stat
import threading
import time

import pytest

import moviesapi
from jsonio import MESSAGES
from models import Movie
from response_cache import MiB, ResponseCache, Workload

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def use_cache(budget=64 * MiB, workers=4, renders=4, wait=5.0):
    cache = ResponseCache(3600, Workload(workers, renders, wait), budget)
    moviesapi.app.config['moviesapi.cache'] = cache
    return cache


# --- Keys: the parameters a route uses, validated, in one order -----------------------------------------

def test_unknown_parameters_make_no_entries_and_stay_out_of_links(app):
    first = app.get('/movies/?status=new&page=1')
    for n in range(30):
        again = app.get(f'/movies/?page=1&junk{n}={"x" * 500}&status=new')
        assert again.body == first.body and again.headers['ETag'] == first.headers['ETag']
        assert again.headers['Link'] == first.headers['Link']
    assert 'junk' not in first.headers['Link'] and len(first.headers['Link']) < 200
    assert list(moviesapi.setting('cache').entries) == [('/movies', (('status', 'new'), ('page', 1)))]


@pytest.mark.parametrize('query, same_as', [
    ('status=old', ''),  # a status other than "new" is id order
    ('status=new&status=old', ''),  # the last of repeated parameters counts
    ('page=2&page=1', 'page=1'),
    ('q=', ''),  # an empty search is no search
    ('genre_id=17&foo=bar', 'genre_id=17'),
])
def test_equivalent_queries_share_one_entry(app, query, same_as):
    one, other = app.get('/movies/?' + query), app.get('/movies/?' + same_as)
    assert one.body == other.body and one.headers['ETag'] == other.headers['ETag']
    assert len(moviesapi.setting('cache').entries) == 1


def test_links_keep_the_known_parameters_in_one_order(app):
    links = app.get('/movies/', {'page': '1', 'x': 'y', 'q': 'а', 'genre_id': '2', 'status': 'new'}).headers['Link']
    assert links.split('>')[0] == '</movies/?status=new&genre_id=2&q=%D0%B0&page=1'


@pytest.mark.parametrize('query', ['page=1&page=', 'year=1&year=99999'])
def test_a_bad_last_value_of_a_repeated_parameter_is_still_400(app, query):
    assert app.get('/movies/?' + query, status=400).json['message']


# --- The memory budget --------------------------------------------------------------------------------

def test_the_least_recently_used_entries_go_first_to_keep_within_the_budget(app):
    cache = use_cache(budget=64 * 1024)
    app.get('/genres/1')
    for page in range(1, 200):
        app.get(f'/movies/?page={page}')
        app.get('/genres/1')  # used all along: never the least recent
        assert cache.memory <= cache.budget
    assert ('/genres/1', ()) in cache.entries and ('/movies', (('page', 1),)) not in cache.entries
    assert ('/movies', (('page', 199),)) in cache.entries


def rss_mib(pid):
    with open(f'/proc/{pid}/status') as status:
        return int(re.search(r'VmRSS:\s+(\d+) kB', status.read()).group(1)) / 1024


def send_all(port, paths, connections=4):
    """GET every path over a few keep-alive connections; the statuses seen."""
    statuses = set()

    def client(share):
        connection = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
        for path in share:
            connection.request('GET', path)
            response = connection.getresponse()
            response.read()
            statuses.add(response.status)
        connection.close()
    threads = [threading.Thread(target=client, args=(paths[n::connections],)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_ten_thousand_junk_queries_leave_memory_within_the_budget(server_factory):
    server = server_factory(args=['--cache-mib', '2'])
    junk = lambda n: [f'/movies/?junk{n}={"x" * 300}', f'/movies/?page=1&x={n}', f'/genres/?{n}',
                      f'/movies/?status=new&year=2015&{n}={n}',
                      f'/movies/?q=junk{n}' if n % 2 else f'/movies/?page={n}']  # distinct valid keys: evicted
    send_all(server.port, [path for n in range(400) for path in junk(n)])  # threads, pools, allocator warm
    before = rss_mib(server.proc.pid)
    assert send_all(server.port, [path for n in range(400, 2400) for path in junk(n)]) == {200}
    grown = rss_mib(server.proc.pid) - before
    assert grown < 2 + 4, f'RSS grew {grown:.1f} MiB with a 2 MiB cache'


# --- Long lists: built once into a private file, sent from it ------------------------------------------

def test_a_long_list_is_built_once_into_a_private_file_and_sent_from_it(app):
    cache = use_cache(budget=64 * 1024)  # bodies over 1 KiB go to files
    first = app.get('/movies/')
    [entry] = cache.entries.values()
    assert entry.body is None and stat.S_IMODE(os.stat(cache.directory.name).st_mode) == 0o700
    with open(entry.path, 'rb') as file:
        assert file.read() == first.body
    assert [movie['id'] for movie in first.json] == list(range(1, 21))
    again = app.get('/movies/')
    assert again.body == first.body and sorted(again.headerlist) == sorted(first.headerlist)
    assert app.get('/movies/', headers={'If-None-Match': first.headers['ETag']}, status=304).body == b''
    from models import bump_catalogue_revision
    bump_catalogue_revision()
    cache.next_check = 0  # as if the check interval had passed
    app.get('/genres/')
    assert not os.path.exists(entry.path) and os.listdir(cache.directory.name) == []


def test_concurrent_first_requests_build_a_list_once(app, monkeypatch):
    use_cache()
    renders, render = [], Movie.listing

    def slow_render(**params):
        renders.append(params)
        time.sleep(0.3)
        return render(**params)
    monkeypatch.setattr(Movie, 'listing', slow_render)
    bodies = []
    threads = [threading.Thread(target=lambda: bodies.append(app.get('/movies/?genre_id=17').body))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(renders) == 1 and len(bodies) == 4 and len(set(bodies)) == 1


def test_at_most_two_answers_stream_from_files_at_once(app):
    cache = use_cache(budget=64 * 1024)  # bodies over 1 KiB go to files
    full = app.get('/movies/')
    [key] = cache.entries
    held = [cache.peek(key)[0] for _ in range(2)]  # two responses still being sent
    busy = app.get('/movies/', status=503)
    assert busy.json['status'] == 503 and busy.headers['Retry-After'] == '1'
    assert app.get('/genres/').status_int == 200  # answers kept in memory need no stream
    held.pop().close()
    assert app.get('/movies/').body == full.body
    held.pop().close()


def test_waitress_sends_the_file_and_the_directory_goes_at_exit(server_factory, tmp_path):
    temp = tmp_path / 'temp'
    temp.mkdir()
    server = server_factory(args=['--cache-mib', '0.25'], env={'TMPDIR': str(temp)})  # files over 4 KiB
    status, head, movies = server.call('GET', '/movies/')
    again = server.call('GET', '/movies/')
    assert status == 200 and [movie['id'] for movie in movies] == list(range(1, 21)) and again[2] == movies
    assert int(head['Content-Length']) == len(json.dumps(movies, ensure_ascii=False, separators=(',', ':')).encode())
    [directory] = temp.iterdir()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700 and len(list(directory.iterdir())) == 1
    server.stop()
    assert not directory.exists()


# --- Uncached work cannot take every worker ------------------------------------------------------------

@contextlib.contextmanager
def render_held(app, monkeypatch, path):
    """GET path in a thread whose render of the movie listing waits until the block ends."""
    started, release, render = threading.Event(), threading.Event(), Movie.listing

    def blocked_render(**params):
        started.set()
        release.wait(10)
        return render(**params)
    monkeypatch.setattr(Movie, 'listing', blocked_render)
    blocked = threading.Thread(target=lambda: app.get(path))
    blocked.start()
    try:
        assert started.wait(5)
        yield
    finally:
        release.set()
        blocked.join()


def test_uncached_work_beyond_its_workers_is_refused_with_retry_after(app, monkeypatch):
    use_cache(workers=1, renders=1, wait=0.2)
    app.get('/movies/1')
    with render_held(app, monkeypatch, '/movies/?q=а'):
        busy = app.get('/movies/?q=б', status=503)
        assert busy.json == {'message': MESSAGES[503], 'status': 503} and busy.headers['Retry-After'] == '1'
        assert app.get('/movies/1').json['id'] == 1  # cached: needs no worker for uncached work
    assert app.get('/movies/?q=б').status_int == 200


def test_waiting_for_a_build_is_bounded(app, monkeypatch):
    use_cache(workers=2, renders=1, wait=0.2)
    with render_held(app, monkeypatch, '/movies/'):
        waited = time.monotonic()
        assert app.get('/movies/', status=503).headers['Retry-After'] == '1'  # the same list, still building
        assert app.get('/movies/?year=2015', status=503).json['status'] == 503  # no render slot free
        assert time.monotonic() - waited < 2
