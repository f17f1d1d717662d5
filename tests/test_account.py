"""A user's own data: the export, importing favourites, deleting the account; the browser's not-found page."""
import datetime

import pytest
from peewee import PostgresqlDatabase
from playhouse.test_utils import count_queries

import throttle
from models import Attempt, Favorite, Session, User, db


def bookmark(app, user, *movie_ids):
    for movie_id in movie_ids:
        app.post(f'/favorites/movies/{movie_id}', headers=user['headers'])


def parsed_time(text):
    assert text.endswith('Z')
    return datetime.datetime.fromisoformat(text.removesuffix('Z'))


# --- Export ------------------------------------------------------------------------------------------

def test_export_holds_the_profile_favourites_and_sessions(app, user):
    app.patch_json('/user/', {'name': 'Анна', 'favorite_genre': 2}, headers=user['headers'])
    bookmark(app, user, 3, 1)
    res = app.get('/user/export', headers=user['headers'], status=200)
    document = res.json
    profile = app.get('/user', headers=user['headers']).json
    assert res.headers['Content-Disposition'] == f'attachment; filename="moviesapi-export-{profile["id"]}.json"'
    assert res.headers['Cache-Control'] == 'no-store'
    assert set(document) == {'format', 'exported_at', 'profile', 'favorites', 'sessions'}
    assert document['format'] == 'moviesapi-export/2'
    assert document['profile'] == profile
    assert document['favorites'] == [{'id': 3, 'title': 'Вооружен и очень опасен', 'year': 1978},
                                     {'id': 1, 'title': 'Йеллоустоун', 'year': 2018}]
    [session] = document['sessions']
    assert session == app.get('/auth/sessions', headers=user['headers']).json[0]
    assert session['current'] is True
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs(parsed_time(document['exported_at']) - now) < datetime.timedelta(seconds=60)
    assert 'jti' not in res.text and user['refresh_token'] not in res.text


def test_export_lists_each_live_session_newest_first(app, user):
    app.post_json('/auth/login', {'email': user['email'], 'password': user['password']})
    sessions = app.get('/user/export', headers=user['headers']).json['sessions']
    assert [session['current'] for session in sessions] == [False, True]
    assert sessions[0]['created_at'] >= sessions[1]['created_at']


@pytest.mark.parametrize('bookmarks', [1, 20])
def test_export_and_import_cost_the_same_queries_whatever_the_number(app, make_user, bookmarks):
    user, other = make_user(), make_user()
    bookmark(app, user, *range(1, bookmarks + 1))
    with count_queries() as exporting:
        document = app.get('/user/export', headers=user['headers']).json
    assert exporting.count == 3  # the user, the sessions, the favourites with their titles
    with count_queries() as importing:
        app.post_json('/favorites/movies/import', document, headers=other['headers'])
    assert importing.count == 4  # the user; in one transaction: the known movies, the bookmarks held, one insert


def test_export_needs_a_token(app):
    assert app.get('/user/export', status=401).json['status'] == 401


# --- Import ------------------------------------------------------------------------------------------

def test_import_reports_added_already_and_unknown_in_order(app, user):
    bookmark(app, user, 2)
    body = {'favorites': [5, {'id': 2}, 999999, 1, 5, {'id': 2**40}, 4]}
    res = app.post_json('/favorites/movies/import', body, headers=user['headers'], status=200)
    assert res.json == {'added': [5, 1, 4], 'already': [2], 'unknown': [999999, 2**40]}
    assert [movie['id'] for movie in app.get('/favorites/movies', headers=user['headers']).json] == [2, 5, 1, 4]


def test_an_export_imports_into_another_account(app, make_user):
    first, second = make_user(), make_user()
    bookmark(app, first, 4, 2, 6)
    document = app.get('/user/export', headers=first['headers']).json
    res = app.post_json('/favorites/movies/import', document, headers=second['headers'], status=200)
    assert res.json == {'added': [4, 2, 6], 'already': [], 'unknown': []}
    assert app.get('/user/export', headers=second['headers']).json['favorites'] == document['favorites']


@pytest.mark.parametrize('body', [{}, {'favorites': 5}, {'favorites': ['5']}, {'favorites': [{'title': 'x'}]},
                                  {'favorites': [True]}, {'favorites': [1.0]}, {'favorites': [0] * 10_001}])
def test_import_refuses_what_is_not_a_list_of_ids(app, user, body):
    res = app.post_json('/favorites/movies/import', body, headers=user['headers'], status=400)
    assert res.json['status'] == 400
    assert app.get('/favorites/movies', headers=user['headers']).json == []


def test_import_takes_ten_thousand_ids_in_one_request(app, user):
    ids = list(range(1, 10_001))
    res = app.post_json('/favorites/movies/import', {'favorites': ids}, headers=user['headers'], status=200)
    with db.connection_context():
        movies = [id for id, in Favorite.select(Favorite.movie).order_by(Favorite.id).tuples()]
    assert res.json['added'] == movies and movies
    assert res.json['unknown'] == ids[len(movies):] and res.json['already'] == []


