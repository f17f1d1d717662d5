"""Schemathesis fuzzes every documented operation on the real server: no 5xx, nothing the document does not say.

Each operation gets its own fresh server (the `live_server` fixture, so on both engines), a registered user's
bearer token for the protected routes, the coverage phase (boundary values, missing, extra and wrong-typed
fields, unexpected methods) and a bounded number of random requests, valid and invalid. The seed is fixed so CI
is reproducible: set SCHEMATHESIS_SEED to explore elsewhere and SCHEMATHESIS_MAX_EXAMPLES to fuzz longer
(50 take about a minute for both engines).
"""
import os
import pathlib

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from conftest import sign_up

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
MAX_EXAMPLES = int(os.environ.get('SCHEMATHESIS_MAX_EXAMPLES', 50))
SEED = int(os.environ.get('SCHEMATHESIS_SEED', 25000))
SPEC = pathlib.Path(__file__).resolve().parent.parent / 'openapi.json'

schema = schemathesis.openapi.from_path(SPEC, config=schemathesis.Config.from_dict({
    'seed': SEED,
    'generation': {'max-examples': MAX_EXAMPLES},
    'phases': {'stateful': {'enabled': False}},  # the document declares no links between operations
}))


@pytest.fixture
def bearer(live_server):
    """Authorization headers of a freshly registered and logged-in user of the server under test."""
    return sign_up(live_server)['headers']


# One server per operation, shared by that operation's examples: the point of the fixture here.
@schema.parametrize()
@settings(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                               HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_every_operation_conforms(case, live_server, bearer):
    headers = bearer if case.operation.definition.raw.get('security') else None
    case.call_and_validate(base_url=live_server.url, headers=headers, checks=CHECKS, timeout=10)
