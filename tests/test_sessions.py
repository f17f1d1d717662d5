"""Sessions: logging out, listing one's sessions and ending them, in process and over real HTTP."""
import concurrent.futures
import datetime
import time

import jwt
import pytest

import auth
import moviesapi
from conftest import sign_up
from models import Session, db

SESSION_KEYS = {'id', 'created_at', 'refreshed_at', 'expires_at', 'user_agent', 'address', 'current'}


def bearer(token):
    return {'Authorization': 'Bearer ' + token}


def log_in(app, user, user_agent='', address='192.0.2.1'):
    """A new session of the user, as a client with this user agent and address would start it."""
    pair = app.post_json('/auth/login', {'email': user['email'], 'password': user['password']},
                         extra_environ={'REMOTE_ADDR': address, 'HTTP_USER_AGENT': user_agent}).json
    return {**pair, 'headers': bearer(pair['access_token'])}


def session_id(pair):
    return jwt.decode(pair['refresh_token'], options={'verify_signature': False})['sid']


def works(app, pair):
    """Whether the pair's access token is still accepted."""
    return app.get('/user/', headers=bearer(pair['access_token']), expect_errors=True).status_int == 200


# --- Logout ------------------------------------------------------------------------------------------

def test_logout_ends_the_session_and_its_access_tokens_at_once(app, user):
    other = log_in(app, user)
    renewed = app.put_json('/auth/login', {'refresh_token': user['refresh_token']}).json
    assert works(app, user) and works(app, renewed)
    app.post_json('/auth/logout/', {'refresh_token': renewed['refresh_token']}, status=204)
    assert not works(app, user) and not works(app, renewed)  # every access token of the session, not only the last
    res = app.put_json('/auth/login', {'refresh_token': renewed['refresh_token']}, status=401)
    assert res.json == {'message': 'Сессия завершена; войдите заново.', 'status': 401}
    assert works(app, other)
    app.put_json('/auth/login', {'refresh_token': other['refresh_token']}, status=200)


def test_logout_is_idempotent_and_takes_any_token_of_the_family(app, user):
    renewed = app.put_json('/auth/login', {'refresh_token': user['refresh_token']}).json
    app.post_json('/auth/logout', {'refresh_token': user['refresh_token']}, status=204)  # an older one of the family
    assert not works(app, renewed)
    for _ in range(2):
        res = app.post_json('/auth/logout', {'refresh_token': renewed['refresh_token']}, status=204)
        assert res.body == b''


def test_an_expired_refresh_token_still_ends_its_session(app, user, monkeypatch):
    later = time.time() + 31 * 24 * 3600
    monkeypatch.setattr(auth.time, 'time', lambda: later)
    app.put_json('/auth/login', {'refresh_token': user['refresh_token']}, status=401)  # expired for refreshing
    app.post_json('/auth/logout', {'refresh_token': user['refresh_token']}, status=204)
    with db.connection_context():
        assert Session.select().count() == 0


@pytest.mark.parametrize('body, status', [
    ({}, 400), ({'refresh_token': 42}, 400), ({'refresh_token': 'x' * 5000}, 400),
    ({'refresh_token': 'garbage'}, 401), ({'refresh_token': 'access'}, 401)])
def test_logout_refuses_what_is_not_a_refresh_token(app, user, body, status):
    if body.get('refresh_token') == 'access':
        body = {'refresh_token': user['access_token']}
    res = app.post_json('/auth/logout', body, status=status)
    assert res.json['status'] == status and res.json['message']
    assert works(app, user)


def test_logout_of_a_forged_session_of_someone_else_ends_nothing(app, make_user):
    alice, bob = make_user(), make_user()
    bob_id = app.get('/user/', headers=bob['headers']).json['id']
    claims = {**jwt.decode(bob['refresh_token'], options={'verify_signature': False}), 'sub': str(bob_id + 1)}
    wrong_owner = jwt.encode(claims, moviesapi.setting('tokens').secret, algorithm='HS256')
    app.post_json('/auth/logout', {'refresh_token': wrong_owner}, status=204)  # a session id names one user's only
    assert works(app, bob) and works(app, alice)


