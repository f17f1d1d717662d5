"""Attacks from a local user and from a client: planted key files, readable databases, forged log lines,
framing and foreign scripts, and email addresses made to pass for someone else's."""
import os
import re
import secrets
import stat
import subprocess
import sys
import time

import pytest

import moviesapi
from models import close_database, db

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- The signing key file and the database files -----------------------------------------------------

def load_key_with_the_command_line(db_path, tmp_path):
    """Run `moviesapi.py` without MOVIESAPI_SECRET and with an empty import, which exits once the key is loaded."""
    nothing = tmp_path / 'nothing.json'
    nothing.write_text('{}')
    return subprocess.run([sys.executable, os.path.join(HERE, 'moviesapi.py'), '--db', str(db_path),
                           '--import', str(nothing)],
                          env={**os.environ, 'MOVIESAPI_SECRET': ''}, capture_output=True, text=True, timeout=60)


def plant(key_file, how):
    """Put a key file there as another local user could, or as a careless copy would leave it."""
    key = secrets.token_hex(32)
    if how == 'a symlink':
        target = key_file.with_name('chosen-by-someone-else')
        target.write_text(key)
        target.chmod(0o600)
        key_file.symlink_to(target)
        return
    key_file.write_text(key)
    key_file.chmod({'readable by all': 0o644, 'readable by the group': 0o640, 'writable by all': 0o602,
                    "another user's": 0o600}[how])
    if how == "another user's":
        os.chown(key_file, 65534, 65534)  # nobody


@pytest.mark.live
@pytest.mark.parametrize('how', ['readable by all', 'readable by the group', 'writable by all', "another user's",
                                 'a symlink'])
