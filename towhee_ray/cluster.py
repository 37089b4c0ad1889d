"""Connecting to Ray: an existing connection, a cluster address, or a fresh local instance.

:func:`init` connects with a runtime environment that ships what the workers need
(towhee_ray itself and the hub folders when the cluster is not started by this process,
the user's own modules, opted-in pip packages) and describes the cluster it reached.
:func:`connect` is the lazy connection every Ray step makes on first use.

Ray retries an unreachable address forever; both fail with ``ConnectionError`` instead.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

logger = logging.getLogger(__name__)
_connect_lock = threading.Lock()
_shipped: List[str] = []   # see shipped_local_packages

# How long an address may stay unreachable before init()/connect() give up. A head
# started with `ray start --head` on a 2-vCPU VM accepts connections on its GCS port
# ~3 s after the command starts, so a driver started together with its head still
# connects; an address where nothing listens fails well within 30 s.
CONNECT_TIMEOUT_SECONDS = 15.0
# Ray's default ports: the GCS of `ray start --head` and the Ray Client server.
DEFAULT_GCS_PORT = 6379
DEFAULT_CLIENT_PORT = 10001

LocalPackage = Union[types.ModuleType, str, os.PathLike]
# towhee_ray's own package folder, shipped to a remote cluster's workers.
TOWHEE_RAY_FOLDER = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """What :func:`init` connected to.

    >>> print(ClusterInfo('10.0.0.5:6379', nodes=2, cpus=8, gpus=1, token_auth=True))
    Ray cluster at 10.0.0.5:6379: 2 nodes, 8 CPUs, 1 GPU, token authentication on
    """

    address: str
    nodes: int
    cpus: float
    gpus: float
    token_auth: bool
    #: the runtime environment the connection was made with (what is shipped)
    runtime_env: Dict[str, Any] = dataclasses.field(default_factory=dict)
    #: a remark about the call, e.g. that Ray was already connected elsewhere
    note: str = ''

    def __str__(self) -> str:
        def count(value: float, unit: str) -> str:
            value = int(value) if float(value).is_integer() else value
            return f'{value} {unit}{"" if value == 1 else "s"}'

        text = (f'Ray cluster at {self.address}: {count(self.nodes, "node")}, '
                f'{count(self.cpus, "CPU")}, {count(self.gpus, "GPU")}, '
                f'token authentication {"on" if self.token_auth else "OFF"}')
        return f'{text}\n{self.note}' if self.note else text


def _host_port(address: str) -> Optional[Tuple[str, int]]:
    """Where to probe ``address`` (``host:port`` or ``ray://host[:port]``), if it names one."""
    default_port = DEFAULT_GCS_PORT
    if address.startswith('ray://'):
        address, default_port = address[len('ray://'):], DEFAULT_CLIENT_PORT
    host, colon, port = address.rpartition(':')
    if not colon or ']' in port:   # no port given (a bare host or an IPv6 literal)
        host, port = address, str(default_port)
    host = host.strip('[]')
    if not host or not port.isdigit():
        return None
    return host, int(port)


def _resolve(address: str) -> str:
    """``auto`` becomes the address of the latest local cluster, as Ray resolves it."""
    if address != 'auto':
        return address
    from ray._private.services import canonicalize_bootstrap_address_or_die
    return canonicalize_bootstrap_address_or_die('auto')


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Raise ``ConnectionError`` unless something accepts connections at ``address``
    within ``timeout`` seconds (retrying, so a head that is still starting is waited for).

    >>> check_reachable('127.0.0.1:1', timeout=0.5)
    Traceback (most recent call last):
    ...
    ConnectionError: cannot reach a Ray cluster at '127.0.0.1:1' within 0.5 s ...
    """
    target = _host_port(address)
    if target is None:
        return   # not a host:port; ray.init reports a malformed address itself
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(target, timeout=max(0.1, min(3.0, deadline - time.monotonic()))):
                return
        except OSError as error:
            if time.monotonic() + 0.5 >= deadline:
                raise ConnectionError(
                    f'cannot reach a Ray cluster at {address!r} within {timeout:g} s '
                    f'({type(error).__name__}: {error}). Check that its head node is running '
                    f'(`ray start --head`), that the address and port are right (the GCS port, '
                    f'{DEFAULT_GCS_PORT} by default; {DEFAULT_CLIENT_PORT} for ray://), and that '
                    f'no firewall is in the way.') from None
            time.sleep(0.5)


def _package_path(package: LocalPackage) -> str:
    """The folder or ``.py`` file Ray's ``py_modules`` ships for ``package``."""
    if isinstance(package, types.ModuleType):
        paths = list(getattr(package, '__path__', None) or [])
        if len(paths) == 1:
            return paths[0]
        if not paths and getattr(package, '__file__', None):
            return package.__file__
        raise ValueError(f'local_packages: module {package.__name__!r} has no single folder or '
                         f'file to ship (__path__={paths}); pass its folder instead')
    path = Path(package).expanduser().resolve()
    if path.is_dir() or (path.is_file() and path.suffix == '.py'):
        return str(path)
    if isinstance(package, str) and package in sys.modules:   # the name of an imported module
        return _package_path(sys.modules[package])
    raise ValueError(f'local_packages: {str(package)!r} is neither an imported module (give the module '
                     f'or its name once imported), a package folder nor a .py file')


def _shipped_hubs() -> List[str]:
    from towhee_ray import operators
    hubs = [str(root.resolve()) for root in operators.hub_roots() if root.is_dir()]
    by_name: Dict[str, str] = {}
    for hub in hubs:
        other = by_name.setdefault(Path(hub).name, hub)
        if other != hub:
            raise ValueError(
                f'two hub folders have the same name {Path(hub).name!r} ({other} and {hub}); Ray ships '
                f'a folder under its name, so rename one of them')
    return list(dict.fromkeys(hubs))


def build_runtime_env(remote: bool, local_packages: Iterable[LocalPackage] = (),
                      pip_packages: Sequence[str] = (),
                      base: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The runtime environment :func:`init` connects with, added to ``base`` (the user's).

    ``remote`` (a cluster this process did not start) ships towhee_ray itself and the hub
    folders; ``local_packages`` and ``pip_packages`` are shipped to any cluster.

    >>> build_runtime_env(remote=False, pip_packages=['emoji'])
    {'pip': ['emoji']}

    One package may be given alone: ``local_packages=my_module`` or ``'src/helpers.py'``.
    """
    env = dict(base or {})
    modules = list(env.get('py_modules') or [])
    if remote:
        from towhee_ray import operators
        modules.append(str(TOWHEE_RAY_FOLDER))
        hubs = _shipped_hubs()
        modules += hubs
        if hubs:
            # A worker loads a hub operator from the shipped copy (operators.shipped_copy).
            env['env_vars'] = {**env.get('env_vars', {}),
                               operators.SHIPPED_HUBS_VARIABLE: os.pathsep.join(hubs)}
    if isinstance(local_packages, (str, os.PathLike, types.ModuleType)):   # one package, not its letters
        local_packages = [local_packages]
    modules += [_package_path(package) for package in local_packages]
    if modules:
        env['py_modules'] = modules
    if pip_packages:
        if isinstance(pip_packages, str):
            raise ValueError(f'pip_packages must be a list of requirement strings, got the string '
                             f'{pip_packages!r}; write [{pip_packages!r}]')
        pip = env.get('pip')
        if isinstance(pip, dict):
            env['pip'] = {**pip, 'packages': list(pip.get('packages', [])) + list(pip_packages)}
        else:
            env['pip'] = list(pip or []) + list(pip_packages)
    return env


def _token_auth() -> bool:
    try:
        from ray._private.authentication.authentication_token_setup import (
            AuthenticationMode, get_authentication_mode)
    except ImportError:   # a Ray without token authentication
        return False
    return get_authentication_mode() == AuthenticationMode.TOKEN


def describe(note: str = '', runtime_env: Optional[Dict[str, Any]] = None) -> ClusterInfo:
    """Describe the cluster this process is connected to."""
    import ray

    resources = ray.cluster_resources()
    context = ray.get_runtime_context()
    try:
        address = context.gcs_address
    except Exception:   # a Ray Client connection (ray://) has no GCS address of its own
        address = os.environ.get('RAY_ADDRESS', 'a Ray Client connection')
    if runtime_env is None:
        runtime_env = dict(context.runtime_env or {})
    return ClusterInfo(address=address, nodes=sum(node['Alive'] for node in ray.nodes()),
                       cpus=resources.get('CPU', 0), gpus=resources.get('GPU', 0),
                       token_auth=_token_auth(), runtime_env=runtime_env, note=note)


def _already_connected(address: Optional[str], asked_to_ship: bool) -> ClusterInfo:
    import ray

    current = getattr(ray.get_runtime_context(), 'gcs_address', '')
    notes = []
    if address not in (None, 'auto', current):
        try:
            wanted = _resolve(address)
        except Exception:
            wanted = address
        if wanted != current:
            notes.append(f'Ray was already connected to {current}, not to the requested {address!r}; '
                         f'call ray.shutdown() first to connect elsewhere.')
    if asked_to_ship:
        notes.append('Ray was already connected: local_packages, pip_packages and operators_dir '
                     'were not applied; call ray.shutdown() first, or give them to the first init().')
    for note in notes:
        logger.warning(note)
    return describe(' '.join(notes))


def init(address: Optional[str] = None, *, local_packages: Iterable[LocalPackage] = (),
         pip_packages: Sequence[str] = (), operators_dir: Optional[Union[str, os.PathLike]] = None,
         **ray_init_kwargs: Any) -> ClusterInfo:
    """Connect to a Ray cluster (or start a local Ray) and describe it.

    ``address`` is what ``ray.init`` takes: ``'host:6379'`` (a head's GCS), ``'ray://host:10001'``
    (Ray Client), ``'auto'``, or ``None`` for ``RAY_ADDRESS`` if set, else a fresh local Ray
    (quiet, with Ray's defaults: token authentication stays on).

    The runtime environment ships what the workers need: towhee_ray itself and the hub
    folders (this repository's ``operators/``, the ``TOWHEE_RAY_HUB`` folders and
    ``operators_dir``, which is also searched for operators from now on) when connecting
    to a cluster this process did not start; ``local_packages`` (imported modules, package
    folders or ``.py`` files) always: the workers import these, while the functions and
    classes of your other modules travel by value (see ``backends/ray/shipping.py``), so
    ``local_packages`` is for what cannot travel that way (modules imported at run time,
    data files next to the code). ``pip_packages`` are installed in the workers'
    environment, the only way towhee_ray ever runs ``pip install``. Further keywords go to
    ``ray.init`` (a ``runtime_env`` given there is extended, not replaced).

    An unreachable address raises ``ConnectionError`` within ``CONNECT_TIMEOUT_SECONDS``.
    Already connected, it returns the description of that connection, with a note when the
    requested address or packages could not be applied.

    >>> info = init()
    >>> info.nodes >= 1 and info.cpus >= 1
    True
    >>> str(info).startswith('Ray cluster at ')
    True
    """
    import ray

    if operators_dir is not None:
        from towhee_ray import operators
        operators.add_hub(operators_dir)
    local_packages = list(local_packages)
    with _connect_lock:
        if ray.is_initialized():
            return _already_connected(address, bool(local_packages or pip_packages or operators_dir))
        address = address or os.environ.get('RAY_ADDRESS') or 'local'
        remote = address != 'local'
        if remote:
            address = _resolve(address)
            check_reachable(address)
        runtime_env = build_runtime_env(remote, local_packages, pip_packages,
                                        ray_init_kwargs.pop('runtime_env', None))
        ray_init_kwargs.setdefault('logging_level', logging.ERROR)
        if runtime_env:   # a copy: ray.init replaces the paths in it by upload URIs
            ray_init_kwargs['runtime_env'] = {key: list(value) if isinstance(value, list) else value
                                              for key, value in runtime_env.items()}
        logger.info('connecting to Ray at %s', address)
        _ray_init(address=address, **ray_init_kwargs)
        _shipped[:] = [_package_path(package) for package in local_packages]
        return describe(runtime_env=runtime_env)


#: How many times a local Ray that did not come up within Ray's own fixed waits is started
#: again. ``ray.init`` waits a fixed time for its GCS to write its port to a file ("Timed out
#: waiting for file .../gcs_server_port_...") and 30 s for its raylet to register ("The
#: current node timed out during startup"); a loaded machine misses either now and then
#: (seen in whole-suite runs on 2 vCPUs: once in 30 runs of a docs block, and twice in one
#: CI run), and the next start succeeds.
LOCAL_START_TRIES = 3
#: What ``ray.init`` says when a local start missed one of those waits.
LOCAL_START_TIMEOUTS = ('Timed out waiting for file', 'The current node timed out during startup')


def _init_retrying(ray_init_kwargs: Dict[str, Any]) -> None:
    """``ray.init``; a local start that timed out is stopped (the processes it had started:
    Ray leaves them running) and started again, up to :data:`LOCAL_START_TRIES` times."""
    import ray

    local = ray_init_kwargs.get('address') in (None, 'local')
    for attempt in range(1, LOCAL_START_TRIES + 1):
        before = _ray_children() if local else set()
        try:
            ray.init(**ray_init_kwargs)
            return
        except Exception as error:
            if not (local and any(text in str(error) for text in LOCAL_START_TIMEOUTS)):
                raise
            ray.shutdown()
            _kill_trees(_ray_children() - before)
            if attempt == LOCAL_START_TRIES:
                load = ', '.join(f'{value:.1f}' for value in os.getloadavg())
                raise RuntimeError(
                    f'a local Ray did not start in time, {LOCAL_START_TRIES} times '
                    f'({str(error).strip()[:200]}); '
                    f'the machine is probably too busy (load average {load} on {os.cpu_count()} CPUs): run '
                    f'again when it is less loaded, or start Ray once with `ray start --head` and connect to '
                    f"it (towhee_ray.init(address='auto'))") from error
            logger.warning('a local Ray did not start in time (%s); starting it again',
                           str(error).strip()[:200])


def _ray_children() -> Set[int]:
    """The pids of this process's children that run Ray's own programs (GCS, raylet,
    dashboard, monitors): a local start's processes."""
    import psutil   # Ray's own dependency
    import ray

    folder = os.path.dirname(os.path.abspath(ray.__file__)) + os.sep
    found = set()
    for child in psutil.Process().children():
        try:
            if any(part.startswith(folder) for part in child.cmdline()[:3]):
                found.add(child.pid)
        except psutil.Error:   # it exited meanwhile
            continue
    return found


def _kill_trees(pids: Iterable[int]) -> None:
    """SIGKILL the processes ``pids`` and everything they started (a raylet's workers)."""
    import psutil

    processes = []
    for pid in pids:
        try:
            parent = psutil.Process(pid)
            processes += [parent, *parent.children(recursive=True)]
        except psutil.Error:
            continue
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=10)


def _ray_init(**ray_init_kwargs: Any) -> None:
    """``ray.init`` from a thread that lives as long as the process.

    The processes ``ray.init`` starts for a local Ray (GCS, raylet, ...) ask Linux to be
    killed when their parent dies (``PR_SET_PDEATHSIG``), and for Linux the parent is the
    *thread* that started them. A first Ray step often runs in a worker thread — a Towhee
    pipeline's pool calling a ``ray_op``, a ``ThreadPoolExecutor`` — and when that thread
    ended, the local Ray was SIGKILLed under the running program, which then waited 60 s
    for its GCS and exited with an error. The main thread lives as long as the process;
    from any other thread, Ray is started by a daemon thread that then waits forever.
    """
    if threading.current_thread() is threading.main_thread():
        _init_retrying(ray_init_kwargs)
        return
    outcome: List[BaseException] = []
    started = threading.Event()

    def start_and_stay() -> None:
        try:
            _init_retrying(ray_init_kwargs)
        except BaseException as error:   # handed to the caller, raised there
            outcome.append(error)
        started.set()
        if not outcome:
            threading.Event().wait()   # never set: the thread ends with the process

    threading.Thread(target=start_and_stay, name='towhee_ray ray.init', daemon=True).start()
    started.wait()
    if outcome:
        raise outcome[0]


def shipped_local_packages() -> List[str]:
    """The folders and files the current connection's ``init(local_packages=...)`` shipped:
    their modules travel to the workers by reference (the workers import them).

    >>> isinstance(shipped_local_packages(), list)
    True
    """
    return list(_shipped)


def connect() -> None:
    """Make sure this process is connected to Ray; every Ray step calls this on first use.

    In order: keep a connection the user already made with ``ray.init(...)`` or
    :func:`init`; else :func:`init` with no arguments: ``RAY_ADDRESS`` when it is set
    (``ConnectionError`` if it cannot be reached), else a fresh local Ray (never attaching
    to a stale instance left by another process), quietly and with Ray's defaults, token
    authentication included. Workers' own output (``print`` in a mapped function) still
    reaches the terminal.

    >>> connect()
    >>> import ray; ray.is_initialized()
    True
    """
    import ray

    if not ray.is_initialized():
        init()


def one_host() -> bool:
    """Whether every live node of the cluster this process is connected to runs on this
    machine (a local Ray, or a ``ray.cluster_utils.Cluster``): then every worker sees this
    machine's files, and may write into a local folder.

    >>> connect()
    >>> one_host()
    True
    """
    import ray

    here = ray.util.get_node_ip_address()
    return all(node['NodeManagerAddress'] == here for node in ray.nodes() if node['Alive'])
