"""Refresh the README's screenshots: python tests/screenshots.py (needs Playwright and /usr/bin/chromium).

Starts the real server on a free port with a throwaway database, opens the home page and a movie page
at desktop width in Chromium, and writes docs/screenshots/home.png and docs/screenshots/movie.png.
YouTube thumbnails are blocked, as in the browser tests, so the pictures do not depend on the network.
"""
import pathlib
import sys
import tempfile

from playwright.sync_api import sync_playwright

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conftest import LiveServer  # noqa: E402  (after the project's root is importable)
from test_browser import CHROMIUM, CHROMIUM_ARGS, DESKTOP, only_local  # noqa: E402

OUT = ROOT / 'docs' / 'screenshots'
SHOTS = {'home.png': ('/', True), 'movie.png': ('/movie/2', False)}  # file: (page, whole page?)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        server = LiveServer(f'{scratch}/movies.db', (), None, f'{scratch}/server.log').start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(base_url=server.url, viewport=DESKTOP, locale='ru-RU')
                context.route('**/*', only_local)
                page = context.new_page()
                for name, (path, full_page) in SHOTS.items():
                    page.goto(path)
                    page.wait_for_selector('main h1')
                    page.wait_for_function('!document.querySelector(".state-loading")')
                    page.screenshot(path=OUT / name, full_page=full_page)
                    print(OUT / name)
                browser.close()
        finally:
            server.stop()


if __name__ == '__main__':
    main()
