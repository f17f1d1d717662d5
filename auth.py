"""Passwords, JWT access/refresh tokens, and the Bottle plugin that checks bearer tokens."""
import base64
import datetime
import functools
import hashlib
import hmac
import os
import re
import secrets
import time
import unicodedata

import jwt
from bottle import request

from jsonio import ApiError
from models import MAX_ID, Session, User, db, lock_sessions_of, now

# OWASP's current PBKDF2-HMAC-SHA256 work factor; tests lower it through the environment.
PRODUCTION_HASH_ITERATIONS = 600_000
HASH_ITERATIONS = int(os.environ.get('MOVIESAPI_HASH_ITERATIONS', PRODUCTION_HASH_ITERATIONS))
ALGORITHM = 'HS256'
LEEWAY = 10  # seconds of clock skew between the servers that issue and check tokens
USER_ID = re.compile(r'[1-9][0-9]{0,9}')  # ASCII only: int() also reads '١' as 1


# --- Passwords ---------------------------------------------------------------------------------------

def _pbkdf2(password, salt, iterations):
    normalized = unicodedata.normalize('NFKC', password).encode()
    return hashlib.pbkdf2_hmac('sha256', normalized, salt, iterations)


def hash_password(password, iterations=None):
    """A self-describing salted hash: pbkdf2_sha256$<iterations>$<salt>$<hash>."""
    iterations = iterations or HASH_ITERATIONS
    salt = secrets.token_bytes(16)
    digest = _pbkdf2(password, salt, iterations)
    return f'pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}'


def check_password(password, stored):
    """True if the password matches the stored hash, compared in constant time."""
    _, iterations, salt, expected = stored.split('$')
    actual = _pbkdf2(password, base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(actual, base64.b64decode(expected))


def needs_rehash(stored):
    return int(stored.split('$')[1]) < HASH_ITERATIONS


@functools.cache
def _dummy_hash():
    return hash_password(secrets.token_urlsafe())


def authenticate(email, password):
    """The user with these credentials, or None; costs one hash either way, so timing tells nothing."""
    user = User.get_or_none(User.email == email)
    if user is None:
        check_password(password, _dummy_hash())
        return None
    if not check_password(password, user.password):
        return None
    if needs_rehash(user.password):
        user.password = hash_password(password)
        user.save(only=[User.password])
    return user


# --- Tokens ------------------------------------------------------------------------------------------

def unauthorized(message, error='invalid_token'):
    """A 401 that tells the client, per RFC 6750, to come back with a valid bearer token."""
    err = ApiError(401, message)
    err.set_header('WWW-Authenticate', f'Bearer error="{error}"' if error else 'Bearer')
    return err


class Tokens:
    """Issues, verifies and rotates HS256 access and refresh tokens. Each token names its session (models.Session)
    and works while that session lives: logging out, a password change or a deleted account ends it at once."""

    remember = 10_000  # signatures remembered: each token's is checked once
    sessions = 20  # live sessions per user; a new one beyond that ends the least recently refreshed

    def __init__(self, settings):
        self.secret, self.access_ttl, self.refresh_ttl = settings.secret, settings.access_ttl, settings.refresh_ttl
        self.verified = {}  # token → claims

    def _encode(self, user_id, session_id, kind, ttl, jti):
        issued = int(time.time())
        claims = {'sub': str(user_id), 'sid': session_id, 'type': kind, 'iat': issued, 'exp': issued + ttl,
                  'jti': jti}
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def _pair(self, user_id, session_id, refresh_jti):
        return {'access_token': self._encode(user_id, session_id, 'access', self.access_ttl, secrets.token_urlsafe(16)),
                'refresh_token': self._encode(user_id, session_id, 'refresh', self.refresh_ttl, refresh_jti)}

    def _refresh_expiry(self):
        return now() + datetime.timedelta(seconds=self.refresh_ttl)

    def issue_pair(self, user, environ):
        """Start a session for the user, described by the request's user agent and address: its first pair."""
        jti = secrets.token_urlsafe(16)
        session_id = Session.start(user.id, jti, self._refresh_expiry(), header_text(environ, 'HTTP_USER_AGENT'),
                                   environ.get('REMOTE_ADDR', ''), keep=self.sessions)
        return self._pair(user.id, session_id, jti)

    def signed_claims(self, token):
        """The claims of a token with a valid signature and the required claims; raises 401."""
        claims = self.verified.get(token)
        if claims is None:
            try:
                claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM], leeway=LEEWAY,
                                    options={'require': ['exp', 'iat', 'sub', 'jti'], 'verify_exp': False})
            except jwt.InvalidTokenError:
                raise unauthorized('Токен недействителен или истёк.')
            if len(self.verified) >= self.remember:
                self.verified.clear()
            self.verified[token] = claims
        return claims

    def verify(self, token, kind, verify_exp=True):
        """(user id, session id, jti) of a well-formed token of this kind; raises 401. Whether its session still
        lives is for the caller's query to find."""
        claims = self.signed_claims(token)
        # A refresh token issued before sessions existed names none: the upgrade named its session after its jti.
        subject, session_id, expires = claims['sub'], claims.get('sid', claims['jti']), claims['exp']
        if type(expires) is not int or verify_exp and expires < time.time() - LEEWAY:
            raise unauthorized('Токен недействителен или истёк.')
        if claims.get('type') != kind:
            raise unauthorized(f'Нужен токен типа "{kind}".')
        if not USER_ID.fullmatch(subject) or int(subject) > MAX_ID or type(session_id) is not str:
            raise unauthorized('Токен недействителен или истёк.')
        return int(subject), session_id, claims['jti']

    def rotate(self, refresh_token, access_token=None):
        """Trade the session's newest refresh token for a new pair. An older one of the family, used again, means
        someone else holds the family: the session ends."""
        user_id, session_id, jti = self.verify(refresh_token, 'refresh')
        if access_token and self.verify(access_token, 'access', verify_exp=False)[0] != user_id:
            raise unauthorized('Токены принадлежат разным пользователям.')
        new_jti = secrets.token_urlsafe(16)
        with db.atomic():
            lock_sessions_of(user_id)
            if Session.renew(session_id, user_id, jti, new_jti, self._refresh_expiry()):
                return self._pair(user_id, session_id, new_jti)
            reused = Session.end(session_id, user_id)
        if reused:
            raise unauthorized('Этот refresh-токен уже использован; сессия завершена, войдите заново.')
        raise unauthorized('Сессия завершена; войдите заново.')

    def log_out(self, refresh_token):
        """End the session of a refresh token, expired or not; nothing to do if it has ended."""
        user_id, session_id, _ = self.verify(refresh_token, 'refresh', verify_exp=False)
        Session.end(session_id, user_id)

    def user_of(self, environ):
        """The user of the request's bearer access token, with its `session_id`; raises 401."""
        user_id, session_id, _ = self.verify(bearer_token(environ), 'access')
        user = User.by_id(user_id, session_id)
        if user is None:
            raise unauthorized('Токен отозван: сессия завершена.')
        return user


