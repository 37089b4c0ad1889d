"""What a step of the ``ray`` backend, or a ``ray_op``, asks of Ray: resources and retries.

The named options of ``set_parallel``/``pmap``/``mmap``/``ray_op`` (``num_cpus``, ``num_gpus``,
``resources``, ``memory``, ``max_retries``) become the ``.options()`` of the step's tasks or
actors; ``ray_remote_args`` is applied last, for everything else Ray has. A step asking for
more than any node of the cluster has would wait forever in Ray; :func:`wait_until_placeable`
turns that into an error naming the step and what it asked for. A step whose workers the
cluster could hold, but whose resources other work holds now (a ``ray_op``'s actors that
took every CPU or the GPU, a step of another chain), also waits in Ray without a word, and
seems to hang: :class:`PlacementWatch` warns after :data:`HELD_WARNING_SECONDS`, naming what
holds them (the step goes on waiting: they may be let go).
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import numbers
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from towhee_ray.checks import positive_int

logger = logging.getLogger(__name__)

# A worker process that dies (SIGKILL, os._exit, a segfault, out of memory) has its chunk
# re-run this many times before the step fails; Ray's own default for tasks.
DEFAULT_MAX_RETRIES = 3
# How long a step whose workers no node can hold waits for the cluster to grow (a node
# being added by hand, an autoscaler) before failing. `ray.cluster_utils` adds a node to a
# running cluster in ~10 s on a 2-vCPU VM; an autoscaler that needs longer still gets the
# error, which names what to ask for instead.
PLACEMENT_TIMEOUT_SECONDS = 20.0
PLACEMENT_POLL_SECONDS = 1.0

# option name -> the Ray resource it asks for
_RESOURCE_OF = {'num_cpus': 'CPU', 'num_gpus': 'GPU', 'memory': 'memory'}


def _check_amount(option: str, value: Any, integer: bool = False) -> None:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0
            or (integer and not isinstance(value, numbers.Integral))):
        kind = 'a non-negative integer' if integer else 'a non-negative number'
        raise ValueError(f'{option} must be {kind}, got {value!r}')


def gpu_share(num_gpus: Any = None, actors_per_gpu: Any = None) -> Any:
    """The ``num_gpus`` each actor asks for: as given, or ``1 / actors_per_gpu``, so that
    ``actors_per_gpu`` actors share one GPU (4 keep one busy while each tokenizes and pads:
    see operators/sentence-embedding/minilm/README.md) without the user working out the
    fraction.

    >>> gpu_share(actors_per_gpu=4)
    0.25
    >>> gpu_share(num_gpus=1, actors_per_gpu=4)
    Traceback (most recent call last):
    ...
    ValueError: give num_gpus= (each actor's share of a GPU) or actors_per_gpu= (actors sharing one GPU), not both
    """
    if actors_per_gpu is None:
        return num_gpus
    if num_gpus is not None:
        raise ValueError('give num_gpus= (each actor\'s share of a GPU) or actors_per_gpu= (actors sharing '
                         'one GPU), not both')
    return 1 / positive_int(actors_per_gpu, 'actors_per_gpu', 'how many actors share one GPU')


def workers_for_gpus(actors_per_gpu: int, nodes: Optional[List[Dict[str, float]]] = None) -> int:
    """How many actors fill the GPUs of the cluster with ``actors_per_gpu`` on each: what a
    ``ray`` step or ``ray_op`` given ``actors_per_gpu`` and no ``num_worker`` starts. Counted
    per node (a share of a GPU never spans nodes) over ``nodes``' resources, by default the
    alive nodes of the cluster this process is connected to (it connects if need be).

    >>> workers_for_gpus(4, [{'CPU': 16.0, 'GPU': 2.0}, {'CPU': 8.0, 'GPU': 1.0}])
    12
    >>> workers_for_gpus(4, [{'CPU': 2.0}])
    Traceback (most recent call last):
    ...
    ValueError: actors_per_gpu=4 without num_worker= starts 4 actors on each GPU of the Ray cluster, and it has no GPU (the nodes have: CPU 2). Give num_worker= as well (Ray then waits for GPU nodes, e.g. from an autoscaler), or leave out actors_per_gpu to run on the CPUs
    """
    actors_per_gpu = positive_int(actors_per_gpu, 'actors_per_gpu', 'how many actors share one GPU')
    if nodes is None:
        from towhee_ray import cluster
        cluster.connect()
        nodes = _node_totals()
    workers = sum(_fits(node, {'GPU': 1 / actors_per_gpu}) for node in nodes)
    if workers == 0:
        raise ValueError(f'actors_per_gpu={actors_per_gpu} without num_worker= starts {actors_per_gpu} '
                         f'actors on each GPU of the Ray cluster, and it has no GPU (the nodes have: '
                         f'{_have(nodes)}). Give num_worker= as well (Ray then waits for GPU nodes, e.g. '
                         f'from an autoscaler), or leave out actors_per_gpu to run on the CPUs')
    return workers


def check_step_options(num_cpus: Any = None, num_gpus: Any = None, resources: Any = None,
                       memory: Any = None, max_retries: Any = None,
                       ray_remote_args: Any = None, actors_only: bool = False) -> None:
    """Refuse a bad value now, naming the option (``set_parallel`` calls this via the backend);
    ``ray_remote_args`` keys must be options of Ray's ``.options()`` for actors (with
    ``actors_only``: a ``ray_op``) or for tasks or actors (a step runs functions on tasks,
    operators on actors).

    >>> check_step_options(num_gpus=-1)
    Traceback (most recent call last):
    ...
    ValueError: num_gpus must be a non-negative number, got -1
    >>> check_step_options(num_gpus=1.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: num_gpus=1.5: Ray gives an actor a share of one GPU (at most 1) or whole GPUs, not 1.5; ...
    >>> check_step_options(ray_remote_args={'num_gpu': 1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ray_remote_args: 'num_gpu' is not an option of Ray's .options() (did you mean 'num_gpus'?)...
    """
    for option, value in (('num_cpus', num_cpus), ('num_gpus', num_gpus)):
        if value is not None:
            _check_amount(option, value)
    if num_gpus is not None and num_gpus > 1 and num_gpus != int(num_gpus):
        raise ValueError(f'num_gpus={num_gpus}: Ray gives an actor a share of one GPU (at most 1) or '
                         f'whole GPUs, not {num_gpus}; give num_gpus={int(num_gpus)} or {int(num_gpus) + 1}, '
                         f'or a share of one, e.g. actors_per_gpu=2 for 0.5 each')
    if memory is not None:
        _check_amount('memory (bytes)', memory, integer=True)
    if resources is not None:
        if not isinstance(resources, dict) or not all(isinstance(key, str) for key in resources):
            raise ValueError(f'resources must be a dict of custom resource names to amounts, '
                             f'e.g. {{"accelerator": 1}}, got {resources!r}')
        for name, amount in resources.items():
            if name in ('CPU', 'GPU', 'memory'):
                option = {'CPU': 'num_cpus', 'GPU': 'num_gpus', 'memory': 'memory'}[name]
                raise ValueError(f'resources={{{name!r}: ...}}: ask for {name} with {option}=')
            _check_amount(f'resources[{name!r}]', amount)
    if max_retries is not None and max_retries != -1:
        _check_amount('max_retries (-1 for no limit)', max_retries, integer=True)
    if ray_remote_args is not None and not isinstance(ray_remote_args, dict):
        raise ValueError(f'ray_remote_args must be a dict of Ray .options() arguments, '
                         f'got {ray_remote_args!r}')
    _check_option_keys(ray_remote_args or {}, actors_only)


def _check_option_keys(ray_remote_args: Dict[str, Any], actors_only: bool) -> None:
    """Refuse a key of ``ray_remote_args`` that Ray's ``.options()`` would refuse only when
    the step runs, with the nearest valid one."""
    # the option tables Ray's .options() checks against (ray._common from Ray 2.50, before
    # that ray._private); without them, Ray checks when the step runs
    names = [f'ray.{package}.ray_option_utils' for package in ('_common', '_private')]
    tables = [importlib.import_module(name) for name in names if importlib.util.find_spec(name) is not None]
    if not tables or not hasattr(tables[0], 'actor_options'):
        return
    valid = set(tables[0].actor_options)
    if not actors_only:
        valid |= set(getattr(tables[0], 'task_options', ()))
    for key in ray_remote_args:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f' (did you mean {close[0]!r}?)' if close else ''
            kind = 'actors' if actors_only else 'tasks or actors'
            public = ', '.join(sorted(name for name in valid if not name.startswith('_')))
            raise ValueError(f"ray_remote_args: {key!r} is not an option of Ray's .options(){hint}; the "
                             f'options for {kind} are {public}')


def step_remote_args(defaults: Dict[str, Any], *, actor: bool, num_cpus: Any = None,
                     num_gpus: Any = None, resources: Any = None, memory: Any = None,
                     max_retries: Any = None, ray_remote_args: Optional[Dict[str, Any]] = None
                     ) -> Dict[str, Any]:
    """The ``.options()`` of a step's tasks (``actor=False``) or actors.

    ``max_retries`` means the same for both: how many times a chunk whose worker process
    died is run again. Ray retries a task itself; a dead actor is replaced by the ray
    backend (which counts the tries of each chunk), so Ray does not restart actors.

    >>> step_remote_args({'num_cpus': 1}, actor=False, num_gpus=1, max_retries=0)
    {'num_cpus': 1, 'max_retries': 0, 'num_gpus': 1}
    >>> step_remote_args({'num_cpus': 0}, actor=True, resources={'tpu': 1})
    {'num_cpus': 0, 'resources': {'tpu': 1}}
    """
    args = dict(defaults)
    if not actor:
        args['max_retries'] = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
    named = {'num_cpus': num_cpus, 'num_gpus': num_gpus, 'memory': memory, 'resources': resources}
    args.update({option: value for option, value in named.items() if value is not None})
    args.update(ray_remote_args or {})
    return args


def requested_resources(remote_args: Dict[str, Any]) -> Dict[str, float]:
    """What one task or actor with these ``.options()`` occupies on a node.

    >>> requested_resources({'num_cpus': 0, 'num_gpus': 1, 'resources': {'tpu': 2}})
    {'GPU': 1, 'tpu': 2}
    """
    asked = {_RESOURCE_OF[option]: remote_args[option] for option in _RESOURCE_OF
             if remote_args.get(option)}
    asked.update({name: amount for name, amount in (remote_args.get('resources') or {}).items() if amount})
    return asked


def _amount(name: str, amount: float) -> str:
    return f'{name} {amount / 2**30:.1f} GiB' if name == 'memory' else f'{name} {amount:g}'


def _fits(node: Dict[str, float], asked: Dict[str, float]) -> int:
    return int(min(node.get(name, 0) / amount for name, amount in asked.items()) + 1e-9)


def _have(nodes: List[Dict[str, float]]) -> str:
    """What each node has, for an error message: ``CPU 2, GPU 1; CPU 8``."""
    return '; '.join(', '.join(_amount(name, amount) for name, amount in sorted(node.items())
                               if not name.startswith(('node:', 'object_store_memory'))) or 'nothing'
                     for node in nodes)


def placement_problem(asked: Dict[str, float], count: int, nodes: List[Dict[str, float]]) -> Optional[str]:
    """Why ``count`` workers asking ``asked`` each can never all be placed on ``nodes``
    (their total resources), or None when they can.

    >>> placement_problem({'GPU': 1}, 1, [{'CPU': 2.0}])
    'no node has them (the nodes have: CPU 2)'
    >>> placement_problem({'CPU': 1}, 3, [{'CPU': 2.0}])
    'the nodes hold only 2 of them at once (the nodes have: CPU 2)'
    >>> placement_problem({'CPU': 1}, 2, [{'CPU': 1.0}, {'CPU': 1.0}]) is None
    True
    """
    fitting = sum(_fits(node, asked) for node in nodes) if asked else count
    if fitting >= count:
        return None
    have = _have(nodes)
    if fitting == 0:
        return f'no node has them (the nodes have: {have})'
    return f'the nodes hold only {fitting} of them at once (the nodes have: {have})'


def _node_totals() -> List[Dict[str, float]]:
    import ray
    return [node['Resources'] for node in ray.nodes() if node['Alive']]


# How long the cluster's resources, as seen by concurrent_capacity, are reused: asking Ray's
# GCS takes 1-20 ms (`ray.cluster_resources()`; `ray.nodes()` took 40-65 ms on a loaded
# 2-core VM), a lot for a short step (W2 at 10,000 elements takes ~30 ms in all), and a
# slightly stale answer only changes how tasks are queued, never what they compute.
CLUSTER_TOTALS_TTL_SECONDS = 10.0
_cluster_totals_cache: List[Any] = [float('-inf'), {}]   # [when, totals]


def concurrent_capacity(remote_args: Dict[str, Any]) -> Optional[int]:
    """At most how many tasks with these ``.options()`` the cluster can run at once, by Ray's
    resource accounting over the cluster's totals (an upper bound: nodes' fragments may hold
    fewer); None when nothing bounds it (no resources asked, or a scheduling strategy or
    placement group of the user's)."""
    import ray

    asked = requested_resources(remote_args)
    custom = (remote_args.get('scheduling_strategy') not in (None, 'DEFAULT', 'SPREAD')
              or remote_args.get('placement_group'))
    if custom or not asked:
        return None
    now = time.monotonic()
    if now - _cluster_totals_cache[0] > CLUSTER_TOTALS_TTL_SECONDS:
        _cluster_totals_cache[:] = [now, ray.cluster_resources()]
    return _fits(_cluster_totals_cache[1], asked)


def wait_until_placeable(what: str, remote_args: Dict[str, Any], count: int, all_at_once: bool,
                         timeout: Optional[float] = None) -> None:
    """Return once the cluster's nodes can hold the workers (``count`` actors at once, or
    one task at a time); raise ``WorkerError`` naming ``what`` and its request after
    ``timeout`` seconds (``PLACEMENT_TIMEOUT_SECONDS``) otherwise. A step with Ray's default
    requests, or with its own scheduling strategy or placement group, is not checked."""
    from towhee_ray.backends.base import WorkerError

    asked = requested_resources(remote_args)
    custom = (remote_args.get('scheduling_strategy') not in (None, 'DEFAULT', 'SPREAD')
              or remote_args.get('placement_group'))
    if custom or not asked or (not all_at_once and set(asked) == {'CPU'} and asked['CPU'] <= 1):
        return   # Ray's defaults: any node can hold one
    needed = count if all_at_once else 1
    deadline = time.monotonic() + (PLACEMENT_TIMEOUT_SECONDS if timeout is None else timeout)
    while True:
        problem = placement_problem(asked, needed, _node_totals())
        if problem is None:
            return
        if time.monotonic() >= deadline:
            each = ', '.join(_amount(name, amount).replace(' ', ': ', 1) for name, amount in asked.items())
            workers = f'each of its {count} actors' if all_at_once else 'each of its tasks'
            raise WorkerError(
                f'{what} cannot be placed on this Ray cluster: {workers} asks for {{{each}}}, but '
                f'{problem}. Ask for less (num_cpus=, num_gpus=, memory=, resources=), use fewer '
                f'workers (num_worker=), or add nodes that have these resources.')
        logger.info('%s waits for nodes that can hold it: %s', what, problem)
        time.sleep(PLACEMENT_POLL_SECONDS)


# -- workers waiting for resources that other work holds ------------------------------

# How long a step's workers may wait unplaced, for resources that other work holds, before a
# warning says so (Ray waits without a word). Longer than a busy machine takes to start a
# worker process, so that the check (Ray's state API, ~15-30 ms) runs only for a real wait.
HELD_WARNING_SECONDS = 20.0


def _listed(kind: str, **filters: Any) -> List[Any]:
    """Ray's state API, ``list_<kind>`` (actors, tasks) with ``filters`` (name -> value), on
    this session's cluster: without an address, that API looks for this machine's "current
    cluster", which may be another one."""
    import ray
    from ray.util import state
    return getattr(state, f'list_{kind}')(address=ray.get_runtime_context().gcs_address, detail=True,
                                          filters=[(name, '=', value) for name, value in filters.items()])


def unplaced_actors(name_suffix: str) -> int:
    """How many live actors whose name ends with ``name_suffix`` (one pool's) Ray has not
    placed yet: waiting for resources, not merely starting. An actor building its operator
    is pending creation too, but it has its process (``pid``); one that waits has none
    (Ray's state API)."""
    return sum(1 for actor in _listed('actors', state='PENDING_CREATION')
               if (actor.name or '').endswith(name_suffix) and not actor.pid)


def unplaced_tasks(task_name: str, num_worker: int) -> int:
    """How many of this job's tasks named ``task_name`` (one step's) wait for a node while
    the step runs fewer than ``num_worker`` (its own running tasks hold what the others wait
    for: that is no wait for other work), by Ray's state API."""
    import ray
    job = ray.get_runtime_context().get_job_id()

    def count(state: str) -> int:
        return len(_listed('tasks', name=task_name, state=state, job_id=job))
    pending = count('PENDING_NODE_ASSIGNMENT')
    return min(pending, max(0, num_worker - count('RUNNING'))) if pending else 0


def _holders(short: List[str]) -> Dict[str, Tuple[int, Dict[str, float]]]:
    """The live actors that hold any of the ``short`` resources, by name (an actor pool's
    number and suffix left out): how many, and what each holds."""
    holders: Dict[str, Tuple[int, Dict[str, float]]] = {}
    for actor in _listed('actors', state='ALIVE'):
        held = {name: amount for name, amount in (actor.required_resources or {}).items() if name in short}
        if held:
            name = re.sub(r' #\d+( \(replacement \d+\))? \[[\d.]+\]$', '', actor.name or actor.class_name)
            count, _ = holders.get(name, (0, held))
            holders[name] = (count + 1, held)
    return holders


def held_message(what: str, asked: Dict[str, float], waiting: int, seconds: float,
                 free: Dict[str, float], total: Dict[str, float],
                 holders: Dict[str, Tuple[int, Dict[str, float]]]) -> str:
    """The warning for ``waiting`` workers of ``what``, each asking ``asked``, that Ray has
    not placed for ``seconds``, with the cluster's ``free`` and ``total`` resources and the
    actors that hold them.

    >>> print(held_message('map(f)', {'CPU': 1}, 2, 20, {'CPU': 0}, {'CPU': 2},
    ...                    {'towhee_ray ray_op(embed)': (2, {'CPU': 1.0})}))  # doctest: +NORMALIZE_WHITESPACE
    map(f): 2 of its workers have waited 20 s for Ray to place them: each asks for {CPU: 1}, and the
    cluster has CPU 0 of 2 free. Held by actors: towhee_ray ray_op(embed) (2, CPU 1 each). It goes
    on waiting until they are free: close what holds them (RayOp.close(); a step's actors go when its
    stream ends), ask for less (num_cpus=, num_gpus=, actors_per_gpu=), or add nodes.
    """
    def amounts(values: Dict[str, float]) -> str:
        return ', '.join(_amount(name, amount) for name, amount in values.items())

    each = ', '.join(_amount(name, amount).replace(' ', ': ', 1) for name, amount in asked.items())
    have = ', '.join(f'{_amount(name, free.get(name, 0))} of {total.get(name, 0):g}' if name != 'memory'
                     else f'{_amount(name, free.get(name, 0))} of {total.get(name, 0) / 2**30:.1f} GiB'
                     for name in asked)
    held = '; '.join(f'{name} ({count}, {amounts(each_holds)} each)'
                     for name, (count, each_holds) in holders.items())
    holding = (f'Held by actors: {held}.' if held
               else 'Tasks or actors of other work hold them (ray list actors).')
    return (f'{what}: {waiting} of its workers {"has" if waiting == 1 else "have"} waited {seconds:g} s for '
            f'Ray to place them: each asks for {{{each}}}, and the cluster has {have} free. {holding} '
            f"It goes on waiting until they are free: close what holds them (RayOp.close(); a step's actors "
            f'go when its stream ends), ask for less (num_cpus=, num_gpus=, actors_per_gpu=), or add nodes.')


class PlacementWatch:
    """Warns, once, when workers of ``what`` (each asking ``remote_args``) have waited
    :data:`HELD_WARNING_SECONDS` for resources that other work holds. ``unplaced()`` counts
    the workers Ray has not placed yet (:func:`unplaced_tasks`, :func:`unplaced_actors`).

    A step's driver loop calls :meth:`waiting` while nothing comes back and
    :meth:`progress` when something does; an actor pool calls :meth:`arm` when it starts
    actors, which looks once after the delay in a timer thread."""

    def __init__(self, what: str, remote_args: Dict[str, Any], unplaced: Callable[[], int]) -> None:
        self.what = what
        self._asked = requested_resources(remote_args)
        self._unplaced = unplaced
        self._since: Optional[float] = None
        self._warned = False
        self._timer: Optional[threading.Timer] = None

    def progress(self) -> None:
        self._since = None

    def waiting(self) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        elif not self._warned and now - self._since >= HELD_WARNING_SECONDS:
            self._since = now   # looked now: the next look, if still waiting, after as long again
            self.check()

    def arm(self) -> None:
        if self._warned or not self._asked:
            return
        self.disarm()
        self._timer = threading.Timer(HELD_WARNING_SECONDS, self.check)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def check(self) -> bool:
        """Warn now if workers are still unplaced and what they ask is not free; whether it warned."""
        import ray
        if self._warned or not self._asked or not ray.is_initialized():
            return False
        try:
            waiting = self._unplaced()
            free = ray.available_resources()
            if not waiting or _fits(free, self._asked) >= 1:
                return False
            short = [name for name, amount in self._asked.items() if free.get(name, 0) + 1e-9 < amount]
            message = held_message(self.what, self._asked, waiting, HELD_WARNING_SECONDS, free,
                                   ray.cluster_resources(), _holders(short))
        except Exception:   # the state API needs Ray's dashboard: without it, no warning
            logger.debug('could not ask Ray what holds the resources %s waits for', self.what, exc_info=True)
            return False
        self._warned = True
        logger.warning(message)
        return True
