"""Upgrades: a database written by an earlier release (tests/fixtures/schema_v1.* by the first, schema_v2.* by the
last before sessions, each made by that release's code) is brought to the current schema on start with every row
kept and every live login still working; a database newer than the code is refused."""
import concurrent.futures
import datetime
import glob
import json
import os
import pathlib
import sqlite3
import subprocess
import sys
from contextlib import closing

import jwt
import pytest
from webtest import TestApp

import migrations
from conftest import load_old_schema
import moviesapi
from models import Attempt, PostgresqlDatabase, Session, User, close_database, db, now

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
OLD = {version: json.loads((FIXTURES / f'schema_v{version}.tokens.json').read_text(encoding='utf-8'))
       for version in (1, 2)}
PASSWORDS = OLD[2]['passwords']  # the same in both fixtures
ROOT = pathlib.Path(__file__).parent.parent
PROFILES = {'alice@example.com': {'name': 'Алиса', 'favorites': [3, 1, 2], 'genre': {1: None, 2: 3}},
            'bob@example.com': {'name': '', 'favorites': [5], 'genre': {1: None, 2: None}},
            'eve@example.com': {'name': '', 'favorites': [], 'genre': {1: None, 2: None}}}
KEPT_ROWS = {  # what each old schema holds that the upgrade keeps as it was (version 1's login failures it converts)
    1: ['SELECT id, email, password, name, surname, favorite_genre_id FROM "user" ORDER BY id',
        'SELECT * FROM favorite ORDER BY id', 'SELECT * FROM movie ORDER BY id', 'SELECT * FROM genre ORDER BY id'],
}
KEPT_ROWS[2] = KEPT_ROWS[1] + ['SELECT * FROM attempt ORDER BY id']


def execute(database_url, sql, params=()):
    """Run one statement on the database as an operator would, outside the app; its rows, if it returns any."""
    db.initialize(moviesapi.open_database(database_url))
    with db.connection_context():
        cursor = db.execute_sql(sql, params)
        rows = cursor.fetchall() if cursor.description else None
    close_database()
    return rows


def param(database_url):
    return '%s' if database_url.startswith('postgresql://') else '?'


def tokens_of(old_version, database_url):
    """The tokens the old release issued into this engine's fixture."""
    return OLD[old_version]['postgresql' if database_url.startswith('postgresql://') else 'sqlite']


def live_tokens(old_version, database_url):
    """(email, refresh token) for each live refresh token of the fixture: version 1's users had one each."""
    return [(email, token)
            for email, tokens in tokens_of(old_version, database_url)['live_refresh_tokens'].items()
            for token in ([tokens] if isinstance(tokens, str) else tokens)]


def jti_of(token):
    return jwt.decode(token, options={'verify_signature': False})['jti']


def bearer(pair):
    return {'Authorization': 'Bearer ' + pair['access_token']}


@pytest.fixture(params=[1, 2], ids=['from-v1', 'from-v2'])
def old_version(request):
    return request.param


@pytest.fixture
def upgraded(database_url, old_version):
    """A WebTest client over the current app started on a database of the old version."""
    load_old_schema(database_url, old_version)
    moviesapi.configure(database_url, OLD[old_version]['secret'])
    yield TestApp(moviesapi.application)
    close_database()


def login(client, email, status=200):
    return client.post_json('/auth/login', {'email': email, 'password': PASSWORDS[email]}, status=status)


def test_every_row_survives(database_url, old_version):
    load_old_schema(database_url, old_version)
    before = [execute(database_url, sql) for sql in KEPT_ROWS[old_version]]
    moviesapi.configure(database_url, OLD[old_version]['secret'])
    close_database()
    assert [execute(database_url, sql) for sql in KEPT_ROWS[old_version]] == before
    db.initialize(moviesapi.open_database(database_url))
    with db.connection_context():
        assert migrations.SchemaVersion.select(migrations.SchemaVersion.version).scalar() == 3
        assert not {'loginfailure', 'refreshtoken'} & set(db.get_tables())
        assert 'token_version' not in {column.name for column in db.get_columns('user')}
        if old_version == 1:
            assert Attempt.select().count() == 10  # eve's five failures, each under her email and her address
        users = {user.email: user.id for user in User.select()}
        # every live refresh token is a session named after it, as long-lived; used tokens are not
        assert sorted((session.id, session.user_id, session.expires_at) for session in Session.select()) == sorted(
            (jti_of(token), users[email], datetime.datetime(2090, 1, 1))
            for email, token in live_tokens(old_version, database_url))
    close_database()


