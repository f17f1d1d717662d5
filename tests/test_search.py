"""Title search (`GET /movies/?q=`): the same answers as Python's `q.lower() in title.lower()`, served by an index
that stays in sync with every way movies are written."""
import json
import secrets

import pytest
from webtest import TestApp

import moviesapi
from conftest import load_old_schema
from models import Genre, Movie, PostgresqlDatabase, close_database, db, open_database

TRICKY_TITLES = [
    'Ёлки', 'ёжик в тумане', 'ЕЖИК', 'Бобр', 'Я', 'M', '9', 'Ид', 'Straße', 'STRASSE', 'Amélie', 'AMÉLIE',
    'WALL·E', '100% любовь', 'snake_case', 'snakeXcase', 'C:\\Windows', 'Кавычки "в" названии', "Don't Look Up",
    'AND NEAR OR NOT', 'Звёзды (и) полосы*', 'x^2 - y: z', 'Двойной  пробел', ' Начало с пробела', 'İstanbul',
    'Tuesday? {Maybe} [draft]', 'Солярис', 'СОЛЯРИС 2',
]
QUERIES = [
    'ЁЛК', 'ёлк', 'елк', 'Ёжик', 'ЁЖ', 'ё', 'Е', 'Я', 'я', 'м', 'M', '9', 'ид', 'бр', 'р', 'солярис', 'СоЛяРиС 2',
    'STRASSE', 'straße', 'ße', 'amélie', 'ÉLI', 'é', 'wall·e', '·', '%', '100%', '0%', '_', 'e_c', 'snake_', '\\',
    ':\\w', 'C:\\', '"', '"в"', 'Кавычки "', "'", "n't", 'AND', 'and near', 'NEAR', 'OR NOT', 'NOT', '(и)', '(',
    '*', 'ы*', 'сы*', '^', 'x^2', '-', ' - ', ': z', ':', '?', 'y?', '{Maybe}', '[draft]', '[d', 'no such title',
    'xyz', ' ', '  ', '   ', 'й  п', ' на', 'İst',
]


def add_movies(titles):
    """Insert movies with these titles (years spread out, so newest-first order differs from id order)."""
    genre = Genre.select().first()
    rows = [{'title': title, 'year': 1950 + (17 * n) % 70, 'rating': 5.0, 'genre': genre, 'director': 1}
            for n, title in enumerate(titles)]
    with db.atomic():
        Movie.insert_many(rows).execute()


def found(q, **filters):
    """Ids of movies whose title contains q, through the model's query."""
    with db.connection_context():
        return [movie.id for movie in Movie.listing(q=q, **filters)]


@pytest.fixture
def tricky(app):
    with db.connection_context():
        add_movies(TRICKY_TITLES)
    return app


@pytest.mark.parametrize('q', QUERIES)
def test_search_answers_as_python_lower(tricky, q):
    everything = tricky.get('/movies/').json
    expected = [m for m in everything if q.lower() in m['title'].lower()]
    assert [m['id'] for m in tricky.get('/movies/', {'q': q}).json] == [m['id'] for m in expected]
    newest = sorted(expected, key=lambda m: (m['year'], m['id']), reverse=True)
    page = tricky.get('/movies/', {'q': q, 'status': 'new', 'page': '1'})
    assert page.headers['X-Total-Count'] == str(len(expected))
    assert [m['id'] for m in page.json] == [m['id'] for m in newest[:12]]


@pytest.mark.parametrize('q', ['Ё', 'сол', 'ЁЛКИ', 'ик'])
def test_search_combines_with_other_filters(tricky, q):
    everything = tricky.get('/movies/').json
    year = next(m['year'] for m in everything if q.lower() in m['title'].lower())
    expected = [m['id'] for m in everything if q.lower() in m['title'].lower() and m['year'] == year]
    assert [m['id'] for m in tricky.get('/movies/', {'q': q, 'year': str(year), 'genre_id': '1'}).json] == \
        [id for id in expected if next(m for m in everything if m['id'] == id)['genre_id'] == 1]
    assert [m['id'] for m in tricky.get('/movies/', {'q': q, 'year': str(year)}).json] == expected


def test_paging_through_search_results(tricky):
    with db.connection_context():
        add_movies([f'Сериал, серия {n}' for n in range(30)])
    everything = tricky.get('/movies/').json
    expected = [m['id'] for m in everything if 'серия' in m['title'].lower()]
    pages = [tricky.get('/movies/', {'q': 'СЕРИЯ', 'page': str(n)}) for n in (1, 2, 3)]
    assert [m['id'] for page in pages for m in page.json] == expected
    assert {page.headers['X-Total-Count'] for page in pages} == {'30'}
    assert 'rel="last"' in pages[0].headers['Link'] and '3' in pages[0].headers['Link']


# --- The index stays in sync --------------------------------------------------------------------------

def test_insert_update_and_delete_are_found_at_once(app):
    with db.connection_context():
        add_movies(['Зеркало'])
        movie = Movie.get(Movie.title == 'Зеркало').id
        assert found('ЗЕРК') == [movie] and movie in found('рк')
        Movie.update(title='Сталкер').where(Movie.id == movie).execute()
        assert found('зеркало') == [] and movie not in found('рк')
        assert found('СТАЛК') == [movie] and movie in found('лк')
        Movie.update(rating=9.9).where(Movie.id == movie).execute()  # not the title: the index is untouched
        assert found('СТАЛК') == [movie]
        Movie.delete().where(Movie.id == movie).execute()
        assert found('сталк') == [] and movie not in found('лк')


