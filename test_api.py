"""The public catalogue and the contract every route shares: shapes, paging, filters, caching, errors."""
import pytest
from playhouse.test_utils import count_queries

MOVIE_KEYS = {'id', 'title', 'description', 'trailer', 'year', 'rating', 'genre_id', 'director_id',
              'genre', 'director'}


# --- Lists and items ---------------------------------------------------------------------------------

@pytest.mark.parametrize('path, count', [('/movies/', 20), ('/genres/', 18), ('/directors/', 20)])
def test_lists_return_every_row_in_id_order(app, path, count):
    res = app.get(path, status=200)
    assert res.content_type == 'application/json'
    ids = [row['id'] for row in res.json]
    assert ids == list(range(1, count + 1))


def test_movie_shape_is_what_the_react_client_reads(app):
    movie = app.get('/movies/2', status=200).json
    assert set(movie) == MOVIE_KEYS
    assert movie['genre'] == {'id': movie['genre_id'], 'name': app.get(f'/genres/{movie["genre_id"]}').json['name']}
    assert movie['director']['id'] == movie['director_id']
    assert all(type(movie[key]) is int for key in ('id', 'year', 'genre_id', 'director_id'))
    assert isinstance(movie['trailer'], str) and movie['trailer'].startswith('https://www.youtube.com/')
    assert isinstance(movie['rating'], float)


def test_seed_matches_the_catalogue_facts(app):
    movies = {movie['id']: movie for movie in app.get('/movies/').json}
    assert movies[1]['title'] == 'Йеллоустоун' and movies[1]['year'] == 2018 and movies[1]['rating'] == 8.6
    assert all(movie['title'] == movie['title'].strip() and movie['description'] for movie in movies.values())


def test_cyrillic_is_sent_as_is(app):
    res = app.get('/genres/1')
    assert res.json == {'id': 1, 'name': 'Комедия'}
    assert 'Комедия'.encode() in res.body and b'\\u' not in res.body


@pytest.mark.parametrize('path', ['/movies/1', '/genres/18', '/directors/20'])
def test_items(app, path):
    assert app.get(path, status=200).json['id'] == int(path.rsplit('/', 1)[1])


@pytest.mark.parametrize('path', ['/movies/21', '/movies/0', '/movies/-1', '/movies/abc', '/movies/1.5',
                                  '/genres/19', '/directors/999', '/movies/' + '9' * 30, '/genres/2147483648'])
def test_unknown_or_malformed_ids_are_404(app, path):
    assert app.get(path, status=404).json['message']


@pytest.mark.parametrize('path', ['/movies', '/movies/', '/movies/1', '/movies/1/', '/genres', '/genres/1/',
                                  '/directors', '/directors/1/', '/health/', '/movies/?page=1'])
def test_trailing_slash_is_optional(app, path):
    app.get(path, status=200)


@pytest.mark.parametrize('header', ['Bearer undefined', 'Bearer garbage.token.here', 'Basic Zm9vOmJhcg==', ''])
def test_public_routes_ignore_any_authorization(app, header):
    app.get('/movies/', headers={'Authorization': header}, status=200)
    app.get('/genres/1', headers={'Authorization': header}, status=200)


# --- Paging and ordering -----------------------------------------------------------------------------

def test_pages_hold_twelve_rows_and_end_with_an_empty_array(app):
    assert [m['id'] for m in app.get('/movies/?page=1').json] == list(range(1, 13))
    assert [m['id'] for m in app.get('/movies/?page=2').json] == list(range(13, 21))
    assert app.get('/movies/?page=3', status=200).json == []
    assert len(app.get('/genres/?page=2').json) == 6


@pytest.mark.parametrize('page', ['0', '-1', 'abc', '1.5', '1e3', '', ' 1', '１', '9' * 30])
def test_bad_page_is_400(app, page):
    assert 'page' in app.get('/movies/', {'page': page}, status=400).json['message']


def test_newest_first_breaks_year_ties_by_id(app):
    movies = app.get('/movies/?status=new').json
    keys = [(m['year'], m['id']) for m in movies]
    assert keys == sorted(keys, reverse=True) and len(keys) == 20


