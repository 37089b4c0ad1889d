"""Hub operators: resolved like towhee.ops, run as Ray actors built once per worker."""
import os

import pytest
import towhee

from tests.ops import init_count
from tests.support import SESSION_CPUS
from towhee_ray import DataCollection, OperatorNotFoundError

pytestmark = pytest.mark.usefixtures('ray_cluster')


@pytest.mark.parametrize('num_worker', [1, 2, 3])
def test_operator_init_runs_exactly_num_worker_times_on_ray(tmp_path, num_worker):
    log = tmp_path / 'inits'
    out = (DataCollection.range(500).stream().set_parallel(num_worker=num_worker, backend='ray')
           .tests_ns.add_one(init_log=str(log)).to_list())
    assert out == list(range(1, 501))
    assert init_count(log) == num_worker
    assert os.getpid() not in {int(pid) for pid in log.read_text().split()}


def test_operator_instances_serve_many_elements_in_actor_processes():
    out = DataCollection.range(500).set_parallel(2, 'ray').tests_ns.where().to_list()
    assert [x for x, _, _ in out] == list(range(500))
    instances = {instance for _, _, instance in out}
    assert len(instances) == 2 and os.getpid() not in {pid for _, pid, _ in out}


def test_thread_backend_builds_at_most_num_worker_instances(tmp_path):
    log = tmp_path / 'inits'
    out = DataCollection.range(500).set_parallel(2).tests_ns.add_one(init_log=str(log)).to_list()
    assert out == list(range(1, 501)) and 1 <= init_count(log) <= 2


def test_registered_class_that_exists_only_in_the_users_code_is_shipped_to_actors():
    @towhee.register(name='script_only/shout')
    class Shout:
        def __init__(self, mark):
            self.mark = mark

        def __call__(self, text):
            return text.upper() + self.mark

    out = DataCollection(['a', 'b']).set_parallel(2, 'ray').script_only.shout('!').to_list()
    assert out == ['A!', 'B!']


def test_registered_function_works_as_an_operator():
    @towhee.register(name='script_only/double')
    def double(x):
        return 2 * x

    assert DataCollection.range(4).set_parallel(2, 'ray').script_only.double().to_list() == [0, 2, 4, 6]


def test_an_operator_registered_in_towhees_namespace_is_found_without_it():
    @towhee.register(name='towhee/tr_triple')
    def triple(x):
        return 3 * x

    # as `towhee.ops.tr_triple()` and the local hub: no namespace means Towhee's
    assert DataCollection([1, 2]).tr_triple().to_list() == [3, 6]
    assert DataCollection([1, 2]).towhee.tr_triple().to_list() == [3, 6]


def test_local_hub_operator_runs_on_ray():
    out = (DataCollection(['One two. Three four five.', 'Six.']).stream()
           .set_parallel(2, 'ray').towhee.text_split(max_words=3).to_list())
    assert out == [['One two.', 'Three four five.'], ['Six.']]


def test_towhee_ops_object_passed_to_map_runs_as_an_operator_step(tmp_path):
    log = tmp_path / 'inits'
    op = towhee.ops.tests_ns.add_one(init_log=str(log))
    out = DataCollection.range(300).set_parallel(2, 'ray').map(op).to_list()
    assert out == list(range(1, 301)) and init_count(log) == 2


def test_serial_operator_step_builds_one_instance_lazily(tmp_path):
    log = tmp_path / 'inits'
    dc = DataCollection.range(10).stream().tests_ns.add_one(init_log=str(log))
    assert init_count(log) == 0
    assert dc.to_list() == list(range(1, 11)) and init_count(log) == 1


def test_three_operator_steps_with_more_actors_than_cpus_do_not_deadlock(ray_cluster):
    # 3 steps x 2 actors: more actors than the session's CPUs
    assert ray_cluster.cluster_resources()['CPU'] == SESSION_CPUS < 3 * 2
    out = (DataCollection.range(300).stream().set_parallel(num_worker=2, backend='ray')
           .tests_ns.sleepy(0.001).tests_ns.sleepy(0.001).tests_ns.sleepy(0.001)
           .map(lambda x: x * 2).to_list())
    assert out == [2 * x for x in range(300)]


def test_actors_of_consecutive_steps_start_together(tmp_path):
    # A barrier: each step's operator, in its __init__, waits until the operators of all three
    # steps have begun theirs. Started one step after another, the first would wait alone (and
    # give up after its deadline, saying so); started together, all three meet.
    folder = tmp_path / 'barrier'
    folder.mkdir()
    dc = DataCollection.range(20).stream().set_parallel(num_worker=1, backend='ray')
    for step in range(3):
        dc = dc.tests_ns.meet(folder=str(folder), name=f'step{step}', parties=3)
    assert dc.to_list() == list(range(20))
    met = sorted(path.name for path in folder.glob('*.met'))
    assert met == ['step0.met', 'step1.met', 'step2.met'], sorted(path.name for path in folder.iterdir())


def test_unknown_operator_names_where_it_looked_and_what_to_do():
    with pytest.raises(OperatorNotFoundError) as failure:
        DataCollection([1]).set_parallel(2, 'ray').no_such_ns.no_such_op()
    message = str(failure.value)
    assert "operator 'no-such-ns/no-such-op' not found" in message
    assert 'operators/no-such-ns/no-such-op/versions/main' in message
    assert 'never downloads' in message and 'TOWHEE_RAY_HUB' in message
    assert 'Did you mean' not in message


def test_a_misspelt_operator_name_gets_the_nearest_names():
    expected = r"operator 'sentence-embedding/minlm' not found: .* Did you mean 'sentence-embedding/minilm'"
    with pytest.raises(OperatorNotFoundError, match=expected):
        DataCollection(['text']).sentence_embedding.minlm()


def test_a_mistyped_method_is_reported_as_such():
    with pytest.raises(OperatorNotFoundError) as failure:
        DataCollection([1]).to_lsit()
    assert "DataCollection has no method 'to_lsit'; did you mean 'to_list'?" in failure.value.__notes__
    with pytest.raises(OperatorNotFoundError) as failure:   # a Towhee pipeline's (or Spark's) name
        DataCollection([1]).flat_map(lambda x: [x, x])
    assert ("DataCollection has no method 'flat_map': map a function that returns a list, then flatten(): "
            "dc.map(f).flatten()") in failure.value.__notes__


def test_hub_folders_listed_in_towhee_ray_hub_are_searched(tmp_path, monkeypatch):
    folder = tmp_path / 'acme' / 'reverse'
    folder.mkdir(parents=True)
    (folder / '__init__.py').write_text('def reverse():\n    return lambda text: text[::-1]\n')
    monkeypatch.setenv('TOWHEE_RAY_HUB', str(tmp_path))
    assert DataCollection(['abc']).set_parallel(2, 'ray').acme.reverse().to_list() == ['cba']
