"""Throttling: device cookies against lockout, per-email and per-address limits, IPv6 /64s, password checks,
the hashing budget, and the limits holding under concurrency on the real server at production hash cost."""
import concurrent.futures
import datetime
import http.client
import json
import re
import time

import pytest
from webtest import TestApp

import moviesapi
import throttle
from conftest import sign_up
from throttle import network_of

WRONG = 'wrong password'


def login(client, email, password, status, **kwargs):
    return client.post_json('/auth/login', {'email': email, 'password': password}, status=status, **kwargs)


def assert_says_how_long_to_wait(res):
    """The 429's message gives the wait of Retry-After: seconds under a minute, else minutes rounded up."""
    seconds = int(res.headers['Retry-After'])
    wait = f'{seconds} с' if seconds < 60 else f'{-(-seconds // 60)} мин'
    assert res.json['message'].endswith(f'повторите через {wait}.'), (res.json, seconds)


@pytest.fixture
def stranger(app):
    """A second client with its own cookies, on the same app and database."""
    return TestApp(moviesapi.application)


@pytest.fixture
def clock(monkeypatch):
    """Stop the throttle's clock; returns a function that moves it on by so many seconds."""
    frozen = [throttle.now()]
    monkeypatch.setattr(throttle, 'now', lambda: frozen[0])

    def advance(seconds):
        frozen[0] += datetime.timedelta(seconds=seconds)
    return advance


def configure(database_url, **limits):
    moviesapi.configure(database_url, 'k' * 32, **limits)


# --- Addresses -------------------------------------------------------------------------------------------

@pytest.mark.parametrize('address, counted_as', [
    ('203.0.113.7', '203.0.113.7'),
    ('::ffff:203.0.113.7', '203.0.113.7'),
    ('2001:db8:1:2:aaaa:bbbb:cccc:dddd', '2001:db8:1:2::/64'),
    ('2001:db8:1:2::1', '2001:db8:1:2::/64'),
    ('2001:db8:1:3::1', '2001:db8:1:3::/64'),
    ('fe80::1%eth0', 'fe80::/64'),
    ('', ''),
])
def test_ipv6_is_counted_per_64_and_ipv4_mapped_as_ipv4(address, counted_as):
    assert network_of(address) == counted_as


def test_one_ipv6_64_is_one_address(app, database_url):
    configure(database_url, login_failures_per_address=3)
    for number in range(3):
        login(app, f'guess{number}@x.com', WRONG, 401, extra_environ={'REMOTE_ADDR': f'2001:db8::{number + 1}'})
    login(app, 'guess9@x.com', WRONG, 429, extra_environ={'REMOTE_ADDR': '2001:db8::ffff:1'})
    login(app, 'guess9@x.com', WRONG, 401, extra_environ={'REMOTE_ADDR': '2001:db8:0:1::1'})


def test_an_ipv4_mapped_address_is_the_ipv4_address(app, database_url):
    configure(database_url, login_failures_per_address=2)
    login(app, 'a@x.com', WRONG, 401, extra_environ={'REMOTE_ADDR': '198.51.100.7'})
    login(app, 'b@x.com', WRONG, 401, extra_environ={'REMOTE_ADDR': '::ffff:198.51.100.7'})
    login(app, 'c@x.com', WRONG, 429, extra_environ={'REMOTE_ADDR': '198.51.100.7'})


# --- Per email, and the owner's device cookie ------------------------------------------------------------

def test_without_a_device_cookie_five_failures_throttle_the_email(app, user, stranger, clock):
    for _ in range(5):
        login(stranger, user['email'], WRONG, 401)
    res = login(stranger, user['email'], user['password'], 429)
    assert res.headers['Retry-After'] == '300'
    assert res.json['message'].endswith('повторите через 5 мин.')


def test_the_owner_with_a_device_cookie_logs_in_while_strangers_have_throttled_the_email(app, user, stranger):
    for number in range(5):
        login(stranger, user['email'], WRONG, 401, extra_environ={'REMOTE_ADDR': f'192.0.2.{number}'})
    login(stranger, user['email'], user['password'], 429)
    login(app, user['email'], user['password'], 200)  # app holds the cookie from make_user's login
    login(app, user['email'], user['password'], 200)  # and the fresh one issued just now


