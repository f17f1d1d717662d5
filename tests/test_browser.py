"""The web UI end to end: Playwright drives Debian's Chromium against the real server on a free port.

Each test gets a fresh server and database (conftest's `live_server`) and its own browser context, so
localStorage starts empty; one Chromium serves the whole session. Without Chromium or Playwright the
tests skip on a developer's machine and fail in CI (CI=true), so a missing browser never passes silently.
"""
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from conftest import sign_up

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the `browser` fixture
    expect = sync_playwright = None

CHROMIUM = os.environ.get('MOVIESAPI_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']
DESKTOP = {'width': 1280, 'height': 900}
PHONE = {'width': 375, 'height': 812}
PASSWORD = 'correct-horse-42'
PAGE_SIZE = 12
LOCAL_HOSTS = {'127.0.0.1', 'localhost'}


def missing(reason):
    """Skip on a developer's machine; fail in CI, where the browser tests must run."""
    if os.environ.get('CI') == 'true':
        pytest.fail(f'{reason}; CI must run the browser tests', pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope='session')
def browser():
    """One headless Debian Chromium for the whole session."""
    if sync_playwright is None:
        missing('Playwright is not installed (pip install -r requirements-dev.txt)')
    if not os.access(CHROMIUM, os.X_OK):
        missing(f'{CHROMIUM} not found (apt-get install chromium)')
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def only_local(route):
    """No internet here: YouTube thumbnails and anything else off this machine fail at once."""
    if urllib.parse.urlsplit(route.request.url).hostname in LOCAL_HOSTS:
        route.continue_()
    else:
        route.abort()


def open_tab(browser, server, **options):
    """A page in a fresh browser context on the server, and the list its uncaught JavaScript errors go to."""
    context = browser.new_context(base_url=server.url, viewport=DESKTOP, locale='ru-RU', **options)
    context.set_default_timeout(10_000)
    context.route('**/*', only_local)
    tab = context.new_page()
    errors = []
    tab.on('pageerror', lambda error: errors.append(str(error)))
    return tab, errors


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context on the live server; fails the test on any uncaught JavaScript error."""
    tab, errors = open_tab(browser, live_server)
    yield tab
    tab.context.close()
    assert not errors, f'JavaScript errors in the page: {errors}'


@pytest.fixture
def other_device(browser, live_server):
    """Opens a page in a browser context of its own (another device: its own storage and cookies), with
    context options such as user_agent; fails the test on any uncaught JavaScript error in those pages."""
    opened = []

    def open_device(**options):
        tab, errors = open_tab(browser, live_server, **options)
        opened.append((tab, errors))
        return tab
    yield open_device
    for tab, _ in opened:
        tab.context.close()
    errors = [error for _, tab_errors in opened for error in tab_errors]
    assert not errors, f'JavaScript errors in the other pages: {errors}'


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: the UI cannot tell the engines apart, and the API suites cover PostgreSQL."""
    return str(tmp_path / 'movies.db')


# --- Helpers -----------------------------------------------------------------------------------------

def new_email():
    return f'viewer-{uuid.uuid4().hex[:10]}@example.com'


def registered_user(server):
    return sign_up(server, new_email(), PASSWORD)['email']


def account_without_sessions(server):
    """A registered email that has never logged in (sign_up logs in, which starts a session)."""
    email = new_email()
    assert server.call('POST', '/auth/register', {'email': email, 'password': PASSWORD})[0] == 201
    return email


def submit_login_form(page, email, password=PASSWORD):
    page.get_by_label('Электронная почта').fill(email)
    page.get_by_label('Пароль').fill(password)
    page.get_by_role('button', name='Войти').click()


def log_in(page, email, password=PASSWORD):
    page.goto('/login')
    submit_login_form(page, email, password)


def logged_in_as_new_user(page, server):
    email = registered_user(server)
    log_in(page, email)
    expect(page.get_by_role('button', name='Выйти')).to_be_visible()
    return email


def stored_tokens(page):
    return page.evaluate("[localStorage.getItem('moviesapi.access'), localStorage.getItem('moviesapi.refresh')]")


def cards(page):
    return page.locator('main .card')


def card_titles(page):
    return [title.strip() for title in page.locator('main .card-title').all_inner_texts()]


def assert_no_raw_data(page):
    text = page.locator('body').inner_text()
    for junk in ('undefined', 'null', 'NaN', '[object', '{"'):
        assert junk not in text, f'{junk!r} reached the screen'


