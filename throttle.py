"""Throttling of password guesses and of password-hashing work, with OWASP's device cookies; state in the db.

A browser that has logged in to an account holds a signed device cookie for it and its own allowance of
failures, so strangers' failures for that email, or from a shared address, cannot lock its owner out. Other
clients get a few failures per email and more per address (an IPv6 /64 counts as one address). Every
attempt is recorded, under a lock, before its hash runs, so concurrent attempts cannot exceed a limit.
"""
import datetime
import hashlib
import hmac
import ipaddress
import math
import secrets
from typing import NamedTuple

from peewee import PostgresqlDatabase

from jsonio import ApiError
from models import Attempt, db, now

DEVICE_COOKIE_PATH = '/auth/login'
DEVICE_COOKIE_DAYS = 365
THROTTLE_LOCK = 25001  # PostgreSQL advisory lock: one check-and-record at a time, as SQLite's write lock gives


class Rule(NamedTuple):
    limit: int
    seconds: int
    message: str  # {wait} becomes "45 с" or "5 мин"


def network_of(address):
    """The address a client is counted under: IPv4 as is (also when IPv4-mapped), IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network((ip, 64), strict=False))
    return str(ip)


def client_network(request):
    """The client's counted address. REMOTE_ADDR, not Bottle's remote_addr: that trusts X-Forwarded-For from anyone
    (Waitress rewrites REMOTE_ADDR from a proxy given as --trusted-proxy)."""
    return network_of(request.environ.get('REMOTE_ADDR', ''))


def key(kind, value):
    """A row key that stores no email or address in the clear and fits any index."""
    return f'{kind}:{hashlib.sha256(str(value).encode()).hexdigest()}'


def wait_in_words(seconds):
    return f'{seconds} с' if seconds < 60 else f'{math.ceil(seconds / 60)} мин'


def too_many(rule, seconds):
    """A 429 whose message and Retry-After give the same wait."""
    return ApiError(429, rule.message.format(wait=wait_in_words(seconds)), Retry_After=str(seconds))


class Guess:
    """A password guess recorded before its hash: it stays a failure unless succeeded() is called."""

    def __init__(self, ids, reset_key):
        self.ids, self.reset_key = ids, reset_key

    def succeeded(self):
        """Forget this guess and the earlier failures of its account (or device)."""
        Attempt.delete().where(Attempt.id.in_(self.ids) | (Attempt.key == self.reset_key)).execute()


class Throttle:
    """Limits on logins, password checks and password hashing, shared by every process on the database."""

    def __init__(self, settings):
        self.secret = settings.secret.encode()
        per_account, window = settings.login_failures_per_email, settings.login_window
        login = 'Слишком много неудачных попыток входа; повторите через {wait}.'
        self.per_account = Rule(per_account, window, login)
        self.per_address = Rule(settings.login_failures_per_address, window, login)
        self.password_checks = Rule(per_account, window, 'Слишком много неверных паролей; повторите через {wait}.')
        self.hashes = Rule(settings.password_hashes_per_minute, 60,
                           'Слишком много запросов с паролем с вашего адреса; повторите через {wait}.')

    # --- What the routes call ---

    def login_attempt(self, email, request):
        """Record a login guess: against this browser's device cookie for the email, or else against the email
        and the client's address; raises 429 if that is over its limit or the address over its hashes."""
        device = self.device_nonce(email, request)
        guesses = ([(key('device', device), self.per_account)] if device else
                   [(key('email', email), self.per_account),
                    (key('address', client_network(request)), self.per_address)])
        ids = self.record(guesses + [self.hash_charge(request)])
        return Guess(ids[:-1], guesses[0][0])

    def password_check(self, user_id, request):
        """Record a check of a signed-in user's current password; raises 429 over the per-user limit."""
        guess = (key('password', user_id), self.password_checks)
        ids = self.record([guess, self.hash_charge(request)])
        return Guess(ids[:1], guess[0])

    def hashing(self, request):
        """Record a password hash for the client's address; raises 429 over the per-minute budget."""
        self.record([self.hash_charge(request)])

    def hash_charge(self, request):
        return key('hashes', client_network(request)), self.hashes

    # --- Records ---

    def record(self, charges):
        """Record one attempt under each (key, rule) and return their ids, or raise 429 recording nothing if a
        key has used up its limit, with the longest wait. Checking and recording under one lock: concurrent
        requests cannot all see the last free slot."""
        with db.atomic():
            if isinstance(db.obj, PostgresqlDatabase):
                db.execute_sql('SELECT pg_advisory_xact_lock(%s)', (THROTTLE_LOCK,))
            at = now()
            Attempt.delete().where(Attempt.expires_at <= at).execute()
            wait, rule = max(((self.seconds_until_free(row_key, rule, at), rule) for row_key, rule in charges),
                             key=lambda pair: pair[0])
            if wait:
                raise too_many(rule, wait)
            return [Attempt.insert(key=row_key, expires_at=at + datetime.timedelta(seconds=rule.seconds)).execute()
                    for row_key, rule in charges]

    @staticmethod
    def seconds_until_free(row_key, rule, at):
        """0 if the key has room for one more attempt, else the seconds until the oldest of its `limit` expires."""
        expiries = [row.expires_at for row in (Attempt
                                               .select(Attempt.expires_at)
                                               .where(Attempt.key == row_key, Attempt.expires_at > at)
                                               .order_by(Attempt.expires_at.desc())
                                               .limit(rule.limit))]
        if len(expiries) < rule.limit:
            return 0
        return max(1, math.ceil((expiries[-1] - at).total_seconds()))

    # --- Device cookies ---

    def cookie_name(self, email):
        """One cookie per account, so a shared browser keeps each of its owners' cookies."""
        return 'device_' + self.sign('device-cookie-name', email)[:16]

    def sign(self, *parts):
        # The prefix keeps these signatures apart from the tokens signed with the same secret
        return hmac.new(self.secret, '\n'.join(('device-cookie', *parts)).encode(), 'sha256').hexdigest()

    def device_nonce(self, email, request):
        """The nonce of the request's valid device cookie for this email, or None."""
        nonce, _, signature = (request.cookies.get(self.cookie_name(email)) or '').partition('.')
        valid = nonce and hmac.compare_digest(signature.encode(), self.sign(email, nonce).encode())
        return nonce if valid else None

    def remember_device(self, email, request, response):
        """Give the browser a fresh device cookie for the email, sent back only to the login route."""
        nonce = secrets.token_hex(16)
        response.set_cookie(self.cookie_name(email), f'{nonce}.{self.sign(email, nonce)}',
                            max_age=DEVICE_COOKIE_DAYS * 24 * 3600, path=DEVICE_COOKIE_PATH, httponly=True,
                            samesite='strict', secure=request.environ.get('wsgi.url_scheme') == 'https')
