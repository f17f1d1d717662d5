"""Peewee models, the database handle, and schema creation with the seed data."""
import contextlib
import datetime
import functools
import itertools
import json
import os
import pathlib
import secrets
import sqlite3
import uuid

from peewee import (SQL, AutoField, CharField, DatabaseProxy, DateTimeField, Expression, FloatField,
                    ForeignKeyField, IntegerField, IntegrityError, Model, PostgresqlDatabase, Select, SqliteDatabase,
                    TextField, chunked, fn)
from playhouse.db_url import parse as parse_db_url
from playhouse.pool import PooledPostgresqlDatabase

SEED_SQL = pathlib.Path(__file__).with_name('seed.sql')
MAX_ID = 2**31 - 1  # PostgreSQL's integer: larger ids cannot exist, so they are 404s, not errors

db = DatabaseProxy()


def open_database(url, max_connections=8):
    """A SQLite file (a path or sqlite:///path) or a PostgreSQL connection pool (postgresql://...)."""
    if url.startswith(('postgres://', 'postgresql://')):
        return PooledPostgresqlDatabase(max_connections=max_connections, stale_timeout=300, timeout=10,
                                        **parse_db_url(url))
    path = url.removeprefix('sqlite:///') if url.startswith('sqlite:///') else url
    create_private_file(path)
    # IMMEDIATE transactions take the write lock up front, so none fails on a lock upgrade. SQLite's busy
    # timeout stays at Peewee's 5 s.
    return SqliteDatabase(path, check_same_thread=False, lock_type='IMMEDIATE',
                          pragmas={'journal_mode': 'wal', 'foreign_keys': 1, 'synchronous': 'normal'})


def create_private_file(path):
    """Create a new SQLite file readable by its owner only (it holds password hashes). SQLite gives the -wal and
    -shm files it makes later the database file's mode; an existing file keeps its mode."""
    if path != ':memory:' and not os.path.exists(path):
        with contextlib.suppress(FileExistsError):  # another process created it meanwhile
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def prepared(build):
    """Decorate a query builder so its SQL is generated once per engine and its rows come back as tuples
    (Peewee's SQL generation and row mapping cost more than a hot lookup itself; docs/benchmarks.md)."""
    compiled = {}

    @functools.wraps(build)
    def run(*params):
        engine = type(db.obj)
        if engine not in compiled:
            sql, query_params = build(*params).sql()
            assert query_params == list(params), 'every value in a prepared query must be a parameter'
            compiled[engine] = sql
        return db.execute_sql(compiled[engine], params).fetchall()
    return run


def count_rows(query):
    """How many rows a one-table query matches, counted as COUNT(*) under its conditions. (Peewee's count() wraps the
    query in a subquery, which keeps SQLite from counting a whole table from its b-tree: 2 ms at 100,000 movies.)"""
    return query.order_by().select(fn.COUNT(SQL('*'))).scalar()


def release_connection(failed):
    """End a request's use of the database: PostgreSQL returns the connection to the pool; SQLite keeps it for the
    thread's next request (opening one costs more than most requests) unless the request failed."""
    # A failed request's exception can keep cursors alive in a cycle; the garbage collector later resets them
    # holding the GIL while waiting for the connection, stalling every thread (tests/test_races.py caught it).
    if not db.is_closed() and (failed or not isinstance(db.obj, SqliteDatabase)):
        db.close()


@contextlib.contextmanager
def connection():
    """The thread's connection for work outside a request's hooks (a streamed body, the cache's revision check,
    answers served ahead of Bottle), released afterwards as a request's is."""
    failed = True
    try:
        yield
        failed = False
    finally:
        release_connection(failed)


def close_database():
    """Close the current database, pooled connections included (tests and reconfiguration)."""
    if db.obj is not None:
        if not db.is_closed():
            db.close()
        if hasattr(db.obj, 'close_all'):
            db.obj.close_all()


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def utc_text(moment):
    """A stored UTC time as ISO 8601 text: 2026-01-31T12:00:00Z."""
    return moment.isoformat(timespec='seconds') + 'Z'


class BaseModel(Model):
    class Meta:
        database = db


class NamedModel(BaseModel):
    name = CharField()

    def to_json(self):
        return {'id': self.id, 'name': self.name}


class Genre(NamedModel):
    @classmethod
    def exists(cls, id):
        return 0 < id <= MAX_ID and cls.select().where(cls.id == id).exists()


