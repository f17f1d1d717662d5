"""Registration, login, token rotation and every token attack, request bodies (throttling: test_throttle.py)."""
import base64
import json
import time

import jwt
import pytest

import moviesapi
from models import Session, User, db

PROTECTED = [('get', '/user/'), ('patch', '/user/'), ('put', '/user/password'), ('get', '/favorites/movies/'),
             ('post', '/favorites/movies/1'), ('delete', '/favorites/movies/1'), ('get', '/user/export'),
             ('delete', '/user/'), ('post', '/favorites/movies/import')]


def bearer(token):
    return {'Authorization': 'Bearer ' + token}


def forge(claims, key=None, algorithm='HS256', headers=None):
    """A token signed with the app's key (or another one), with full control over the claims."""
    key = moviesapi.setting('tokens').secret if key is None else key
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def claims_for(user_id, kind='access', ttl=900, **extra):
    """Claims the app would accept for this user, in its newest session ('none' if it has none)."""
    now = int(time.time())
    with db.connection_context():
        session_id = (Session.select(Session.id).where(Session.user == user_id)
                      .order_by(Session.created_at.desc()).scalar() or 'none')
    return {'sub': str(user_id), 'sid': session_id, 'type': kind, 'iat': now, 'exp': now + ttl, 'jti': 'x', **extra}


# --- Registration ------------------------------------------------------------------------------------

def test_register_returns_the_user_without_secrets(app):
    res = app.post_json('/auth/register', {'email': '  Anna@Example.COM ', 'password': 'долгий пароль'},
                        status=201)
    assert res.json == {'id': res.json['id'], 'email': 'anna@example.com', 'name': '', 'surname': '',
                        'favorite_genre': None, 'favourite_genre': None}
    stored = User.get(User.email == 'anna@example.com').password
    assert stored.startswith('pbkdf2_sha256$') and 'долгий' not in stored


def test_email_is_one_account_whatever_its_case(app):
    app.post_json('/auth/register', {'email': 'a@x.com', 'password': 'password1'}, status=201)
    res = app.post_json('/auth/register', {'email': ' A@X.COM', 'password': 'password2'}, status=409)
    assert res.json['message']


@pytest.mark.parametrize('body', [
    {'email': 'no-at-sign', 'password': 'password1'},
    {'email': '', 'password': 'password1'},
    {'email': 'a b@x.com', 'password': 'password1'},
    {'email': 'a@@x.com', 'password': 'password1'},
    {'email': 'a' * 250 + '@x.com', 'password': 'password1'},
    {'email': 'a@x.com', 'password': 'short'},
    {'email': 'a@x.com', 'password': 'p' * 129},
    {'email': 'a@x.com'},
    {'password': 'password1'},
    {'email': 42, 'password': 'password1'},
    {'email': 'a@x.com', 'password': ['password1']},
    {'email': 'a@x.com', 'password': 'pass\x00word1'},
    {'email': 'a@x.com', 'password': 'pass\ud800word1'},
])
def test_invalid_registrations_are_400(app, body):
    assert app.post_json('/auth/register', body, status=400).json['message']


@pytest.mark.parametrize('body, content_type, status', [
    (b'{"email": ', 'application/json', 400),
    (b'["a@x.com", "password1"]', 'application/json', 400),
    (b'"text"', 'application/json', 400),
    (b'', 'application/json', 400),
    (b'email=a@x.com&password=password1', 'application/x-www-form-urlencoded', 400),
    (b'{"email": "a@x.com", "password": "password1"}', 'text/plain', 400),
    (b'[' * 50000 + b']' * 50000, 'application/json', 413),
    (b'[' * 30000 + b']' * 30000, 'application/json', 400),
    (b'{"email": "a@x.com", "password": "' + b'p' * 70000 + b'"}', 'application/json', 413),
    (b'\xff\xfe{}', 'application/json', 400),
])
def test_bodies_that_are_not_a_small_json_object_are_rejected(app, body, content_type, status):
    res = app.post('/auth/register', body, headers={'Content-Type': content_type}, status=status)
    assert res.json['message']
    assert User.select().count() == 0