def held_back(page, url_pattern):
    """Hold requests matching the pattern until the returned release() is called."""
    held, released = [], []

    def hold(route):
        if released:
            route.fallback()
        else:
            held.append(route)

    def release():
        for _ in range(500):
            if held:
                break
            page.wait_for_timeout(20)
        assert held, f'no request matched {url_pattern}'
        released.append(True)
        for route in held:
            route.fallback()

    page.route(url_pattern, hold)
    return release


# --- Browsing ----------------------------------------------------------------------------------------

def test_home_shows_newest_movies_genres_and_directors(page, live_server):
    _, _, newest = live_server.call('GET', '/movies/?status=new&page=1')
    _, _, genres = live_server.call('GET', '/genres/')
    page.goto('/')
    expect(page.get_by_role('heading', level=1)).to_have_text('Кинотека')
    expect(cards(page)).to_have_count(PAGE_SIZE)
    assert card_titles(page) == [movie['title'] for movie in newest]
    expect(page.locator('.chips').first.get_by_role('link')).to_have_count(len(genres))
    assert_no_raw_data(page)

    poster = page.locator('.card .poster').first  # thumbnails are blocked: the box keeps its shape
    box = poster.bounding_box()
    assert box['height'] == pytest.approx(box['width'] * 9 / 16, abs=2)
    expect(poster.locator('.poster-initial')).to_be_visible()
    expect(page.locator('.card .poster img')).to_have_count(0)  # failed images are removed: no broken icons

    genre = genres[0]
    page.get_by_role('link', name=genre['name'], exact=True).click()
    expect(page).to_have_url(f'{live_server.url}/genre/{genre["id"]}')
    expect(page.get_by_role('heading', level=1)).to_have_text(genre['name'])
    _, _, in_genre = live_server.call('GET', f'/movies/?genre_id={genre["id"]}&page=1')
    expect(cards(page)).to_have_count(len(in_genre))
    assert card_titles(page) == [movie['title'] for movie in in_genre]


def test_catalogue_pages_through_every_movie_and_sorts_newest_first(page, live_server):
    _, _, every_movie = live_server.call('GET', '/movies/')
    page.goto('/')
    release = held_back(page, re.compile(r'/movies/\?'))
    page.get_by_role('navigation', name='Основная навигация').get_by_role('link', name='Каталог').click()
    expect(page).to_have_url(f'{live_server.url}/catalog')
    expect(page.get_by_role('status')).to_have_text('Загружаем фильмы…')
    release()
    expect(cards(page)).to_have_count(PAGE_SIZE)
    seen = card_titles(page)
    expect(page.get_by_role('link', name='← Назад')).to_have_count(0)

    page.get_by_role('link', name='Вперёд →').click()
    expect(page).to_have_url(f'{live_server.url}/catalog?page=2')
    expect(cards(page)).to_have_count(len(every_movie) - PAGE_SIZE)
    seen += card_titles(page)
    assert seen == [movie['title'] for movie in every_movie]

    page.go_back()
    expect(page).to_have_url(f'{live_server.url}/catalog')
    expect(cards(page).first).to_contain_text(every_movie[0]['title'])

    page.get_by_role('link', name='Сначала новые').click()
    expect(page).to_have_url(f'{live_server.url}/catalog?sort=new')
    _, _, newest = live_server.call('GET', '/movies/?status=new&page=1')
    expect(cards(page).first).to_contain_text(newest[0]['title'])
    assert card_titles(page) == [movie['title'] for movie in newest]

    page.goto('/catalog?page=99')
    expect(page.get_by_text('На этой странице фильмов нет.')).to_be_visible()
    assert_no_raw_data(page)


def test_movie_page_shows_the_facts_and_links_to_genre_and_director(page, live_server):
    _, _, movie = live_server.call('GET', '/movies/1')
    page.goto('/catalog')
    page.get_by_role('link', name=movie['title']).click()
    expect(page).to_have_url(f'{live_server.url}/movie/1')
    expect(page.get_by_role('heading', level=1)).to_have_text(movie['title'])
    expect(page.locator('.facts')).to_contain_text(str(movie['year']))
    expect(page.locator('.facts')).to_contain_text(f'{movie["rating"]:.1f}')
    expect(page.locator('.description')).to_have_text(movie['description'])
    trailer = page.get_by_role('link', name='Смотреть трейлер')
    expect(trailer).to_have_attribute('href', movie['trailer'])
    expect(trailer).to_have_attribute('target', '_blank')
    expect(page.get_by_role('link', name='Войдите, чтобы добавить в избранное')).to_be_visible()
    assert page.title() == f'{movie["title"]} — Кинотека'
    assert_no_raw_data(page)

    page.get_by_role('link', name=movie['director']['name']).click()
    expect(page.get_by_role('heading', level=1)).to_have_text(movie['director']['name'])
    expect(page.get_by_role('link', name=movie['title'])).to_be_visible()
    page.go_back()
    page.get_by_role('link', name=movie['genre']['name']).click()
    expect(page.get_by_role('heading', level=1)).to_have_text(movie['genre']['name'])
    expect(page.get_by_role('link', name=movie['title'])).to_be_visible()