# --- Listing -----------------------------------------------------------------------------------------

def test_sessions_are_listed_newest_first_with_the_callers_marked(app, user):
    phone = log_in(app, user, 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile Safari', '2001:db8::7')
    laptop = log_in(app, user, 'Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0', '198.51.100.4')
    res = app.get('/auth/sessions/', headers=phone['headers'], status=200)
    assert res.headers['Cache-Control'] == 'no-store'
    sessions = res.json
    assert [session['id'] for session in sessions] == [session_id(laptop), session_id(phone), session_id(user)]
    assert [session['current'] for session in sessions] == [False, True, False]
    assert all(set(session) == SESSION_KEYS for session in sessions)
    assert (sessions[0]['user_agent'], sessions[0]['address']) == ('Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0',
                                                                   '198.51.100.4')
    assert sessions[1]['address'] == '2001:db8::7'
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    for session in sessions:
        created = datetime.datetime.fromisoformat(session['created_at'].removesuffix('Z'))
        expires = datetime.datetime.fromisoformat(session['expires_at'].removesuffix('Z'))
        assert abs(created - now) < datetime.timedelta(minutes=1)
        assert abs(expires - created - datetime.timedelta(days=30)) < datetime.timedelta(minutes=1)
        assert session['refreshed_at'] is None
    assert 'jti' not in res.text and phone['refresh_token'] not in res.text


def test_refreshing_keeps_the_session_and_records_when(app, user):
    renewed = app.put_json('/auth/login', {'refresh_token': user['refresh_token']}).json
    assert session_id(renewed) == session_id(user)
    [session] = app.get('/auth/sessions', headers=bearer(renewed['access_token'])).json
    assert session['id'] == session_id(user) and session['current']
    assert session['refreshed_at'] is not None and session['refreshed_at'] >= session['created_at']


def test_a_long_user_agent_is_cut_and_expired_sessions_are_not_listed(app, user):
    log_in(app, user, 'A' * 5000)
    with db.connection_context():
        Session.update(expires_at=datetime.datetime(2020, 1, 1)).where(Session.id == session_id(user)).execute()
    latest = log_in(app, user)
    sessions = app.get('/auth/sessions', headers=latest['headers']).json
    assert [len(session['user_agent']) for session in sessions] == [0, 300]


def test_a_user_agent_is_read_as_utf8_without_nul(app, user):
    utf8_as_wsgi_gives_it = 'Мой браузер/1.0\x00'.encode().decode('latin-1')
    latest = log_in(app, user, utf8_as_wsgi_gives_it)
    assert app.get('/auth/sessions', headers=latest['headers']).json[0]['user_agent'] == 'Мой браузер/1.0'


def test_sessions_are_private_to_their_user(app, make_user):
    alice, bob = make_user(), make_user()
    [bobs] = app.get('/auth/sessions', headers=bob['headers']).json
    assert bobs['id'] not in {session['id'] for session in app.get('/auth/sessions', headers=alice['headers']).json}
    res = app.delete(f'/auth/sessions/{bobs["id"]}', headers=alice['headers'], status=404)
    assert res.json == {'message': 'Такой сессии нет: она завершена или не ваша.', 'status': 404}
    assert works(app, bob)


@pytest.mark.parametrize('method, path', [('get', '/auth/sessions'), ('delete', '/auth/sessions'),
                                          ('delete', '/auth/sessions/abc')])
def test_session_routes_need_a_live_access_token(app, user, method, path):
    getattr(app, method)(path, status=401)
    getattr(app, method)(path, headers=bearer(user['refresh_token']), status=401)
    app.post_json('/auth/logout', {'refresh_token': user['refresh_token']}, status=204)
    getattr(app, method)(path, headers=user['headers'], status=401)


# --- Ending sessions ---------------------------------------------------------------------------------

def test_ending_one_session_stops_its_tokens_and_no_other(app, user):
    phone, laptop = log_in(app, user), log_in(app, user)
    app.delete(f'/auth/sessions/{session_id(phone)}', headers=laptop['headers'], status=204)
    assert not works(app, phone)
    app.put_json('/auth/login', {'refresh_token': phone['refresh_token']}, status=401)
    assert works(app, laptop) and works(app, user)
    app.delete(f'/auth/sessions/{session_id(phone)}', headers=laptop['headers'], status=404)  # ended already


def test_a_session_may_end_itself(app, user):
    app.delete(f'/auth/sessions/{session_id(user)}', headers=user['headers'], status=204)
    assert not works(app, user)


def test_ending_all_other_sessions_keeps_the_callers(app, make_user):
    user, neighbour = make_user(), make_user()
    others = [log_in(app, user) for _ in range(3)]
    app.delete('/auth/sessions/', headers=user['headers'], status=204)
    assert works(app, user) and not any(works(app, pair) for pair in others)
    assert [session['current'] for session in app.get('/auth/sessions', headers=user['headers']).json] == [True]
    app.put_json('/auth/login', {'refresh_token': user['refresh_token']}, status=200)
    assert works(app, neighbour)


def test_a_password_change_ends_every_session_the_callers_too(app, user):
    other = log_in(app, user)
    app.put_json('/user/password', {'old_password': user['password'], 'new_password': 'новый пароль 1'},
                 headers=user['headers'], status=204)
    assert not works(app, user) and not works(app, other)
    for pair in (user, other):
        app.put_json('/auth/login', {'refresh_token': pair['refresh_token']}, status=401)
    with db.connection_context():
        assert Session.select().count() == 0


# --- Over real HTTP ----------------------------------------------------------------------------------

def test_sessions_over_http_record_the_address_a_trusted_proxy_forwards(server_factory):
    direct = server_factory()
    behind_proxy = server_factory(args=['--trusted-proxy', '127.0.0.1'])
    forwarded = {'X-Forwarded-For': '203.0.113.9', 'User-Agent': 'curl/8.5.0'}
    for server, address in ((direct, '127.0.0.1'), (behind_proxy, '203.0.113.9')):
        user = sign_up(server)
        status, _, pair = server.call('POST', '/auth/login', {'email': user['email'], 'password': user['password']},
                                      headers=forwarded)
        assert status == 200
        status, _, sessions = server.call('GET', '/auth/sessions', token=pair['access_token'])
        assert status == 200
        assert (sessions[0]['address'], sessions[0]['user_agent'], sessions[0]['current']) == (
            address, 'curl/8.5.0', True)


def test_logout_over_http_wins_its_race_with_refreshing(server_factory):
    """A client refreshes its session over and over while another token of the family logs it out: once logout
    has answered, no pair of that session works, whichever refresh was in flight."""
    server = server_factory()
    user = sign_up(server)

    def refresh_until_refused():
        pairs = [user]
        while True:
            status, _, pair = server.call('PUT', '/auth/login', {'refresh_token': pairs[-1]['refresh_token']})
            if status != 200:  # one client refreshing in turn: only the logout can refuse it
                return pairs
            pairs.append(pair)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        racer = pool.submit(refresh_until_refused)
        time.sleep(0.3)
        assert server.call('POST', '/auth/logout', {'refresh_token': user['refresh_token']})[0] == 204
        pairs = racer.result(timeout=30)
    assert len(pairs) > 3
    for pair in pairs:
        assert server.call('GET', '/user/', token=pair['access_token'])[0] == 401
        assert server.call('PUT', '/auth/login', {'refresh_token': pair['refresh_token']})[0] == 401
