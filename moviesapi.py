"""moviesapi: a movie catalogue with accounts and favourites, as a JSON API and a small web UI.

Read top to bottom: the app and its plugins, hooks, the one error path, input helpers, the routes by resource,
then configure() and main(). The layers in front of Bottle are in stack.py; docs/architecture.md maps them all."""
import dataclasses
import functools
import json
import logging
import pathlib
import signal
import sys

from bottle import Bottle, request, response, static_file
from peewee import DatabaseError

import admin
import apidocs
import logs
import server
from auth import BearerAuth, Tokens, authenticate, check_password, hash_password
from catalogue_cache import CachedAnswers, Listing
from emails import new_email, normalized_email
from jsonio import ApiError, PrivateAnswers, abort, error_body, json_output, message_of, storable
from keyfile import signing_key
from models import (MAX_ID, Director, Favorite, Genre, Movie, Session, User, close_database, create_schema, db,
                    import_catalogue, now, open_database, release_connection, utc_text)
from response_cache import ResponseCache, Workload
from settings import Settings, command_line, from_args
from stack import build_stack
from throttle import Throttle

HERE = pathlib.Path(__file__).parent
STATIC = HERE / 'static'
MAX_BODY = 64 * 1024
MAX_IMPORT = 10_000  # favourites in one import
EXPORT_FORMAT = 'moviesapi-export/2'  # 2: sessions listed one by one
log = logging.getLogger('moviesapi')


# --- The app and its plugins -------------------------------------------------------------------------

app = Bottle()
app.uninstall('json')  # its encoder escapes Cyrillic and refuses lists; jsonio.json_output replaces it
catalogue_cache = CachedAnswers()
app.install(json_output)  # a route's dict, list or bytes become a JSON answer
app.install(PrivateAnswers())  # answers of routes declared auth=True or private=True: Cache-Control: no-store
app.install(BearerAuth())  # routes declared auth=True get the token's `user`
app.install(catalogue_cache)  # routes declared cache=True return data, encoded once per catalogue revision


def setting(name):
    """A service configure() set up: 'settings', 'tokens', 'throttle' or 'cache'."""
    return app.config['moviesapi.' + name]


# --- Hooks and the one error path --------------------------------------------------------------------

@app.hook('after_request')
def finish_request():
    release_connection(failed=response.status_code >= 400 or sys.exc_info()[0] is not None)


def json_error(error):
    """Every error, Bottle's own included, as JSON {"message", "status"}; tracebacks stay in the log. A browser
    asking for a page that does not exist gets the web UI instead, which shows its own not-found page."""
    if error.status_code == 404 and not isinstance(error, ApiError):  # the router's, not "no such record"
        response.set_header('Vary', 'Accept')
        if 'text/html' in request.headers.get('Accept', ''):
            response.content_type = 'text/html; charset=utf-8'
            return (STATIC / 'index.html').read_bytes()
    response.content_type = 'application/json'
    return error_body(error.status_code, message_of(error))


app.default_error_handler = json_error


# --- Input: JSON bodies, fields and lookups ----------------------------------------------------------

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


def new_password(body, field):
    return text(body, field, 128, min_length=8)


def reject_unknown(body, allowed):
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        abort(400, f'Эти поля здесь не изменяются: {", ".join(unknown)}.')


def genre_id(value):
    """An existing genre's id from an int or a string of digits; None for null or ''."""
    if value is None or value == '':
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is not int:
        abort(400, 'Поле "favorite_genre" должно быть id жанра или null.')
    if not Genre.exists(value):
        abort(400, f'Жанра с id {value} нет.')
    return value


def get_or_404(query, id):
    """The single row with this id, or 404."""
    found = query.where(query.model.id == id).get_or_none() if 0 < id <= MAX_ID else None
    if found is None:
        abort(404, f'Запись с id {id} не найдена.')
    return found


# --- Catalogue: each route returns data; cache=True encodes it once per catalogue revision --------------

@app.get('/movies', cache=True)
def movies(status=None, page=None, **filters):
    """Movies in id order, or newest first with status=new; filtered by genre, director, year and title."""
    newest = status == 'new'
    return Listing(Movie.listing(newest=newest, **filters), page, functools.partial(Movie.page_of, newest=newest))