# --- Login -------------------------------------------------------------------------------------------

def test_login_issues_typed_hs256_tokens(app, user):
    for kind in ('access', 'refresh'):
        token = user[f'{kind}_token']
        assert jwt.get_unverified_header(token)['alg'] == 'HS256'
        claims = jwt.decode(token, options={'verify_signature': False})
        assert claims['type'] == kind and claims['sub'].isdigit()
        assert {'sub', 'sid', 'type', 'iat', 'exp', 'jti'} <= set(claims)
    lifetimes = [(lambda claims: claims['exp'] - claims['iat'])(jwt.decode(token, options={'verify_signature': False}))
                 for token in (user['access_token'], user['refresh_token'])]
    assert lifetimes == [15 * 60, 30 * 24 * 3600]


def test_wrong_password_and_unknown_email_look_the_same(app, user):
    wrong = app.post_json('/auth/login', {'email': user['email'], 'password': 'wrong password'}, status=401)
    unknown = app.post_json('/auth/login', {'email': 'nobody@x.com', 'password': 'wrong password'}, status=401)
    assert wrong.json == unknown.json


def test_login_ignores_email_case_and_spaces(app, user):
    app.post_json('/auth/login', {'email': ' ' + user['email'].upper(), 'password': user['password']}, status=200)


@pytest.mark.parametrize('body', [{}, {'email': 'a@x.com'}, {'email': None, 'password': 'x'},
                                  {'email': 'a@x.com', 'password': 12345678}])
def test_malformed_logins_are_400(app, body):
    app.post_json('/auth/login', body, status=400)


# --- Protected routes and token attacks --------------------------------------------------------------

@pytest.mark.parametrize('method, path', PROTECTED)
def test_protected_routes_need_a_bearer_token(app, method, path):
    res = getattr(app, method)(path, status=401)
    assert res.json['message'] and res.headers['WWW-Authenticate'].startswith('Bearer')
    getattr(app, method)(path, headers={'Authorization': 'Bearer undefined'}, status=401)


@pytest.mark.parametrize('attack', ['expired', 'tampered', 'alg_none', 'wrong_key', 'malformed', 'refresh_as_access',
                                    'no_type', 'int_sub', 'missing_exp', 'int_session', 'no_session',
                                    'other_session', 'hs512'])
def test_token_attacks_get_401(app, user, attack):
    user_id = app.get('/user/', headers=user['headers']).json['id']
    header, payload, signature = user['access_token'].split('.')
    raw = json.loads(base64.urlsafe_b64decode(payload + '=='))
    tokens = {
        'expired': lambda: forge(claims_for(user_id, ttl=-60)),
        'tampered': lambda: '.'.join([header, base64.urlsafe_b64encode(
            json.dumps({**raw, 'sub': str(user_id + 1)}).encode()).decode().rstrip('='), signature]),
        'alg_none': lambda: forge(claims_for(user_id), key='', algorithm='none'),
        'wrong_key': lambda: forge(claims_for(user_id), key='another key that is long enough 1234'),
        'malformed': lambda: 'not-a-jwt',
        'refresh_as_access': lambda: user['refresh_token'],
        'no_type': lambda: forge({k: v for k, v in claims_for(user_id).items() if k != 'type'}),
        'int_sub': lambda: forge({**claims_for(user_id), 'sub': 'abc'}),
        'missing_exp': lambda: forge({k: v for k, v in claims_for(user_id).items() if k != 'exp'}),
        'int_session': lambda: forge({**claims_for(user_id), 'sid': 1}),
        'no_session': lambda: forge({k: v for k, v in claims_for(user_id).items() if k != 'sid'}),
        'other_session': lambda: forge({**claims_for(user_id), 'sid': 'ended-or-never-was'}),
        'hs512': lambda: forge(claims_for(user_id), algorithm='HS512'),
    }
    res = app.get('/user/', headers=bearer(tokens[attack]()), status=401)
    assert res.json['message'] and 'invalid_token' in res.headers['WWW-Authenticate']


