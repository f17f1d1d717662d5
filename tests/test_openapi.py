"""The OpenAPI document: valid, complete, served as is, and true to what the app really answers."""
import json
import pathlib
import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = json.loads((pathlib.Path(__file__).resolve().parent.parent / 'openapi.json').read_text(encoding='utf-8'))
SPEC_URI = 'urn:moviesapi:openapi'
REGISTRY = Registry().with_resource(SPEC_URI, Resource(contents=SPEC, specification=DRAFT202012))
PASSWORD = 'correct horse battery'


# --- Checking a response against the document --------------------------------------------------------

def pointer_to(*parts):
    return ''.join('/' + str(p).replace('~', '~0').replace('/', '~1') for p in parts)


def follow(pointer):
    """(pointer, node) of the object at this JSON pointer, after following any `$ref`."""
    while True:
        node = SPEC
        for part in pointer.lstrip('/').split('/'):
            node = node[part.replace('~1', '/').replace('~0', '~')]
        if '$ref' not in node:
            return pointer, node
        pointer = node['$ref'].removeprefix('#')


def validate_schema_at(pointer, instance):
    validator = Draft202012Validator({'$ref': f'{SPEC_URI}#{pointer}'}, registry=REGISTRY,
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    validator.validate(instance)


def conform(res, method, path):
    """Assert the document describes this answer of `method path`: status, media type, body and headers."""
    responses = SPEC['paths'][path][method.lower()]['responses']
    status = str(res.status_int)
    assert status in responses, f'{method} {path} answered {res.status}, which is not documented'
    pointer, response = follow(pointer_to('paths', path, method.lower(), 'responses', status))
    content = response.get('content')
    if not content:
        assert res.body == b'', f'{method} {path} {status} should have no body'
    else:
        assert res.content_type in content, f'{method} {path} {status}: undocumented {res.content_type}'
        if res.content_type == 'application/json':
            validate_schema_at(pointer + pointer_to('content', res.content_type, 'schema'), res.json)
    for name in response.get('headers', {}):
        header_pointer, header = follow(pointer + pointer_to('headers', name))
        value = res.headers.get(name)
        if value is None:
            assert not header.get('required'), f'{method} {path} {status}: header {name} is missing'
            continue
        if header['schema'].get('type') == 'integer':
            value = int(value)
        validate_schema_at(header_pointer + '/schema', value)
    return res


# --- The document itself -------------------------------------------------------------------------------

def test_document_is_valid_openapi_3_1():
    validate(SPEC)
    assert SPEC['openapi'].startswith('3.1')


def test_app_serves_the_document_as_is(app):
    res = conform(app.get('/openapi.json', status=200), 'GET', '/openapi.json')
    assert res.json == SPEC
    # Only 200 is documented: no partial (206) or conditional (304) answers from a static-file helper.
    headers = {'Range': 'bytes=0-9', 'If-None-Match': res.headers.get('ETag', '*'),
               'If-Modified-Since': 'Thu, 01 Jan 2037 00:00:00 GMT'}
    assert conform(app.get('/openapi.json', headers=headers, status=200), 'GET', '/openapi.json').json == SPEC


# Pages of the built-in web UI (HTML, not API): outside the document by design.
UI_ROUTES = {(path, 'GET') for path in ('/', '/catalog', '/movie/{id}', '/genre/{id}', '/director/{id}',
                                         '/login', '/register', '/profile', '/saved')}


def test_every_route_of_the_app_is_documented():
    import moviesapi
    documented = {(path.rstrip('/') or '/', method.upper())
                  for path, item in SPEC['paths'].items() for method in item}
    served = set()
    for route in moviesapi.app.routes:
        if route.method in ('OPTIONS', 'HEAD') or route.rule.startswith(('/static', '/<')):
            continue
        path = re.sub(r'<(\w+)[^>]*>', r'{\1}', route.rule).rstrip('/') or '/'
        served.add((path, route.method))
    assert served - documented <= UI_ROUTES, f'undocumented: {sorted(served - documented - UI_ROUTES)}'
    assert documented <= served, f'documented but not served: {sorted(documented - served)}'


# --- Catalogue ----------------------------------------------------------------------------------------

CATALOGUE = [
    ('/movies/', '/movies/', 200),
    ('/movies', '/movies/', 200),
    ('/movies/?page=1', '/movies/', 200),
    ('/movies/?page=2&status=new', '/movies/', 200),
    ('/movies/?page=99', '/movies/', 200),
    ('/movies/?genre_id=17&director_id=1&year=2018&q=%D0%B9%D0%B5%D0%BB%D0%BB', '/movies/', 200),
    ('/movies/?page=0', '/movies/', 400),
    ('/movies/?page=abc', '/movies/', 400),
    ('/movies/?year=abc', '/movies/', 400),
    ('/movies/?genre_id=1.5', '/movies/', 400),
    ('/movies/1', '/movies/{id}', 200),
    ('/movies/1/', '/movies/{id}', 200),
    ('/movies/99999', '/movies/{id}', 404),
    ('/movies/abc', '/movies/{id}', 404),
    ('/genres/', '/genres/', 200),
    ('/genres/?page=2', '/genres/', 200),
    ('/genres/?page=-1', '/genres/', 400),
    ('/genres/1', '/genres/{id}', 200),
    ('/genres/99999', '/genres/{id}', 404),
    ('/directors/', '/directors/', 200),
    ('/directors/?page=1', '/directors/', 200),
    ('/directors/?page=1e3', '/directors/', 400),
    ('/directors/1', '/directors/{id}', 200),
    ('/directors/99999', '/directors/{id}', 404),
    ('/health', '/health', 200),
]


@pytest.mark.parametrize('url, path, status', CATALOGUE)
def test_catalogue_answers_match_the_document(app, url, path, status):
    conform(app.get(url, status=status, headers={'Authorization': 'Bearer undefined'}), 'GET', path)


@pytest.mark.parametrize('url, path', [('/movies/?page=1', '/movies/'), ('/movies/', '/movies/'),
                                       ('/movies/3', '/movies/{id}'), ('/genres/', '/genres/'),
                                       ('/directors/2', '/directors/{id}')])
def test_not_modified_matches_the_document(app, url, path):
    tag = conform(app.get(url, status=200), 'GET', path).headers['ETag']
    conform(app.get(url, headers={'If-None-Match': tag}, status=304), 'GET', path)


# --- Auth ---------------------------------------------------------------------------------------------

def test_register_answers_match_the_document(app):
    body = {'email': 'New@Example.com', 'password': PASSWORD}
    conform(app.post_json('/auth/register', body, status=201), 'POST', '/auth/register')
    conform(app.post_json('/auth/register', body, status=409), 'POST', '/auth/register')
    for bad in ({'email': 'no-at-sign', 'password': PASSWORD}, {'email': 'a@b.c', 'password': 'short'},
                {'email': 'a@b.c'}, ['not', 'an', 'object']):
        conform(app.post_json('/auth/register', bad, status=400), 'POST', '/auth/register')
    res = app.post('/auth/register', 'not json', content_type='application/json', status=400)
    conform(res, 'POST', '/auth/register')
    res = app.post_json('/auth/register', {'email': 'a@b.c', 'password': 'x' * 70_000}, status=413)
    conform(res, 'POST', '/auth/register')


def test_login_and_refresh_answers_match_the_document(app, user):
    tokens = {'access_token': user['access_token'], 'refresh_token': user['refresh_token']}
    conform(app.post_json('/auth/login', {'email': user['email'], 'password': 'wrong password'},
                          status=401), 'POST', '/auth/login')
    conform(app.post_json('/auth/login', {'email': user['email']}, status=400), 'POST', '/auth/login')
    fresh = conform(app.put_json('/auth/login', tokens, status=200), 'PUT', '/auth/login').json
    conform(app.put_json('/auth/login', tokens, status=401), 'PUT', '/auth/login')  # reused: the session ends
    conform(app.put_json('/auth/login', {'refresh_token': fresh['refresh_token']}, status=401), 'PUT', '/auth/login')
    conform(app.put_json('/auth/login', {'refresh_token': fresh['access_token']}, status=401),
            'PUT', '/auth/login')
    conform(app.put_json('/auth/login', {'access_token': fresh['access_token']}, status=400), 'PUT', '/auth/login')


def test_login_throttling_matches_the_document(app, user):
    for _ in range(5):
        app.post_json('/auth/login', {'email': user['email'], 'password': 'wrong password'}, status=401)
    res = app.post_json('/auth/login', {'email': user['email'], 'password': user['password']}, status=429)
    conform(res, 'POST', '/auth/login')
    assert int(res.headers['Retry-After']) >= 1


# --- Sessions -----------------------------------------------------------------------------------------

def test_logout_answers_match_the_document(app, user):
    path = '/auth/logout'
    for bad in ({}, {'refresh_token': 5}, {'refresh_token': 'x' * 5000}, {'refresh_token': 'a\x00b'}, ['x']):
        conform(app.post_json(path, bad, status=400), 'POST', path)
    conform(app.post(path, 'not json', content_type='application/json', status=400), 'POST', path)
    conform(app.post_json(path, {'refresh_token': 'x' * 70_000}, status=413), 'POST', path)
    for wrong in (user['access_token'], 'garbage'):
        conform(app.post_json(path, {'refresh_token': wrong}, status=401), 'POST', path)
    conform(app.post_json(path, {'refresh_token': user['refresh_token']}, status=204), 'POST', path)
    conform(app.post_json(path, {'refresh_token': user['refresh_token']}, status=204), 'POST', path)  # ended
    conform(app.get('/auth/sessions', headers=user['headers'], status=401), 'GET', '/auth/sessions')


def test_session_answers_match_the_document(app, user):
    many, one = '/auth/sessions', '/auth/sessions/{session_id}'
    credentials = {'email': user['email'], 'password': user['password']}
    other = app.post_json('/auth/login', credentials, headers={'User-Agent': 'Firefox/128.0'}).json
    other = app.put_json('/auth/login', {'refresh_token': other['refresh_token']}).json
    listed = conform(app.get('/auth/sessions/', headers=user['headers'], status=200), 'GET', many)
    assert listed.headers['Cache-Control'] == 'no-store'
    newest, mine = listed.json  # newest first
    assert (newest['current'], newest['user_agent'], mine['current'], mine['refreshed_at']) == (
        False, 'Firefox/128.0', True, None)
    assert newest['refreshed_at'] is not None
    conform(app.get(many, status=401), 'GET', many)
    conform(app.delete(f'{many}/{newest["id"]}', headers=user['headers'], status=204), 'DELETE', one)
    conform(app.delete(f'{many}/{newest["id"]}', headers=user['headers'], status=404), 'DELETE', one)
    conform(app.delete(f'{many}/no-such-session', headers=user['headers'], status=404), 'DELETE', one)
    conform(app.delete(f'{many}/{mine["id"]}', status=401), 'DELETE', one)
    conform(app.get(many, headers={'Authorization': 'Bearer ' + other['access_token']}, status=401), 'GET', many)
    app.post_json('/auth/login', credentials)
    conform(app.delete(many, headers=user['headers'], status=204), 'DELETE', many)
    conform(app.delete(many, status=401), 'DELETE', many)
    assert [session['id'] for session in app.get(many, headers=user['headers']).json] == [mine['id']]
    conform(app.delete(f'{many}/{mine["id"]}/', headers=user['headers'], status=204), 'DELETE', one)
    conform(app.get(many, headers=user['headers'], status=401), 'GET', many)


# --- Profile and favourites ---------------------------------------------------------------------------

def test_profile_answers_match_the_document(app, user):
    auth = user['headers']
    conform(app.get('/user/', headers=auth, status=200), 'GET', '/user/')
    for headers in ({}, {'Authorization': 'Bearer garbage'}, {'Authorization': 'Basic eDp5'}):
        conform(app.get('/user/', headers=headers, status=401), 'GET', '/user/')
    update = {'name': 'Анна', 'surname': 'Каренина', 'favourite_genre': '3'}
    assert conform(app.patch_json('/user/', update, headers=auth, status=200), 'PATCH', '/user/').json[
        'favorite_genre'] == 3
    conform(app.patch_json('/user/', {'favorite_genre': None}, headers=auth, status=200), 'PATCH', '/user/')
    for bad in ({'email': 'x@y.z'}, {'password': PASSWORD}, {'id': 5}, {'name': 'x' * 101},
                {'favorite_genre': 99999}, {'name': 5}):
        conform(app.patch_json('/user/', bad, headers=auth, status=400), 'PATCH', '/user/')
    conform(app.patch_json('/user/', {'name': 'x'}, status=401), 'PATCH', '/user/')


def test_password_change_answers_match_the_document(app, user):
    auth, path, current = user['headers'], '/user/password', user['password']
    conform(app.put_json(path, {'password_1': 'wrong password', 'password_2': 'new password 1'},
                         headers=auth, status=403), 'PUT', path)
    conform(app.put_json(path, {'password_1': current, 'password_2': 'short'}, headers=auth, status=400),
            'PUT', path)
    conform(app.put_json(path, {'password_1': current}, headers=auth, status=400), 'PUT', path)
    conform(app.put_json(path, {'old_password': current, 'new_password': 'new password 1'},
                         headers=auth, status=204), 'PUT', path)
    conform(app.put_json(path, {'old_password': 'new password 1', 'new_password': current},
                         headers=auth, status=401), 'PUT', path)  # the old token was revoked


def test_favourites_answers_match_the_document(app, user):
    auth, one, many = user['headers'], '/favorites/movies/{id}', '/favorites/movies/'
    conform(app.post('/favorites/movies/3', headers=auth, status=201), 'POST', one)
    conform(app.post('/favorites/movies/3/', headers=auth, status=200), 'POST', one)
    conform(app.post('/favorites/movies/99999', headers=auth, status=404), 'POST', one)
    conform(app.post('/favorites/movies/3', status=401), 'POST', one)
    assert [m['id'] for m in conform(app.get(many, headers=auth, status=200), 'GET', many).json] == [3]
    conform(app.get(many, status=401), 'GET', many)
    conform(app.delete('/favorites/movies/3', headers=auth, status=204), 'DELETE', one)
    conform(app.delete('/favorites/movies/3', headers=auth, status=404), 'DELETE', one)
    conform(app.delete('/favorites/movies/3', status=401), 'DELETE', one)


def test_your_data_answers_match_the_document(app, user):
    auth, export, imports, account = user['headers'], '/user/export', '/favorites/movies/import', '/user/'
    app.post('/favorites/movies/2', headers=auth)
    document = conform(app.get(export, headers=auth, status=200), 'GET', export).json
    assert document['format'] == 'moviesapi-export/2'
    assert [session['current'] for session in document['sessions']] == [True]
    conform(app.get(export, status=401), 'GET', export)
    conform(app.post_json(imports, document, headers=auth, status=200), 'POST', imports)
    conform(app.post_json(imports, {'favorites': [1, {'id': 99999}]}, headers=auth, status=200), 'POST', imports)
    conform(app.post_json(imports, {'favorites': 'x'}, headers=auth, status=400), 'POST', imports)
    conform(app.post_json(imports, {'favorites': [1]}, status=401), 'POST', imports)
    conform(app.delete_json(account, {}, headers=auth, status=400), 'DELETE', account)
    conform(app.delete_json(account, {'password': 'wrong password'}, headers=auth, status=403), 'DELETE', account)
    conform(app.delete_json(account, {'password': user['password']}, headers=auth, status=204), 'DELETE', account)
    conform(app.delete_json(account, {'password': user['password']}, headers=auth, status=401), 'DELETE', account)


# --- Extreme inputs: what schemathesis found once, pinned on both engines -----------------------------

HUGE = '9' * 30
LONG_EMAIL = 'x' * 300 + '@example.com'
DOTTED_I_EMAIL = 'İ' * 200 + '@example.com'  # 212 characters, 412 once lower-cased: 'İ'.lower() is 'i̇'
EXTREMES = [pytest.param(*row[1:], id=row[0]) for row in [
    ('huge movie id', 'GET', f'/movies/{HUGE}', None, 404, '/movies/{id}'),
    ('huge negative genre id', 'GET', f'/genres/-{HUGE}', None, 404, '/genres/{id}'),
    ('huge page', 'GET', f'/movies/?page={HUGE}', None, 400, '/movies/'),
    ('huge year', 'GET', f'/movies/?year={HUGE}', None, 400, '/movies/'),
    ('q is NUL', 'GET', '/movies/?q=%00', None, 400, '/movies/'),
    ('q has NUL', 'GET', '/movies/?q=a%00b', None, 400, '/movies/'),
    ('q too long', 'GET', '/movies/?q=' + 'x' * 201, None, 400, '/movies/'),
    ('add huge favourite', 'POST', f'/favorites/movies/{HUGE}', None, 404, '/favorites/movies/{id}'),
    ('remove huge favourite', 'DELETE', f'/favorites/movies/{HUGE}', None, 404, '/favorites/movies/{id}'),
    ('remove huge negative favourite', 'DELETE', f'/favorites/movies/-{HUGE}', None, 404,
     '/favorites/movies/{id}'),
    ('huge genre', 'PATCH', '/user/', {'favorite_genre': int(HUGE)}, 400, '/user/'),
    ('huge genre digits', 'PATCH', '/user/', {'favourite_genre': HUGE}, 400, '/user/'),
    ('NUL in name', 'PATCH', '/user/', {'name': 'a\x00b'}, 400, '/user/'),
    ('login long email', 'POST', '/auth/login', {'email': LONG_EMAIL, 'password': 'wrong password'}, 401,
     '/auth/login'),
    ('login email longer once lower-cased', 'POST', '/auth/login',
     {'email': DOTTED_I_EMAIL, 'password': 'wrong password'}, 401, '/auth/login'),
    ('register email longer once lower-cased', 'POST', '/auth/register',
     {'email': DOTTED_I_EMAIL, 'password': PASSWORD}, 400, '/auth/register'),
    ('refresh token too long', 'PUT', '/auth/login', {'refresh_token': 'x' * 5000}, 400, '/auth/login'),
    ('session id is NUL', 'DELETE', '/auth/sessions/%00', None, 404, '/auth/sessions/{session_id}'),
    ('session id has NUL', 'DELETE', '/auth/sessions/a%00b', None, 404, '/auth/sessions/{session_id}'),
    ('session id too long', 'DELETE', '/auth/sessions/' + 'x' * 5000, None, 404, '/auth/sessions/{session_id}'),
]]


@pytest.mark.parametrize('method, url, body, status, path', EXTREMES)
def test_extreme_inputs_get_documented_answers(app, user, method, url, body, status, path):
    content = {} if body is None else {'body': json.dumps(body).encode(), 'content_type': 'application/json'}
    conform(app.request(url, method=method, headers=user['headers'], status=status, **content), method, path)


# --- The HTML reference -------------------------------------------------------------------------------

def test_docs_page_is_self_contained_html_naming_every_route(app):
    import apidocs
    res = app.get('/docs', status=200)
    conform(res, 'GET', '/docs')
    page = res.text
    for path, item in SPEC['paths'].items():
        assert f'<code>{path}</code>' in page, path
        for method in item:
            assert f'id="{apidocs.anchor(method, path)}"' in page
    for schema in SPEC['components']['schemas']:
        assert f'id="schema-{schema}"' in page
    assert page.count('<link') == 1 and '<link rel="stylesheet" href="/static/docs.css">' in page
    for external in ('<script', '<style', 'style=', 'src=', '@import', 'url(', 'http://', 'https://'):
        assert external not in page
    assert app.get('/static/docs.css', status=200).content_type == 'text/css'


def test_docs_page_escapes_what_the_document_says():
    import apidocs
    spec = json.loads(json.dumps(SPEC))
    spec['info']['title'] = '<script>alert(1)</script>'
    spec['paths']['/movies/']['get']['summary'] = '"><img src=x onerror=alert(1)>'
    page = apidocs.render_html(spec)
    assert '<script>' not in page and '<img' not in page
    assert '&lt;script&gt;' in page