@app.get('/movies/<id:int>', cache=True)
def movie(id):
    """One movie with its genre and director."""
    return get_or_404(Movie.with_relations(), id).to_json()


@app.get('/genres', cache=True)
def genres(page=None):
    return Listing(Genre.select().order_by(Genre.id), page)


@app.get('/genres/<id:int>', cache=True)
def genre(id):
    return get_or_404(Genre.select(), id).to_json()


@app.get('/directors', cache=True)
def directors(page=None):
    return Listing(Director.select().order_by(Director.id), page)


@app.get('/directors/<id:int>', cache=True)
def director(id):
    return get_or_404(Director.select(), id).to_json()


# --- Accounts ----------------------------------------------------------------------------------------

@app.post('/auth/register', private=True)
def register():
    """Create an account: 201 with the user; 400 for a bad email or password; 409 if the email is taken."""
    body = json_body()
    email, password = new_email(text(body, 'email', 254)), new_password(body, 'password')
    setting('throttle').hashing(request)
    user = User.register(email, hash_password(password))  # hashed first: the write lock must not wait on PBKDF2
    if user is None:
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
    return setting('tokens').issue_pair(user, request.environ)


@app.put('/auth/login', private=True)
def refresh():
    """Trade a refresh token (and optionally the old access token) for a new pair."""
    body = json_body()
    refresh_token = text(body, 'refresh_token', 4096)
    access_token = text(body, 'access_token', 4096, required=False)
    return setting('tokens').rotate(refresh_token, access_token)


# --- Sessions: one per login, each the family of refresh tokens its rotations derive ---------------------------

@app.post('/auth/logout', private=True)
def logout():
    """End the session of a refresh token: its refresh and access tokens stop working. 204, also when it had
    ended already."""
    setting('tokens').log_out(text(json_body(), 'refresh_token', 4096))
    response.status = 204


@app.get('/auth/sessions', auth=True)
def sessions(user):
    """The user's live sessions, newest first; `current` marks the caller's."""
    return [session.to_json(current_id=user.session_id) for session in Session.live_of(user.id)]


@app.delete('/auth/sessions/<session_id>', auth=True)
def end_session(user, session_id):
    """End one of the user's sessions (the caller's too, if named): 204; 404 if it is not one of them."""
    if not storable(session_id) or not Session.end(session_id, user.id):
        abort(404, 'Такой сессии нет: она завершена или не ваша.')
    response.status = 204


@app.delete('/auth/sessions', auth=True)
def end_other_sessions(user):
    """End every session of the user but the caller's ("log out everywhere else"): 204."""
    Session.end_all(user.id, except_id=user.session_id)
    response.status = 204


# --- Profile -----------------------------------------------------------------------------------------

@app.get('/user', auth=True)
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
    return user.update_profile(changes).to_json()


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
    user.change_password(hash_password(new))  # hashed before the transaction, as in register()
    response.status = 204


@app.get('/user/export', auth=True)
def export(user):
    """Everything stored about the user as one JSON document, offered as a file to save."""
    response.set_header('Content-Disposition', f'attachment; filename="moviesapi-export-{user.id}.json"')
    return {'format': EXPORT_FORMAT, 'exported_at': utc_text(now()), 'profile': user.to_json(),
            'favorites': user.favorite_titles(),
            'sessions': sessions(user)}


@app.delete('/user', auth=True)
def delete_account(user):
    """Check the password, then delete the account with its bookmarks and sessions: 204; 403 for a wrong password,
    429 when throttled."""
    password = text(json_body(), 'password', 1000)
    guess = setting('throttle').password_check(user.id, request)
    if not check_password(password, user.password):
        abort(403, 'Пароль введён неверно.')
    guess.succeeded()  # forgets the user's password-check rows too: none outlives the account
    user.delete_account()
    response.status = 204


# --- Favourites --------------------------------------------------------------------------------------

@app.get('/favorites/movies', auth=True)
def favorites(user):
    """The user's favourite movies, in the order they were added (each from the catalogue cache)."""
    return catalogue_cache.json_array('/movies', user.favorite_movie_ids, movie)