# --- The plugin --------------------------------------------------------------------------------------

class BearerAuth:
    """Bottle plugin: routes declared with auth=True get the token's user as the `user` argument, checked by the
    Tokens in app.config['moviesapi.tokens']."""
    name, api = 'auth', 2

    def setup(self, app):
        if any(getattr(other, 'name', None) == self.name for other in app.plugins if other is not self):
            raise RuntimeError('The auth plugin is installed twice.')
        self.config = app.config

    def apply(self, callback, route):
        if not route.config.get('auth'):
            return callback

        @functools.wraps(callback)
        def with_user(*args, **kwargs):
            kwargs['user'] = self.config['moviesapi.tokens'].user_of(request.environ)
            return callback(*args, **kwargs)
        return with_user


def header_text(environ, name):
    """A header as the client most likely wrote it: WSGI gives its bytes as Latin-1, browsers send UTF-8. NUL,
    which no database column takes, is dropped."""
    raw = environ.get(name, '').encode('latin-1', 'replace')
    return raw.decode('utf-8', 'replace').replace('\x00', '')


def bearer_token(environ):
    """The token of the request's Authorization: Bearer header; raises 401 without one. (Read from the environ:
    Bottle's request.headers view and the environ would refer to each other, a cycle per request.)"""
    scheme, _, token = environ.get('HTTP_AUTHORIZATION', '').partition(' ')
    if scheme.lower() != 'bearer' or not token.strip():
        raise unauthorized('Нужен заголовок Authorization: Bearer <access-токен>.', error=None)
    return token.strip()
