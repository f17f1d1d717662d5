"""Double submissions through the real server: N requests released at the same instant.

Each request has its own connection, opened before a barrier releases them all, so they
reach Waitress's threads together and race inside the application and the database.
Every test runs several bursts: a race that is lost only sometimes still shows. The servers hash passwords at
the production work factor, as a cheap hash would hide the locks and CPU that real sign-ups hold.
"""
import collections
import concurrent.futures
import http.client
import json
import threading
import time
import urllib.parse
import uuid

import pytest

from conftest import sign_up

N = 8          # requests per burst
ROUNDS = 6     # bursts per test
SERVER_THREADS = 16
SERVER_ARGS = ('--threads', str(SERVER_THREADS),
               '--password-hashes-per-minute', '100000')  # every request comes from 127.0.0.1
MANY_REFRESH_ROUNDS = {'sqlite': 30, 'postgresql': 250}  # a lost race on PostgreSQL showed in ~1 round of 200


def at_once(url, requests, token=None, timeout=15):
    """Send [(method, path, body)] together, one connection each; returns [(status, json)] in order."""
    parts = urllib.parse.urlsplit(url)
    headers = {'Authorization': 'Bearer ' + token} if token else {}
    barrier = threading.Barrier(len(requests))

    def send(method, path, body):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            conn.connect()
            data = json.dumps(body).encode() if body is not None else None
            barrier.wait()
            conn.request(method, path, body=data,
                         headers={**headers, 'Content-Type': 'application/json'} if data else headers)
            response = conn.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda r: send(*r), requests))


def request(url, method, path, body=None, token=None):
    """One request on its own connection; returns (status, parsed JSON or None)."""
    return at_once(url, [(method, path, body)], token)[0]


def saved_ids(url, pair):
    status, saved = request(url, 'GET', '/favorites/movies/', token=pair['access_token'])
    assert status == 200, saved
    return [movie['id'] for movie in saved]


def engine(server):
    return 'postgresql' if str(server.db).startswith('postgres') else 'sqlite'


def report(capsys, server, what, figures):
    with capsys.disabled():
        print(f'\n[races/{engine(server)}] {what}: {figures}')


@pytest.fixture
def server(server_factory):
    return server_factory(args=SERVER_ARGS, production_cost=True)


def test_same_favourite_added_at_once_keeps_one_row(server, capsys):
    pair = sign_up(server)
    created = []
    for movie in range(1, ROUNDS + 1):
        answers = at_once(server.url, [('POST', f'/favorites/movies/{movie}', None)] * N,
                          pair['access_token'])
        statuses = [status for status, _ in answers]
        assert set(statuses) <= {200, 201}, answers
        created.append(statuses.count(201))
    assert saved_ids(server.url, pair) == list(range(1, ROUNDS + 1))
    report(capsys, server, f'{ROUNDS} bursts of {N} adds of one favourite', f'201s per burst {created}')


def test_same_favourite_removed_at_once_answers_one_204(server, capsys):
    pair = sign_up(server)
    for movie in range(1, ROUNDS + 1):
        assert request(server.url, 'POST', f'/favorites/movies/{movie}', token=pair['access_token'])[0] == 201
    for movie in range(1, ROUNDS + 1):
        answers = at_once(server.url, [('DELETE', f'/favorites/movies/{movie}', None)] * N,
                          pair['access_token'])
        assert sorted(status for status, _ in answers) == [204] + [404] * (N - 1), answers
    assert saved_ids(server.url, pair) == []
    report(capsys, server, f'{ROUNDS} bursts of {N} removals of one favourite', 'each: one 204, the rest 404')