@app.post('/favorites/movies/<id:int>', auth=True)
def add_favorite(user, id):
    """Bookmark a movie: 201 when added, 200 when it already was; 404 for an unknown movie."""
    movie = get_or_404(Movie.with_relations(), id)
    response.status = 201 if Favorite.add(user, movie) else 200
    return movie.to_json()


@app.post('/favorites/movies/import', auth=True)
def import_favorites(user):
    """Bookmark the movies of an export document, or of {"favorites": [ids or {"id": ...}]}, in order: which were
    added, already bookmarked, or unknown."""
    return Favorite.add_many(user, favorite_ids(json_body()))


def favorite_ids(body):
    """The movie ids of the body's "favorites" list; 400 unless it is a list of ids or {"id": ...} objects."""
    items = body.get('favorites')
    if not isinstance(items, list) or len(items) > MAX_IMPORT:
        abort(400, f'Поле "favorites" должно быть списком, не длиннее {MAX_IMPORT} фильмов.')
    ids = [item.get('id') if isinstance(item, dict) else item for item in items]
    if not all(type(id) is int for id in ids):
        abort(400, 'Каждый элемент "favorites" — id фильма или объект с полем "id".')
    return ids


@app.delete('/favorites/movies/<id:int>', auth=True)
def remove_favorite(user, id):
    """Remove a bookmark: 204; 404 if the movie was not a favourite."""
    if not Favorite.remove(user, id):
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


@app.get('/openapi.json')
def openapi():
    """The OpenAPI 3.1 description of this API."""
    return openapi_document()


@app.get('/docs')
@functools.cache
def docs():
    """A readable HTML reference generated from the OpenAPI document."""
    return apidocs.render_html(json.loads(openapi_document()))


@app.get('/static/<path:path>')
def assets(path):
    return static_file(path, root=STATIC)


@app.get('/')
@app.get('/<page:re:(?:catalog|movie|genre|director|login|register|profile|saved)(?:/.*)?>')
def web_ui(page=None):
    """The single-page web UI: the same HTML for each of its pages; the script routes in the browser."""
    return static_file('index.html', root=STATIC)


# --- Configuration, the served stack and the command line --------------------------------------------

def configure(database_url, secret, **overrides):
    """Point the app at a database (creating and seeding it if empty) with these settings; the served stack."""
    return start(Settings(database_url=database_url, secret=secret, **overrides))


def start(settings):
    """Open the settings' database and set up the tokens, throttle and cache they describe; ValueError for a
    signing key under 32 bytes."""
    if len(settings.secret.encode()) < 32:
        raise ValueError('The signing key must be at least 32 bytes long.')
    close_database()
    db.initialize(open_database(settings.database_url, settings.max_connections))
    with db.connection_context():
        create_schema()
    app.config.update({
        'moviesapi.settings': settings,
        'moviesapi.tokens': Tokens(settings),
        'moviesapi.throttle': Throttle(settings),
        'moviesapi.cache': ResponseCache(settings.cache_seconds, Workload.for_threads(settings.threads),
                                         settings.cache_bytes),
    })
    return application


# Hot reads of the signed-in user's own data, answered ahead of Bottle when the token is good (stack.FastReads)
FAST_READS = [('GET', '/user'), ('GET', '/favorites/movies')]
application = build_stack(app, catalogue_cache, FAST_READS)


def main(argv=None):
    parser = command_line()
    admin.add_arguments(parser)  # one-shot commands: --backup, --list-users, --reset-password, --end-sessions
    args = parser.parse_args(argv)
    settings = from_args(args)
    logs.setup()
    try:
        start(dataclasses.replace(settings, secret=signing_key(settings.database_url)))
    except ValueError as err:
        sys.exit(f'moviesapi: {err}')
    if settings.import_file:
        with db.connection_context():
            log.info('Imported %d catalogue rows from %s', import_catalogue(settings.import_file),
                     settings.import_file)
        return
    if admin.run(args):
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # let Waitress finish in-flight requests
    server.serve(application, settings)


if __name__ == '__main__':
    main()
