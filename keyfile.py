"""The key that signs tokens: $MOVIESAPI_SECRET, or a random one kept in a private file so tokens survive restarts."""
import logging
import os
import pathlib
import secrets
import stat
import tempfile

log = logging.getLogger('moviesapi')


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