def test_every_user_logs_in_to_their_profile(upgraded, old_version):
    for email, profile in PROFILES.items():
        pair = login(upgraded, email).json
        user = upgraded.get('/user', headers=bearer(pair)).json
        assert (user['email'], user['name'], user['favourite_genre']) == (email, profile['name'],
                                                                          profile['genre'][old_version])
        favorites = upgraded.get('/favorites/movies', headers=bearer(pair)).json
        assert [movie['id'] for movie in favorites] == profile['favorites']


def test_live_refresh_tokens_became_sessions(upgraded, old_version, database_url):
    live = live_tokens(old_version, database_url)
    for email, token in live:
        pair = upgraded.put_json('/auth/login', {'refresh_token': token}).json
        assert upgraded.get('/user', headers=bearer(pair)).json['email'] == email
        sessions = upgraded.get('/auth/sessions', headers=bearer(pair)).json
        assert sorted(session['id'] for session in sessions) == sorted(jti_of(mine) for owner, mine in live
                                                                       if owner == email)
        assert [session['id'] for session in sessions if session['current']] == [jti_of(token)]


def test_each_live_refresh_token_rotates_once(upgraded, old_version, database_url):
    for email, token in live_tokens(old_version, database_url):
        pair = upgraded.put_json('/auth/login', {'refresh_token': token}).json
        assert upgraded.get('/user', headers=bearer(pair)).json['email'] == email
        upgraded.put_json('/auth/login', {'refresh_token': pair['refresh_token']}, status=200)
        reused = upgraded.put_json('/auth/login', {'refresh_token': token}, status=401)
        assert reused.json['message'] == 'Этот refresh-токен уже использован; сессия завершена, войдите заново.'


def test_a_used_refresh_token_stays_refused(upgraded, old_version, database_url):
    used = tokens_of(old_version, database_url)['used_refresh_token']
    refused = upgraded.put_json('/auth/login', {'refresh_token': used}, status=401)
    assert refused.json['message'] == 'Сессия завершена; войдите заново.'


def test_logout_ends_an_upgraded_session(upgraded, old_version, database_url):
    (_, first), *others = live_tokens(old_version, database_url)
    upgraded.post_json('/auth/logout', {'refresh_token': first}, status=204)
    refused = upgraded.put_json('/auth/login', {'refresh_token': first}, status=401)
    assert refused.json['message'] == 'Сессия завершена; войдите заново.'
    for _, token in others:  # the other sessions, the same user's too, live on
        upgraded.put_json('/auth/login', {'refresh_token': token}, status=200)


def test_an_access_token_from_before_is_refused(database_url):
    load_old_schema(database_url, 2)
    access = tokens_of(2, database_url)['access_token']
    jwt.decode(access, OLD[2]['secret'], algorithms=['HS256'])  # well signed and unexpired: only its session lacks
    moviesapi.configure(database_url, OLD[2]['secret'])
    client = TestApp(moviesapi.application)
    refused = client.get('/user', headers={'Authorization': 'Bearer ' + access}, status=401)
    assert refused.json['message'] == 'Токен отозван: сессия завершена.'
    close_database()


def test_search_index_is_built(upgraded):
    assert [movie['title'] for movie in upgraded.get('/movies/', {'q': 'ОСВОБОЖД'}).json] == ['Джанго освобожденный']
    with db.connection_context():
        if isinstance(db.obj, PostgresqlDatabase):
            assert 'movie_title_trigrams' in {index.name for index in db.get_indexes('movie')}
        else:
            assert db.execute_sql('SELECT count(*) FROM movie_search').fetchone()[0] == 20


def test_sqlite_backup_is_the_database_before_the_upgrade(database_url, old_version, tmp_path):
    if database_url.startswith('postgresql://'):
        pytest.skip('PostgreSQL is backed up with pg_dump')
    load_old_schema(database_url, old_version)
    original = str(tmp_path / 'original.db')
    load_old_schema(original, old_version)
    moviesapi.configure(database_url, OLD[old_version]['secret'])
    close_database()
    [backup] = glob.glob(f'{database_url}.v{old_version}-*Z.bak')
    assert os.stat(backup).st_mode & 0o777 == 0o600
    with closing(sqlite3.connect(backup)) as copy, closing(sqlite3.connect(original)) as old:
        assert copy.execute('PRAGMA integrity_check').fetchone() == ('ok',)
        assert list(copy.iterdump()) == list(old.iterdump())
        tables = {row[0] for row in copy.execute("SELECT name FROM sqlite_master")}
        version = copy.execute('SELECT version FROM schema_version').fetchone()[0] if 'schema_version' in tables else 1
        assert version == old_version
        assert copy.execute('SELECT count(*) FROM user').fetchone() == (3,)