def test_a_device_cookie_has_its_own_allowance_and_is_itself_locked(app, user, stranger):
    for _ in range(5):
        login(app, user['email'], WRONG, 401)
    assert_says_how_long_to_wait(login(app, user['email'], user['password'], 429))
    login(stranger, user['email'], user['password'], 200)  # the device's failures did not throttle the email


def test_bob_with_a_device_cookie_logs_in_from_an_address_that_used_up_its_failures(app, database_url, stranger):
    configure(database_url, login_failures_per_address=3)
    shared = {'REMOTE_ADDR': '10.0.0.1'}
    app.post_json('/auth/register', {'email': 'bob@x.com', 'password': 'bob password'}, extra_environ=shared)
    login(app, 'bob@x.com', 'bob password', 200, extra_environ=shared)
    for number in range(3):
        login(stranger, f'guess{number}@x.com', WRONG, 401, extra_environ=shared)
    login(stranger, 'bob@x.com', 'bob password', 429, extra_environ=shared)  # no cookie: the address is used up
    login(app, 'bob@x.com', 'bob password', 200, extra_environ=shared)


def test_only_a_cookie_signed_for_this_email_counts(app, make_user, stranger):
    alice, mallory = make_user(), make_user()
    for _ in range(5):
        login(stranger, alice['email'], WRONG, 401)
    throttle = moviesapi.setting('throttle')
    mallorys = app.cookies[throttle.cookie_name(mallory['email'])]
    for value in (mallorys, 'f' * 32 + '.' + 'f' * 64, '', '\xe9.\xe9', mallorys.split('.')[0] + '.'):
        stranger.set_cookie(throttle.cookie_name(alice['email']), value)
        login(stranger, alice['email'], alice['password'], 429)


def test_the_device_cookie_is_http_only_strict_and_kept_to_the_login_route(app, user):
    res = login(app, user['email'], user['password'], 200)
    cookie = res.headers['Set-Cookie']
    assert re.search(r'(?i)httponly', cookie) and re.search(r'(?i)samesite=strict', cookie)
    assert 'Path=/auth/login' in cookie and re.search(r'Max-Age=\d{8}', cookie)  # about a year
    assert 'secure' not in cookie.lower()
    res = login(app, user['email'], user['password'], 200, extra_environ={'wsgi.url_scheme': 'https'})
    assert 'secure' in res.headers['Set-Cookie'].lower()


def test_a_successful_login_resets_the_email_count(app, user, stranger):
    for _ in range(2):
        for _ in range(4):
            login(stranger, user['email'], WRONG, 401)
        login(stranger, user['email'], user['password'], 200)
        stranger.reset()  # forget the device cookie


def test_the_lock_ends_with_the_window(app, user, stranger, clock):
    for _ in range(5):
        login(stranger, user['email'], WRONG, 401)
    clock(299)
    res = login(stranger, user['email'], user['password'], 429)
    assert res.headers['Retry-After'] == '1'
    assert_says_how_long_to_wait(res)
    clock(1)
    login(stranger, user['email'], user['password'], 200)


def test_refused_attempts_do_not_extend_the_lock(app, user, stranger, clock):
    for _ in range(5):
        login(stranger, user['email'], WRONG, 401)
    clock(150)
    assert login(stranger, user['email'], WRONG, 429).headers['Retry-After'] == '150'
    clock(150)
    login(stranger, user['email'], user['password'], 200)


# --- Password checks and hashing ---------------------------------------------------------------------------

def change(client, user, current, status, **kwargs):
    return client.put_json('/user/password', {'password_1': current, 'password_2': 'a new password'},
                           headers=user['headers'], status=status, **kwargs)


def test_wrong_current_passwords_are_throttled_per_user(app, make_user):
    alice, bob = make_user(), make_user()
    for number in range(5):
        change(app, alice, WRONG, 403, extra_environ={'REMOTE_ADDR': f'192.0.2.{number}'})
    res = change(app, alice, alice['password'], 429)
    assert_says_how_long_to_wait(res)
    change(app, bob, bob['password'], 204)


def test_the_right_current_password_resets_the_count(app, user):
    for _ in range(4):
        change(app, user, WRONG, 403)
    change(app, user, user['password'], 204)
    user['headers'] = {'Authorization': 'Bearer ' + login(app, user['email'], 'a new password', 200).json[
        'access_token']}
    for _ in range(5):
        change(app, user, WRONG, 403)


