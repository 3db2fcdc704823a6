"""Fixtures for the Rainbow integration tests.

    backend  - the stub HTTP backend (tests/fixtures/stub_backend.py), one process
               for the session, reset before every test, killed at the end. Every
               request it recorded during a test must carry a valid v1 signature
               (checked at teardown).
    gateway  - factory: gateway(**options) writes a config on free ports and
               starts $RAINBOW_BIN -f <conf>, waits for GET /hello/ == ok; every
               gateway is stopped at teardown and the test fails if its output
               holds sanitizer reports, or it crashed, hung on SIGTERM or exited
               non-zero.
"""
import resource
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rainbow  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "soak: a longer load run kept short enough for the normal suite "
        "(size set by environment variables, e.g. RAINBOW_SOAK_N); -m 'not soak' skips it")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def _stub_process():
    stub = rainbow.Stub()
    yield stub
    stub.kill()


@pytest.fixture
def backend(_stub_process):
    stub = _stub_process
    if not stub.alive():
        pytest.fail("the stub backend died during an earlier test")
    stub.reset()
    yield stub
    # Teardown runs after the gateway fixture's (gateway depends on backend), so
    # late close hooks are in. Verify every recorded signature.
    if stub.alive():
        stub.verify_all_signatures()


@pytest.fixture
def gateway(request, tmp_path, backend):
    started = []

    def factory(start=True, extra_args=(), **opts):
        gw = rainbow.Gateway(tmp_path, backend, name="gw%d" % len(started), **opts)
        started.append(gw)
        if start:
            gw.start(extra_args=extra_args)
        return gw

    yield factory
    problems = []
    for gw in started:
        for p in gw.teardown():
            problems.append("%s: %s" % (gw.name, p))
    failed = getattr(request.node, "rep_call", None)
    if problems or (failed is not None and failed.failed):
        for gw in started:
            print("---- %s log tail (%s) ----" % (gw.name, gw.log_path))
            print(gw.log_tail(80))
    if problems:
        pytest.fail("gateway problems: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield resource.getrlimit(resource.RLIMIT_NOFILE)[0]
