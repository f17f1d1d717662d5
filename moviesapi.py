"""moviesapi: a movie catalogue with accounts and favourites, as a JSON API and a small web UI."""
import argparse
import functools
import itertools
import json
import logging
import math
import os
import pathlib
import re
import secrets
import signal
import stat
import sys
import tempfile
import unicodedata
from urllib.parse import unquote_plus, urlencode

from bottle import Bottle, HTTPError, HTTPResponse, abort, request, response, static_file
from peewee import DatabaseError, IntegrityError

import admin
import apidocs
import server
from auth import BearerAuth, Tokens, authenticate, bearer_token, check_password, hash_password
from models import (MAX_ID, Director, Favorite, Genre, Movie, User, bump_catalogue_revision, close_database,
                    connection, create_schema, db, open_database, release_connection)
from serving import MiB, BufferedLogHandler, Busy, ResponseCache, Workload, access_log, serve_ahead, with_headers
from throttle import Throttle

HERE = pathlib.Path(__file__).parent
STATIC = HERE / 'static'
PAGE_SIZE = 12
BATCH_SIZE = 500  # rows per query when streaming a whole list
MAX_BODY = 64 * 1024
log = logging.getLogger('moviesapi')

app = Bottle()
app.uninstall('json')  # its encoder escapes Cyrillic and refuses lists; json_output below replaces it


# --- Configuration -----------------------------------------------------------------------------------

def configure(database_url, secret, cors_origin='*', access_ttl=15 * 60, refresh_ttl=30 * 24 * 3600,
              login_failures_per_email=5, login_failures_per_address=50, login_window=300,
              password_hashes_per_minute=60, cache_seconds=1.0, max_connections=8, threads=8,
              cache_bytes=64 * MiB):
    """Point the app at a database (creating and seeding it if empty) and set its keys and limits."""
    if len(secret.encode()) < 32:
        raise ValueError('The signing key must be at least 32 bytes long.')
    close_database()
    db.initialize(open_database(database_url, max_connections))
    with db.connection_context():
        create_schema()
    tokens = Tokens(secret, access_ttl, refresh_ttl)
    cors = [('Access-Control-Allow-Origin', cors_origin),
            ('Access-Control-Expose-Headers', 'ETag, Link, X-Total-Count, Retry-After, WWW-Authenticate')]
    app.uninstall('auth')
    app.install(BearerAuth(tokens))
    app.config.update({
        'moviesapi.tokens': tokens,
        'moviesapi.throttle': Throttle(secret, login_failures_per_email, login_failures_per_address, login_window,
                                       password_hashes_per_minute),
        'moviesapi.cache': ResponseCache(cache_seconds, uncached_workload(threads), cache_bytes),
        'moviesapi.cors_headers': cors,
    })
    return app


def uncached_workload(threads):
    """Uncached catalogue work leaves two of the server's threads to cached answers and other routes, and
    renders on as many threads at once as there are CPUs."""
    workers = max(1, threads - 2)
    return Workload(workers, min(workers, os.cpu_count() or 1))


def setting(name):
    return app.config['moviesapi.' + name]


# --- JSON in and out ---------------------------------------------------------------------------------

def dumps(data):
    return json.dumps(data, ensure_ascii=False, separators=(',', ':')).encode()


def as_json(result):
    """A route's result as a JSON body: bytes are encoded already, a dict or list is encoded here."""
    return result if isinstance(result, bytes) else dumps(result)


def json_output(callback):
    """Plugin: a route's dict, list or bytes become a JSON response (Bottle's own plugin refuses lists)."""
    @functools.wraps(callback)
    def encode(*args, **kwargs):
        result = callback(*args, **kwargs)
        if isinstance(result, (dict, list, bytes)):
            response.content_type = 'application/json'
            return as_json(result)
        return result
    return encode


PRIVATE = ('Cache-Control', 'no-store')  # tokens and a user's own data: no cache or browser may keep them


class PrivateAnswers:
    """Plugin: answers of routes declared auth=True or private=True carry Cache-Control: no-store."""
    name, api = 'private', 2

    def apply(self, callback, route):
        if not (route.config.get('auth') or route.config.get('private')):
            return callback

        @functools.wraps(callback)
        def not_stored(*args, **kwargs):
            response.set_header(*PRIVATE)
            return callback(*args, **kwargs)
        return not_stored