def test_adds_and_removals_of_one_favourite_at_once_stay_consistent(server, capsys):
    """Half the burst adds, half removes: the answers must tell one serial story ending in the final state."""
    pair = sign_up(server)
    outcomes = []
    for movie in range(1, ROUNDS + 1):
        path = f'/favorites/movies/{movie}'
        answers = at_once(server.url, [('POST', path, None), ('DELETE', path, None)] * (N // 2),
                          pair['access_token'])
        adds = [status for status, _ in answers[0::2]]
        removals = [status for status, _ in answers[1::2]]
        assert set(adds) <= {200, 201} and set(removals) <= {204, 404}, answers
        present = movie in saved_ids(server.url, pair)
        # Each 201 is absent -> present and each 204 is present -> absent, starting absent.
        assert adds.count(201) - removals.count(204) == int(present), (adds, removals, present)
        outcomes.append(f'{adds.count(201)}x201/{removals.count(204)}x204')
    report(capsys, server, f'{ROUNDS} bursts of {N // 2} adds + {N // 2} removals', ' '.join(outcomes))


def test_same_email_registered_at_once_makes_one_account(server, capsys):
    for _ in range(ROUNDS):
        local = f'twin-{uuid.uuid4().hex[:10]}'
        # The same address as people type it: case and surrounding spaces differ.
        emails = [f'{local}@example.test', f'{local.upper()}@EXAMPLE.TEST', f'  {local}@Example.Test ']
        bodies = [{'email': emails[i % len(emails)], 'password': f'twin-password-{i}'} for i in range(N)]
        answers = at_once(server.url, [('POST', '/auth/register', body) for body in bodies])
        statuses = [status for status, _ in answers]
        assert sorted(statuses) == [201] + [409] * (N - 1), answers
        winner = statuses.index(201)
        assert answers[winner][1]['email'] == f'{local}@example.test'

        # The account is the winner's: its password logs in, a loser's does not.
        status, _ = request(server.url, 'POST', '/auth/login',
                            {'email': emails[1], 'password': bodies[winner]['password']})
        assert status == 200
        status, _ = request(server.url, 'POST', '/auth/login', bodies[(winner + 1) % N])
        assert status == 401
    report(capsys, server, f'{ROUNDS} bursts of {N} registrations of one email',
           "each: one 201, the rest 409, the account has the winner's password")


@pytest.mark.parametrize('many_rounds', [False, True], ids=['production-cost', 'many-rounds'])
def test_same_refresh_token_presented_at_once_yields_one_pair_and_revokes_the_family(server_factory, many_rounds,
                                                                                    capsys):
    """A client retrying, or two tabs, present one refresh token together: one new pair, the rest 401, and the
    reuse revokes that pair too. On PostgreSQL the losers once deadlocked (a 500) in about one round in 200, so one
    run has hundreds of rounds. A rotation hashes no password, and the login before each round is only set-up:
    that run logs in at the test work factor, 0.2 s less per round."""
    server = server_factory(args=SERVER_ARGS, production_cost=not many_rounds)
    rounds = MANY_REFRESH_ROUNDS[engine(server)] if many_rounds else ROUNDS
    account = sign_up(server)
    credentials = {'email': account['email'], 'password': account['password']}
    started, statuses_seen = time.monotonic(), collections.Counter()
    for _ in range(rounds):
        status, pair = request(server.url, 'POST', '/auth/login', credentials)
        assert status == 200, pair
        answers = at_once(server.url, [('PUT', '/auth/login', pair)] * N)
        statuses = [status for status, _ in answers]
        statuses_seen.update(statuses)
        assert sorted(statuses) == [200] + [401] * (N - 1), answers
        assert all(set(body) == {'access_token', 'refresh_token'} if status == 200 else body['message']
                   for status, body in answers)
        new_pair = answers[statuses.index(200)][1]
        assert request(server.url, 'PUT', '/auth/login', new_pair)[0] == 401  # revoked by the reuse
    hashing = ', test hashing' if many_rounds else ''
    report(capsys, server, f'{rounds} bursts of {N} refreshes with one token{hashing}',
           f'statuses {dict(statuses_seen)} in {time.monotonic() - started:.1f} s')