NOT_FOUND = {
    '/fo': 'Страница не найдена',  # no route on the server: it answers 404 with the web UI
    '/catalog/no-such-page': 'Страница не найдена',
    '/movie/abc': 'Страница не найдена',
    '/movie/1/extra': 'Страница не найдена',
    '/movie/999999': 'Фильм не найден',
    '/genre/999999': 'Жанр не найден',
    '/director/999999': 'Режиссёр не найден',
}


def test_unknown_pages_show_a_friendly_not_found_view(page):
    for path, heading in NOT_FOUND.items():
        page.goto(path)
        expect(page.get_by_role('heading', level=1)).to_have_text(heading)
        expect(page.get_by_role('link', name='На главную')).to_be_visible()
        assert_no_raw_data(page)


def test_a_mistyped_address_is_a_404_with_the_not_found_view(page):
    response = page.goto('/fo')
    assert response.status == 404 and response.headers['content-type'].startswith('text/html')
    expect(page.get_by_role('heading', level=1)).to_have_text('Страница не найдена')


# --- Accounts ----------------------------------------------------------------------------------------

def test_register_logout_then_login_with_wrong_and_right_password(page, live_server):
    email = new_email()
    page.goto('/')
    page.get_by_role('link', name='Регистрация').click()
    page.get_by_label('Электронная почта').fill(email)
    page.get_by_label('Пароль').fill(PASSWORD)
    page.get_by_role('button', name='Создать аккаунт').click()
    expect(page.get_by_role('button', name='Выйти')).to_be_visible()
    expect(page).to_have_url(f'{live_server.url}/')
    assert all(stored_tokens(page))

    page.get_by_role('button', name='Выйти').click()
    expect(page.get_by_role('link', name='Войти')).to_be_visible()
    assert stored_tokens(page) == [None, None]

    page.get_by_role('link', name='Регистрация').click()
    page.get_by_label('Электронная почта').fill(email.upper())
    page.get_by_label('Пароль').fill(PASSWORD)
    page.get_by_role('button', name='Создать аккаунт').click()
    _, _, duplicate = live_server.call('POST', '/auth/register', {'email': email, 'password': PASSWORD})
    expect(page.get_by_role('alert')).to_have_text(duplicate['message'])

    log_in(page, email, 'not-the-password')
    _, _, refused = live_server.call('POST', '/auth/login', {'email': 'nobody@example.com', 'password': 'x' * 8})
    expect(page.get_by_role('alert')).to_have_text(refused['message'])
    expect(page).to_have_url(f'{live_server.url}/login')

    page.get_by_label('Пароль').fill(PASSWORD)
    page.get_by_label('Пароль').press('Enter')
    expect(page.get_by_role('button', name='Выйти')).to_be_visible()
    expect(page).to_have_url(f'{live_server.url}/')


def test_login_returns_the_user_to_the_page_they_came_from(page, live_server):
    email = registered_user(live_server)
    page.goto('/movie/3')
    page.get_by_role('link', name='Войдите, чтобы добавить в избранное').click()
    expect(page).to_have_url(re.compile(r'/login\?next=%2Fmovie%2F3$'))
    submit_login_form(page, email)
    expect(page).to_have_url(f'{live_server.url}/movie/3')
    expect(page.get_by_role('button', name='☆ В избранное')).to_be_visible()
    page.get_by_role('button', name='Выйти').click()

    page.goto('/catalog?page=2')
    page.get_by_role('link', name='Войти').click()
    submit_login_form(page, email)
    expect(page).to_have_url(f'{live_server.url}/catalog?page=2')


@pytest.mark.parametrize('next_page', ['/\\evil.example/', '//evil.example/', 'https://evil.example/',
                                       'javascript:alert(1)'])
def test_login_never_sends_the_user_to_another_site(page, live_server, next_page):
    email = registered_user(live_server)
    page.goto('/login?next=' + urllib.parse.quote(next_page, safe=''))
    submit_login_form(page, email)
    expect(page).to_have_url(f'{live_server.url}/')
    expect(page.get_by_role('button', name='Выйти')).to_be_visible()