def test_a_key_file_others_could_know_is_refused(tmp_path, how):
    if how == "another user's" and os.geteuid() != 0:
        pytest.skip('only root can give a file to another user')
    key_file = tmp_path / 'movies.db.secret'
    plant(key_file, how)
    result = load_key_with_the_command_line(tmp_path / 'movies.db', tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith('moviesapi: ') and 'key file' in result.stderr
    assert str(key_file) in result.stderr and 'Traceback' not in result.stderr


@pytest.mark.live
def test_the_servers_own_private_key_file_is_used(tmp_path):
    first = load_key_with_the_command_line(tmp_path / 'movies.db', tmp_path)
    key_file = tmp_path / 'movies.db.secret'
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and key_file.stat().st_uid == os.geteuid()
    key = key_file.read_text()
    assert load_key_with_the_command_line(tmp_path / 'movies.db', tmp_path).returncode == 0
    assert key_file.read_text() == key


def test_a_draft_key_file_left_by_a_crash_does_not_block_the_start(tmp_path, monkeypatch):
    monkeypatch.delenv('MOVIESAPI_SECRET', raising=False)
    (tmp_path / f'.movies.db.secret.{os.getpid()}').write_text('half-written')
    key = moviesapi.signing_key(str(tmp_path / 'movies.db'))
    assert len(key) == 64 and (tmp_path / 'movies.db.secret').read_text() == key


def test_a_new_sqlite_database_and_its_wal_and_shm_files_are_private(tmp_path):
    path = tmp_path / 'movies.db'
    umask = os.umask(0o022)  # the usual one, which leaves new files readable by everyone
    try:
        moviesapi.configure(str(path), secrets.token_hex(32))
        with db.connection_context():
            db.execute_sql('SELECT email FROM user').fetchall()  # WAL mode keeps -wal and -shm while connected
            modes = {name: stat.S_IMODE(os.stat(f'{path}{name}').st_mode) for name in ('', '-wal', '-shm')}
    finally:
        os.umask(umask)
        close_database()
    assert modes == {'': 0o600, '-wal': 0o600, '-shm': 0o600}


# --- The access log ----------------------------------------------------------------------------------

FORGED_LINE = '2026-12-02 04:09:00,000 INFO moviesapi: PUT /user/password 204 1.0ms'


@pytest.mark.parametrize('path, logged', [
    ('/x%0a2026-12-02%2004:09:00,000%20INFO%20moviesapi:%20PUT%20/user/password%20204%201.0ms%0d',
     r'GET /x\n' + FORGED_LINE + r'\r 404'),
    ('/x%0d%0a2026-12-02%2004:09:00,000%20INFO%20moviesapi:%20PUT%20/user/password%20204%201.0ms',
     r'GET /x\r\n' + FORGED_LINE + ' 404'),
    ('/x%1b[2K%0d2026-12-02%2004:09:00,000%20INFO%20moviesapi:%20PUT%20/user/password%20204%201.0ms',
     r'GET /x\x1b[2K\r' + FORGED_LINE + ' 404'),  # a terminal escape that erases the real line
    ('/x%5cn2026-12-02', r'GET /x\\n2026-12-02 404'),  # a literal backslash-n cannot pass for an escaped line break
])
def test_a_client_cannot_write_its_own_lines_into_the_access_log(live_server, path, logged):
    status, _, body = live_server.call('GET', path)
    assert status == 404 and body['status'] == 404
    deadline = time.monotonic() + 3  # the log is flushed twice a second
    while logged not in live_server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = live_server.log()
    assert logged in log
    assert not any(line.startswith(FORGED_LINE[:23]) for line in log.splitlines())


# --- Headers on every answer -------------------------------------------------------------------------

def security_headers_of(res):
    return {name: res.headers.getall(name) for name in
            ('Content-Security-Policy', 'X-Content-Type-Options', 'Referrer-Policy')}


def policy(res):
    """The Content-Security-Policy as {directive: [sources]}."""
    directives = (part.split() for part in res.headers['Content-Security-Policy'].split(';'))
    return {name: sources for name, *sources in directives}


@pytest.mark.parametrize('method, path, status', [
    ('GET', '/', 200), ('GET', '/login', 200), ('GET', '/docs', 200), ('GET', '/static/app.js', 200),
    ('GET', '/static/docs.css', 200), ('GET', '/movies/1', 200), ('GET', '/genres/', 200), ('GET', '/user', 200),
    ('GET', '/nope', 404), ('POST', '/auth/login', 400), ('OPTIONS', '/movies/', 204),
])
def test_every_answer_carries_the_security_headers(app, user, method, path, status):
    headers = user['headers'] if path == '/user' else {}
    for _ in range(2):  # the second answer of a catalogue read or /user comes from the path ahead of Bottle
        res = app.request(path, method=method, headers=headers, status=status)
        found = security_headers_of(res)
        assert found['X-Content-Type-Options'] == ['nosniff'] and found['Referrer-Policy'] == ['no-referrer']
        assert len(found['Content-Security-Policy']) == 1
        rules = policy(res)
        assert rules['default-src'] == ["'none'"] and rules['frame-ancestors'] == ["'none'"]
        assert rules['script-src'] == rules['style-src'] == rules['connect-src'] == ["'self'"]
        assert rules['img-src'] == ["'self'", 'https://img.youtube.com']  # the posters' thumbnails, nothing else


def test_the_pages_have_no_inline_script_or_style(app):
    for path in ('/', '/login', '/docs'):
        page = app.get(path, status=200).text
        assert '<style' not in page and not re.search(r'\sstyle=|\son\w+=', page), path
        assert all('src="/static/' in tag for tag in re.findall(r'<script[^>]*>', page)), path


# --- Emails ------------------------------------------------------------------------------------------

@pytest.mark.parametrize('lookalike', [
    'ａｌｉｃｅ@example.com',  # fullwidth letters
    'Alice@EXAMPLE.com ',
    '\u00a0alice@example.com',  # a no-break space in front
    'alice@ｅｘａｍｐｌｅ.ｃｏｍ',
])
def test_an_address_written_differently_is_the_same_account(app, lookalike):
    app.post_json('/auth/register', {'email': 'alice@example.com', 'password': 'correct horse'}, status=201)
    res = app.post_json('/auth/register', {'email': lookalike, 'password': 'correct horse'}, status=409)
    assert res.json['status'] == 409
    tokens = app.post_json('/auth/login', {'email': lookalike, 'password': 'correct horse'}, status=200).json
    me = app.get('/user', headers={'Authorization': 'Bearer ' + tokens['access_token']}, status=200).json
    assert me['email'] == 'alice@example.com'


def test_a_fullwidth_address_is_stored_in_its_normal_form(app):
    res = app.post_json('/auth/register', {'email': 'ＢＯＢ@example.com', 'password': 'correct horse'}, status=201)
    assert res.json['email'] == 'bob@example.com'


@pytest.mark.parametrize('email, says', [
    ('al\u202eice@example.com', 'невидимые'),  # right-to-left override
    ('al\u200bice@example.com', 'невидимые'),  # zero-width space
    ('alice\u00ad@example.com', 'невидимые'),  # soft hyphen
    ('ali\u0007ce@example.com', 'невидимые'),  # a control character
    ('alice@exa\u2066mple.com', 'невидимые'),  # bidi isolate
    ('\u0430lice@example.com', 'алфавитов'),  # Cyrillic а among Latin letters
    ('alice@ex\u0430mple.com', 'алфавитов'),  # ...in a domain label
    ('\u03b1lice@example.com', 'алфавитов'),  # Greek α
    ('\u0432\u03b1\u0441\u044f@example.com', 'алфавитов'),  # Greek α among Cyrillic letters
])
def test_invisible_characters_and_mixed_alphabets_are_refused(app, email, says):
    res = app.post_json('/auth/register', {'email': email, 'password': 'correct horse'}, status=400)
    assert res.json['status'] == 400 and says in res.json['message']


@pytest.mark.parametrize('email', ['иван@пример.рф', 'иван@example.com', 'alice@пример.рф', 'ολγα@example.gr',
                                   'josé.núñez@example.com', '李雷@example.cn'])
def test_an_address_in_one_alphabet_per_part_is_accepted(app, email):
    registered = app.post_json('/auth/register', {'email': email, 'password': 'correct horse'}, status=201).json
    assert registered['email'] == email
    app.post_json('/auth/login', {'email': email.upper(), 'password': 'correct horse'}, status=200)