def json_body():
    """The request's JSON object; 400 unless one was sent as application/json, 413 over 64 KiB."""
    if request.content_type.split(';')[0].strip().lower() != 'application/json':
        abort(400, 'Отправьте JSON-объект с Content-Type: application/json.')
    if request.content_length > MAX_BODY:
        abort(413, 'Тело запроса больше 64 КиБ.')
    raw = request.body.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        abort(413, 'Тело запроса больше 64 КиБ.')
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        abort(400, 'Тело запроса — некорректный JSON.')
    if not isinstance(body, dict):
        abort(400, 'Тело запроса должно быть JSON-объектом.')
    return body


def text(body, field, max_length, min_length=0, required=True):
    """A string field of the body, checked for type, length and storable characters."""
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        abort(400, f'Поле "{field}" должно быть строкой.')
    if not min_length <= len(value) <= max_length:
        abort(400, f'Длина поля "{field}" — от {min_length} до {max_length} символов.')
    if not storable(value):
        abort(400, f'Поле "{field}" содержит недопустимые символы.')
    return value


def storable(value):
    """False for NUL and lone surrogates, which valid JSON can carry but no database column can."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return '\x00' not in value


def reject_unknown(body, allowed):
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        abort(400, f'Эти поля здесь не изменяются: {", ".join(unknown)}.')


EMAIL = re.compile(r'[^@\s]+@[^@\s]+')
LOOKALIKE_SCRIPTS = {'LATIN', 'CYRILLIC', 'GREEK'}  # alphabets that share letter shapes: а/a, о/o, ο/o


def normalized_email(value):
    """An email as stored and compared: NFKC (fullwidth ａ becomes a), trimmed, lower-cased."""
    # Older rows were trimmed and lower-cased, and NFKC leaves ASCII as it is, so ASCII rows need no migration;
    # only a non-ASCII row (a fullwidth address, say) can differ, and must be rewritten for its owner to log in.
    return unicodedata.normalize('NFKC', value).strip().lower()


def email_field(body):
    """The body's email, normalised; 400 unless it looks like an address, with no control, format or bidi
    characters, and no local part or domain label mixing Latin, Cyrillic or Greek letters."""
    email = normalized_email(text(body, 'email', 254))
    if not email.isprintable():
        abort(400, 'Поле "email" содержит управляющие или невидимые символы.')
    if len(email) > 254 or not EMAIL.fullmatch(email):
        abort(400, 'Поле "email" должно быть адресом электронной почты.')
    local, domain = email.rsplit('@', 1)
    if any(mixes_lookalike_scripts(part) for part in (local, *domain.split('.'))):
        abort(400, 'В адресе email смешаны буквы разных алфавитов (латиница, кириллица, греческий).')
    return email


def mixes_lookalike_scripts(part):
    """True if the part has letters from two of the lookalike alphabets, like 'аlice' with a Cyrillic а."""
    scripts = {unicodedata.name(char, '').split(' ', 1)[0] for char in part if char.isalpha()}
    return len(scripts & LOOKALIKE_SCRIPTS) > 1


def new_password(body, field):
    return text(body, field, 128, min_length=8)


# --- Query parameters --------------------------------------------------------------------------------

def query_params(environ):
    """The query string as Bottle reads it: the last value of each parameter, percent-decoded as latin-1."""
    params = {}
    for pair in environ.get('QUERY_STRING', '').split('&'):
        if pair:
            name, _, value = pair.partition('=')
            params[unquote_plus(name, 'latin-1')] = unquote_plus(value, 'latin-1')
    return params


def int_param(query, name, maximum=MAX_ID):
    """A positive integer query parameter, or None; 400 for anything else, including an empty value."""
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= maximum:
        abort(400, f'Параметр "{name}" должен быть целым числом от 1 до {maximum}.')
    return int(raw)


def get_or_404(query, id):
    """The single row with this id, or 404."""
    found = query.where(query.model.id == id).get_or_none() if 0 < id <= MAX_ID else None
    if found is None:
        abort(404, f'Запись с id {id} не найдена.')
    return found


# --- Catalogue answers: encoded once, cached per catalogue revision (serving.ResponseCache) ----------

CATALOGUE_PATH = re.compile(r'/(movies|genres|directors)(?:/(-?\d+))?')  # what the routes' <id:int> matches
BUSY = 'Сервер занят, повторите запрос через секунду.'


def catalogue(render):
    """Answer a catalogue GET from the cache or from render(**parameters) → (body or its chunks, headers).
    Parameters are checked before the cache is asked; a 400 is never cached."""
    key = cache_key(request.environ)
    body, headers, _ = cached(key, lambda: render(**dict(key[1])))
    if_none_match = request.environ.get('HTTP_IF_NONE_MATCH')
    if if_none_match and {headers['ETag'], '*'} & {tag.strip().removeprefix('W/') for tag in if_none_match.split(',')}:
        if not isinstance(body, bytes):
            body.close()
        return HTTPResponse(status=304, headers={'ETag': headers['ETag'], 'Cache-Control': headers['Cache-Control']})
    return HTTPResponse(body, headers=headers)


def cached(key, render):
    """The cache's answer for key; 503 with Retry-After when no worker can be spared to render it."""
    try:
        return setting('cache').get(key, render)
    except Busy:
        error = HTTPError(503, BUSY)
        error.set_header('Retry-After', '1')
        raise error from None