def test_pages_for_members_send_guests_to_login(page, live_server):
    for path in ('/profile', '/saved'):
        page.goto(path)
        expect(page).to_have_url(f'{live_server.url}/login?next={path.replace("/", "%2F")}')
        expect(page.get_by_role('heading', level=1)).to_have_text('Вход')


def test_profile_changes_survive_a_reload(page, live_server):
    email = logged_in_as_new_user(page, live_server)
    _, _, genres = live_server.call('GET', '/genres/')
    page.get_by_role('link', name='Профиль').click()
    expect(page.get_by_label('Электронная почта')).to_have_value(email)
    expect(page.get_by_label('Любимый жанр').locator('option')).to_have_count(len(genres) + 1)
    page.get_by_label('Имя', exact=True).fill('Алиса')
    page.get_by_label('Фамилия').fill('Селезнёва')
    page.get_by_label('Любимый жанр').select_option(label=genres[2]['name'])
    page.get_by_role('button', name='Сохранить').click()
    expect(page.get_by_text('Сохранено.')).to_be_visible()

    page.reload()
    expect(page.get_by_label('Имя', exact=True)).to_have_value('Алиса')
    expect(page.get_by_label('Фамилия')).to_have_value('Селезнёва')
    expect(page.get_by_label('Любимый жанр')).to_have_value(str(genres[2]['id']))
    access, _ = stored_tokens(page)
    _, _, user = live_server.call('GET', '/user/', token=access)
    assert (user['name'], user['surname'], user['favorite_genre']) == ('Алиса', 'Селезнёва', genres[2]['id'])

    page.get_by_label('Любимый жанр').select_option('')
    page.get_by_role('button', name='Сохранить').click()
    expect(page.get_by_text('Сохранено.')).to_be_visible()
    page.reload()
    expect(page.get_by_label('Любимый жанр')).to_have_value('')
    assert_no_raw_data(page)


def test_password_change_then_login_with_the_new_password(page, live_server):
    email = logged_in_as_new_user(page, live_server)
    new_password = 'brand-new-secret-7'
    page.goto('/profile')
    current = page.get_by_label('Текущий пароль')
    fresh = page.get_by_label('Новый пароль', exact=True)
    again = page.get_by_label('Новый пароль ещё раз')
    form = page.locator('form', has=current)

    current.fill('wrong-password-1')
    fresh.fill(new_password)
    again.fill(new_password)
    page.get_by_role('button', name='Сменить пароль').click()
    access, _ = stored_tokens(page)
    status, _, body = live_server.call('PUT', '/user/password',
                            {'password_1': 'wrong-password-1', 'password_2': new_password}, token=access)
    assert status == 403
    expect(form.get_by_role('alert')).to_have_text(body['message'])

    current.fill(PASSWORD)
    again.fill(new_password + 'x')
    page.get_by_role('button', name='Сменить пароль').click()
    expect(form.get_by_role('alert')).to_have_text('Новые пароли не совпадают.')

    again.fill(new_password)
    before = sessions(page).first.get_attribute('data-session-id')
    page.get_by_role('button', name='Сменить пароль').click()
    expect(form.get_by_role('alert')).to_have_text('Пароль изменён.')
    # The change ended every session, sign-up's too; the list shows the one the page logged in again with
    expect(sessions(page)).to_have_count(1)
    expect(sessions(page).first).not_to_have_attribute('data-session-id', before)
    expect(sessions(page).first.locator('.session-current')).to_be_visible()
    page.reload()
    expect(page.get_by_label('Электронная почта')).to_have_value(email)  # still logged in, on fresh tokens

    page.get_by_role('button', name='Выйти').click()
    log_in(page, email, PASSWORD)
    expect(page.get_by_role('alert')).not_to_be_empty()
    log_in(page, email, new_password)
    expect(page.get_by_role('button', name='Выйти')).to_be_visible()


