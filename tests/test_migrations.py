"""Upgrades: a database written by the first release (tests/fixtures/schema_v1.*, made by that release's code)
is brought to the current schema on start with every row kept; a database newer than the code is refused."""
import concurrent.futures
import datetime
import glob
import json
import os
import pathlib
import sqlite3
import subprocess
import sys

import pytest
from webtest import TestApp

import migrations
from conftest import load_old_schema
import moviesapi
from models import Attempt, Favorite, Movie, PostgresqlDatabase, Session, User, close_database, db, now

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
V1 = json.loads((FIXTURES / 'schema_v1.tokens.json').read_text(encoding='utf-8'))
ROOT = pathlib.Path(__file__).parent.parent


def execute(database_url, sql, params=()):
    """Run one statement on the database as an operator would, outside the app."""
    db.initialize(moviesapi.open_database(database_url))
    with db.connection_context():
        db.execute_sql(sql, params)
    close_database()


def param(database_url):
    return '%s' if database_url.startswith('postgresql://') else '?'


@pytest.fixture
def upgraded(database_url):
    """A WebTest client over the current app started on a version-1 database."""
    load_old_schema(database_url, 1)
    moviesapi.configure(database_url, V1['secret'])
    yield TestApp(moviesapi.application)
    close_database()


def login(client, email, status=200):
    return client.post_json('/auth/login', {'email': email, 'password': V1['passwords'][email]}, status=status)


def test_every_row_survives_and_every_user_logs_in(upgraded):
    with db.connection_context():
        assert (User.select().count(), Favorite.select().count(), Movie.select().count()) == (3, 4, 20)
        assert User.get(User.email == 'alice@example.com').name == 'Алиса'
        assert migrations.SchemaVersion.select(migrations.SchemaVersion.version).scalar() == 3
        assert not {'loginfailure', 'refreshtoken'} & set(db.get_tables())
        assert Attempt.select().count() == 10  # eve's five failures, each under her email and her address
        assert Session.select().count() == 2  # alice's used token is gone; her live one and bob's are sessions
    for email in V1['passwords']:
        login(upgraded, email)
    access = login(upgraded, 'alice@example.com').json['access_token']
    favorites = upgraded.get('/favorites/movies', headers={'Authorization': 'Bearer ' + access}).json
    assert [movie['id'] for movie in favorites] == [3, 1, 2]


def test_refresh_tokens_keep_their_meaning(upgraded, database_url):
    tokens = V1['postgresql' if database_url.startswith('postgresql://') else 'sqlite']
    for token in tokens['live_refresh_tokens'].values():
        upgraded.put_json('/auth/login', {'refresh_token': token}, status=200)
    reused = upgraded.put_json('/auth/login', {'refresh_token': tokens['used_refresh_token']}, status=401)
    assert reused.json['message'] == 'Сессия завершена; войдите заново.'


def test_search_index_is_built(upgraded, database_url):
    assert [movie['title'] for movie in upgraded.get('/movies/', {'q': 'ОСВОБОЖД'}).json] == ['Джанго освобожденный']
    with db.connection_context():
        if isinstance(db.obj, PostgresqlDatabase):
            assert 'movie_title_trigrams' in {index.name for index in db.get_indexes('movie')}
        else:
            assert db.execute_sql('SELECT count(*) FROM movie_search').fetchone()[0] == 20


def test_sqlite_backup_is_taken_before_the_upgrade(database_url):
    if database_url.startswith('postgresql://'):
        pytest.skip('PostgreSQL is backed up with pg_dump')
    load_old_schema(database_url, 1)
    moviesapi.configure(database_url, V1['secret'])
    close_database()
    [backup] = glob.glob(database_url + '.v1-*Z.bak')
    assert os.stat(backup).st_mode & 0o777 == 0o600
    with sqlite3.connect(backup) as copy:
        assert copy.execute('SELECT count(*) FROM user').fetchone() == (3,)
        assert copy.execute('SELECT count(*) FROM loginfailure').fetchone() == (10,)
        assert 'schema_version' not in {row[0] for row in copy.execute("SELECT name FROM sqlite_master")}
    copy.close()


def test_recent_login_failures_still_count(database_url):
    load_old_schema(database_url, 1)
    just_now = now() - datetime.timedelta(seconds=10)
    execute(database_url, f'UPDATE loginfailure SET at = {param(database_url)}', (just_now,))
    moviesapi.configure(database_url, V1['secret'])
    client = TestApp(moviesapi.application)
    login(client, 'eve@example.com', status=429)  # even with her password: five failures within the window
    close_database()


def test_a_new_database_starts_at_the_current_version(app):
    with db.connection_context():
        assert migrations.SchemaVersion.select(migrations.SchemaVersion.version).scalar() == 3
        assert migrations.CURRENT_VERSION == 3


def cli(database_url, *args, **kwargs):
    env = {**os.environ, 'MOVIESAPI_SECRET': V1['secret']}
    return subprocess.run([sys.executable, str(ROOT / 'moviesapi.py'), '--db', database_url, *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT, **kwargs)


def test_a_newer_database_is_refused(database_url, tmp_path):
    moviesapi.configure(database_url, V1['secret'])
    close_database()
    execute(database_url, 'UPDATE schema_version SET version = 4')
    with pytest.raises(migrations.SchemaTooNew, match='schema version 4, newer than this moviesapi'):
        moviesapi.configure(database_url, V1['secret'])
    close_database()
    catalogue = tmp_path / 'empty.json'
    catalogue.write_text('{}')
    result = cli(database_url, '--import', str(catalogue))
    assert result.returncode != 0
    assert 'moviesapi: the database has schema version 4, newer than this moviesapi (version 3)' in result.stderr


@pytest.mark.live
def test_the_command_line_upgrades_on_start(database_url, server_factory):
    load_old_schema(database_url, 1)
    server = server_factory(env={'MOVIESAPI_SECRET': V1['secret']})
    status, _, tokens = server.call('POST', '/auth/login', {'email': 'bob@example.com',
                                                            'password': V1['passwords']['bob@example.com']})
    assert status == 200
    status, _, favorites = server.call('GET', '/favorites/movies', token=tokens['access_token'])
    assert [movie['id'] for movie in favorites] == [5]
    server.stop()  # flushes the log
    assert 'Upgraded the database schema to version 2' in server.log()


@pytest.mark.live
def test_concurrent_starts_migrate_once(database_url, server_factory):
    load_old_schema(database_url, 1)
    servers = [server_factory(env={'MOVIESAPI_SECRET': V1['secret']}, start=False) for _ in range(2)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda server: server.start(timeout=30), servers))
    for server in servers:
        assert server.call('GET', '/movies/?q=%D0%A0%D0%BE%D0%BA%D0%B5%D1%82')[2][0]['title'] == 'Рокетмен'
        server.stop()  # flushes the log
    upgrades = [server.log().count('Upgraded the database schema to version 2') for server in servers]
    assert sorted(upgrades) == [0, 1]
    if not database_url.startswith('postgresql://'):
        assert len(glob.glob(database_url + '.v1-*.bak')) == 1