class Director(NamedModel):
    pass


class Movie(BaseModel):
    title = CharField()
    description = TextField(default='')
    trailer = CharField(default='')
    year = IntegerField()
    rating = FloatField()
    genre = ForeignKeyField(Genre, backref='movies', on_delete='CASCADE')
    director = ForeignKeyField(Director, backref='movies', on_delete='CASCADE')

    class Meta:
        indexes = ((('year', 'id'), False),  # serves ORDER BY year DESC, id DESC on both engines
                   (('id',), False))  # SQLite skips OFFSET rows here, not through the table's descriptions

    @classmethod
    def with_relations(cls):
        return (cls.select(cls, Genre, Director)
                .join(Genre).switch(cls)
                .join(Director))

    @classmethod
    def listing(cls, newest=False, genre_id=None, director_id=None, year=None, q=None):
        """Movies matching the filters, in catalogue order (id, or newest first)."""
        query = cls.select(cls.id)
        for field, value in ((cls.genre, genre_id), (cls.director, director_id), (cls.year, year)):
            if value is not None:
                query = query.where(field == value)
        if q:
            query = query.where(title_contains(q))
        return query.order_by(*cls.ordering(newest))

    @classmethod
    def ordering(cls, newest):
        return (cls.year.desc(), cls.id.desc()) if newest else (cls.id,)

    @classmethod
    def page_of(cls, ids, newest):
        """The full movies for a query of ids, in the same order: the page is found on the index alone."""
        return list(cls.with_relations().where(cls.id.in_(ids)).order_by(*cls.ordering(newest)))

    def to_json(self):
        return {'id': self.id, 'title': self.title, 'description': self.description,
                'trailer': self.trailer or '', 'year': self.year, 'rating': self.rating,
                'genre_id': self.genre_id, 'director_id': self.director_id,
                'genre': self.genre.to_json(), 'director': self.director.to_json()}


# --- Title search: q anywhere in the title, in any letter case, as Python's `q.lower() in title.lower()` --------
# SQLite finds 3+ characters through the trigram index movie_search; PostgreSQL through a pg_trgm index on
# lower(title). They fold Latin, Cyrillic (Ё too) and Greek like Python, except in exotic cases: SQLite's index
# takes ς, ϐ, ſ, µ... for σ, β, s, μ, does not fold letters newer than its Unicode tables (Georgian Mtavruli,
# Cherokee, scripts beyond U+FFFF), and its 1-2 character scan finds İ only as itself; PostgreSQL lowers Σ to σ
# even at a word's end and İ to i, where Python gives ς and 'i̇'.

SQLITE_SEARCH_INDEX = [
    # A table of its own, not external content: its rows are deleted by rowid alone, so an INSERT OR REPLACE into
    # movie (whose implicit delete fires no trigger) cannot leave a stale entry behind.
    "CREATE VIRTUAL TABLE movie_search USING fts5(title, tokenize='trigram case_sensitive 0')",
    'INSERT INTO movie_search (rowid, title) SELECT id, title FROM movie',
    """CREATE TRIGGER movie_search_insert AFTER INSERT ON movie BEGIN
           DELETE FROM movie_search WHERE rowid = new.id;
           INSERT INTO movie_search (rowid, title) VALUES (new.id, new.title);
       END""",
    """CREATE TRIGGER movie_search_update AFTER UPDATE OF id, title ON movie BEGIN
           DELETE FROM movie_search WHERE rowid IN (old.id, new.id);
           INSERT INTO movie_search (rowid, title) VALUES (new.id, new.title);
       END""",
    """CREATE TRIGGER movie_search_delete AFTER DELETE ON movie BEGIN
           DELETE FROM movie_search WHERE rowid = old.id;
       END"""]
POSTGRESQL_SEARCH_INDEX = [
    'CREATE EXTENSION IF NOT EXISTS pg_trgm',  # trusted since PostgreSQL 13: the database owner may create it
    'CREATE INDEX IF NOT EXISTS movie_title_trigrams ON movie USING gin (lower(title) gin_trgm_ops)']


