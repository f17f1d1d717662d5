"""The real server: `python moviesapi.py` under Waitress, over real HTTP."""
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from conftest import sign_up

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_smoke_through_waitress(live_server):
    status, head, movies = live_server.call('GET', '/movies/?status=new&page=1')
    assert status == 200 and len(movies) == 12 and head['Content-Type'] == 'application/json'
    user = sign_up(live_server)
    assert live_server.call('POST', '/favorites/movies/7', token=user['access_token'])[0] == 201
    assert [m['id'] for m in live_server.call('GET', '/favorites/movies', token=user['access_token'])[2]] == [7]
    assert live_server.call('GET', '/nope')[2]['message']
    status, head, _ = live_server.call('GET', '/genres/', headers={'Origin': 'http://localhost:3000'})
    assert head['Access-Control-Allow-Origin'] == '*'


def test_access_log_has_one_line_per_request_and_no_secrets(live_server):
    tokens = sign_up(live_server, password='hunter2hunter2')
    live_server.call('GET', '/user/', token=tokens['access_token'])
    deadline = time.monotonic() + 3  # the log is flushed twice a second
    while 'GET /user 200' not in live_server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = live_server.log()
    assert 'POST /auth/login 200' in log and 'GET /user 200' in log
    assert 'hunter2' not in log and tokens['access_token'] not in log and tokens['refresh_token'] not in log


def test_without_a_secret_a_private_key_file_keeps_tokens_valid_across_restarts(server_factory, tmp_path):
    db = str(tmp_path / 'keyed.db')
    server = server_factory(db=db, env={'MOVIESAPI_SECRET': ''})
    key_file = tmp_path / 'keyed.db.secret'
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_text().strip()) >= 64
    token = sign_up(server)['access_token']
    server.stop()
    server.start()
    assert server.call('GET', '/user/', token=token)[0] == 200
    assert key_file.read_text().strip() not in server.log()


def test_a_short_secret_is_refused(server_factory, tmp_path):
    server = server_factory(db=str(tmp_path / 's.db'), env={'MOVIESAPI_SECRET': 'short'}, start=False)
    with pytest.raises(RuntimeError, match='at least 32 bytes'):
        server.start()


@pytest.mark.live
def test_help_explains_every_flag():
    out = subprocess.run([sys.executable, os.path.join(HERE, 'moviesapi.py'), '--help'],
                         capture_output=True, text=True, check=True).stdout
    for flag in ('--host', '--port', '--db', '--threads', '--cors-origin', '--import', '--login-window'):
        assert flag in out


def test_an_import_reaches_every_process_within_the_cache_bound(server_factory, database_url, tmp_path):
    first, second = server_factory(), server_factory()
    for server in (first, second):
        assert server.call('GET', '/movies/1')[2]['title'] == 'Йеллоустоун'
    changes = tmp_path / 'changes.json'
    changes.write_text(json.dumps({'movies': [{
        'pk': 1, 'title': 'Йеллоустоун (новая версия)', 'description': 'Обновлено.',
        'trailer': 'https://www.youtube.com/watch?v=UKei_d0cbP4', 'year': 2018, 'rating': 8.7,
        'genre_id': 17, 'director_id': 1}]}), encoding='utf-8')
    subprocess.run([sys.executable, os.path.join(HERE, 'moviesapi.py'), '--db', database_url,
                    '--import', str(changes)], check=True, env=first.env, capture_output=True)
    imported = time.monotonic()
    for server in (first, second):
        while server.call('GET', '/movies/1')[2]['title'] != 'Йеллоустоун (новая версия)':
            assert time.monotonic() - imported < 1.5, 'the change took longer than the 1 s cache bound'
            time.sleep(0.05)
