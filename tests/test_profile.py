"""The profile, password changes and favourites of a logged-in user."""
import pytest

# --- Profile -----------------------------------------------------------------------------------------


def test_profile_is_the_logged_in_user(app, user):
    assert app.get('/user', headers=user['headers']).json['email'] == user['email']


def test_patch_updates_and_returns_the_user(app, user):
    res = app.patch_json('/user/', {'name': 'Анна', 'surname': 'Каренина', 'favourite_genre': 3},
                         headers=user['headers'], status=200)
    assert res.json['name'] == 'Анна' and res.json['surname'] == 'Каренина'
    assert res.json['favorite_genre'] == res.json['favourite_genre'] == 3
    assert app.get('/user/', headers=user['headers']).json == res.json


@pytest.mark.parametrize('value, stored', [(5, 5), ('7', 7), (None, None), ('', None)])
def test_favourite_genre_accepts_ids_digit_strings_and_null(app, user, value, stored):
    app.patch_json('/user/', {'favorite_genre': 1}, headers=user['headers'])
    res = app.patch_json('/user/', {'favorite_genre': value}, headers=user['headers'], status=200)
    assert res.json['favorite_genre'] == stored


def test_patch_with_an_empty_object_changes_nothing(app, user):
    before = app.get('/user/', headers=user['headers']).json
    assert app.patch_json('/user/', {}, headers=user['headers'], status=200).json == before


@pytest.mark.parametrize('body', [
    {'favorite_genre': 99}, {'favorite_genre': 0}, {'favorite_genre': 'abc'}, {'favorite_genre': 1.5},
    {'favorite_genre': True}, {'favorite_genre': [1]}, {'favorite_genre': 10**20},
    {'favorite_genre': 1, 'favourite_genre': 2},
    {'name': 'x' * 101}, {'surname': 42}, {'name': None}, {'name': 'a\x00b'},
    {'email': 'new@x.com'}, {'password': 'new password'}, {'id': 7}, {'nickname': 'x'},
])
def test_invalid_profile_changes_are_400_and_change_nothing(app, user, body):
    before = app.get('/user/', headers=user['headers']).json
    assert app.patch_json('/user/', body, headers=user['headers'], status=400).json['message']
    assert app.get('/user/', headers=user['headers']).json == before


# --- Password ----------------------------------------------------------------------------------------

@pytest.mark.parametrize('current_field, new_field', [('password_1', 'password_2'),
                                                      ('old_password', 'new_password')])
def test_password_change_revokes_every_older_token(app, user, current_field, new_field):
    app.put_json('/user/password/', {current_field: user['password'], new_field: 'brand new secret'},
                 headers=user['headers'], status=204)
    app.get('/user/', headers=user['headers'], status=401)
    app.put_json('/auth/login', {'refresh_token': user['refresh_token']}, status=401)
    app.post_json('/auth/login', {'email': user['email'], 'password': user['password']}, status=401)
    tokens = app.post_json('/auth/login', {'email': user['email'], 'password': 'brand new secret'}).json
    app.get('/user/', headers={'Authorization': 'Bearer ' + tokens['access_token']}, status=200)


def test_wrong_current_password_is_403_with_a_message(app, user):
    res = app.put_json('/user/password', {'old_password': 'not my password', 'new_password': 'brand new secret'},
                       headers=user['headers'], status=403)
    assert res.json['message']
    app.get('/user/', headers=user['headers'], status=200)


@pytest.mark.parametrize('body', [{'password_1': 'correct horse', 'password_2': 'short'},
                                  {'password_1': 'correct horse', 'password_2': 'p' * 129},
                                  {'password_1': 'correct horse'}, {'password_2': 'brand new secret'},
                                  {'old_password': 'correct horse', 'new_password': None}])
def test_invalid_password_changes_are_400(app, user, body):
    app.put_json('/user/password', body, headers=user['headers'], status=400)
    app.get('/user/', headers=user['headers'], status=200)


# --- Favourites --------------------------------------------------------------------------------------

def test_add_without_a_body_then_list_in_the_order_added(app, user):
    for movie_id in (5, 2, 9):
        res = app.post(f'/favorites/movies/{movie_id}/', headers=user['headers'], status=201)
        assert res.json['id'] == movie_id
    movies = app.get('/favorites/movies/', headers=user['headers']).json
    assert [movie['id'] for movie in movies] == [5, 2, 9]
    assert movies[0] == app.get('/movies/5').json


def test_a_removed_and_added_again_bookmark_moves_to_the_end(app, user):
    for movie_id in (5, 2, 9, 14, 1, 20, 7):
        app.post(f'/favorites/movies/{movie_id}', headers=user['headers'], status=201)
    app.delete('/favorites/movies/2', headers=user['headers'], status=204)
    app.post('/favorites/movies/2', headers=user['headers'], status=201)
    movies = app.get('/favorites/movies/', headers=user['headers']).json
    assert [movie['id'] for movie in movies] == [5, 9, 14, 1, 20, 7, 2]


def test_adding_twice_keeps_one_bookmark(app, user):
    app.post('/favorites/movies/4', headers=user['headers'], status=201)
    app.post('/favorites/movies/4', headers=user['headers'], status=200)
    assert [m['id'] for m in app.get('/favorites/movies/', headers=user['headers']).json] == [4]


@pytest.mark.parametrize('path', ['/favorites/movies/999', '/favorites/movies/0', '/favorites/movies/abc',
                                  '/favorites/movies/' + '9' * 25])
def test_adding_an_unknown_movie_is_404(app, user, path):
    app.post(path, headers=user['headers'], status=404)


def test_remove(app, user):
    app.post('/favorites/movies/3', headers=user['headers'])
    res = app.delete('/favorites/movies/3', headers=user['headers'], status=204)
    assert res.body == b''
    app.delete('/favorites/movies/3', headers=user['headers'], status=404)
    assert app.get('/favorites/movies/', headers=user['headers']).json == []


def test_favourites_are_private(app, make_user):
    alice, bob = make_user(), make_user()
    app.post('/favorites/movies/1', headers=alice['headers'])
    assert app.get('/favorites/movies/', headers=bob['headers']).json == []
    app.delete('/favorites/movies/1', headers=bob['headers'], status=404)
    assert len(app.get('/favorites/movies/', headers=alice['headers']).json) == 1


def test_favourites_go_with_their_user(app, user):
    from models import Favorite, User
    app.post('/favorites/movies/1', headers=user['headers'])
    User.delete().execute()
    assert Favorite.select().count() == 0