def title_contains(q):
    """The condition "the movie's title contains q in any letter case", in the form the search index serves."""
    if isinstance(db.obj, PostgresqlDatabase):
        pattern = '%' + q.replace('\\', '\\\\').replace('%', '\\%').replace('_', '\\_') + '%'
        return Expression(fn.lower(Movie.title), 'LIKE', fn.lower(pattern))  # backslash is LIKE's default escape
    if len(q) < 3:  # no trigram to look up: a scan, in C, with each letter in all its cases
        return Expression(Movie.title, 'GLOB', any_case_glob(q))
    phrase = '"' + q.replace('"', '""') + '"'  # one quoted phrase: FTS5 operators in q are plain text
    return Movie.id.in_(SQL('(SELECT rowid FROM movie_search WHERE movie_search MATCH ?)', [phrase]))


def any_case_glob(text):
    """A GLOB pattern for text anywhere in a string, each letter in any case: 'Ёж?' → '*[Ёё][Жж][?]*'."""
    return '*' + ''.join(any_case_class(char) for char in text) + '*'


def any_case_class(char):
    cases = {case for case in (char, char.lower(), char.upper(), char.title())
             if len(case) == 1 and case.lower() == char.lower()}
    if len(cases) > 1 or char in '*?[':
        return '[' + ''.join(sorted(cases)) + ']'
    return char


class User(BaseModel):
    email = CharField(unique=True)  # stored trimmed and lower-cased
    password = CharField()
    name = CharField(max_length=100, default='')
    surname = CharField(max_length=100, default='')
    favorite_genre = ForeignKeyField(Genre, null=True, on_delete='SET NULL')

    def to_json(self):
        return {'id': self.id, 'email': self.email, 'name': self.name, 'surname': self.surname,
                'favorite_genre': self.favorite_genre_id, 'favourite_genre': self.favorite_genre_id}

    @classmethod
    def by_id(cls, id, session_id=None):
        """The user, or None, with `favorite_movie_ids` in bookmark order, in one query (a round trip costs more
        than its work under load; docs/benchmarks.md). Given a session id, also None once that session has ended."""
        rows = _user_by_id(id) if session_id is None else _user_in_session(id, session_id)
        if not rows:
            return None
        *columns, favorite_ids = rows[0]
        user = cls(**dict(zip(cls._meta.sorted_field_names, columns)))
        user.favorite_movie_ids = [int(id) for id in favorite_ids.split(',')] if favorite_ids else []
        user.session_id = session_id
        return user

    @classmethod
    def register(cls, email, hashed_password):
        """A new user with this email and password hash; None if the email is taken."""
        try:
            with db.atomic():
                return cls.create(email=email, password=hashed_password)
        except IntegrityError:
            return None

    def update_profile(self, changes):
        """Store changes to name, surname or favorite_genre; the user as stored now."""
        if changes:
            User.update(changes).where(User.id == self.id).execute()
        return User.by_id(self.id)

    def change_password(self, hashed):
        """Store a new password hash and end every session: each token issued before stops working."""
        with db.atomic():
            User.update(password=hashed).where(User.id == self.id).execute()
            Session.end_all(self.id)

    def favorite_titles(self):
        """The user's bookmarked movies as {id, title, year}, in bookmark order."""
        movies = (Movie
                  .select(Movie.id, Movie.title, Movie.year)
                  .join(Favorite)
                  .where(Favorite.user == self.id)
                  .order_by(Favorite.id)
                  .tuples())
        return [{'id': id, 'title': title, 'year': year} for id, title, year in movies]

    def delete_account(self):
        """Delete the user; bookmarks and sessions go with the row (ON DELETE CASCADE), so its tokens stop working."""
        User.delete().where(User.id == self.id).execute()


class Favorite(BaseModel):
    id = AutoField()  # insertion order is the order the user sees
    user = ForeignKeyField(User, on_delete='CASCADE', index=False)
    movie = ForeignKeyField(Movie, on_delete='CASCADE')

    class Meta:
        indexes = ((('user', 'movie'), True),)  # one bookmark per pair, even under concurrent adds

    @classmethod
    def add(cls, user, movie):
        """Bookmark a movie; False if it already was."""
        return bool(cls.insert(user=user, movie=movie).on_conflict_ignore().as_rowcount().execute())

    @classmethod
    def add_many(cls, user, movie_ids):
        """Bookmark these movies in order, in one transaction: {"added", "already", "unknown"} lists of ids."""
        wanted = list(dict.fromkeys(movie_ids))  # each id once, first place kept
        with db.atomic():
            possible = [id for id in wanted if 0 < id <= MAX_ID]
            known = {id for id, in Movie.select(Movie.id).where(Movie.id.in_(possible)).tuples()}
            had = {id for id, in cls.select(cls.movie).where(cls.user == user.id).tuples()}
            added = [id for id in wanted if id in known and id not in had]
            for batch in chunked(added, 500):
                rows = [(user.id, id) for id in batch]
                cls.insert_many(rows, fields=[cls.user, cls.movie]).on_conflict_ignore().execute()
        return {'added': added, 'already': [id for id in wanted if id in had],
                'unknown': [id for id in wanted if id not in known]}

    @classmethod
    def remove(cls, user, movie_id):
        """Remove a bookmark; False if there was none."""
        return 0 < movie_id <= MAX_ID and bool(cls.delete().where(cls.user == user, cls.movie == movie_id).execute())


