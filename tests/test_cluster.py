"""How towhee_ray connects to Ray (the ray.init call is the seam; nothing is faked after it).

The real multi-node cluster is in test_multinode.py.
"""
import logging
import socket
import time
from pathlib import Path

import pytest

import towhee_ray
from towhee_ray import cluster


@pytest.fixture
def not_connected(mocker):
    import ray
    mocker.patch.object(ray, 'is_initialized', return_value=False)
    mocker.patch.object(cluster, 'describe', return_value='described')
    return mocker.patch.object(ray, 'init')


@pytest.fixture
def closed_port():
    """A local port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def test_starts_a_fresh_local_ray_quietly_when_nothing_is_set(not_connected, monkeypatch):
    monkeypatch.delenv('RAY_ADDRESS', raising=False)
    towhee_ray.connect()
    not_connected.assert_called_once_with(address='local', logging_level=logging.ERROR)


def test_honours_ray_address_and_ships_towhee_ray_and_the_hub(not_connected, monkeypatch):
    listener = socket.create_server(('127.0.0.1', 0))
    address = f'127.0.0.1:{listener.getsockname()[1]}'
    monkeypatch.setenv('RAY_ADDRESS', address)
    with listener:
        towhee_ray.connect()
    kwargs = not_connected.call_args.kwargs
    assert kwargs['address'] == address and kwargs['logging_level'] == logging.ERROR
    assert str(Path(towhee_ray.__file__).resolve().parent) in kwargs['runtime_env']['py_modules']
    from towhee_ray.operators import PROJECT_HUB
    assert str(PROJECT_HUB.resolve()) in kwargs['runtime_env']['py_modules']


@pytest.mark.parametrize('how', ['init', 'lazy connection with RAY_ADDRESS'])
def test_unreachable_address_is_a_connection_error_within_30_seconds(not_connected, monkeypatch,
                                                                     closed_port, how):
    address = f'127.0.0.1:{closed_port}'
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=f"cannot reach a Ray cluster at '{address}'"):
        if how == 'init':
            towhee_ray.init(address=address)
        else:
            monkeypatch.setenv('RAY_ADDRESS', address)
            towhee_ray.connect()
    assert time.monotonic() - start < 30
    not_connected.assert_not_called()


def test_keeps_an_existing_connection(ray_cluster, mocker):
    init = mocker.patch.object(ray_cluster, 'init')
    towhee_ray.connect()
    init.assert_not_called()
    assert ray_cluster.is_initialized()


def test_init_on_a_connected_process_describes_that_connection(ray_cluster, tmp_path):
    info = towhee_ray.init()
    assert info.nodes == 1 and info.cpus >= 2 and info.token_auth and info.note == ''
    assert str(info).startswith(f'Ray cluster at {info.address}: 1 node, ')
    info = towhee_ray.init(pip_packages=['emoji'])
    assert 'were not applied' in info.note


def test_local_ray_keeps_token_authentication(ray_cluster):
    from ray._private.authentication.authentication_token_setup import (
        AuthenticationMode, get_authentication_mode)
    assert get_authentication_mode() == AuthenticationMode.TOKEN
    assert towhee_ray.init().token_auth


def test_runtime_env_for_a_local_ray_ships_only_what_the_user_named(tmp_path):
    module = tmp_path / 'helper.py'
    module.write_text('X = 1\n')
    env = cluster.build_runtime_env(remote=False, local_packages=[module, logging],
                                    pip_packages=['emoji==2.0'], base={'env_vars': {'A': '1'}})
    assert env == {'env_vars': {'A': '1'}, 'py_modules': [str(module), logging.__path__[0]],
                   'pip': ['emoji==2.0']}


def test_runtime_env_given_to_init_is_extended_not_replaced():
    base = {'py_modules': ['/opt/mine'], 'pip': {'packages': ['a'], 'pip_check': False}}
    env = cluster.build_runtime_env(remote=True, pip_packages=['b'], base=base)
    assert env['py_modules'][:2] == ['/opt/mine', str(Path(towhee_ray.__file__).resolve().parent)]
    assert env['pip'] == {'packages': ['a', 'b'], 'pip_check': False}
    assert env['env_vars']['TOWHEE_RAY_SHIPPED_HUBS']


@pytest.mark.parametrize('packages, pip, message', [
    (['/no/such/module.py'], (), 'neither an imported module'),
    ((), 'emoji', 'must be a list of requirement strings'),
])
def test_bad_runtime_env_arguments_are_refused(packages, pip, message):
    with pytest.raises(ValueError, match=message):
        cluster.build_runtime_env(remote=False, local_packages=packages, pip_packages=pip)
