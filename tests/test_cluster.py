"""How towhee_ray connects to Ray, each claim against a real Ray: the session's own, or, for a
fresh start, an address or another cluster, a subprocess with its own (a process holds one
Ray connection at a time, and the session's must not be disturbed).

The real multi-node cluster is in test_multinode.py.
"""
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

import towhee_ray
import towhee_ray.operators
from tests.support import SESSION_CPUS
from towhee_ray import cluster


@pytest.fixture
def closed_port():
    """A local port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def last_json_line(result):
    assert result.returncode == 0, result.stderr[-6000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize('how', ['init', 'lazy connection with RAY_ADDRESS'])
def test_unreachable_address_is_a_connection_error_and_starts_nothing(python_process, closed_port, how):
    address = f'127.0.0.1:{closed_port}'
    script = f'''
import json, os, ray, towhee_ray
try:
    if {how == 'init'}:
        towhee_ray.init(address={address!r})
    else:
        os.environ['RAY_ADDRESS'] = {address!r}
        towhee_ray.DataCollection([1]).set_parallel(2, 'ray').map(str).to_list()
except ConnectionError as error:
    print(json.dumps({{'error': str(error), 'connected': ray.is_initialized()}}))
'''
    out = last_json_line(python_process('-c', script))
    assert out['error'].startswith(f"cannot reach a Ray cluster at '{address}' within 15 s")
    assert 'ray start --head' in out['error'] and out['connected'] is False


def test_without_an_address_init_starts_a_fresh_local_ray_quietly(python_process, ray_cluster):
    # The session's Ray runs on this machine: a fresh start must not attach to it.
    script = '''
import json, os, ray, towhee_ray
info = towhee_ray.init()
pids = set(towhee_ray.DataCollection.range(20).set_parallel(2, 'ray').map(lambda _: os.getpid()))
print(json.dumps({'address': info.address, 'gcs': ray.get_runtime_context().gcs_address,
                  'nodes': info.nodes, 'runtime_env': info.runtime_env, 'token_auth': info.token_auth,
                  'driver': os.getpid(), 'pids': sorted(pids)}))
'''
    result = python_process('-c', script)
    out = last_json_line(result)
    assert out['address'] == out['gcs'] != ray_cluster.get_runtime_context().gcs_address
    assert out['nodes'] == 1 and out['runtime_env'] == {} and out['token_auth'] is True
    assert out['pids'] and out['driver'] not in out['pids']
    assert 'Started a local Ray instance' not in result.stdout + result.stderr


def test_a_local_ray_whose_gcs_was_not_up_in_time_is_started_again(python_process):
    # Ray's own start-up timeout, seen once on a loaded machine, made at the seam (ray.init
    # raises it once, as Ray does, after starting part of its processes); the second start
    # is a real one.
    script = '''
import logging, ray, towhee_ray
logging.basicConfig(level=logging.WARNING)
real, calls = ray.init, []
def init(**kws):
    calls.append(1)
    if len(calls) == 1:
        raise RuntimeError('Timed out waiting for file /tmp/ray/session_x/gcs_server_port_0')
    return real(**kws)
ray.init = init
print(towhee_ray.DataCollection(range(3)).set_parallel(2, 'ray').map(abs).to_list(), len(calls))
'''
    result = python_process('-c', script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == '[0, 1, 2] 2'
    assert 'a local Ray did not start in time' in result.stderr


NODE_TIMEOUT_SCRIPT = '''
import json, logging, psutil, ray, ray._private.services as services, towhee_ray
logging.basicConfig(level=logging.WARNING)
real, calls = services.get_node, []
def get_node(*args, **kws):
    # Ray's start-up already started the GCS, the raylet and the dashboard when it asks
    # for the node; Ray raises this where the raylet is not registered within 30 s.
    calls.append(1)
    if len(calls) <= FAILING:
        raise Exception('The current node timed out during startup. This could happen because some of '
                        'the raylet failed to startup or the GCS has become overloaded.')
    return real(*args, **kws)
services.get_node = get_node
def ray_programs():
    return sorted(child.name() for child in psutil.Process().children()
                  if child.name() in ('gcs_server', 'raylet'))
try:
    print(towhee_ray.DataCollection(range(3)).set_parallel(2, 'ray').map(abs).to_list())
except RuntimeError as error:
    print(error)
print(json.dumps({'calls': len(calls), 'left': ray_programs()}))
'''


def test_a_local_ray_whose_raylet_did_not_register_in_time_is_stopped_and_started_again(python_process):
    # Twice in one CI run on 2 vCPUs, Ray's fixed 30 s wait for its raylet ran out; Ray then
    # raises, leaving the processes it started. Made at the seam (the node lookup raises as
    # Ray does, once, after Ray really started its GCS and raylet); the next start is real.
    result = python_process('-c', 'FAILING = 1' + NODE_TIMEOUT_SCRIPT)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[-2] == '[0, 1, 2]'
    # the first start's are gone
    assert json.loads(lines[-1]) == {'calls': 2, 'left': ['gcs_server', 'raylet']}
    assert 'a local Ray did not start in time' in result.stderr


def test_a_local_ray_that_never_starts_in_time_is_a_clear_error_that_leaves_no_process(python_process):
    result = python_process('-c', 'FAILING = 99' + NODE_TIMEOUT_SCRIPT)
    assert result.returncode == 0, result.stderr[-3000:]
    message, outcome = result.stdout.splitlines()[-2:]
    assert message.startswith(f'a local Ray did not start in time, {cluster.LOCAL_START_TRIES} times '
                              f'(The current node timed out during startup')
    assert 'the machine is probably too busy (load average' in message
    assert "towhee_ray.init(address='auto')" in message
    assert json.loads(outcome) == {'calls': cluster.LOCAL_START_TRIES, 'left': []}


def test_a_local_ray_started_in_a_thread_outlives_that_thread(python_process):
    # A first Ray step in a worker thread (a Towhee pipeline's pool calling a ray_op) starts
    # the local Ray; Linux kills the processes Ray starts when the *thread* that started them
    # ends (PR_SET_PDEATHSIG). Before towhee_ray started Ray from a lasting thread, the GCS
    # and raylet were gone here, and the second step waited 60 s for them, then exited 1.
    script = '''
import threading, psutil
from towhee_ray import DataCollection
first = threading.Thread(target=lambda: print(DataCollection([1]).set_parallel(1, 'ray').map(abs).to_list()))
first.start()
first.join()
children = [' '.join(child.cmdline()) for child in psutil.Process().children(recursive=True)]
print('raylet:', any('raylet' in line for line in children),
      'gcs:', any('gcs_server' in line for line in children))
print(DataCollection(range(3)).set_parallel(2, 'ray').map(abs).to_list())
'''
    result = python_process('-c', script, timeout=50)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-3:] == ['[1]', 'raylet: True gcs: True', '[0, 1, 2]']


@pytest.mark.timeout(600)
def test_ray_address_and_auto_reach_a_running_cluster_and_ship_what_workers_need(python_process):
    # A head started by the subprocess (ray.cluster_utils.Cluster), recorded as "the current
    # cluster" in a private RAY_TMPDIR, so that 'auto' finds it and no one else's Ray does.
    script = '''
import json, os, ray, towhee_ray
from ray.cluster_utils import Cluster
from towhee_ray import DataCollection

def shipped(_):
    return towhee_ray.__file__, os.environ.get('TOWHEE_RAY_SHIPPED_HUBS'), os.environ.get('TR_TEST')

head = Cluster(initialize_head=True, head_node_args={'num_cpus': 1, 'include_dashboard': False})
try:
    os.environ['RAY_ADDRESS'] = head.address          # the lazy connection of a ray step
    by_variable = DataCollection([0]).set_parallel(1, 'ray').map(shipped).to_list()[0]
    by_variable_gcs = ray.get_runtime_context().gcs_address
    ray.shutdown()
    del os.environ['RAY_ADDRESS']
    info = towhee_ray.init('auto', runtime_env={'env_vars': {'TR_TEST': 'reached the worker'}})
    by_auto = DataCollection([0]).set_parallel(1, 'ray').map(shipped).to_list()[0]
    print(json.dumps({'head': head.address, 'by_variable': by_variable, 'by_variable_gcs': by_variable_gcs,
                      'info_address': info.address, 'runtime_env': repr(info.runtime_env),
                      'env_vars': info.runtime_env.get('env_vars'), 'by_auto': by_auto}))
finally:
    ray.shutdown()
    head.shutdown()
'''
    ray_tmp = tempfile.mkdtemp(prefix='tr', dir='/tmp')   # short: Ray's socket paths live under it
    try:
        out = last_json_line(python_process('-c', script, env={**os.environ, 'RAY_TMPDIR': ray_tmp}))
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out['by_variable_gcs'] == out['info_address'] == out['head']
    # The runtime environment reached the workers: where the shipped hub folders came from
    # (towhee_ray itself is shipped too, though a worker on this machine imports the
    # installed copy first; multinode_checks.py sees shipped copies on another node).
    for _, hubs, _ in (out['by_variable'], out['by_auto']):
        assert hubs and str(towhee_ray.operators.PROJECT_HUB.resolve()) in hubs.split(os.pathsep)
    assert out['by_variable'][2] is None and out['by_auto'][2] == 'reached the worker'
    assert out['env_vars']['TR_TEST'] == 'reached the worker'   # ClusterInfo.runtime_env says so
    shipped_package = str(Path(towhee_ray.__file__).resolve().parent)   # shipped by its folder
    assert repr(shipped_package) in out['runtime_env'] and 'TOWHEE_RAY_SHIPPED_HUBS' in out['env_vars']


def test_keeps_an_existing_connection(ray_cluster):
    before = ray_cluster.get_runtime_context().gcs_address
    towhee_ray.connect()
    assert ray_cluster.get_runtime_context().gcs_address == before


def test_init_on_a_connected_process_describes_that_connection(ray_cluster, tmp_path):
    info = towhee_ray.init()
    assert info.nodes == 1 and info.cpus == SESSION_CPUS and info.token_auth and info.note == ''
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