@pytest.mark.parametrize('subject', ['١', '²', '٣', '0', '01', '+1', ' 1', '1 ', '-1', '1.0', '1e3', '',
                                     str(2**31), '9' * 10, '9' * 11, '1' * 400])
def test_a_subject_that_is_not_a_plain_user_id_gets_401(app, user, subject):
    """Signed with the real key: only ASCII digits, no leading zero, within the id column, name a user."""
    assert app.get('/user/', headers=user['headers']).json['id'] == 1  # so '١' (Arabic-Indic one) would be them
    for kind, request in (('access', lambda token: app.get('/user/', headers=bearer(token), status=401)),
                          ('refresh', lambda token: app.put_json('/auth/login', {'refresh_token': token}, status=401))):
        res = request(forge(claims_for(1, kind, sub=subject)))
        assert res.json['message'] and 'invalid_token' in res.headers['WWW-Authenticate']


def test_a_forged_but_valid_token_is_accepted_so_the_attacks_above_prove_something(app, user):
    user_id = app.get('/user/', headers=user['headers']).json['id']
    assert app.get('/user/', headers=bearer(forge(claims_for(user_id))), status=200).json['id'] == user_id


def test_a_remembered_signature_does_not_outlive_its_token(app, user, monkeypatch):
    import auth
    app.get('/user/', headers=user['headers'], status=200)
    assert user['access_token'] in moviesapi.setting('tokens').verified
    later = time.time() + 15 * 60 + auth.LEEWAY + 1
    monkeypatch.setattr(auth.time, 'time', lambda: later)
    app.get('/user/', headers=user['headers'], status=401)


def test_token_of_a_deleted_user_is_401(app, user):
    User.delete().execute()
    app.get('/user/', headers=user['headers'], status=401)
    app.put_json('/auth/login', {'refresh_token': user['refresh_token']}, status=401)


# --- Refresh -----------------------------------------------------------------------------------------

def test_refresh_rotates_the_pair(app, user):
    pair = app.put_json('/auth/login/', {'access_token': user['access_token'],
                                         'refresh_token': user['refresh_token']}, status=200).json
    assert set(pair) == {'access_token', 'refresh_token'} and pair['refresh_token'] != user['refresh_token']
    app.get('/user/', headers=bearer(pair['access_token']), status=200)
    app.put_json('/auth/login', {'refresh_token': pair['refresh_token']}, status=200)


def test_reusing_a_refresh_token_ends_its_session_and_only_that(app, user):
    other = app.post_json('/auth/login', {'email': user['email'], 'password': user['password']}).json
    pair = app.put_json('/auth/login', {'refresh_token': user['refresh_token']}, status=200).json
    res = app.put_json('/auth/login', {'refresh_token': user['refresh_token']}, status=401)
    assert res.json['message'] == 'Этот refresh-токен уже использован; сессия завершена, войдите заново.'
    res = app.put_json('/auth/login', {'refresh_token': pair['refresh_token']}, status=401)
    assert res.json['message'] == 'Сессия завершена; войдите заново.'
    app.get('/user/', headers=bearer(pair['access_token']), status=401)  # the family's access tokens end with it
    app.get('/user/', headers=bearer(other['access_token']), status=200)  # another login is another family
    assert Session.select().count() == 1