@prepared
def _user_by_id(id):
    return User.select(User, _joined_favorite_ids(User.id)).where(User.id == id)


@prepared
def _user_in_session(id, session_id):
    session = Session.select(SQL('1')).where(Session.id == session_id, Session.user == User.id)
    return _user_by_id.__wrapped__(id).where(fn.EXISTS(session))


def _joined_favorite_ids(user_id):
    """The user's bookmarked movie ids in bookmark order, as one comma-separated value."""
    if isinstance(db.obj, PostgresqlDatabase):
        return (Favorite.select(fn.string_agg(Favorite.movie.cast('text'), SQL("','")).order_by(Favorite.id))
                .where(Favorite.user == user_id))
    # SQLite before 3.44 has no ORDER BY inside an aggregate, but keeps a FROM subquery's order for one
    ordered = Favorite.select(Favorite.movie).where(Favorite.user == user_id).order_by(Favorite.id)
    return Select([ordered], [fn.group_concat(ordered.c.movie_id)])


class Session(BaseModel):
    """One login: the family of refresh tokens its rotations derive. Its tokens work while the row lives (auth.Tokens);
    ending a session deletes it."""
    id = CharField(primary_key=True)  # random: an ended session's id never comes back to name another
    user = ForeignKeyField(User, on_delete='CASCADE')
    refresh_jti = CharField()  # the family's newest refresh token, the only one that may be used
    created_at = DateTimeField()
    refreshed_at = DateTimeField(null=True)
    expires_at = DateTimeField()  # the newest refresh token's expiry
    user_agent = CharField(max_length=300, default='')
    address = CharField(max_length=64, default='')  # as the server saw it (after --trusted-proxy)

    def to_json(self, current_id):
        return {'id': self.id, 'created_at': utc_text(self.created_at),
                'refreshed_at': self.refreshed_at and utc_text(self.refreshed_at),
                'expires_at': utc_text(self.expires_at), 'user_agent': self.user_agent, 'address': self.address,
                'current': self.id == current_id}

    @classmethod
    def live_of(cls, user_id):
        """The user's unexpired sessions, newest first."""
        return list(cls.select()
                    .where(cls.user == user_id, cls.expires_at > now())
                    .order_by(cls.created_at.desc(), cls.id))

    @classmethod
    def start(cls, user_id, refresh_jti, expires_at, user_agent, address, keep):
        """A new session's id; the user's `keep` most recently refreshed live ones stay, the rest end."""
        session_id = secrets.token_urlsafe(12)
        newest = (cls.select(cls.id)
                  .where(cls.user == user_id, cls.expires_at > now())
                  .order_by(cls.expires_at.desc())
                  .limit(keep))
        with db.atomic():
            lock_sessions_of(user_id)
            cls.create(id=session_id, user=user_id, refresh_jti=refresh_jti, created_at=now(), expires_at=expires_at,
                       user_agent=user_agent[:300], address=address[:64])
            cls.delete().where(cls.user == user_id, cls.id.not_in(newest)).execute()
        return session_id

    @classmethod
    def renew(cls, session_id, user_id, used_jti, new_jti, expires_at):
        """Move the session on to its next refresh token if used_jti is its newest; False otherwise."""
        return bool(cls.update(refresh_jti=new_jti, refreshed_at=now(), expires_at=expires_at)
                    .where(cls.id == session_id, cls.user == user_id, cls.refresh_jti == used_jti)
                    .execute())

    @classmethod
    def end(cls, session_id, user_id):
        """End one of the user's sessions; False if it had ended."""
        return bool(cls.delete().where(cls.id == session_id, cls.user == user_id).execute())

    @classmethod
    def end_all(cls, user_id, except_id=None):
        """End every session of the user, or every one but except_id."""
        query = cls.delete().where(cls.user == user_id)
        with db.atomic():
            lock_sessions_of(user_id)
            (query.where(cls.id != except_id) if except_id else query).execute()