def test_paging_newest_yields_every_movie_exactly_once(app):
    seen = []
    for page in range(1, 4):
        seen += [m['id'] for m in app.get(f'/movies/?status=new&page={page}').json]
    assert sorted(seen) == list(range(1, 21))
    assert seen == [m['id'] for m in app.get('/movies/?status=new').json]


def test_other_status_values_and_unknown_parameters_are_ignored(app):
    expected = list(range(1, 21))
    assert [m['id'] for m in app.get('/movies/?status=old&foo=bar').json] == expected


def test_paged_lists_carry_total_and_links(app):
    res = app.get('/movies/?status=new&page=2')
    assert res.headers['X-Total-Count'] == '20'
    links = dict((rel, url) for url, rel in
                 (part.split('; rel=') for part in res.headers['Link'].split(', ')))
    assert links == {'"first"': '</movies/?status=new&page=1>', '"prev"': '</movies/?status=new&page=1>',
                     '"last"': '</movies/?status=new&page=2>'}
    assert 'rel="next"' in app.get('/movies/?page=1').headers['Link']


# --- Filters -----------------------------------------------------------------------------------------

@pytest.mark.parametrize('query, check', [
    ('genre_id=17', lambda m: m['genre_id'] == 17),
    ('director_id=2', lambda m: m['director_id'] == 2),
    ('year=2015', lambda m: m['year'] == 2015),
    ('genre_id=17&status=new', lambda m: m['genre_id'] == 17),
])
def test_filters(app, query, check):
    movies = app.get('/movies/?' + query).json
    assert movies and all(check(movie) for movie in movies)
    everything = app.get('/movies/').json
    assert len(movies) == sum(1 for movie in everything if check(movie))


def test_title_search_folds_cyrillic_case(app):
    titles = [m['title'] for m in app.get('/movies/', {'q': 'ДЮНА'}).json]
    assert titles == ['Дюна']
    assert app.get('/movies/', {'q': 'дюн', 'year': '1999'}).json == []
    assert app.get('/movies/', {'q': '%'}).json == []  # LIKE wildcards are literal


@pytest.mark.parametrize('query', ['genre_id=x', 'director_id=0', 'year=-5', 'year=20155', 'genre_id=',
                                   'q=' + 'a' * 201])
def test_bad_filters_are_400(app, query):
    assert app.get('/movies/?' + query, status=400).json['message']


# --- Caching headers and query counts ----------------------------------------------------------------

def test_etag_and_conditional_get(app):
    res = app.get('/movies/?page=1')
    assert res.headers['Cache-Control'] == 'public, no-cache'
    etag = res.headers['ETag']
    assert etag.startswith('"') and not etag.startswith('W/')
    not_modified = app.get('/movies/?page=1', headers={'If-None-Match': etag}, status=304)
    assert not_modified.body == b'' and not_modified.headers['ETag'] == etag
    assert app.get('/movies/?page=2', headers={'If-None-Match': etag}, status=200).headers['ETag'] != etag
    app.get('/movies/?page=1', headers={'If-None-Match': f'"other", W/{etag}'}, status=304)


def test_catalogue_is_served_from_cache_after_the_first_request(app):
    with count_queries() as first:
        app.get('/movies/?page=1')
    assert first.count == 3  # catalogue revision, total count, the page with its genre and director
    with count_queries() as again:
        app.get('/movies/?page=1')
    assert again.count == 0


@pytest.mark.parametrize('path', ['/movies/?status=new&page=2', '/movies/3', '/genres/', '/directors/?page=1'])
def test_cache_hits_answer_exactly_like_the_first_request(app, path):
    first, again = app.get(path), app.get(path)
    assert again.body == first.body and sorted(again.headerlist) == sorted(first.headerlist)


def test_favourites_cost_one_query_whatever_their_number(app, user):
    for movie_id in range(1, 11):
        app.post(f'/favorites/movies/{movie_id}', headers=user['headers'])
    with count_queries() as first:
        assert len(app.get('/favorites/movies/', headers=user['headers']).json) == 10
    with count_queries() as again:
        assert len(app.get('/favorites/movies/', headers=user['headers']).json) == 10
    assert first.count == 2 + 10  # the user with the ids, the catalogue revision, each movie once
    assert again.count == 1  # the user with the ids: the movies come from the catalogue cache


