"""Email addresses as the API stores and compares them, and the checks a new one must pass."""
import re
import unicodedata

from jsonio import abort

EMAIL = re.compile(r'[^@\s]+@[^@\s]+')
LOOKALIKE_SCRIPTS = {'LATIN', 'CYRILLIC', 'GREEK'}  # alphabets that share letter shapes: а/a, о/o, ο/o


def normalized_email(value):
    """An email as stored and compared: NFKC (fullwidth ａ becomes a), trimmed, lower-cased."""
    # Older rows were trimmed and lower-cased, and NFKC leaves ASCII as it is, so ASCII rows need no migration;
    # only a non-ASCII row (a fullwidth address, say) can differ, and must be rewritten for its owner to log in.
    return unicodedata.normalize('NFKC', value).strip().lower()


def new_email(value):
    """A new account's email, normalised; 400 unless it looks like an address, with no control, format or bidi
    characters, and no local part or domain label mixing Latin, Cyrillic or Greek letters."""
    email = normalized_email(value)
    if not email.isprintable():
        abort(400, 'Поле "email" содержит управляющие или невидимые символы.')
    if len(email) > 254 or not EMAIL.fullmatch(email):
        abort(400, 'Поле "email" должно быть адресом электронной почты.')
    local, domain = email.rsplit('@', 1)
    if any(mixes_lookalike_scripts(part) for part in (local, *domain.split('.'))):
        abort(400, 'В адресе email смешаны буквы разных алфавитов (латиница, кириллица, греческий).')
    return email


def mixes_lookalike_scripts(part):
    """True if the part has letters from two of the lookalike alphabets, like 'аlice' with a Cyrillic а."""
    scripts = {unicodedata.name(char, '').split(' ', 1)[0] for char in part if char.isalpha()}
    return len(scripts & LOOKALIKE_SCRIPTS) > 1
