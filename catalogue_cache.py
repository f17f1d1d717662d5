"""Catalogue answers encoded once per catalogue revision. A route declared cache=True is called with its query
parameters, validated, and returns a dict or a Listing; the CachedAnswers plugin encodes it, keeps it in the
ResponseCache and sends it with an ETag (304 when the client has it). stack.py serves the same entries ahead of
Bottle."""
import functools
import itertools
import math
import re
from typing import Callable, NamedTuple, Optional
from urllib.parse import unquote_plus, urlencode

from bottle import HTTPResponse, request

from jsonio import MESSAGES, ApiError, abort, dumps, storable
from models import MAX_ID, count_rows
from response_cache import Busy

PAGE_SIZE = 12
BATCH_SIZE = 500  # rows per query when a whole list is sent
CATALOGUE_PATH = re.compile(r'/(movies|genres|directors)(?:/(-?\d+))?')  # what the routes' <id:int> matches


class Listing(NamedTuple):
    """A list a route returns: its query, the page (None for every row) and how to fetch a batch of its rows."""
    query: object
    page: Optional[int] = None
    fetch: Callable = list


class CachedAnswers:
    """Bottle plugin for routes declared cache=True (see the module's description)."""
    name, api = 'cache', 2

    def setup(self, app):
        self.app = app

    def apply(self, callback, route):
        if not route.config.get('cache'):
            return callback

        @functools.wraps(callback)
        def cached_answer(*args, **kwargs):
            key = cache_key(request.environ)  # checked before the cache is asked: a 400 is never cached
            body, headers, _ = self.get(key, lambda: encode(callback(*args, **kwargs, **dict(key[1])), key))
            if etag_matches(request.environ.get('HTTP_IF_NONE_MATCH'), headers['ETag']):
                if not isinstance(body, bytes):
                    body.close()
                return HTTPResponse(status=304, headers={name: headers[name] for name in ('ETag', 'Cache-Control')})
            return HTTPResponse(body, headers=headers)
        return cached_answer

    def get(self, key, render):
        """The cache's answer for key; 503 with Retry-After when no worker can be spared to render it."""
        try:
            return self.app.config['moviesapi.cache'].get(key, render)
        except Busy:
            abort(503, MESSAGES[503], Retry_After='1')

    def json_array(self, path, ids, render):
        """A JSON array of the cached answers at path/<id> for these ids; render(id) → dict builds a missing one."""
        return b'[' + b','.join(self.get((f'{path}/{id}', ()), lambda: (dumps(render(id)), {}))[0]
                                for id in ids) + b']'

    def peek(self, environ):
        """A cached answer for this GET as (body, WSGI headers), or None (a bad parameter included)."""
        try:
            key = cache_key(environ)
        except ApiError:
            return None
        try:
            found = self.app.config['moviesapi.cache'].peek(key) if key else None
        except Busy:  # every stream taken: Bottle answers 503
            return None
        return None if found is None else (found[0], found[2])


def etag_matches(if_none_match, etag):
    return if_none_match and {etag, '*'} & {tag.strip().removeprefix('W/') for tag in if_none_match.split(',')}


# --- Keys: the path and the parameters its route uses, validated and in one order -------------------------

def cache_key(environ):
    """A catalogue GET's key, so that other parameters make no entries of their own; None for other paths,
    400 for a bad parameter."""
    found = CATALOGUE_PATH.fullmatch(environ['PATH_INFO'])
    if found is None:
        return None
    plural, id = found.groups()
    if id is not None:
        return f'/{plural}/{int(id)}', ()
    query = query_params(environ)
    if not query:
        return f'/{plural}', ()
    params = [('page', int_param(query, 'page', maximum=10**9))]
    if plural == 'movies':
        params[:0] = [('status', 'new' if query.get('status') == 'new' else None),  # other values: id order
                      ('genre_id', int_param(query, 'genre_id')), ('director_id', int_param(query, 'director_id')),
                      ('year', int_param(query, 'year', maximum=9999)), ('q', search_text(query))]
    return f'/{plural}', tuple([(name, value) for name, value in params if value is not None])


def query_params(environ):
    """The query string as Bottle reads it: the last value of each parameter, percent-decoded as latin-1."""
    params = {}
    for pair in environ.get('QUERY_STRING', '').split('&'):
        if pair:
            name, _, value = pair.partition('=')
            params[unquote_plus(name, 'latin-1')] = unquote_plus(value, 'latin-1')
    return params


def int_param(query, name, maximum=MAX_ID):
    """A positive integer query parameter, or None; 400 for anything else, including an empty value."""
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= maximum:
        abort(400, f'Параметр "{name}" должен быть целым числом от 1 до {maximum}.')
    return int(raw)


def search_text(query):
    """The title search, or None when empty or not UTF-8; 400 over 200 characters or with NUL."""
    try:
        text = query.get('q', '').encode('latin-1').decode() or None
    except UnicodeError:  # not UTF-8: Bottle's getunicode() gives None too
        text = None
    if text is not None and (len(text) > 200 or not storable(text)):
        abort(400, 'Параметр "q" — не длиннее 200 символов и без символа NUL.')
    return text


# --- Encoding: a dict, one page of a list, or a whole list in chunks --------------------------------------

def encode(result, key):
    """(body or its chunks, headers) for a route's dict or Listing."""
    if not isinstance(result, Listing):
        return dumps(result), {}
    if result.page is None:
        return list_chunks(result.query, result.fetch), {}
    total = count_rows(result.query)
    rows = result.fetch(result.query.paginate(result.page, PAGE_SIZE))
    return dumps([row.to_json() for row in rows]), {
        'X-Total-Count': str(total), 'Link': page_links(key, result.page, max(1, math.ceil(total / PAGE_SIZE)))}


def list_chunks(query, fetch):
    """A JSON array of every row, one chunk per batch, so that a huge list never sits in memory whole."""
    yield b'['
    for number in itertools.count(1):
        rows = fetch(query.paginate(number, BATCH_SIZE))
        if rows:
            yield (b',' if number > 1 else b'') + dumps([row.to_json() for row in rows])[1:-1]
        if len(rows) < BATCH_SIZE:
            break
    yield b']'


def page_links(key, page, last):
    """An RFC 8288 Link header to the first, previous, next and last pages, keeping the key's other parameters."""
    path, params = key
    params = {name: value for name, value in params if name != 'page'}
    links = {'first': 1, 'prev': page - 1 if 1 < page <= last + 1 else None,
             'next': page + 1 if page < last else None, 'last': last}
    return ', '.join(
        f'<{path}/?{urlencode({**params, "page": number})}>; rel="{rel}"'
        for rel, number in links.items() if number)