def test_export_delete_the_account_then_import_into_a_new_one(page, live_server, tmp_path):
    email = logged_in_as_new_user(page, live_server)
    access, _ = stored_tokens(page)
    for movie_id in (5, 2):
        live_server.call('POST', f'/favorites/movies/{movie_id}', token=access)
    page.goto('/profile')
    with page.expect_download() as download:
        page.get_by_role('button', name='Скачать мои данные').click()
    assert re.fullmatch(r'moviesapi-export-\d+\.json', download.value.suggested_filename)
    saved = tmp_path / 'export.json'
    download.value.save_as(saved)
    exported = json.loads(saved.read_text(encoding='utf-8'))
    assert exported['profile']['email'] == email and [m['id'] for m in exported['favorites']] == [5, 2]

    page.get_by_text('Удалить аккаунт…').click()
    deletion = page.locator('form', has=page.get_by_label('Пароль для подтверждения'))
    page.get_by_label('Пароль для подтверждения').fill('wrong-password-1')
    page.get_by_role('button', name='Удалить аккаунт навсегда').click()
    expect(deletion.get_by_role('alert')).to_have_text('Пароль введён неверно.')
    page.get_by_label('Пароль для подтверждения').fill(PASSWORD)
    page.get_by_role('button', name='Удалить аккаунт навсегда').click()
    expect(page).to_have_url(live_server.url + '/')
    expect(page.get_by_role('link', name='Войти')).to_be_visible()
    assert stored_tokens(page) == [None, None]
    assert live_server.call('GET', '/user/', token=access)[0] == 401
    assert live_server.call('POST', '/auth/login', {'email': email, 'password': PASSWORD})[0] == 401

    logged_in_as_new_user(page, live_server)
    access, _ = stored_tokens(page)
    page.goto('/profile')
    importing = page.locator('form', has=page.get_by_label('Избранное из файла'))
    not_an_export = tmp_path / 'other.json'
    not_an_export.write_text('{"movies": [5, 2]}', encoding='utf-8')
    page.get_by_label('Избранное из файла').set_input_files(not_an_export)
    page.get_by_role('button', name='Импортировать избранное').click()
    _, _, refused = live_server.call('POST', '/favorites/movies/import', {}, token=access)
    expect(importing.get_by_role('status')).to_have_text(refused['message'])

    page.get_by_label('Избранное из файла').set_input_files(saved)
    with page.expect_request('**/favorites/movies/import') as sent:
        page.get_by_role('button', name='Импортировать избранное').click()
    assert sent.value.post_data_json == {'favorites': [5, 2]}  # the ids alone: not the profile, not the sessions
    expect(page.get_by_text('Добавлено: 2, уже было: 0, нет в каталоге: 0.')).to_be_visible()
    page.get_by_role('link', name='Избранное').click()
    expect(cards(page)).to_have_count(2)
    assert card_titles(page) == [movie['title'] for movie in exported['favorites']]


# --- Favourites and tokens ---------------------------------------------------------------------------

def test_add_and_remove_favourites(page, live_server):
    logged_in_as_new_user(page, live_server)
    _, _, movies = live_server.call('GET', '/movies/?page=1')
    for movie in movies[:2]:
        page.goto(f'/movie/{movie["id"]}')
        page.get_by_role('button', name='☆ В избранное').click()
        expect(page.get_by_role('button', name='★ Убрать из избранного')).to_be_visible()
        expect(page.get_by_text('Добавлено в избранное.')).to_be_visible()

    page.get_by_role('link', name='Избранное').click()
    expect(cards(page)).to_have_count(2)
    assert card_titles(page) == [movie['title'] for movie in movies[:2]]

    page.get_by_role('button', name=f'Убрать «{movies[0]["title"]}» из избранного').click()
    expect(cards(page)).to_have_count(1)
    page.reload()
    expect(cards(page)).to_have_count(1)
    page.get_by_role('button', name=f'Убрать «{movies[1]["title"]}» из избранного').click()
    expect(page.get_by_text('В избранном пока пусто.', exact=False)).to_be_visible()

    page.goto(f'/movie/{movies[1]["id"]}')
    expect(page.get_by_role('button', name='☆ В избранное')).to_be_visible()
    page.get_by_role('button', name='☆ В избранное').click()
    page.get_by_role('button', name='★ Убрать из избранного').click()
    expect(page.get_by_text('Убрано из избранного.')).to_be_visible()
    access, _ = stored_tokens(page)
    assert live_server.call('GET', '/favorites/movies/', token=access)[2] == []


def test_corrupted_access_token_is_swapped_once_and_the_request_retried(page, live_server):
    email = logged_in_as_new_user(page, live_server)
    access, refresh = stored_tokens(page)
    page.evaluate("localStorage.setItem('moviesapi.access', 'corrupted.' + localStorage.getItem('moviesapi.access'))")
    swaps = []

    def note_swap(request):
        if request.method == 'PUT' and request.url.endswith('/auth/login'):
            swaps.append(request)

    page.on('request', note_swap)

    page.goto('/profile')
    expect(page.get_by_label('Электронная почта')).to_have_value(email)
    new_access, new_refresh = stored_tokens(page)
    assert len(swaps) == 1
    assert new_access != access and new_refresh != refresh
    assert live_server.call('PUT', '/auth/login', {'refresh_token': refresh})[0] == 401  # spent


