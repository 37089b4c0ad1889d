"""A user's own code on Ray, run as the user runs it: a pytest suite of their own, a script
importing a module from another folder, a module the workers cannot import, a ray_op
actor that dies. Each runs in a subprocess, in its own folder, with its own fresh local Ray.
"""
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

# Below pytest's own timeout (300 s, setup.cfg), so that a hung child is reported with
# its output instead of the test being killed with it.
CHILD_TIMEOUT_SECONDS = 240


def write(folder, files):
    """Write ``{relative path: source}`` under ``folder``."""
    for name, source in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


def run_as_user(args, cwd):
    """``python *args`` in ``cwd``, in a session of its own (so that everything it starts
    can be killed with it); it starts its own fresh local Ray, never attaching to another."""
    env = {name: value for name, value in os.environ.items()
           if name not in ('RAY_ADDRESS', 'PYTHONPATH')}
    child = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = child.communicate(timeout=CHILD_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        pytest.fail(f'{args} did not finish within {CHILD_TIMEOUT_SECONDS} s\n{out}\n{err}')
    return child.returncode, out, err


def printed(out):
    """The lines the user's script printed (starting with '| '), not Ray's own."""
    return [line[2:] for line in out.splitlines() if line.startswith('| ')]


USER_SUITE = {
    'tests/text_helpers.py': '''
        """A helper module next to the tests, imported by them (pytest puts tests/ on sys.path)."""

        def words(text):
            return text.split()

        def shout(text):
            return text.upper()
        ''',
    'tests/test_my_pipeline.py': '''
        import functools

        import pytest
        import towhee
        from towhee import ops, pipe

        import text_helpers
        from towhee_ray import DataCollection, ray_op


        @towhee.register(name='mine/upper')
        class Upper:
            def __init__(self, suffix=''):
                self.suffix = suffix

            def __call__(self, text):
                return text_helpers.shout(text) + self.suffix


        class NotANumber(ValueError):
            pass


        def word_count(text):
            return len(text_helpers.words(text))


        def parse(text):
            if not text.isdigit():
                raise NotANumber(f'not a number: {text!r}')
            return int(text)


        def test_a_registered_operator_class():
            out = DataCollection(['a b', 'c']).set_parallel(2, backend='ray').mine.upper(suffix='!').to_list()
            assert out == ['A B!', 'C!']


        def test_a_module_function_using_a_helper_module():
            dc = DataCollection(['a b', 'c d e']).set_parallel(2, backend='ray')
            assert dc.map(word_count).to_list() == [2, 3]


        def test_column_style_steps():
            rows = (DataCollection['text'](['a b', 'c d e']).set_parallel(2, backend='ray')
                    .runas_op['text', 'words'](func=word_count)
                    .mine.upper['text', 'loud']()
                    .select['loud', 'words']().as_raw().to_list())
            assert rows == [('A B', 2), ('C D E', 3)]


        def test_ray_op_in_a_pipe():
            upper = ray_op(ops.mine.upper(suffix='?'), num_worker=2)
            count = ray_op(functools.partial(lambda: word_count), num_worker=1)
            p = pipe.input('text').map('text', 'loud', upper).map('text', 'n', count).output('loud', 'n')
            assert [queue.get() for queue in p.batch(['a b', 'c'])] == [['A B?', 2], ['C?', 1]]
            upper.close()
            count.close()


        def test_a_whole_pipeline_per_actor():
            p = pipe.input('text').map('text', 'loud', ops.mine.upper(suffix='.')).output('loud')
            texts = ['a', 'b c', 'd']
            assert DataCollection(texts).set_parallel(2, backend='ray').map(p).to_list() == [
                p(text).to_list() for text in texts]


        def test_my_own_exception_type_reaches_my_test():
            with pytest.raises(NotANumber, match=r"map\\(parse\\) failed on element #1 \\('x'\\)"):
                DataCollection(['1', 'x']).set_parallel(2, backend='ray').map(parse).to_list()
        ''',
}


def test_a_users_own_pytest_suite_runs_its_module_level_code_on_ray(tmp_path):
    write(tmp_path, USER_SUITE)
    code, out, err = run_as_user(['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests'], tmp_path)
    assert code == 0, out + err
    assert re.search(r'^6 passed', out, re.M), out
    assert 'replacing it' not in out + err, out + err


def test_a_script_importing_a_module_from_another_folder_through_sys_path(tmp_path):
    write(tmp_path, {
        'lib/textlib.py': '''
            import towhee

            @towhee.register(name='textlib/title')
            class Title:
                def __call__(self, text):
                    return text.title()

            def strip(text):
                return text.strip(' .!')
            ''',
        'app/run.py': '''
            import pathlib
            import sys

            sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / 'lib'))
            import textlib   # noqa: E402
            from towhee_ray import DataCollection   # noqa: E402

            dc = DataCollection(['  ray runs it. ', 'on every node!']).set_parallel(2, backend='ray')
            print('|', dc.map(textlib.strip).textlib.title().to_list())
            ''',
    })
    code, out, err = run_as_user(['run.py'], tmp_path / 'app')
    assert code == 0, err
    assert printed(out) == ["['Ray Runs It', 'On Every Node']"], out + err


LOAD_FAILURES = {
    # A library installed only where the driver runs (a folder named site-packages is an
    # installed distribution's: its modules travel by reference, and the workers lack it).
    'site-packages/driver_only_lib.py': '''
        class Setting:
            def __init__(self, factor):
                self.factor = factor
        ''',
    'app/load_failures.py': '''
        import pathlib
        import sys

        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / 'site-packages'))
        import driver_only_lib   # noqa: E402
        import ray   # noqa: E402
        import towhee   # noqa: E402
        from ray.util.state import list_actors   # noqa: E402
        from towhee import ops   # noqa: E402
        from towhee_ray import DataCollection, ray_op   # noqa: E402


        @towhee.register(name='app/scale')
        class Scale:
            def __init__(self, setting):
                self.factor = setting.factor

            def __call__(self, x):
                return x * self.factor


        setting = driver_only_lib.Setting(3)


        def report(what, run):
            try:
                run()
            except Exception as error:
                name = getattr(error, 'name', None)
                print(f'| {what}: {type(error).__name__} name={name} {error}'.splitlines()[0])
            else:
                print(f'| {what}: no error')


        dc = DataCollection(range(50)).set_parallel(2, backend='ray')
        report('operator', lambda: dc.app.scale(setting).to_list())
        report('function', lambda: dc.map(lambda x: x * setting.factor).to_list())
        report('elements', lambda: DataCollection([1, setting]).set_parallel(2, 'ray').map(str).to_list())
        op = ray_op(ops.app.scale(setting), num_worker=2)
        report('ray_op', lambda: op(1))
        report('ray_op again', lambda: op(2))
        address = ray.get_runtime_context().gcs_address
        for step in ('operator app/scale', 'ray_op(app/scale)'):
            started = [actor for actor in list_actors(address=address, limit=1000)
                       if (actor.name or '').startswith(f'towhee_ray {step} #')]
            print(f'| {step} actors started: {len(started)}')
        ''',
}


def test_a_step_the_workers_cannot_load_fails_at_once_with_the_original_error(tmp_path):
    write(tmp_path, LOAD_FAILURES)
    code, out, err = run_as_user(['load_failures.py'], tmp_path / 'app')
    assert code == 0, err
    lines = printed(out)
    missing = "ModuleNotFoundError name=driver_only_lib "
    assert lines[0].startswith(f'operator: {missing}operator app/scale cannot be loaded in a Ray worker: '
                               "ModuleNotFoundError: No module named 'driver_only_lib'. "), out
    assert 'towhee_ray.init(local_packages=[...])' in lines[0] and 'pip_packages=[...]' in lines[0]
    assert lines[1].startswith(f'function: {missing}map(<lambda>) cannot be loaded in a Ray worker'), out
    assert lines[2].startswith(f'elements: {missing}map(str): element #1 cannot be loaded in a Ray '), out
    assert lines[3].startswith(f'ray_op: {missing}ray_op(app/scale) cannot be loaded in a Ray worker'), out
    assert lines[4].startswith(f'ray_op again: {missing}ray_op(app/scale)'), out
    # Not a crash: no actor was replaced, none started again.
    assert lines[5:] == ['operator app/scale actors started: 2', 'ray_op(app/scale) actors started: 2'], out
    assert 'replacing it' not in err and 'ActorDiedError' not in out + err, err


RAY_OP_CRASH = {
    'app/ray_op_crash.py': '''
        import concurrent.futures
        import functools
        import os
        import sys

        from towhee import pipe
        from towhee_ray import WorkerError, ray_op


        class ExitOnce:
            """Kills its actor's process the first time it sees ``value``, as a crash in a
            native library would."""

            def __init__(self, marker, value):
                self.marker = marker
                self.value = value

            def __call__(self, x):
                if x == self.value and not os.path.exists(self.marker):
                    open(self.marker, 'w').close()
                    os._exit(1)
                return x * 10


        class ExitOn:
            def __init__(self, value):
                self.value = value

            def __call__(self, x):
                if x == self.value:
                    os._exit(1)
                return x * 10


        marker = os.path.abspath('died')
        times_ten = ray_op(functools.partial(ExitOnce, marker, 17), num_worker=2)
        p = pipe.input('x').map('x', 'y', times_ten).output('y')
        rows = [queue.get()[0] for queue in p.batch(list(range(40)))]
        in_order = rows == [x * 10 for x in range(40)]
        print('| answered in order:', in_order, 'actor died:', os.path.exists(marker))
        print('| actors now:', len(times_ten.stats()))

        always = ray_op(functools.partial(ExitOn, 5), num_worker=2, max_retries=1)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(always, x) for x in range(10)]
        for x, future in enumerate(futures):
            error = future.exception()
            print('|', x, future.result() if error is None else f'{type(error).__name__}: {error}')
        ''',
}


def test_a_ray_op_actor_that_dies_mid_batch_is_replaced_and_every_call_answered(tmp_path):
    write(tmp_path, RAY_OP_CRASH)
    code, out, err = run_as_user(['ray_op_crash.py'], tmp_path / 'app')
    assert code == 0, err
    lines = printed(out)
    assert lines[0] == 'answered in order: True actor died: True', out + err
    assert lines[1] == 'actors now: 2', out
    assert 'ray_op(ExitOnce): actor #' in err and 'replacing it and re-running its calls' in err, err
    # A call that kills its actor on every try fails alone, naming the operator; the
    # other calls are answered.
    answers = dict(line.split(' ', 1) for line in lines[2:])
    assert {x: answers[str(x)] for x in range(10) if x != 5} == {x: str(x * 10) for x in range(10) if x != 5}
    assert answers['5'].startswith('WorkerError: ray_op(ExitOn): the Ray worker process running a call '
                                   'with arguments (5,) died on each of its 2 tries (max_retries=1)'), out