def cache_key(environ):
    """A catalogue GET's key: its path and the parameters its route uses, validated and in one order, so that
    other parameters make no entries of their own. None for other paths; 400 for a bad parameter."""
    found = CATALOGUE_PATH.fullmatch(environ['PATH_INFO'])
    if found is None:
        return None
    plural, id = found.groups()
    if id is not None:
        return f'/{plural}/{int(id)}', ()
    query = query_params(environ)
    if not query:
        return f'/{plural}', ()
    params = [('page', int_param(query, 'page', maximum=10**9))]
    if plural == 'movies':
        params[:0] = [('status', 'new' if query.get('status') == 'new' else None),  # other values: id order
                      ('genre_id', int_param(query, 'genre_id')), ('director_id', int_param(query, 'director_id')),
                      ('year', int_param(query, 'year', maximum=9999)), ('q', search_text(query))]
    return f'/{plural}', tuple([(name, value) for name, value in params if value is not None])


def search_text(query):
    """The title search, or None when empty or not UTF-8; 400 over 200 characters or with NUL."""
    try:
        text = query.get('q', '').encode('latin-1').decode() or None
    except UnicodeError:  # not UTF-8: Bottle's getunicode() gives None too
        text = None
    if text is not None and (len(text) > 200 or not storable(text)):
        abort(400, 'Параметр "q" — не длиннее 200 символов и без символа NUL.')
    return text


def render_movie(id):
    return dumps(get_or_404(Movie.with_relations(), id).to_json()), {}


def render_list(query, fetch=list, page=None):
    """A route's list: one page (12 rows, with X-Total-Count and Link) or every row, in chunks."""
    if page is None:
        return list_chunks(query, fetch), {}
    total = query.count()
    return dumps([row.to_json() for row in fetch(query.paginate(page, PAGE_SIZE))]), {
        'X-Total-Count': str(total), 'Link': page_links(page, max(1, math.ceil(total / PAGE_SIZE)))}


def list_chunks(query, fetch):
    """A JSON array of every row, one chunk per batch, so that a huge list never sits in memory whole."""
    yield b'['
    for number in itertools.count(1):
        rows = fetch(query.paginate(number, BATCH_SIZE))
        if rows:
            yield (b',' if number > 1 else b'') + dumps([row.to_json() for row in rows])[1:-1]
        if len(rows) < BATCH_SIZE:
            break
    yield b']'


def page_links(page, last):
    """An RFC 8288 Link header to the first, previous, next and last pages, keeping the other parameters the
    route uses (never any others)."""
    path, params = cache_key(request.environ)
    params = {name: value for name, value in params if name != 'page'}
    links = {'first': 1, 'prev': page - 1 if 1 < page <= last + 1 else None,
             'next': page + 1 if page < last else None, 'last': last}
    return ', '.join(
        f'<{path}/?{urlencode({**params, "page": number})}>; rel="{rel}"'
        for rel, number in links.items() if number)


