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
from peewee import PostgresqlDatabase

from jsonio import ApiError
from models import MAX_ID, RefreshToken, User, db, now

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
    """Issues, verifies and rotates HS256 access and refresh tokens."""

    remember = 10_000  # signatures remembered: each token's is checked once
    sessions = 20  # live refresh tokens per user; a new one beyond that revokes the oldest

    def __init__(self, settings):
        self.secret, self.access_ttl, self.refresh_ttl = settings.secret, settings.access_ttl, settings.refresh_ttl
        self.verified = {}  # token → claims

    def _encode(self, user, kind, ttl, jti):
        issued = int(time.time())
        claims = {'sub': str(user.id), 'type': kind, 'ver': user.token_version,
                  'iat': issued, 'exp': issued + ttl, 'jti': jti}
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def issue_pair(self, user):
        """A new access token and a new single-use refresh token for the user."""
        with db.atomic():
            lock_tokens_of(user)
            return self._new_pair(user)

    def _new_pair(self, user):
        """Store a new refresh token, keeping the user's newest `sessions` ones, and encode the pair."""
        jti = secrets.token_urlsafe(16)
        RefreshToken.create(jti=jti, user=user, expires_at=now() + datetime.timedelta(seconds=self.refresh_ttl))
        newest = (RefreshToken
                  .select(RefreshToken.jti)
                  .where(RefreshToken.user == user,
                         RefreshToken.expires_at > now() - datetime.timedelta(seconds=LEEWAY))  # as verify() does
                  .order_by(RefreshToken.expires_at.desc())
                  .limit(self.sessions))
        RefreshToken.delete().where(RefreshToken.user == user, RefreshToken.jti.not_in(newest)).execute()
        return {'access_token': self._encode(user, 'access', self.access_ttl, secrets.token_urlsafe(16)),
                'refresh_token': self._encode(user, 'refresh', self.refresh_ttl, jti)}

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
        """(user, claims) for a valid token of this kind whose user still exists; raises 401."""
        claims = self.signed_claims(token)
        version, subject, expires = claims.get('ver'), claims['sub'], claims['exp']
        if type(expires) is not int or verify_exp and expires < time.time() - LEEWAY:
            raise unauthorized('Токен недействителен или истёк.')
        if claims.get('type') != kind or type(version) is not int:
            raise unauthorized(f'Нужен токен типа "{kind}".')
        if not USER_ID.fullmatch(subject) or int(subject) > MAX_ID:
            raise unauthorized('Токен недействителен или истёк.')
        user = User.by_id(int(subject))
        if user is None or user.token_version != version:
            raise unauthorized('Токен отозван.')
        return user, claims

    def rotate(self, refresh_token, access_token=None):
        """Trade a refresh token for a new pair. A second use revokes every refresh token of its user."""
        user, claims = self.verify(refresh_token, 'refresh')
        if access_token and self.verify(access_token, 'access', verify_exp=False)[0].id != user.id:
            raise unauthorized('Токены принадлежат разным пользователям.')
        with db.atomic():
            lock_tokens_of(user)
            # A used token's row is deleted, not kept: a valid token without a row was used before (or revoked as
            # the oldest session), so reuse is still caught while a user never has more than `sessions` rows.
            if RefreshToken.delete().where(RefreshToken.jti == claims['jti'], ~RefreshToken.used).execute():
                return self._new_pair(user)
            RefreshToken.delete().where(RefreshToken.user == user).execute()
        raise unauthorized('Этот refresh-токен уже использован; войдите заново.')

    def user_of(self, environ):
        """The user of the request's bearer access token; raises 401."""
        return self.verify(bearer_token(environ), 'access')[0]


def lock_tokens_of(user):
    """Make the transaction's token writes for this user wait for any other's. On PostgreSQL that is a lock on the
    user's row, taken first: two requests deleting the same token rows in different orders would deadlock.
    SQLite's IMMEDIATE transactions already take the one write lock first."""
    if isinstance(db.obj, PostgresqlDatabase):
        User.select(User.id).where(User.id == user.id).for_update('FOR NO KEY UPDATE').execute()


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


def bearer_token(environ):
    """The token of the request's Authorization: Bearer header; raises 401 without one. (Read from the environ:
    Bottle's request.headers view and the environ would refer to each other, a cycle per request.)"""
    scheme, _, token = environ.get('HTTP_AUTHORIZATION', '').partition(' ')
    if scheme.lower() != 'bearer' or not token.strip():
        raise unauthorized('Нужен заголовок Authorization: Bearer <access-токен>.', error=None)
    return token.strip()