# --- Deleting the account ----------------------------------------------------------------------------

def rows_of(user_id):
    """How many rows each table holds for this user."""
    with db.connection_context():
        return {'user': User.select().where(User.id == user_id).count(),
                'favorite': Favorite.select().where(Favorite.user == user_id).count(),
                'session': Session.select().where(Session.user == user_id).count(),
                'attempt': Attempt.select().where(Attempt.key == throttle.key('password', user_id)).count()}


def test_deleting_the_account_removes_every_row_tied_to_it(app, make_user):
    user, neighbour = make_user(), make_user()
    bookmark(app, user, 1, 2)
    bookmark(app, neighbour, 1)
    app.post_json('/auth/login', {'email': user['email'], 'password': user['password']})
    app.delete_json('/user/', {'password': 'wrong password'}, headers=user['headers'], status=403)
    user_id = app.get('/user', headers=user['headers']).json['id']
    neighbour_id = app.get('/user', headers=neighbour['headers']).json['id']
    assert rows_of(user_id) == {'user': 1, 'favorite': 2, 'session': 2, 'attempt': 1}
    neighbour_rows = rows_of(neighbour_id)

    app.delete_json('/user/', {'password': user['password']}, headers=user['headers'], status=204)
    assert rows_of(user_id) == {'user': 0, 'favorite': 0, 'session': 0, 'attempt': 0}
    assert rows_of(neighbour_id) == neighbour_rows


def test_a_deleted_accounts_tokens_stop_working_at_once(app, user):
    app.delete_json('/user/', {'password': user['password']}, headers=user['headers'], status=204)
    assert app.get('/user', headers=user['headers'], status=401).json['status'] == 401
    assert app.get('/favorites/movies', headers=user['headers'], status=401).json['status'] == 401
    app.put_json('/auth/login', {'refresh_token': user['refresh_token']}, status=401)
    app.post_json('/auth/login', {'email': user['email'], 'password': user['password']}, status=401)


def test_a_deleted_accounts_tokens_do_not_fit_the_next_account(app, make_user):
    """SQLite gives the last deleted id to the next account: the old tokens must not open it."""
    gone = make_user()
    gone_id = app.get('/user', headers=gone['headers']).json['id']
    app.delete_json('/user/', {'password': gone['password']}, headers=gone['headers'], status=204)
    newcomer = make_user()
    newcomer_id = app.get('/user', headers=newcomer['headers']).json['id']
    assert newcomer_id == gone_id or isinstance(db.obj, PostgresqlDatabase)  # sequences never reuse an id
    app.get('/user', headers=gone['headers'], status=401)
    app.put_json('/auth/login', {'refresh_token': gone['refresh_token']}, status=401)
    assert app.get('/user', headers=newcomer['headers'], status=200).json['email'] == newcomer['email']


def test_wrong_passwords_get_403_then_429(app, user):
    for _ in range(5):  # login_failures_per_email
        res = app.delete_json('/user/', {'password': 'wrong password'}, headers=user['headers'], status=403)
        assert res.json == {'message': 'Пароль введён неверно.', 'status': 403}
    res = app.delete_json('/user/', {'password': user['password']}, headers=user['headers'], status=429)
    assert res.json['status'] == 429 and int(res.headers['Retry-After']) > 0
    assert app.get('/user', headers=user['headers'], status=200)


@pytest.mark.parametrize('body', [{}, {'password': 5}])
def test_deletion_needs_the_password(app, user, body):
    app.delete_json('/user/', body, headers=user['headers'], status=400)
    assert app.get('/user', headers=user['headers'], status=200)


# --- Not-found pages ---------------------------------------------------------------------------------

BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'


@pytest.mark.parametrize('path', ['/fo', '/profile-x', '/movies/1/extra'])
def test_a_browser_gets_the_web_uis_not_found_page(app, path):
    res = app.get(path, headers={'Accept': BROWSER_ACCEPT}, status=404)
    assert res.content_type == 'text/html'
    assert res.body == app.get('/').body  # the web UI, whose router shows its not-found view
    assert res.headers['Vary'] == 'Accept'


@pytest.mark.parametrize('accept', [None, 'application/json', '*/*'])
def test_api_clients_keep_the_json_404(app, accept):
    res = app.get('/fo', headers={'Accept': accept} if accept else {}, status=404)
    assert res.json == {'message': 'Такого адреса нет.', 'status': 404}
    assert res.headers['Vary'] == 'Accept'


def test_a_missing_record_stays_json_for_a_browser(app):
    res = app.get('/movies/999999', headers={'Accept': BROWSER_ACCEPT}, status=404)
    assert res.json == {'message': 'Запись с id 999999 не найдена.', 'status': 404}
