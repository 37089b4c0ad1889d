"""Checks on a real two-node Ray cluster; run by tests/test_multinode.py in a subprocess.

A head and a second node are started on this machine (``ray.cluster_utils.Cluster``, token
authentication on) and this process connects with ``towhee_ray.init(address=...)``, as a
user connects to a cluster. They run in their own process because the rest of the suite
shares one local Ray per session, and a process has one Ray connection at a time.
"""
import os
import sys
import textwrap
import time

import pytest

import towhee_ray
from towhee_ray import DataCollection

SECOND_NODE = 'second_node'   # a custom resource only the second node has
ON_SECOND_NODE = {SECOND_NODE: 0.01}


def node_of(_=None):
    import ray
    return ray.get_runtime_context().get_node_id()


@pytest.fixture(scope='module')
def user_module(tmp_path_factory):
    """A module that exists only in a temporary folder of the driver's machine."""
    folder = tmp_path_factory.mktemp('user_code')
    (folder / 'tr_user_module.py').write_text(textwrap.dedent('''
        def tag(x):
            import ray
            return x * 2, ray.get_runtime_context().get_node_id(), __file__
    '''))
    sys.path.insert(0, str(folder))
    import tr_user_module
    yield tr_user_module
    sys.path.remove(str(folder))


@pytest.fixture(scope='module')
def user_hub(tmp_path_factory):
    """A hub folder (``operators_dir``) with one operator, outside the repository."""
    hub = tmp_path_factory.mktemp('hub') / 'tr_test_hub'
    folder = hub / 'acme' / 'where_am_i'
    folder.mkdir(parents=True)
    (folder / '__init__.py').write_text(textwrap.dedent('''
        def where_am_i():
            import ray
            return lambda x: (x, ray.get_runtime_context().get_node_id(), __file__)
    '''))
    return hub


@pytest.fixture(scope='module')
def cluster(user_module, user_hub):
    """A head and a second node (1 CPU each), connected with towhee_ray.init."""
    import ray._common.utils
    import ray._private.utils

    assert os.environ.get('RAY_AUTH_MODE') == 'token'
    # Cluster records its address as this machine's "current cluster" (and deletes that
    # record at shutdown), where `ray.init('auto')` and the state API of every other Ray
    # user of this machine would find it: keep it out of there.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ray._private.utils, 'write_ray_address', lambda *args, **kws: None)
        patch.setattr(ray._common.utils, 'reset_ray_address', lambda *args, **kws: None)
        yield from _two_nodes(user_module, user_hub)


def _two_nodes(user_module, user_hub):
    import ray
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={'num_cpus': 1, 'include_dashboard': False})
    try:
        nodes.add_node(num_cpus=1, resources={SECOND_NODE: 1})
        nodes.wait_for_nodes()
        info = towhee_ray.init(address=nodes.address, local_packages=[user_module],
                               operators_dir=user_hub)
        yield nodes, info
    finally:
        ray.shutdown()
        nodes.shutdown()


def second_node_id():
    import ray
    [node] = [node for node in ray.nodes() if node['Alive'] and SECOND_NODE in node['Resources']]
    return node['NodeID']


def test_init_describes_the_cluster_with_token_authentication_on(cluster):
    nodes, info = cluster
    assert info.address == nodes.address
    assert (info.nodes, info.cpus, info.gpus, info.token_auth) == (2, 2, 0, True)
    assert str(info) == f'Ray cluster at {nodes.address}: 2 nodes, 2 CPUs, 0 GPUs, token authentication on'


def test_init_again_returns_the_same_connection_and_says_when_the_address_differs(cluster):
    nodes, _ = cluster
    assert towhee_ray.init(address=nodes.address).note == ''
    info = towhee_ray.init(address='10.255.255.1:6379')
    assert info.address == nodes.address
    assert "not to the requested '10.255.255.1:6379'" in info.note


def test_one_steps_work_lands_on_both_nodes(cluster):
    def slow_where(x):
        time.sleep(0.05)
        return x, node_of()

    out = DataCollection.range(40).set_parallel(2, 'ray', chunk_size=1).map(slow_where).to_list()
    assert [x for x, _ in out] == list(range(40))
    assert len({node for _, node in out}) == 2


def test_user_module_only_in_a_temporary_folder_loads_on_the_second_node(cluster, user_module):
    out = (DataCollection.range(10).set_parallel(1, 'ray', resources=ON_SECOND_NODE)
           .map(user_module.tag).to_list())
    assert [x for x, _, _ in out] == [2 * x for x in range(10)]
    assert {node for _, node, _ in out} == {second_node_id()}
    [shipped_file] = {file for _, _, file in out}
    assert 'runtime_resources' in shipped_file and shipped_file != user_module.__file__


def test_the_readme_cluster_example_uses_both_nodes(cluster):
    from tests import support

    nodes, _ = cluster
    result = support.run(support.python(str(support.ROOT / 'examples' / 'cluster.py'), nodes.address),
                         timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f'Ray cluster at {nodes.address}: 2 nodes, 2 CPUs, 0 GPUs, token authentication on'
    assert lines[1].startswith('100 elements on 2 workers; elements per node: {')
    assert len(eval(lines[1].split('per node: ')[1])) == 2
    assert lines[2] == "text_split on Ray actors: ['Ray runs it.', 'On every node.', 'Of the cluster.']"


def test_hub_operators_load_on_the_second_node_from_the_shipped_folders(cluster, user_hub):
    from towhee_ray import operators

    out = (DataCollection.range(10).set_parallel(1, 'ray', resources=ON_SECOND_NODE)
           .acme.where_am_i().to_list())
    assert {node for _, node, _ in out} == {second_node_id()}
    [loaded_from] = {file for _, _, file in out}
    assert 'runtime_resources' in loaded_from and str(user_hub) not in loaded_from

    # this repository's operators/ is shipped too: the second node finds its copy
    text_split = str(operators.PROJECT_HUB / 'towhee' / 'text_split')
    [copy] = (DataCollection([text_split]).set_parallel(1, 'ray', resources=ON_SECOND_NODE)
              .map(operators.shipped_copy).to_list())
    assert 'runtime_resources' in copy and copy.endswith('operators/towhee/text_split')
    out = (DataCollection(['One two. Three four five.']).set_parallel(1, 'ray', resources=ON_SECOND_NODE)
           .towhee.text_split(max_words=3).to_list())
    assert out == [['One two.', 'Three four five.']]
