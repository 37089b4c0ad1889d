"""How towhee_ray connects to Ray (the ray.init call is the seam; nothing is faked after it)."""
import logging

import pytest

import towhee_ray


@pytest.fixture
def not_connected(mocker):
    import ray
    mocker.patch.object(ray, 'is_initialized', return_value=False)
    return mocker.patch.object(ray, 'init')


def test_starts_a_fresh_local_ray_quietly_when_nothing_is_set(not_connected, monkeypatch):
    monkeypatch.delenv('RAY_ADDRESS', raising=False)
    towhee_ray.connect()
    not_connected.assert_called_once_with(address='local', logging_level=logging.ERROR)


def test_honours_ray_address(not_connected, monkeypatch):
    monkeypatch.setenv('RAY_ADDRESS', '10.0.0.5:6379')
    towhee_ray.connect()
    not_connected.assert_called_once_with(address='10.0.0.5:6379', logging_level=logging.ERROR)


def test_keeps_an_existing_connection(ray_cluster, mocker):
    init = mocker.patch.object(ray_cluster, 'init')
    towhee_ray.connect()
    init.assert_not_called()
    assert ray_cluster.is_initialized()


def test_local_ray_keeps_token_authentication(ray_cluster):
    from ray._private.authentication.authentication_token_setup import (
        AuthenticationMode, get_authentication_mode)
    assert get_authentication_mode() == AuthenticationMode.TOKEN
