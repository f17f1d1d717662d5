"""The Postman collection in docs/, run by newman against the real server, on SQLite and on PostgreSQL: every
request passes its checks, and together they call every route of openapi.json.

newman comes from package.json (`npm ci`). Without it (or without node) the test skips on a developer's machine
and fails in CI (CI=true), so a missing newman never passes silently.
"""
import json
import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.live

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTION = os.path.join(ROOT, 'docs', 'moviesapi.postman_collection.json')
OPENAPI = os.path.join(ROOT, 'openapi.json')
NEWMAN = os.path.join(ROOT, 'node_modules', '.bin', 'newman')
HTTP_METHODS = {'get', 'post', 'put', 'patch', 'delete'}
CHECKS_PER_REQUEST = 3  # at least: no server error (collection-wide), the status, and one of its own


def read_json(path):
    with open(path, encoding='utf-8') as file:
        return json.load(file)


def requests_in(items):
    """The number of requests in a collection's items, folders included."""
    return sum(requests_in(item['item']) if 'item' in item else 1 for item in items)


def routes_not_called(executions):
    """The routes of openapi.json ('GET /movies/{id}') that none of newman's executed requests called."""
    called = [(execution['request']['method'], execution['request']['url']['path']) for execution in executions]
    return [f'{method.upper()} {template}'
            for template, operations in read_json(OPENAPI)['paths'].items()
            for method in operations.keys() & HTTP_METHODS
            if not any(verb == method.upper() and fits(template, path) for verb, path in called)]


def fits(template, path):
    """True if a path's segments (['movies', '7']) fit a route template ('/movies/{id}')."""
    wanted, given = template.strip('/').split('/'), '/'.join(path).strip('/').split('/')
    return len(wanted) == len(given) and all(w.startswith('{') or w == g for w, g in zip(wanted, given))


def newman():
    """The path to newman; skips locally and fails in CI when it or node is missing."""
    if os.path.exists(NEWMAN) and shutil.which('node'):
        return NEWMAN
    reason = 'newman is not installed: run `npm ci`'
    if os.environ.get('CI') == 'true':
        pytest.fail(f'{reason}; CI must run the Postman collection', pytrace=False)
    pytest.skip(reason)


def test_collection_passes(server_factory, tmp_path):
    """Every request of the collection runs, in order, and every one of its checks passes."""
    command = newman()
    server = server_factory()
    report_path = tmp_path / 'newman.json'
    run = subprocess.run(
        [command, 'run', COLLECTION, '--env-var', f'baseUrl={server.url}', '--reporters', 'cli,json',
         '--reporter-json-export', str(report_path), '--color', 'off', '--timeout-request', '10000'],
        capture_output=True, text=True, timeout=180)
    output = f'{run.stdout}\n{run.stderr}\nserver log:\n{server.log()}'
    assert run.returncode == 0, output
    report = json.loads(report_path.read_text())['run']
    assert report['failures'] == [], output
    expected = requests_in(read_json(COLLECTION)['item'])
    assert report['stats']['requests'] == {'total': expected, 'pending': 0, 'failed': 0}, output
    too_few = [execution['item']['name'] for execution in report['executions']
               if len(execution.get('assertions', [])) < CHECKS_PER_REQUEST]
    assert too_few == [], f'requests with fewer than {CHECKS_PER_REQUEST} checks: {too_few}\n{output}'
    assert routes_not_called(report['executions']) == [], output