# --- Hooks, CORS and errors --------------------------------------------------------------------------

@app.hook('before_request')
def answer_preflight():
    """Answer CORS preflights for every path (serving.with_headers adds the origin to every response)."""
    if request.method == 'OPTIONS':
        raise HTTPResponse(status=204, headers={
            'Access-Control-Max-Age': '600',
            'Access-Control-Allow-Methods': 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS',
            'Access-Control-Allow-Headers': 'Authorization, Content-Type, If-None-Match'})


@app.hook('after_request')
def finish_request():
    release_connection(failed=response.status_code >= 400 or sys.exc_info()[0] is not None)


STANDARD_MESSAGES = {400: 'Некорректный запрос.', 403: 'Доступ запрещён.', 404: 'Такого адреса нет.',
                     405: 'Этот метод здесь не поддерживается.', 413: 'Тело запроса слишком большое.',
                     500: 'Внутренняя ошибка сервера.', 503: BUSY}


def json_error(error):
    """Every error, Bottle's own included, as JSON {"message", "status"}; tracebacks stay in the log."""
    response.content_type = 'application/json'
    message = error.body
    if error.status_code >= 500 or not isinstance(message, str) or message.isascii():
        # Bottle's own errors (routing, static files, crashes) speak English or too much; ours are Russian.
        message = STANDARD_MESSAGES.get(error.status_code, error.status_line)
    return dumps({'message': message, 'status': error.status_code})


app.default_error_handler = json_error
app.install(json_output)
app.install(PrivateAnswers())


# --- Catalogue ---------------------------------------------------------------------------------------

@app.get('/movies')
def movies():
    """Movies in id order, or newest first with status=new; filtered by genre, director, year and title."""
    return catalogue(render_movies)


def render_movies(status=None, page=None, **filters):
    newest = status == 'new'
    return render_list(Movie.listing(newest=newest, **filters), functools.partial(Movie.page_of, newest=newest),
                       page)


@app.get('/movies/<id:int>')
def movie(id):
    """One movie with its genre and director."""
    return catalogue(lambda: render_movie(id))


def movies_json(ids):
    """A JSON array of these movies, from the same cache entries as GET /movies/{id}."""
    return b'[' + b','.join(cached((f'/movies/{id}', ()), functools.partial(render_movie, id))[0]
                            for id in ids) + b']'


def named_routes(model, plural):
    """The list and item routes of a catalogue table of names (genres, directors)."""
    @app.get(f'/{plural}')
    def listing():
        return catalogue(lambda page=None: render_list(model.select().order_by(model.id), page=page))

    @app.get(f'/{plural}/<id:int>')
    def item(id):
        return catalogue(lambda: (dumps(get_or_404(model.select(), id).to_json()), {}))


named_routes(Genre, 'genres')
named_routes(Director, 'directors')


# --- Accounts ----------------------------------------------------------------------------------------

@app.post('/auth/register', private=True)
def register():
    """Create an account: 201 with the user; 400 for a bad email or password; 409 if the email is taken."""
    body = json_body()
    email, password = email_field(body), new_password(body, 'password')
    setting('throttle').hashing(request)
    hashed = hash_password(password)  # before the transaction: SQLite's one write lock must not wait on PBKDF2
    try:
        with db.atomic():
            user = User.create(email=email, password=hashed)
    except IntegrityError:
        abort(409, 'Пользователь с таким email уже зарегистрирован.')
    response.status = 201
    return user.to_json()


@app.post('/auth/login', private=True)
def login():
    """Trade an email and password for a token pair and a device cookie; 401 for bad credentials, 429 when
    throttled."""
    body = json_body()
    email, password = normalized_email(text(body, 'email', 1000)), text(body, 'password', 1000)
    throttle = setting('throttle')
    guess = throttle.login_attempt(email, request)  # recorded as a failure until it succeeds
    user = authenticate(email, password)
    if user is None:
        abort(401, 'Неверный email или пароль.')
    guess.succeeded()
    throttle.remember_device(email, request, response)
    return setting('tokens').issue_pair(user)


