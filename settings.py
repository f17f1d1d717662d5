"""The server's settings: one typed object, each default written once, and the command line built from it."""
import argparse
import dataclasses
import os

MiB = 2**20


def option(default, help, flag=None, **argparse_options):
    """A setting with its default and its command-line flag (by default the field's name, dashed)."""
    return dataclasses.field(default=default, metadata={'help': help, 'flag': flag, **argparse_options})


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = option('movies.db', 'SQLite file, sqlite:///path or postgresql://user:pass@host:port/name '
                               '(default: $MOVIESAPI_DATABASE_URL or movies.db)', flag='--db')
    secret: str = ''  # the signing key: MOVIESAPI_SECRET or a key file (keyfile.signing_key), never a flag
    host: str = option('127.0.0.1', 'address to listen on')
    port: int = option(25000, 'port to listen on')
    threads: int = option(8, 'Waitress worker threads')
    cors_origin: str = option('*', 'Access-Control-Allow-Origin value')
    access_ttl: int = option(15 * 60, 'access token lifetime, s')
    refresh_ttl: int = option(30 * 24 * 3600, 'refresh token lifetime, s (30 days)')
    login_failures_per_email: int = option(5, 'failed logins per email within the window before 429')
    login_failures_per_address: int = option(50, 'failed logins per client address within the window before 429')
    login_window: int = option(300, 'login throttling window, s')
    password_hashes_per_minute: int = option(60, 'password hashes (logins, registrations, password changes) '
                                                 'per client address or IPv6 /64 per minute before 429')
    cache_seconds: float = option(1.0, 'how often each process checks for catalogue changes, s')
    cache_mib: float = option(64.0, 'memory for cached catalogue answers, MiB; long lists are kept in files')
    trusted_proxy: str = option(None, 'address of a reverse proxy whose X-Forwarded-For to trust')
    header_timeout: float = option(10.0, "seconds a client has to send a request's headers, counted from its "
                                         'first byte')
    connection_limit: int = option(1000, 'open client connections at most')
    import_file: str = option(None, 'upsert the catalogue from a JSON file (genres, directors, movies), then exit',
                              flag='--import', metavar='FILE')

    @property
    def max_connections(self):
        """Database connections: one per worker thread, and two for work outside them (start-up, the cache)."""
        return self.threads + 2

    @property
    def cache_bytes(self):
        return int(self.cache_mib * MiB)


def command_line():
    """The argument parser: one flag per setting (and $MOVIESAPI_DATABASE_URL for --db)."""
    parser = argparse.ArgumentParser(description='Serve the moviesapi JSON API and web UI with Waitress.')
    for field in dataclasses.fields(Settings):
        if 'help' not in field.metadata:
            continue
        options = dict(field.metadata)
        flag, help = options.pop('flag') or '--' + field.name.replace('_', '-'), options.pop('help')
        if field.default is not None and '(default' not in help:
            help += f' (default: {field.default})'
        parser.add_argument(flag, dest=field.name, type=field.type, default=field.default, help=help, **options)
    parser.set_defaults(database_url=os.environ.get('MOVIESAPI_DATABASE_URL', Settings.database_url))
    return parser


def from_args(args):
    """The Settings among parsed arguments; anything else parsed (a command) is left out."""
    names = {field.name for field in dataclasses.fields(Settings)}
    return Settings(**{name: value for name, value in vars(args).items() if name in names})