def lock_sessions_of(user_id):
    """Make this transaction's session writes for the user wait for any other's. On PostgreSQL that is a lock on the
    user's row, taken first: two requests deleting the same session rows in different orders would deadlock.
    SQLite's IMMEDIATE transactions already take the one write lock first."""
    if isinstance(db.obj, PostgresqlDatabase):
        User.select(User.id).where(User.id == user_id).for_update('FOR NO KEY UPDATE').execute()


class Attempt(BaseModel):
    """Throttled attempts (password guesses, password hashes), each counted under its key until it expires;
    shared by every process on the database. (It replaces the login_failure table, which held failures only.)"""
    key = CharField(max_length=80)  # '<kind>:<sha256 of the email, address, device or user>'
    expires_at = DateTimeField()

    class Meta:
        indexes = ((('key', 'expires_at'), False),
                   (('expires_at',), False))  # expired rows are deleted by this column alone


class CatalogueRevision(BaseModel):
    """One row whose value changes whenever the catalogue does: response caches compare against it."""
    revision = CharField(default=lambda: uuid.uuid4().hex)


MODELS = [Genre, Director, Movie, User, Favorite, Session, Attempt, CatalogueRevision]


def create_schema():
    """Create missing tables; load seed.sql into an empty catalogue. Safe to run from many processes."""
    import migrations  # here, not at the top: it builds on this module's models
    migrations.upgrade()  # an older database is brought to the current schema first; a newer one is refused
    with db.atomic():
        if isinstance(db.obj, PostgresqlDatabase):
            db.execute_sql('SELECT pg_advisory_xact_lock(25000)')  # one process creates, the rest wait
        db.create_tables(MODELS)
        create_search_index()
        if not Genre.select().exists():
            load_seed()
        if not CatalogueRevision.select().exists():
            CatalogueRevision.create()


def create_search_index():
    """Index movie titles for search, filling the index from the movies already there (a database made
    before the index existed)."""
    if isinstance(db.obj, PostgresqlDatabase):
        statements = POSTGRESQL_SEARCH_INDEX
    else:
        statements = [] if 'movie_search' in db.get_tables() else SQLITE_SEARCH_INDEX
    for statement in statements:
        db.execute_sql(statement)


def load_seed():
    for statement in sql_statements(SEED_SQL.read_text(encoding='utf-8')):
        db.execute_sql(statement)
    if isinstance(db.obj, PostgresqlDatabase):
        for model in (Genre, Director, Movie):  # explicit ids leave the sequences behind
            table = model._meta.table_name
            db.execute_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                           f"(SELECT MAX(id) FROM {table}))")


def sql_statements(script):
    """Split a script into statements (executescript would commit the open transaction)."""
    statement = ''
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement.strip()
            statement = ''


def bump_catalogue_revision():
    CatalogueRevision.update(revision=uuid.uuid4().hex).execute()


def catalogue_revision():
    return CatalogueRevision.select(CatalogueRevision.revision).scalar()


def import_catalogue(path):
    """Upsert genres, directors and movies from a JSON file ({"genres": [...], ...}, "pk" = id); the row count.
    A movie that exists keeps its description and trailer if the file leaves them out."""
    data = json.loads(pathlib.Path(path).read_text(encoding='utf-8'))
    with db.atomic():
        for model, key in ((Genre, 'genres'), (Director, 'directors'), (Movie, 'movies')):
            rows = [{'id' if name == 'pk' else name: value for name, value in row.items()} for row in data.get(key, [])]
            # One statement per 500 rows that name the same fields: Peewee's SQL for a row costs more than its insert
            for names, alike in itertools.groupby(rows, key=lambda row: sorted(row)):
                given = [model._meta.combined[name] for name in names if name != 'id']
                for batch in chunked(alike, 500):
                    insert = model.insert_many(batch)
                    (insert.on_conflict(conflict_target=[model.id], preserve=given) if given
                     else insert.on_conflict_ignore()).execute()
        bump_catalogue_revision()
    return sum(len(data.get(key, [])) for key in ('genres', 'directors', 'movies'))
