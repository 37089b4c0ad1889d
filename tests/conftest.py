"""Fixtures of the tests (the session's Ray itself is in the repository's conftest.py)."""
import functools

import pytest

from tests import support


@pytest.fixture
def alive_actors():
    """A function listing the ids of this session's towhee_ray operator actors not (yet) dead."""
    def alive():
        return [actor.actor_id for actor in support.chain_actors()]
    return alive


@pytest.fixture
def run_process(request):
    """``support.run`` with a timeout that ends the subprocess before pytest's own timeout
    of this test (its ``timeout`` marker, else the ini setting) ends the test."""
    marker = request.node.get_closest_marker('timeout')
    test_timeout = float(marker.args[0] if marker else request.config.getini('timeout'))
    default = test_timeout - support.SUBPROCESS_MARGIN_SECONDS

    def run(args, timeout=default, **options):
        assert 0 < timeout <= default, (
            f'a subprocess timeout of {timeout} s does not end before the test timeout of '
            f'{test_timeout:g} s; raise the test timeout with @pytest.mark.timeout')
        return support.run(args, timeout, **options)
    return run


@pytest.fixture
def python_process(run_process):
    """Run ``python -c code`` (or a script and its arguments) through ``run_process``."""
    return functools.partial(lambda run, *args, **options: run(support.python(*args), **options),
                             run_process)


@pytest.fixture(scope='session')
def milvus_server(tmp_path_factory):
    """The session's real Milvus server (Milvus 2.3.5 standalone from the ``milvus``
    package: ``make test`` installs it), started on first use (~7 s) and stopped after the
    last test; its address, ``http://127.0.0.1:PORT``."""
    from milvus import MilvusServer

    server = MilvusServer()
    server.set_base_dir(str(tmp_path_factory.mktemp('milvus-server')))
    server.listen_port = support.free_port()
    server.start()
    try:
        yield f'http://127.0.0.1:{server.listen_port}'
    finally:
        server.stop()