def test_fast_reads_answer_exactly_as_bottle_does(app, user):
    """GET /user/ and /favorites/movies/ with a good token are served ahead of Bottle; Bottle's own routes
    (reached here without the layers in front of it) give the same answer."""
    from webtest import TestApp
    import moviesapi
    app.post('/favorites/movies/3', headers=user['headers'])
    bottle_only = TestApp(moviesapi.app)
    for path in ('/user', '/favorites/movies'):
        full = bottle_only.get(path, headers=user['headers'])
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(moviesapi.app, 'wsgi', lambda *args: pytest.fail(f'{path} entered Bottle'))
            fast = app.get(path + '/', headers=user['headers'])
        assert fast.body == full.body and fast.json
        assert {name: fast.headers[name] for name in full.headers} == dict(full.headers)
        assert fast.headers['Access-Control-Allow-Origin'] == '*'


def test_a_fast_read_that_breaks_its_contract_is_refused_at_start_up():
    from bottle import Bottle, request
    from stack import FastReads
    app = Bottle()
    app.get('/ok', auth=True)(lambda user: {'id': user})
    app.get('/public')(lambda user: {})
    app.get('/cached', auth=True, cache=True)(lambda user: {})
    app.get('/more/<id:int>', auth=True)(lambda user, id: {})
    app.get('/reads-request', auth=True)(lambda user: request.json)
    app.post('/write', auth=True)(lambda user: {})
    assert list(FastReads(app, [('GET', '/ok')]).callbacks) == ['/ok']
    for method, path in [('GET', '/public'), ('GET', '/cached'), ('GET', '/more/<id:int>'),
                         ('GET', '/reads-request'), ('POST', '/write')]:
        with pytest.raises(TypeError, match='cannot be a fast read'):
            FastReads(app, [(method, path)])


@pytest.mark.parametrize('path', ['/user/', '/favorites/movies/'])
def test_a_fast_read_that_fails_is_answered_by_bottle(app, user, monkeypatch, caplog, path):
    import models

    def explode(*ids):
        raise RuntimeError('database gone')
    assert app.get(path, headers={'Authorization': 'Bearer nonsense'}, status=401).json['message']
    assert 'failed ahead of Bottle' not in caplog.text  # a bad token is no failure
    monkeypatch.setattr(models, '_user_in_session', explode)
    res = app.get(path, headers=user['headers'], status=500, expect_errors=True)
    assert res.json == {'message': 'Внутренняя ошибка сервера.', 'status': 500}
    assert res.headers['Access-Control-Allow-Origin'] == '*'
    assert 'failed ahead of Bottle' in caplog.text and 'database gone' in caplog.text


# --- Errors, CORS, service routes --------------------------------------------------------------------

def test_unknown_route_is_json_404(app):
    res = app.get('/nope', status=404)
    assert res.content_type == 'application/json'
    assert res.json == {'message': 'Такого адреса нет.', 'status': 404}


@pytest.mark.parametrize('method, path, allow', [('post', '/movies/', 'GET'), ('delete', '/genres/1', 'GET'),
                                                 ('get', '/auth/register', 'POST'), ('put', '/user/', 'DELETE,GET,PATCH')])
def test_wrong_method_is_json_405_with_allow(app, method, path, allow):
    res = getattr(app, method)(path, status=405)
    assert res.json == {'message': 'Этот метод здесь не поддерживается.', 'status': 405}
    assert res.headers['Allow'] == allow


def test_unexpected_exception_is_a_generic_json_500(app, monkeypatch):
    import models

    def explode(*args, **kwargs):
        raise RuntimeError('secret detail')
    monkeypatch.setattr(models.Movie, 'with_relations', explode)
    res = app.get('/movies/3', status=500, expect_errors=True)
    assert res.json == {'message': 'Внутренняя ошибка сервера.', 'status': 500}
    assert res.headers['Access-Control-Allow-Origin'] == '*'


