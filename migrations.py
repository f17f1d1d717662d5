"""Schema versions: a new database starts at the current version; an older one is brought forward, one
transaction per step, each after a backup of a SQLite file; a newer one is refused.

Version 1 is the schema of the first release (no schema_version table). A step that adds, renames or drops a
column uses playhouse.migrate's SchemaMigrator.from_database(db); each step is an explicit function, never
generated from the models.
"""
import datetime
import logging
import os
import sqlite3
from contextlib import closing

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, PostgresqlDatabase
from playhouse.migrate import SchemaMigrator, migrate

from models import Attempt, BaseModel, Session, User, create_private_file, create_search_index, db, now
from throttle import key, network_of

SCHEMA_LOCK = 25000  # the advisory lock create_schema takes: one process changes the schema, the rest wait
log = logging.getLogger('moviesapi')
OLD_LOGIN_WINDOW = datetime.timedelta(seconds=300)  # version 1's default window for its login failures


class SchemaTooNew(ValueError):
    """The database was written by a newer version of moviesapi."""


class SchemaVersion(BaseModel):
    """One row: the version of the schema the database has."""
    version = IntegerField()

    class Meta:
        table_name = 'schema_version'


class RefreshToken(BaseModel):
    """Versions 1 and 2 kept a row per live refresh token (version 1 also kept used ones, marked)."""
    jti = CharField(primary_key=True)
    user = ForeignKeyField(User, on_delete='CASCADE')
    expires_at = DateTimeField()
    used = BooleanField(default=False)


# --- Steps: version_N brings a database from version N - 1 to N, in order ------------------------------------

def version_2():
    """Login failures become throttle attempts; used refresh tokens (kept by version 1) are dropped, since a
    token without a row is already refused as reused; titles get their search index."""
    db.create_tables([Attempt])
    if 'loginfailure' in db.get_tables():
        attempts = [attempt_of(*failure) for failure in db.execute_sql('SELECT key, at FROM loginfailure')]
        if attempts:
            Attempt.insert_many(attempts).execute()
        db.execute_sql('DROP TABLE loginfailure')
    RefreshToken.delete().where(RefreshToken.used | (RefreshToken.expires_at < now())).execute()
    create_search_index()


def attempt_of(old_key, at):
    """Version 1's 'email:<email>' or 'ip:<address>' failure as today's attempt, expiring as it would have."""
    kind, _, value = old_key.partition(':')
    row_key = key('email', value) if kind == 'email' else key('address', network_of(value))
    if isinstance(at, str):  # SQLite returns the raw column text
        at = datetime.datetime.fromisoformat(at)
    return {'key': row_key, 'expires_at': at + OLD_LOGIN_WINDOW}


def version_3():
    """Sessions replace refresh token rows and the user's token version. Each live token becomes a session named
    after its jti, which is how auth.Tokens finds the session of a token issued before (it names none); access
    tokens issued before name none either and stop working, so clients refresh once."""
    if not isinstance(db.obj, PostgresqlDatabase) and sqlite3.sqlite_version_info < (3, 35):
        # playhouse would copy the user table and drop the old one, which cascades to every favourite
        raise ValueError(f'upgrading needs SQLite 3.35 or newer to drop a column; this Python has '
                         f'{sqlite3.sqlite_version}.')
    db.create_tables([Session])
    upgraded_at = now()
    live = RefreshToken.select().where(~RefreshToken.used, RefreshToken.expires_at > upgraded_at)
    sessions = [{'id': token.jti, 'user': token.user_id, 'refresh_jti': token.jti, 'created_at': upgraded_at,
                 'expires_at': token.expires_at} for token in live]
    if sessions:
        Session.insert_many(sessions).execute()
    db.drop_tables([RefreshToken])
    migrate(SchemaMigrator.from_database(db).drop_column('user', 'token_version'))


STEPS = [version_2, version_3]
CURRENT_VERSION = 1 + len(STEPS)


# --- Upgrading ----------------------------------------------------------------------------------------------------

def upgrade():
    """Bring the database to CURRENT_VERSION, or stamp a new one with it; raises SchemaTooNew."""
    version = stored_version()
    if version > CURRENT_VERSION:
        raise SchemaTooNew(f'the database has schema version {version}, newer than this moviesapi '
                           f'(version {CURRENT_VERSION}); run the newer moviesapi or restore a backup.')
    for number, step in enumerate(STEPS, start=2):
        if version < number:
            run_step(number, step)


def run_step(number, step):
    """Back up a SQLite file and run one step, in one transaction under the schema lock, unless another process
    ran the step meanwhile. (SQLite's write lock lets the backup's own connection read.)"""
    with db.atomic():
        lock_schema()
        if stored_version() < number:
            if not isinstance(db.obj, PostgresqlDatabase):
                back_up_before_upgrade(number - 1)
            step()
            db.create_tables([SchemaVersion])
            SchemaVersion.delete().execute()
            SchemaVersion.create(version=number)
            log.info('Upgraded the database schema to version %d', number)


def lock_schema():
    if isinstance(db.obj, PostgresqlDatabase):
        db.execute_sql('SELECT pg_advisory_xact_lock(%s)', (SCHEMA_LOCK,))


def stored_version():
    """The database's version: its schema_version row; 1 for tables without one (the first release);
    CURRENT_VERSION for a new database, which is stamped with it here."""
    tables = db.get_tables()
    if 'schema_version' in tables:
        return SchemaVersion.select(SchemaVersion.version).scalar()
    if 'user' in tables:
        return 1
    with db.atomic():
        lock_schema()
        db.create_tables([SchemaVersion])
        if not SchemaVersion.select().exists():
            SchemaVersion.create(version=CURRENT_VERSION)
    return SchemaVersion.select(SchemaVersion.version).scalar()


# --- Backups ------------------------------------------------------------------------------------------------------

def back_up_before_upgrade(version):
    """Copy the SQLite file to <file>.v<version>-<UTC time>.bak before its schema changes; returns the path."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    return back_up_sqlite(db.database, f'{db.database}.v{version}-{stamp}.bak')


def back_up_sqlite(source, target):
    """A consistent copy of a live SQLite file through SQLite's online backup API, readable by its owner only."""
    if os.path.exists(target):
        raise ValueError(f'{target} exists already; choose a new name.')
    create_private_file(target)
    with closing(sqlite3.connect(source)) as origin, closing(sqlite3.connect(target)) as copy:
        origin.backup(copy)
    return target