def test_direct_sql_and_cascades_keep_the_index_in_sync(app):
    with db.connection_context():
        genre = Genre.create(name='Жанр для удаления')
        db.execute_sql('INSERT INTO movie (title, description, trailer, year, rating, genre_id, director_id) '
                       f"VALUES ('Андрей Рублёв', '', '', 1966, 8.1, {genre.id}, 1)")
        movie_id = Movie.get(Movie.title == 'Андрей Рублёв').id
        assert found('рублёв') == [movie_id]
        db.execute_sql(f"UPDATE movie SET title = 'Иваново детство' WHERE id = {movie_id}")
        assert found('рублёв') == [] and found('ИВАНОВО') == [movie_id]
        db.execute_sql(f'DELETE FROM genre WHERE id = {genre.id}')  # the movie goes with it (ON DELETE CASCADE)
        assert found('иваново') == []


def test_insert_or_replace_leaves_no_stale_entry(app):
    if isinstance(db.obj, PostgresqlDatabase):
        pytest.skip('INSERT OR REPLACE is SQLite syntax')
    with db.connection_context():
        movie = Movie.select().order_by(Movie.id).first()
        db.execute_sql('INSERT OR REPLACE INTO movie (id, title, description, trailer, year, rating, genre_id, '
                       f"director_id) VALUES ({movie.id}, 'Новое название', '', '', 2000, 5, 1, 1)")
        assert found(movie.title) == []
        assert found('НОВОЕ НАЗВ') == [movie.id]
        db.execute_sql("INSERT INTO movie_search (movie_search) VALUES ('integrity-check')")


def test_import_catalogue_updates_the_index(app, tmp_path):
    with db.connection_context():
        movie = Movie.select().order_by(Movie.id).first()
        old_title = movie.title
        imported = {'movies': [
            {'pk': movie.id, 'title': 'Летят журавли', 'description': '', 'trailer': '', 'year': 1957,
             'rating': 8.3, 'genre_id': movie.genre_id, 'director_id': movie.director_id},
            {'pk': 5000, 'title': 'Девять дней одного года', 'description': '', 'trailer': '', 'year': 1962,
             'rating': 7.7, 'genre_id': movie.genre_id, 'director_id': movie.director_id}]}
        path = tmp_path / 'catalogue.json'
        path.write_text(json.dumps(imported, ensure_ascii=False), encoding='utf-8')
        moviesapi.import_catalogue(path)
        assert found(old_title) == []
        assert found('ЖУРАВЛ') == [movie.id]
        assert found('дней одного') == [5000]


# --- The index is used, and is built for databases made before it ------------------------------------

def assert_uses_search_index(q):
    """The listing's query for q, as the database plans it, reads the title index (not a scan of movie)."""
    sql, params = Movie.listing(q=q).sql()
    if isinstance(db.obj, PostgresqlDatabase):
        plan = '\n'.join(row[0] for row in db.execute_sql('EXPLAIN ' + sql, params))
        assert 'movie_title_trigrams' in plan, plan
    else:
        plan = '\n'.join(row[3] for row in db.execute_sql('EXPLAIN QUERY PLAN ' + sql, params))
        assert 'SCAN movie_search VIRTUAL TABLE INDEX 0:M' in plan and 'SCAN movie\n' not in plan + '\n', plan


def add_many_movies(count):
    """Movies with distinct titles and descriptions of a realistic size, enough that PostgreSQL's planner
    prefers an index to reading the table."""
    columns = 'INSERT INTO movie (title, description, trailer, year, rating, genre_id, director_id) '
    with db.atomic():
        if isinstance(db.obj, PostgresqlDatabase):
            db.execute_sql(columns + "SELECT 'Фильм ' || md5(n::text), repeat('Описание фильма. ', 30), '', 2000, "
                           '5, 1, 1 FROM generate_series(1, %s) AS n', [count])
        else:
            db.execute_sql('WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) ' + columns +
                           "SELECT 'Фильм ' || hex(randomblob(16)), replace(hex(zeroblob(30)), '00', "
                           "'Описание фильма. '), '', 2000, 5, 1, 1 FROM n", [count])
    db.execute_sql('ANALYZE')


def test_search_uses_the_index(app):
    with db.connection_context():
        add_many_movies(20000)
        for q in ('ЁЛКИ', 'c4ca4', '"AND*'):
            assert_uses_search_index(q)


def test_database_made_before_the_index_gets_it_on_start(database_url):
    load_old_schema(database_url, 1)  # the first release's tables: no search index
    db.initialize(open_database(database_url))
    with db.connection_context():  # full of data
        add_movies(['Кин-дза-дза!'])
        add_many_movies(20000)
        assert 'movie_search' not in db.get_tables()
        assert 'movie_title_trigrams' not in {index.name for index in db.get_indexes('movie')}
    close_database()
    moviesapi.configure(database_url, secrets.token_hex(32))  # what every start does
    client = TestApp(moviesapi.application)
    assert [m['title'] for m in client.get('/movies/', {'q': 'ДЗА-'}).json] == ['Кин-дза-дза!']
    assert client.get('/movies/', {'q': 'ФИЛЬМ ', 'page': '1'}).headers['X-Total-Count'] == '20000'
    with db.connection_context():
        assert_uses_search_index('ДЗА-')
    close_database()