def test_a_user_keeps_at_most_20_sessions_and_the_least_recently_refreshed_go_first(app, user):
    log_in = lambda: app.post_json('/auth/login', {'email': user['email'], 'password': user['password']}).json
    sessions = [user] + [log_in() for _ in range(19)]
    sessions[0] = app.put_json('/auth/login', {'refresh_token': user['refresh_token']}).json  # now the freshest
    sessions.append(log_in())  # the 21st: session 1, refreshed least recently, ends
    session_of = lambda pair: jwt.decode(pair['refresh_token'], options={'verify_signature': False})['sid']
    assert {row.id for row in Session.select()} == {session_of(pair) for pair in sessions if pair is not sessions[1]}
    app.get('/user/', headers=bearer(sessions[1]['access_token']), status=401)
    app.put_json('/auth/login', {'refresh_token': sessions[1]['refresh_token']}, status=401)
    app.put_json('/auth/login', {'refresh_token': sessions[0]['refresh_token']}, status=200)


def test_rotating_hundreds_of_times_leaves_one_row_and_reuse_is_still_caught(app, user):
    pair, spent = user, []
    for _ in range(300):
        spent.append(pair)
        pair = app.put_json('/auth/login', {'refresh_token': pair['refresh_token']}, status=200).json
    assert Session.select().count() == 1
    app.put_json('/auth/login', {'refresh_token': spent[0]['refresh_token']}, status=401)  # the oldest, reused
    app.put_json('/auth/login', {'refresh_token': pair['refresh_token']}, status=401)  # so the session ended
    assert Session.select().count() == 0


def test_refresh_accepts_an_expired_access_token_of_the_same_user(app, user):
    user_id = app.get('/user/', headers=user['headers']).json['id']
    expired = forge(claims_for(user_id, ttl=-3600))
    app.put_json('/auth/login', {'access_token': expired, 'refresh_token': user['refresh_token']}, status=200)


def test_refresh_rejects_mismatched_or_wrong_typed_tokens(app, make_user):
    alice, bob = make_user(), make_user()
    app.put_json('/auth/login', {'access_token': bob['access_token'], 'refresh_token': alice['refresh_token']},
                 status=401)
    app.put_json('/auth/login', {'refresh_token': alice['access_token']}, status=401)
    app.put_json('/auth/login', {'refresh_token': 'garbage'}, status=401)
    app.put_json('/auth/login', {'access_token': alice['access_token']}, status=400)
    app.put_json('/auth/login', {'refresh_token': forge(claims_for(1, 'refresh', ttl=-10))}, status=401)


# --- Caching ------------------------------------------------------------------------------------------

def test_answers_with_tokens_or_private_data_are_never_stored(app, user):
    auth = {'headers': user['headers']}
    answers = {
        'register': app.post_json('/auth/register', {'email': 'new@x.com', 'password': 'password1'}, status=201),
        'login': app.post_json('/auth/login', {'email': user['email'], 'password': user['password']}, status=200),
        'refresh': app.put_json('/auth/login', {'refresh_token': user['refresh_token']}, status=200),
        'profile, served ahead of Bottle': app.get('/user/', **auth, status=200),
        'profile through Bottle': app.head('/user/', **auth, status=200),
        'profile change': app.patch_json('/user/', {'name': 'Анна'}, **auth, status=200),
        'bookmark': app.post_json('/favorites/movies/1', **auth, status=201),
        'favourites, served ahead of Bottle': app.get('/favorites/movies/', **auth, status=200),
        'favourites through Bottle': app.head('/favorites/movies/', **auth, status=200),
        'bookmark removal': app.delete('/favorites/movies/1', **auth, status=204),
        'password change': app.put_json('/user/password', {'password_1': user['password'],
                                                           'password_2': 'another password'}, **auth, status=204),
    }
    assert {what: res.headers.get('Cache-Control') for what, res in answers.items()} == dict.fromkeys(answers,
                                                                                                     'no-store')


@pytest.mark.parametrize('path', ['/movies/', '/movies/1', '/genres/', '/directors/2'])
def test_public_catalogue_answers_stay_cacheable(app, path):
    assert app.get(path, headers={'Authorization': 'Bearer undefined'}).headers['Cache-Control'] == 'public, no-cache'
