"""Administration over the real command line: backups, the user list, password resets and ending sessions."""
import os
import pathlib
import re
import sqlite3
import subprocess
import sys
import threading

import pytest

from auth import PRODUCTION_HASH_ITERATIONS
from models import User, db

ROOT = pathlib.Path(__file__).parent.parent


def cli(database_url, *args, stdin=None):
    """Run `python moviesapi.py --db <database> <args>` and return the finished process."""
    env = {**os.environ, 'MOVIESAPI_SECRET': 'a signing key the commands do not use, 32+ bytes'}
    return subprocess.run([sys.executable, str(ROOT / 'moviesapi.py'), '--db', database_url, *args], env=env,
                          input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT)


def bearer(token):
    return {'Authorization': 'Bearer ' + token}


def assert_signed_out(app, user):
    """Neither the user's access token nor their refresh token works any more."""
    app.get('/user', headers=user['headers'], status=401)
    app.put_json('/auth/login', {'refresh_token': user['refresh_token']}, status=401)


def login(app, email, password, status=200):
    return app.post_json('/auth/login', {'email': email, 'password': password}, status=status)


def test_reset_password_prints_a_new_one_and_ends_every_session(app, database_url, user):
    result = cli(database_url, '--reset-password', ' ' + user['email'].upper() + ' ')
    assert result.returncode == 0, result.stderr
    [password] = re.findall(rf'^One-time password for {re.escape(user["email"])}: (\S+)$', result.stdout, re.M)
    assert f'Ended every session of {user["email"]}.' in result.stdout
    assert_signed_out(app, user)
    login(app, user['email'], user['password'], status=401)
    login(app, user['email'], password)
    with db.connection_context():
        assert User.get(User.email == user['email']).password.startswith(f'pbkdf2_sha256${PRODUCTION_HASH_ITERATIONS}$')


def test_reset_password_reads_the_new_one_from_stdin(app, database_url, user):
    result = cli(database_url, '--reset-password', user['email'], '--password-stdin',
                 stdin='новый пароль 123\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout == f'Ended every session of {user["email"]}.\n'
    assert_signed_out(app, user)
    login(app, user['email'], user['password'], status=401)
    login(app, user['email'], 'новый пароль 123')


@pytest.mark.parametrize('args, stdin, message', [
    (['--reset-password', 'nobody@example.com'], None, 'moviesapi: no user has the email nobody@example.com.'),
    (['--end-sessions', 'nobody@example.com'], None, 'moviesapi: no user has the email nobody@example.com.'),
    (['--reset-password', '{email}', '--password-stdin'], 'short\n',
     'moviesapi: the new password must be 8 to 128 characters long.'),
    (['--password-stdin'], 'a password\n', 'moviesapi: --password-stdin goes with --reset-password EMAIL.'),
])
def test_commands_that_cannot_run_exit_non_zero(app, database_url, user, args, stdin, message):
    result = cli(database_url, *[arg.format(email=user['email']) for arg in args], stdin=stdin)
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (1, message)
    login(app, user['email'], user['password'])  # nothing changed


def test_end_sessions_revokes_every_token(app, database_url, make_user):
    user, other = make_user(), make_user()
    second_session = login(app, user['email'], user['password']).json
    result = cli(database_url, '--end-sessions', user['email'])
    assert (result.returncode, result.stdout) == (0, f'Ended every session of {user["email"]}.\n')
    assert_signed_out(app, user)
    app.get('/user', headers=bearer(second_session['access_token']), status=401)
    app.get('/user', headers=other['headers'], status=200)
    login(app, user['email'], user['password'])  # the password still works


def test_list_users(app, database_url, make_user):
    user, other = make_user('anna@example.com'), make_user('boris@example.com')
    app.patch_json('/user', {'name': 'Аня'}, headers=user['headers'])
    for movie in (4, 2):
        app.post(f'/favorites/movies/{movie}', headers=user['headers'], status=201)
    login(app, other['email'], other['password'])
    result = cli(database_url, '--list-users')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['id\temail\tname\tfavorites\tsessions',
                                          '1\tanna@example.com\tАня\t2\t1',
                                          '2\tboris@example.com\t\t0\t2']


@pytest.mark.live
def test_backup_while_the_server_takes_writes(database_url, server_factory, tmp_path):
    server = server_factory(args=['--password-hashes-per-minute', '100000'])
    acknowledged, stop = [], threading.Event()

    def register_users():
        while not stop.is_set():
            email = f'writer{len(acknowledged)}@example.com'
            if server.call('POST', '/auth/register', {'email': email, 'password': 'a password'})[0] == 201:
                acknowledged.append(email)
    writer = threading.Thread(target=register_users)
    writer.start()
    try:
        while len(acknowledged) < 20:
            stop.wait(0.05)
        before_backup = list(acknowledged)
        emails = back_up(database_url, tmp_path / 'copy.db')
    finally:
        stop.set()
        writer.join()
    assert set(before_backup) <= emails


def back_up(database_url, file):
    """Back the database up as the README says; return the emails in the copy."""
    result = cli(database_url, '--backup', str(file))
    assert result.returncode == 0, result.stderr
    if database_url.startswith('postgresql://'):
        return pg_dump_as_printed(result.stdout, database_url, file)
    assert os.stat(file).st_mode & 0o777 == 0o600
    with sqlite3.connect(file) as copy:
        assert copy.execute('PRAGMA integrity_check').fetchone() == ('ok',)
        emails = {email for (email,) in copy.execute('SELECT email FROM user')}
    copy.close()
    return emails


def pg_dump_as_printed(output, database_url, file):
    """Run the printed command, which holds no password (given here through PGPASSWORD); the dump's emails."""
    command = output.strip().splitlines()[-1]
    password = re.match(r'postgresql://[^:]+:([^@]+)@', database_url).group(1)
    assert command.startswith('pg_dump ') and f':{password}@' not in command and 'PGPASSWORD=' not in output
    subprocess.run(command, shell=True, check=True, env={**os.environ, 'PGPASSWORD': password}, timeout=60)
    data = subprocess.run(['pg_restore', '--data-only', '--table=user', '--file=-', str(file)], check=True,
                          capture_output=True, text=True, timeout=60).stdout
    return set(re.findall(r'^\d+\t(\S+@example\.com)\t', data, re.M))


def test_backup_refuses_to_overwrite(database_url, tmp_path):
    if database_url.startswith('postgresql://'):
        pytest.skip('pg_dump writes the PostgreSQL backup')
    (tmp_path / 'copy.db').write_text('an earlier backup')
    result = cli(database_url, '--backup', str(tmp_path / 'copy.db'))
    assert result.returncode == 1 and 'exists already' in result.stderr
    assert (tmp_path / 'copy.db').read_text() == 'an earlier backup'