@app.put('/auth/login', private=True)
def refresh():
    """Trade a refresh token (and optionally the old access token) for a new pair."""
    body = json_body()
    refresh_token = text(body, 'refresh_token', 4096)
    access_token = text(body, 'access_token', 4096, required=False)
    return setting('tokens').rotate(refresh_token, access_token)


@app.get('/user', auth=True, fast=True)
def profile(user):
    """The logged-in user."""
    return user.to_json()


@app.patch('/user', auth=True)
def update_profile(user):
    """Change name, surname and favourite genre (either spelling; null clears it)."""
    body = json_body()
    reject_unknown(body, {'name', 'surname', 'favorite_genre', 'favourite_genre'})
    changes = {field: text(body, field, 100) for field in ('name', 'surname') if field in body}
    genre_fields = [body[field] for field in ('favorite_genre', 'favourite_genre') if field in body]
    if len(set(map(str, genre_fields))) > 1:
        abort(400, 'Поля "favorite_genre" и "favourite_genre" не совпадают.')
    if genre_fields:
        changes['favorite_genre'] = genre_id(genre_fields[0])
    if changes:
        User.update(changes).where(User.id == user.id).execute()
    return User.by_id(user.id).to_json()


def genre_id(value):
    """An existing genre's id from an int or a string of digits; None for null or ''."""
    if value is None or value == '':
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is not int:
        abort(400, 'Поле "favorite_genre" должно быть id жанра или null.')
    if not 0 < value <= MAX_ID or not Genre.select().where(Genre.id == value).exists():
        abort(400, f'Жанра с id {value} нет.')
    return value


@app.put('/user/password', auth=True)
def change_password(user):
    """Check the current password, set the new one and revoke every token issued before: 204."""
    body = json_body()
    current_field, new_field = (('old_password', 'new_password') if 'old_password' in body
                                else ('password_1', 'password_2'))
    current, new = text(body, current_field, 1000), new_password(body, new_field)
    guess = setting('throttle').password_check(user.id, request)
    if not check_password(current, user.password):
        abort(403, 'Текущий пароль введён неверно.')
    guess.succeeded()
    hashed = hash_password(new)  # before the transaction, as in register()
    with db.atomic():
        User.update(password=hashed).where(User.id == user.id).execute()
        Tokens.revoke_all(user)
    response.status = 204


# --- Favourites --------------------------------------------------------------------------------------

@app.get('/favorites/movies', auth=True, fast=True)
def favorites(user):
    """The user's favourite movies, in the order they were added."""
    return movies_json(user.favorite_movie_ids)


@app.post('/favorites/movies/<id:int>', auth=True)
def add_favorite(user, id):
    """Bookmark a movie: 201 when added, 200 when it already was; 404 for an unknown movie."""
    movie = get_or_404(Movie.with_relations(), id)
    added = Favorite.insert(user=user, movie=movie).on_conflict_ignore().as_rowcount().execute()
    response.status = 201 if added else 200
    return movie.to_json()


@app.delete('/favorites/movies/<id:int>', auth=True)
def remove_favorite(user, id):
    """Remove a bookmark: 204; 404 if the movie was not a favourite."""
    if not 0 < id <= MAX_ID or not Favorite.delete().where(Favorite.user == user, Favorite.movie == id).execute():
        abort(404, f'Фильма {id} нет в избранном.')
    response.status = 204


# --- Service routes and the web UI -------------------------------------------------------------------

@app.get('/health')
def health():
    """200 once the database answers."""
    try:
        db.execute_sql('SELECT 1')
    except DatabaseError:
        abort(503, 'База данных не отвечает.')
    return {'status': 'ok'}


@functools.cache
def openapi_document():
    return (HERE / 'openapi.json').read_bytes()


@functools.cache
def api_reference():
    return apidocs.render_html(json.loads(openapi_document()))


@app.get('/openapi.json')
def openapi():
    """The OpenAPI 3.1 description of this API."""
    return openapi_document()


@app.get('/docs')
def docs():
    """A readable HTML reference generated from the OpenAPI document."""
    return api_reference()


@app.get('/static/<path:path>')
def assets(path):
    return static_file(path, root=STATIC)