def test_dead_session_sends_the_user_to_login(page, live_server):
    logged_in_as_new_user(page, live_server)
    page.evaluate("localStorage.setItem('moviesapi.access', 'broken'); localStorage.setItem('moviesapi.refresh', 'broken')")
    page.goto('/saved')
    expect(page).to_have_url(f'{live_server.url}/login?next=%2Fsaved')
    expect(page.get_by_role('link', name='Войти')).to_be_visible()
    assert stored_tokens(page) == [None, None]


# --- Logging out and sessions ---------------------------------------------------------------------------

FIREFOX_ON_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0'
CHROME_ON_ANDROID = ('Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) '
                     'Chrome/126.0.0.0 Mobile Safari/537.36')
SAFARI_ON_IPHONE = ('Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) '
                    'Version/17.5 Mobile/15E148 Safari/604.1')
MONTHS = ('января', 'февраля', 'марта', 'апреля', 'мая', 'июня', 'июля', 'августа', 'сентября', 'октября',
          'ноября', 'декабря')


def sessions(page):
    return page.locator('main .session')


def session_names(page):
    return [name.strip() for name in page.locator('main .session-name').all_text_contents()]


def local_time_pattern(utc_text, offset_hours):
    """What the profile prints for an API time in a time zone offset_hours from UTC: "2 декабря 2026 г. в 18:04"
    (ICU versions differ on the joint between date and time)."""
    moment = datetime.strptime(utc_text, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=timezone.utc)
    local = moment.astimezone(timezone(timedelta(hours=offset_hours)))
    return re.compile(rf'^{local.day} {MONTHS[local.month - 1]} {local.year} г\.(,| в) {local:%H:%M}$')


def test_logout_ends_the_session_on_the_server_before_forgetting_the_tokens(page, live_server):
    logged_in_as_new_user(page, live_server)
    access, refresh = stored_tokens(page)
    release = held_back(page, '**/auth/logout')
    with page.expect_request('**/auth/logout') as sent:
        page.get_by_role('button', name='Выйти').click()
    assert sent.value.method == 'POST' and sent.value.post_data_json == {'refresh_token': refresh}
    expect(page.get_by_role('button', name='Выйти')).to_be_disabled()
    assert stored_tokens(page) == [access, refresh]  # kept until the server has been told

    release()
    expect(page.get_by_role('link', name='Войти')).to_be_visible()
    assert stored_tokens(page) == [None, None]
    status, _, body = live_server.call('PUT', '/auth/login', {'refresh_token': refresh})
    assert (status, body['message']) == (401, 'Сессия завершена; войдите заново.')
    assert live_server.call('GET', '/user/', token=access)[0] == 401


def test_logout_forgets_the_tokens_even_when_the_server_cannot_be_told(page, live_server):
    email = logged_in_as_new_user(page, live_server)
    access, _ = stored_tokens(page)
    page.route('**/auth/logout', lambda route: route.abort())  # no connection
    page.get_by_role('button', name='Выйти').click()
    expect(page.get_by_role('link', name='Войти')).to_be_visible()
    assert stored_tokens(page) == [None, None]
    assert live_server.call('GET', '/user/', token=access)[0] == 200  # the server never heard: ended from the list

    page.unroute('**/auth/logout')
    log_in(page, email)
    expect(page.get_by_role('button', name='Выйти')).to_be_visible()
    page.evaluate("localStorage.setItem('moviesapi.refresh', 'not-a-token')")
    with page.expect_response('**/auth/logout') as refused:
        page.get_by_role('button', name='Выйти').click()
    assert refused.value.status == 401
    expect(page.get_by_role('link', name='Войти')).to_be_visible()
    assert stored_tokens(page) == [None, None]

    log_in(page, email)
    expect(page.get_by_role('button', name='Выйти')).to_be_visible()
    held_back(page, '**/auth/logout')  # never answered: the wait is bounded
    page.get_by_role('button', name='Выйти').click()
    expect(page.get_by_role('link', name='Войти')).to_be_visible(timeout=8_000)
    assert stored_tokens(page) == [None, None]


