"""One-shot administration from the command line (there is no HTTP admin surface): backups, users, passwords
and sessions. Each command runs after the database is opened and upgraded, prints its result and exits."""
import secrets
import shlex
import sys
import unicodedata

from peewee import PostgresqlDatabase, fn
from playhouse.db_url import parse as parse_db_url

from auth import PRODUCTION_HASH_ITERATIONS, hash_password
from migrations import back_up_sqlite
from models import Favorite, Session, User, db, now


def add_arguments(parser):
    commands = parser.add_argument_group('administration (each runs once, prints its result and exits)')
    commands.add_argument('--backup', metavar='FILE',
                          help='copy the SQLite database to FILE, consistently, while the server runs; '
                               'for PostgreSQL, print the pg_dump command to use')
    commands.add_argument('--list-users', action='store_true',
                          help='list users: id, email, name, favourites, live sessions')
    commands.add_argument('--reset-password', metavar='EMAIL',
                          help="print a random one-time password for the user and end the user's sessions")
    commands.add_argument('--password-stdin', action='store_true',
                          help='with --reset-password: read the new password from the first line of stdin')
    commands.add_argument('--end-sessions', metavar='EMAIL', help='end every session of the user: each of its tokens stops working')


def run(args):
    """Run the administration command given, if any: True if one ran. Exits non-zero when it cannot."""
    commands = {'backup': back_up, 'list_users': list_users, 'reset_password': reset_password,
                'end_sessions': end_sessions}
    if args.password_stdin and not args.reset_password:
        sys.exit('moviesapi: --password-stdin goes with --reset-password EMAIL.')
    for option, command in commands.items():
        if getattr(args, option):
            try:
                with db.connection_context():
                    command(args)
            except ValueError as err:
                sys.exit(f'moviesapi: {err}')
            return True
    return False


def back_up(args):
    if isinstance(db.obj, PostgresqlDatabase):
        print('PostgreSQL is backed up with pg_dump (it asks for the password, or reads PGPASSWORD or ~/.pgpass):')
        print(pg_dump_command(args.database_url, args.backup))
    else:
        print(f'Backed up {db.database} to {back_up_sqlite(db.database, args.backup)}')


def pg_dump_command(database_url, file):
    """The pg_dump command line for the database, without its password."""
    params = parse_db_url(database_url)
    options = {'--host': params.get('host'), '--port': params.get('port'), '--username': params.get('user'),
               '--dbname': params['database'], '--format': 'custom', '--file': file}
    return shlex.join(['pg_dump'] + [f'{name}={value}' for name, value in options.items() if value])


def list_users(args):
    favorites = Favorite.select(fn.COUNT(Favorite.id)).where(Favorite.user == User.id)
    sessions = Session.select(fn.COUNT(Session.id)).where(Session.user == User.id, Session.expires_at > now())
    rows = (User
            .select(User.id, User.email, User.name, favorites, sessions)
            .order_by(User.id)
            .tuples())
    print('id\temail\tname\tfavorites\tsessions')
    for row in rows:
        print('\t'.join(str(value) for value in row))


def reset_password(args):
    user = user_by_email(args.reset_password)
    password = read_password() if args.password_stdin else secrets.token_urlsafe(12)
    hashed = hash_password(password, PRODUCTION_HASH_ITERATIONS)  # before the transaction: it takes a while
    user.change_password(hashed)
    if not args.password_stdin:
        print(f'One-time password for {user.email}: {password}')
        print('Give it to its owner privately; they should change it after logging in.')
    print(f'Ended every session of {user.email}.')


def read_password():
    password = sys.stdin.readline().rstrip('\r\n')
    if not 8 <= len(password) <= 128:
        raise ValueError('the new password must be 8 to 128 characters long.')
    return password


def end_sessions(args):
    user = user_by_email(args.end_sessions)
    Session.end_all(user.id)
    print(f'Ended every session of {user.email}.')


def user_by_email(email):
    """The user with this email, as the API compares emails; ValueError if there is none."""
    user = User.get_or_none(User.email == unicodedata.normalize('NFKC', email).strip().lower())
    if user is None:
        raise ValueError(f'no user has the email {email}.')
    return user