@app.get('/')
@app.get('/<page:re:(?:catalog|movie|genre|director|login|register|profile|saved)(?:/.*)?>')
def web_ui(page=None):
    """The single-page web UI: the same HTML for each of its pages; the script routes in the browser."""
    return static_file('index.html', root=STATIC)


# --- The WSGI stack: access log → CORS headers → answers ahead of Bottle → Bottle --------------------

def answer_ahead(environ):
    """A GET's answer without Bottle, or None: a cached catalogue answer, or a route declared fast=True (a hot
    read of the signed-in user's own data, which needs no request or response object) for a good token, sent
    with no-store like every auth=True answer.
    Anything else, a bad token or a database error included, goes on to Bottle, which answers it in full."""
    path = environ['PATH_INFO']
    try:
        key = cache_key(environ)
    except HTTPError:  # a bad parameter: Bottle answers 400
        return None
    found = setting('cache').peek(key) if key else None
    if found is not None:
        return found[0], found[2]
    route = fast_routes().get(path)
    if route is None:
        return None
    try:
        with connection():
            result = route.callback(user=setting('tokens').verify(bearer_token(environ), 'access')[0])
    except HTTPError:  # a bad token
        return None
    except Exception:
        log.exception('%s failed ahead of Bottle; Bottle tries again', path)
        return None
    body = as_json(result)
    return body, [('Content-Type', 'application/json'), ('Content-Length', str(len(body))), PRIVATE]


@functools.cache
def fast_routes():
    return {route.rule: route for route in app.routes if route.config.get('fast')}


api = with_headers(serve_ahead(app, answer_ahead), lambda: setting('cors_headers'))
application = access_log(api, log.info)  # the command line writes its access lines through its log handler


# --- Command line ------------------------------------------------------------------------------------

def signing_key(database_url):
    """MOVIESAPI_SECRET, or a random key kept (mode 0600) beside the SQLite file so tokens survive restarts.
    Raises ValueError for a key file this user does not own alone: someone else may know its key."""
    if os.environ.get('MOVIESAPI_SECRET'):
        return os.environ['MOVIESAPI_SECRET']
    path = pathlib.Path('moviesapi.secret')
    if '://' not in database_url or database_url.startswith('sqlite:///'):
        sqlite_file = pathlib.Path(database_url.removeprefix('sqlite:///'))
        path = sqlite_file.with_name(sqlite_file.name + '.secret')
    if not os.path.lexists(path):
        create_key_file(path)
    key = read_private_file(path)
    log.info('MOVIESAPI_SECRET is not set; signing tokens with the key in %s', path)
    return key


def create_key_file(path):
    """Write a random key to path, atomically: when two processes race, both end up with the same key."""
    # mkstemp makes the draft 0600 under a fresh random name, so a draft left by a crash never blocks a start
    fd, draft = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    try:
        with open(fd, 'w') as file:
            file.write(secrets.token_hex(32))
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(draft)


def read_private_file(path):
    """The text of a regular file owned by this user and closed to everyone else; ValueError otherwise."""
    try:  # no symlinks (whose target another user may choose), no FIFOs (which would hang the start)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        raise ValueError(f'cannot open the key file {path} ({err.strerror}).') from None
    with open(fd, encoding='utf-8') as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise ValueError(f'the key file {path} must be a regular file owned by this user with mode 0600 '
                             '(anyone else who can read or write it can forge tokens); '
                             'remove it or set MOVIESAPI_SECRET.')
        return file.read().strip()


def import_catalogue(path):
    """Upsert genres, directors and movies from a JSON file ({"genres": [...], ...}, "pk" = id)."""
    data = json.loads(pathlib.Path(path).read_text(encoding='utf-8'))
    with db.atomic():
        for model, key in ((Genre, 'genres'), (Director, 'directors'), (Movie, 'movies')):
            for row in data.get(key, []):
                fields = {name: value for name, value in row.items() if name != 'pk'}
                model.insert(id=row['pk'], **fields).on_conflict(conflict_target=[model.id],
                                                                 update=fields).execute()
        bump_catalogue_revision()
    return sum(len(data.get(key, [])) for key in ('genres', 'directors', 'movies'))