def test_profile_lists_the_sessions_and_ends_another_device_s(page, live_server, other_device):
    email = account_without_sessions(live_server)
    log_in(page, email)
    expect(page.get_by_role('button', name='Выйти')).to_be_visible()
    laptop = other_device(user_agent=FIREFOX_ON_WINDOWS, timezone_id='Asia/Vladivostok')  # UTC+10, no DST
    log_in(laptop, email)
    expect(laptop.get_by_role('button', name='Выйти')).to_be_visible()
    laptop_access, laptop_refresh = stored_tokens(laptop)

    laptop.goto('/profile')
    expect(sessions(laptop)).to_have_count(2)
    _, _, listed = live_server.call('GET', '/auth/sessions', token=laptop_access)
    assert [item['id'] for item in listed] == [  # this device first, then the others newest first
        sessions(laptop).nth(n).get_attribute('data-session-id') for n in (0, 1)]
    mine = sessions(laptop).first
    expect(mine.locator('.session-name')).to_have_text('Firefox, Windows')
    expect(mine.locator('.session-current')).to_have_text('это устройство')
    expect(mine.get_by_text('127.0.0.1', exact=True)).to_be_visible()
    started = mine.locator('time')
    expect(started).to_have_attribute('datetime', listed[0]['created_at'])
    expect(started).to_have_text(local_time_pattern(listed[0]['created_at'], 10))
    expect(mine.get_by_text('ещё нет')).to_be_visible()  # not refreshed yet
    expect(mine.get_by_role('button')).to_have_count(0)  # this device leaves with "Выйти"

    page.goto('/profile')
    expect(sessions(page)).to_have_count(2)
    assert session_names(page) == ['Chrome, Linux', 'Firefox, Windows']  # headless Chromium is Chrome
    expect(sessions(page).locator('.session-current')).to_have_count(1)
    expect(sessions(page).first.locator('.session-current')).to_have_text('это устройство')
    assert_no_raw_data(page)
    page.get_by_role('button', name='Завершить сеанс: Firefox, Windows').click()
    expect(page.get_by_role('status').filter(has_text='Сеанс завершён.')).to_be_visible()
    expect(sessions(page)).to_have_count(1)
    expect(page.get_by_text('Других сеансов нет.')).to_be_visible()
    assert live_server.call('GET', '/user/', token=laptop_access)[0] == 401
    assert live_server.call('PUT', '/auth/login', {'refresh_token': laptop_refresh})[0] == 401

    laptop.goto('/saved')  # the laptop finds itself logged out
    expect(laptop).to_have_url(f'{live_server.url}/login?next=%2Fsaved')
    assert stored_tokens(laptop) == [None, None]
    access, _ = stored_tokens(page)
    assert live_server.call('GET', '/user/', token=access)[0] == 200


def test_end_every_other_session_and_one_that_had_ended_already(page, live_server, other_device):
    email = logged_in_as_new_user(page, live_server)  # sign-up logged in over the API too: Python-urllib
    android, iphone = other_device(user_agent=CHROME_ON_ANDROID), other_device(user_agent=SAFARI_ON_IPHONE)
    for device in (android, iphone):
        log_in(device, email)
        expect(device.get_by_role('button', name='Выйти')).to_be_visible()
    others = [stored_tokens(device)[0] for device in (android, iphone)]
    page.goto('/profile')
    expect(sessions(page)).to_have_count(4)
    names = session_names(page)
    assert names[:3] == ['Chrome, Linux', 'Safari, iOS', 'Chrome, Android']
    assert re.fullmatch(r'Python-urllib/3\.\d+', names[3])

    android.get_by_role('button', name='Выйти').click()  # gone before the list here is refreshed
    expect(android.get_by_role('link', name='Войти')).to_be_visible()
    page.get_by_role('button', name='Завершить сеанс: Chrome, Android').click()
    _, _, gone = live_server.call('DELETE', '/auth/sessions/no-such-session', token=stored_tokens(page)[0])
    expect(page.get_by_role('status').filter(has_text=gone['message'])).to_be_visible()
    expect(sessions(page)).to_have_count(3)  # the list caught up

    page.get_by_role('button', name='Завершить все остальные').click()
    expect(page.get_by_role('status').filter(has_text='Остальные сеансы завершены.')).to_be_visible()
    expect(sessions(page)).to_have_count(1)
    expect(page.get_by_role('button', name='Завершить все остальные')).to_have_count(0)
    assert [live_server.call('GET', '/user/', token=token)[0] for token in others] == [401, 401]
    access, _ = stored_tokens(page)
    _, _, left = live_server.call('GET', '/auth/sessions', token=access)
    assert [item['current'] for item in left] == [True]
    page.reload()
    expect(sessions(page)).to_have_count(1)