def test_recent_login_failures_still_count(database_url):
    load_old_schema(database_url, 1)
    just_now = now() - datetime.timedelta(seconds=10)
    execute(database_url, f'UPDATE loginfailure SET at = {param(database_url)}', (just_now,))
    moviesapi.configure(database_url, OLD[1]['secret'])
    client = TestApp(moviesapi.application)
    login(client, 'eve@example.com', status=429)  # even with her password: five failures within the window
    close_database()


def test_a_new_database_starts_at_the_current_version(app):
    with db.connection_context():
        assert migrations.SchemaVersion.select(migrations.SchemaVersion.version).scalar() == 3
        assert migrations.CURRENT_VERSION == 3


def cli(database_url, *args, **kwargs):
    env = {**os.environ, 'MOVIESAPI_SECRET': OLD[1]['secret']}
    return subprocess.run([sys.executable, str(ROOT / 'moviesapi.py'), '--db', database_url, *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT, **kwargs)


def test_a_newer_database_is_refused(database_url, tmp_path):
    newer = migrations.CURRENT_VERSION + 1
    moviesapi.configure(database_url, OLD[1]['secret'])
    close_database()
    execute(database_url, f'UPDATE schema_version SET version = {newer}')
    with pytest.raises(migrations.SchemaTooNew, match=f'schema version {newer}, newer than this moviesapi'):
        moviesapi.configure(database_url, OLD[1]['secret'])
    close_database()
    catalogue = tmp_path / 'empty.json'
    catalogue.write_text('{}')
    result = cli(database_url, '--import', str(catalogue))
    assert result.returncode != 0
    assert (f'moviesapi: the database has schema version {newer}, newer than this moviesapi '
            f'(version {migrations.CURRENT_VERSION})') in result.stderr


def test_an_old_sqlite_is_refused_before_it_touches_a_row(database_url, monkeypatch):
    if database_url.startswith('postgresql://'):
        pytest.skip('SQLite only')
    load_old_schema(database_url, 2)
    before = [execute(database_url, sql) for sql in KEPT_ROWS[2]]
    monkeypatch.setattr(migrations.sqlite3, 'sqlite_version_info', (3, 34, 1))
    with pytest.raises(ValueError, match='upgrading needs SQLite 3.35 or newer'):
        moviesapi.configure(database_url, OLD[2]['secret'])
    close_database()
    monkeypatch.undo()
    assert [execute(database_url, sql) for sql in KEPT_ROWS[2]] == before
    assert execute(database_url, 'SELECT version FROM schema_version') == [(2,)]


@pytest.mark.live
def test_the_command_line_upgrades_on_start(database_url, old_version, server_factory):
    load_old_schema(database_url, old_version)
    server = server_factory(env={'MOVIESAPI_SECRET': OLD[old_version]['secret']})
    status, _, tokens = server.call('POST', '/auth/login', {'email': 'bob@example.com',
                                                            'password': PASSWORDS['bob@example.com']})
    assert status == 200
    status, _, favorites = server.call('GET', '/favorites/movies', token=tokens['access_token'])
    assert [movie['id'] for movie in favorites] == [5]
    bob = next(token for email, token in live_tokens(old_version, database_url) if email == 'bob@example.com')
    assert server.call('PUT', '/auth/login', {'refresh_token': bob})[0] == 200
    server.stop()  # flushes the log
    for number in (2, 3):
        assert (f'Upgraded the database schema to version {number}' in server.log()) == (number > old_version)


@pytest.mark.live
def test_concurrent_starts_migrate_once(database_url, old_version, server_factory):
    load_old_schema(database_url, old_version)
    servers = [server_factory(env={'MOVIESAPI_SECRET': OLD[old_version]['secret']}, start=False) for _ in range(2)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda server: server.start(timeout=30), servers))
    for server in servers:
        assert server.call('GET', '/movies/?q=%D0%A0%D0%BE%D0%BA%D0%B5%D1%82')[2][0]['title'] == 'Рокетмен'
        server.stop()  # flushes the log
    for number in range(old_version + 1, 4):  # each step, by one server or the other
        line = f'Upgraded the database schema to version {number}'
        assert sorted(server.log().count(line) for server in servers) == [0, 1], line
    if not database_url.startswith('postgresql://'):
        for number in range(old_version, 3):
            assert len(glob.glob(f'{database_url}.v{number}-*.bak')) == 1