def parse_args(argv):
    parser = argparse.ArgumentParser(description='Serve the moviesapi JSON API and web UI with Waitress.')
    parser.add_argument('--host', default='127.0.0.1', help='address to listen on (default: 127.0.0.1)')
    parser.add_argument('--port', type=int, default=25000, help='port to listen on (default: 25000)')
    parser.add_argument('--db', default=os.environ.get('MOVIESAPI_DATABASE_URL', 'movies.db'),
                        help='SQLite file, sqlite:///path or postgresql://user:pass@host:port/name '
                             '(default: $MOVIESAPI_DATABASE_URL or movies.db)')
    parser.add_argument('--threads', type=int, default=8, help='Waitress worker threads (default: 8)')
    parser.add_argument('--cors-origin', default='*', help='Access-Control-Allow-Origin value (default: *)')
    parser.add_argument('--access-ttl', type=int, default=15 * 60, help='access token lifetime, s (900)')
    parser.add_argument('--refresh-ttl', type=int, default=30 * 24 * 3600,
                        help='refresh token lifetime, s (2592000 = 30 days)')
    parser.add_argument('--login-failures-per-email', type=int, default=5,
                        help='failed logins per email within the window before 429 (5)')
    parser.add_argument('--login-failures-per-address', type=int, default=50,
                        help='failed logins per client address within the window before 429 (50)')
    parser.add_argument('--login-window', type=int, default=300, help='login throttling window, s (300)')
    parser.add_argument('--password-hashes-per-minute', type=int, default=60,
                        help='password hashes (logins, registrations, password changes) per client address '
                             'or IPv6 /64 per minute before 429 (60)')
    parser.add_argument('--cache-seconds', type=float, default=1.0,
                        help='how often each process checks for catalogue changes, s (1)')
    parser.add_argument('--cache-mib', type=float, default=64,
                        help='memory for cached catalogue answers, MiB; long lists are kept in files (64)')
    parser.add_argument('--trusted-proxy', help='address of a reverse proxy whose X-Forwarded-For to trust')
    parser.add_argument('--header-timeout', type=float, default=10.0,
                        help="seconds a client has to send a request's headers, counted from its first byte (10)")
    parser.add_argument('--connection-limit', type=int, default=1000, help='open client connections at most (1000)')
    parser.add_argument('--import', dest='import_file', metavar='FILE',
                        help='upsert the catalogue from a JSON file (genres, directors, movies), then exit')
    admin.add_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False  # per-record costs we
    logging._srcfile = None  # never print; the logging HOWTO's "Optimization" section names these switches
    log_stream = open(sys.stderr.fileno(), 'w', buffering=64 * 1024, encoding='utf-8', closefd=False)
    handler = BufferedLogHandler(log_stream)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s',
                        handlers=[handler])
    logging.getLogger('waitress.queue').setLevel(logging.ERROR)  # "queue depth" fires whenever all threads are busy
    try:
        configure(args.db, signing_key(args.db), cors_origin=args.cors_origin, access_ttl=args.access_ttl,
                  refresh_ttl=args.refresh_ttl, login_failures_per_email=args.login_failures_per_email,
                  login_failures_per_address=args.login_failures_per_address, login_window=args.login_window,
                  password_hashes_per_minute=args.password_hashes_per_minute,
                  cache_seconds=args.cache_seconds, max_connections=args.threads + 2,
                  threads=args.threads, cache_bytes=int(args.cache_mib * MiB))
    except ValueError as err:
        sys.exit(f'moviesapi: {err}')
    if admin.run(args):
        return
    if args.import_file:
        with db.connection_context():
            log.info('Imported %d catalogue rows from %s', import_catalogue(args.import_file), args.import_file)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # let Waitress finish in-flight requests
    proxy = {'trusted_proxy': args.trusted_proxy, 'trusted_proxy_count': 1,
             'trusted_proxy_headers': 'x-forwarded-for x-forwarded-proto'} if args.trusted_proxy else {}
    server.serve(access_log(api, handler.access), header_timeout=args.header_timeout,
                 connection_limit=args.connection_limit, host=args.host, port=args.port, threads=args.threads,
                 ident='moviesapi', max_request_body_size=1024 * 1024, max_request_header_size=16 * 1024,
                 channel_timeout=30, **proxy)


if __name__ == '__main__':
    main()