# --- Content-Security-Policy ---------------------------------------------------------------------------

def test_no_page_breaks_the_content_security_policy(page, live_server):
    messages = []  # Chromium reports every load the policy refuses on the console
    page.on('console', lambda message: messages.append(message.text))
    logged_in_as_new_user(page, live_server)
    page.goto('/movie/2')
    page.get_by_role('button', name='☆ В избранное').click()
    expect(page.get_by_role('button', name='★ Убрать из избранного')).to_be_visible()
    for path in ('/', '/catalog', '/genre/1', '/director/1', '/saved', '/profile', '/movie/999999', '/docs'):
        assert "script-src 'self'" in page.goto(path).headers['content-security-policy']
        expect(page.locator('h1')).to_be_visible()
        expect(page.locator('.state-loading')).to_have_count(0)
    assert page.evaluate('getComputedStyle(document.querySelector(".op")).borderStyle') == 'solid'  # docs.css
    for path in ('/login', '/register'):
        page.goto(path)
        expect(page.locator('main form')).to_be_visible()
    assert not [text for text in messages if 'Content Security Policy' in text]

    page.evaluate("document.body.append(Object.assign(document.createElement('script'), "
                  "{textContent: 'window.injected = 1'}))")
    assert page.evaluate('window.injected') is None  # what an injected inline script would meet



def test_the_device_cookie_lets_its_owner_in_while_strangers_get_a_wait_to_read(page, live_server, browser):
    email = registered_user(live_server)
    log_in(page, email)
    page.get_by_role('button', name='Выйти').click()
    for _ in range(5):  # a stranger, with no device cookie, throttles the email
        assert live_server.call('POST', '/auth/login', {'email': email, 'password': 'not-the-password'})[0] == 401

    log_in(page, email)  # this browser holds the device cookie from its login above
    expect(page.get_by_role('button', name='Выйти')).to_be_visible()

    other = browser.new_context(base_url=live_server.url, locale='ru-RU')
    try:
        stranger = other.new_page()
        log_in(stranger, email)
        expect(stranger.get_by_role('alert')).to_have_text(re.compile(r'повторите через 5 мин\.$'))
        # A proxy's 429 without our body: the form still says how long to wait, from Retry-After
        stranger.route('**/auth/login', lambda route: route.fulfill(status=429, headers={'Retry-After': '90'}))
        submit_login_form(stranger, email)
        expect(stranger.get_by_role('alert')).to_have_text('Слишком много запросов; повторите через 2 мин.')
    finally:
        other.close()

# --- Layout and accessibility ------------------------------------------------------------------------

def test_phone_width_layout_has_no_horizontal_scroll(page, live_server):
    page.set_viewport_size(PHONE)
    logged_in_as_new_user(page, live_server)
    for path in ('/', '/catalog', '/movie/2', '/genre/1', '/saved', '/profile', '/movie/999999'):
        page.goto(path)
        expect(page.get_by_role('heading', level=1)).to_be_visible()
        expect(page.locator('.state-loading')).to_have_count(0)
        width = page.evaluate('document.documentElement.scrollWidth')
        assert width <= PHONE['width'], f'{path} is {width}px wide at phone width'
    page.goto('/catalog')
    first, second = cards(page).nth(0).bounding_box(), cards(page).nth(1).bounding_box()
    assert first['y'] == second['y'] and first['x'] < second['x']  # two cards a row


def test_every_form_control_is_labelled_and_reachable_by_keyboard(page, live_server):
    logged_in_as_new_user(page, live_server)
    unlabelled = ('Array.from(document.querySelectorAll("main input:not([hidden]), main select"))'
                  '.filter((control) => !control.labels.length).length')
    for path in ('/profile', '/login', '/register'):
        page.goto(path)
        expect(page.locator('main form').first).to_be_visible()
        assert page.evaluate(unlabelled) == 0, path

    page.goto('/')
    expect(cards(page)).to_have_count(PAGE_SIZE)
    page.keyboard.press('Tab')
    expect(page.get_by_role('link', name='Перейти к содержимому')).to_be_focused()
    for _ in range(30):  # tab on until the first movie card, then open it with Enter
        page.keyboard.press('Tab')
        if page.evaluate('document.activeElement.classList.contains("card-link")'):
            break
    page.keyboard.press('Enter')
    expect(page).to_have_url(re.compile(r'/movie/\d+$'))
    expect(page.get_by_role('heading', level=1)).to_be_focused()