def test_password_hashing_is_budgeted_per_address(app, database_url, clock):
    configure(database_url, password_hashes_per_minute=3)
    app.post_json('/auth/register', {'email': 'a@x.com', 'password': 'password1'}, status=201)
    login(app, 'a@x.com', 'password1', 200)
    app.post_json('/auth/register', {'email': 'b@x.com', 'password': 'password1'}, status=201)
    res = app.post_json('/auth/register', {'email': 'c@x.com', 'password': 'password1'}, status=429)
    assert res.headers['Retry-After'] == '60'
    assert_says_how_long_to_wait(res)
    login(app, 'a@x.com', 'password1', 429)  # a successful login costs a hash too, cookie or not
    app.post_json('/auth/register', {'email': 'c@x.com', 'password': 'password1'}, status=201,
                  extra_environ={'REMOTE_ADDR': '192.0.2.1'})


def test_the_429_gives_the_longest_of_the_waits_that_apply(app, user, stranger, database_url, clock):
    configure(database_url, login_failures_per_email=2, login_window=30, password_hashes_per_minute=2)
    elsewhere = {'REMOTE_ADDR': '192.0.2.9'}  # the user fixture spent the default address's hashes
    for _ in range(2):
        login(stranger, user['email'], WRONG, 401, extra_environ=elsewhere)
    res = login(stranger, user['email'], user['password'], 429, extra_environ=elsewhere)
    assert res.headers['Retry-After'] == '60'  # the hashing budget's minute, not the email's 30 s
    assert_says_how_long_to_wait(res)


# --- Over real HTTP, at production hash cost ------------------------------------------------------------

def call(url, method, path, body, token=None, source='127.0.0.1'):
    """One request on its own connection from the given loopback address: (status, headers, JSON body)."""
    host, port = url.removeprefix('http://').split(':')
    connection = http.client.HTTPConnection(host, int(port), timeout=60, source_address=(source, 0))
    headers = {'Content-Type': 'application/json', **({'Authorization': 'Bearer ' + token} if token else {})}
    try:
        connection.request(method, path, json.dumps(body), headers)
        res = connection.getresponse()
        return res.status, res.headers, json.loads(res.read() or 'null')
    finally:
        connection.close()


def at_once(count, request):
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: request(), range(count)))


def test_concurrent_wrong_logins_get_no_more_than_the_limit(server_factory):
    server = server_factory(production_cost=True)
    credentials = {'email': 'target@x.com', 'password': 'the right password'}
    assert call(server.url, 'POST', '/auth/register', credentials)[0] == 201
    answers = at_once(40, lambda: call(server.url, 'POST', '/auth/login', {**credentials, 'password': WRONG}))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [401] * 5 + [429] * 35, statuses
    assert all(0 < int(head['Retry-After']) <= 300 for status, head, _ in answers if status == 429)
    assert call(server.url, 'POST', '/auth/login', credentials)[0] == 429


def test_concurrent_wrong_current_passwords_are_throttled_per_user(server_factory):
    server = server_factory(production_cost=True)
    owner = sign_up(server)
    guess = {'password_1': WRONG, 'password_2': 'a new password'}
    answers = at_once(20, lambda: call(server.url, 'PUT', '/user/password', guess, owner['access_token']))
    assert sorted(status for status, _, _ in answers) == [403] * 5 + [429] * 15
    right = {**guess, 'password_1': owner['password']}
    status, head, body = call(server.url, 'PUT', '/user/password', right, owner['access_token'])
    assert status == 429 and body['message'] and int(head['Retry-After']) > 0


def test_password_hashing_is_budgeted_per_address_over_http(server_factory):
    server = server_factory(production_cost=True, args=('--password-hashes-per-minute', '10'))

    def register(source):
        email = f'user-{time.monotonic_ns()}@x.com'
        return call(server.url, 'POST', '/auth/register', {'email': email, 'password': 'password1'}, source=source)
    started = time.monotonic()
    answers = at_once(24, lambda: register('127.0.0.1'))
    elapsed = time.monotonic() - started
    assert sorted(status for status, _, _ in answers) == [201] * 10 + [429] * 14
    assert all(0 < int(head['Retry-After']) <= 60 for status, head, _ in answers if status == 429)
    assert register('127.0.0.2')[0] == 201  # another address has its own budget
    print(f'24 concurrent registrations at production cost, 10 hashed: {elapsed:.2f} s')
