"""Refresh the README's screenshots: python tests/screenshots.py (needs Playwright and /usr/bin/chromium).

Starts the real server on a free port with a throwaway database, opens the home page and a movie page
at desktop width in Chromium, and writes docs/screenshots/home.png and docs/screenshots/movie.png.
YouTube thumbnails are blocked, as in the browser tests, so the pictures do not depend on the network.
"""
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from playwright.sync_api import sync_playwright

from test_browser import CHROMIUM, CHROMIUM_ARGS, DESKTOP, only_local

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / 'docs' / 'screenshots'
SHOTS = {'home.png': ('/', True), 'movie.png': ('/movie/2', False)}  # file: (page, whole page?)


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def wait_for(url, server, seconds=15):
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url + '/health', timeout=1).close()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit('the server did not start')
            time.sleep(0.05)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f'http://127.0.0.1:{port}'
    with tempfile.TemporaryDirectory() as scratch:
        server = subprocess.Popen([sys.executable, 'moviesapi.py', '--port', str(port), '--db', f'{scratch}/movies.db'],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(url, server)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(base_url=url, viewport=DESKTOP, locale='ru-RU')
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
            server.terminate()
            server.wait(10)


if __name__ == '__main__':
    main()
