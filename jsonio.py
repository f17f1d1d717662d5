"""JSON in and out: the encoding, the plugins that send a route's data, and the errors. The API's own errors
carry their message; any other (Bottle's router, static files, crashes, Waitress) gets the stock message of its
status. Every error is JSON {"message", "status"}."""
import functools
import json

from bottle import HTTPError, response

MESSAGES = {400: 'Некорректный запрос.', 403: 'Доступ запрещён.', 404: 'Такого адреса нет.',
            405: 'Этот метод здесь не поддерживается.', 413: 'Тело запроса слишком большое.',
            431: 'Заголовки запроса слишком большие.', 500: 'Внутренняя ошибка сервера.',
            501: 'Такой Transfer-Encoding не поддерживается.', 503: 'Сервер занят, повторите запрос через секунду.'}


PRIVATE = ('Cache-Control', 'no-store')  # tokens and a user's own data: no cache or browser may keep them


class ApiError(HTTPError):
    """An error this API raises on purpose: its message, in Russian, is meant for the client."""


def abort(status, message, **headers):
    """Stop the request with this status and message (headers as keywords, _ for -: Retry_After='1')."""
    raise ApiError(status, message, **headers)


def dumps(data):
    """JSON as this API sends it: UTF-8 bytes, Cyrillic as is, no spaces."""
    return json.dumps(data, ensure_ascii=False, separators=(',', ':')).encode()


def encode(data):
    """A route's result as a JSON body: bytes are encoded already, a dict or list is encoded here."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (dict, list)):
        return dumps(data)
    raise TypeError(f'a route returned {type(data).__name__}, not JSON data')


def error_body(status, message=None):
    """The JSON body of an error: the given message, or the stock one for the status."""
    return dumps({'message': message or MESSAGES.get(status, MESSAGES[500]), 'status': status})


def message_of(error):
    """An HTTPError's message for the client: its own if the API raised it, else the stock one."""
    return error.body if isinstance(error, ApiError) else MESSAGES.get(error.status_code, error.status_line)


def storable(value):
    """False for NUL and lone surrogates, which valid JSON can carry but no database column can."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return '\x00' not in value


# --- Plugins ---------------------------------------------------------------------------------------

def json_output(callback):
    """Plugin: a route's dict, list or bytes become a JSON response (Bottle's own plugin refuses lists)."""
    @functools.wraps(callback)
    def encoded(*args, **kwargs):
        result = callback(*args, **kwargs)
        if isinstance(result, (dict, list, bytes)):
            response.content_type = 'application/json'
            return encode(result)
        return result
    return encoded


class PrivateAnswers:
    """Plugin: answers of routes declared auth=True or private=True carry Cache-Control: no-store."""
    name, api = 'private', 2

    def apply(self, callback, route):
        if not (route.config.get('auth') or route.config.get('private')):
            return callback

        @functools.wraps(callback)
        def not_stored(*args, **kwargs):
            response.set_header(*PRIVATE)
            return callback(*args, **kwargs)
        return not_stored