def test_the_apis_own_errors_keep_their_message_and_bottles_get_the_stock_one(app, monkeypatch):
    import moviesapi
    from peewee import DatabaseError

    class Unreachable:
        def execute_sql(self, sql):
            raise DatabaseError('connection refused')
    monkeypatch.setattr(moviesapi, 'db', Unreachable())
    assert app.get('/health', status=503).json == {'message': 'База данных не отвечает.', 'status': 503}
    assert app.get('/static/missing.js', status=404).json == {'message': 'Такого адреса нет.', 'status': 404}


def test_cors_preflight_and_headers(app):
    res = app.options('/user/', headers={'Origin': 'http://localhost:3000',
                                         'Access-Control-Request-Method': 'PATCH'}, status=204)
    assert res.headers['Access-Control-Allow-Origin'] == '*'
    assert 'Authorization' in res.headers['Access-Control-Allow-Headers']
    assert 'PATCH' in res.headers['Access-Control-Allow-Methods']
    assert app.get('/genres/').headers['Access-Control-Allow-Origin'] == '*'
    assert app.get('/nope', status=404).headers['Access-Control-Allow-Origin'] == '*'


def test_health(app):
    assert app.get('/health').json == {'status': 'ok'}


def test_starting_twice_does_not_seed_twice(app, database_url):
    import moviesapi
    moviesapi.configure(database_url, 'k' * 32)
    assert len(app.get('/movies/').json) == 20 and len(app.get('/genres/').json) == 18


def test_a_list_longer_than_one_batch_comes_whole_and_in_order(app):
    from models import Movie, bump_catalogue_revision
    import moviesapi
    from catalogue_cache import BATCH_SIZE
    extra = BATCH_SIZE * 2 + 7
    Movie.insert_many([{'title': f'Фильм {n}', 'year': 2000 + n % 20, 'rating': 5.0, 'genre': 1 + n % 18,
                        'director': 1 + n % 20} for n in range(extra)]).execute()
    bump_catalogue_revision()
    moviesapi.setting('cache').next_check = 0  # as if the cache's check interval had passed
    for query in ('', '?status=new'):
        res = app.get('/movies/' + query)
        assert res.headers['ETag']
        keys = [(m['year'], m['id']) if query else m['id'] for m in res.json]
        assert len(keys) == 20 + extra and keys == sorted(keys, reverse=bool(query))
        assert app.get('/movies/' + query).body == res.body


def test_an_import_upserts_by_pk_and_changes_only_the_fields_given(app, tmp_path):
    import json
    import moviesapi
    from models import db
    movie_2 = app.get('/movies/2').json
    new_movies = [{'pk': 1000 + n, 'title': f'Новый фильм {n}', 'description': 'Описание', 'trailer': '',
                   'year': 1990 + n % 30, 'rating': 7.5, 'genre_id': 1 + n % 18, 'director_id': 21}
                  for n in range(1200)]  # more than one statement's worth
    catalogue = {'genres': [{'pk': 1, 'name': 'Переименованный'}],
                 'directors': [{'pk': 21, 'name': 'Новый режиссёр'}],
                 'movies': [{'pk': 2, 'title': movie_2['title'], 'year': movie_2['year'], 'rating': 9.9,
                             'genre_id': movie_2['genre_id'], 'director_id': movie_2['director_id']}, *new_movies]}
    path = tmp_path / 'catalogue.json'
    path.write_text(json.dumps(catalogue, ensure_ascii=False), encoding='utf-8')
    with db.connection_context():
        assert moviesapi.import_catalogue(path) == 1203
    moviesapi.setting('cache').next_check = 0
    assert app.get('/genres/1').json['name'] == 'Переименованный'
    assert app.get('/movies/2').json == {**movie_2, 'rating': 9.9}  # its description and trailer kept
    assert app.get('/movies/1199').json['director'] == {'id': 21, 'name': 'Новый режиссёр'}
    assert app.get('/movies/', {'page': 1}).headers['X-Total-Count'] == '1220'
    assert [movie['title'] for movie in app.get('/movies/', {'q': 'новый фильм 1199'}).json] == ['Новый фильм 1199']
