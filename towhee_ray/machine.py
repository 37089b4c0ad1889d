"""What this process may use: how many CPUs, for sizing its threads (those it may run on,
fewer where a cgroup's quota allows less, and in a Ray task or actor given CPUs, those), and
what Ray gave it when it is a Ray task or actor.

>>> 1 <= usable_cpus() <= (os.cpu_count() or 1)
True
>>> ray_given_cpus()   # outside a Ray worker
0.0
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Dict, Optional

logger = logging.getLogger(__name__)

_CGROUP_V1 = '/sys/fs/cgroup/cpu/cpu.cfs_'


def usable_cpus() -> float:
    """The CPUs this process may use: those it may run on (its affinity), fewer where a
    cgroup's CPU quota (a container's ``--cpus``) allows less or, in a Ray task or actor,
    where Ray gave it fewer (``num_cpus=``); at least 1."""
    try:
        cpus: float = len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_quota_cpus()
    if quota is not None:
        cpus = min(cpus, quota)
    given = ray_given_cpus()
    if given >= 1:
        cpus = min(cpus, given)
    return max(cpus, 1.0)


def ray_given_cpus() -> float:
    """The CPUs Ray gave this process's task or actor (``num_cpus=``); 0 outside a Ray
    worker (a driver, or Ray not imported) and where it gave none."""
    return float((ray_worker_resources() or {}).get('CPU', 0))


def ray_worker_resources() -> Optional[Dict[str, float]]:
    """The resources Ray gave this process when it is a Ray task or actor (``{'CPU': 1.0}``;
    ``{}`` for none), None when it is not one (a driver, or Ray not imported)."""
    ray = sys.modules.get('ray')
    if ray is None or not ray.is_initialized():
        return None
    try:
        context = ray.get_runtime_context()
        if context.worker.mode != ray.WORKER_MODE:
            return None
        return dict(context.get_assigned_resources())
    except Exception:   # noqa: BLE001 - an older or newer Ray without these: as outside Ray
        logger.debug('could not ask Ray for the resources it gave this worker', exc_info=True)
        return None


def cgroup_quota_cpus() -> Optional[float]:
    """The CPUs this process's cgroup quota allows (v2's ``cpu.max``, else v1's
    ``cfs_quota_us`` over ``cfs_period_us``), None where none is set or readable."""
    for quota_file, period_file in (('/sys/fs/cgroup/cpu.max', None),
                                    (f'{_CGROUP_V1}quota_us', f'{_CGROUP_V1}period_us')):
        try:
            with open(quota_file, encoding='ascii') as file:
                text = file.read()
            if period_file is not None:
                with open(period_file, encoding='ascii') as file:
                    text = f'{text} {file.read()}'
            return quota_cpus(text)
        except (OSError, ValueError):
            continue
    return None


def quota_cpus(text: str) -> Optional[float]:
    """The CPUs a cgroup's quota allows, from ``'<quota> <period>'`` in microseconds, None
    where it sets none.

    >>> quota_cpus('max 100000'), quota_cpus('150000 100000'), quota_cpus('-1 100000')
    (None, 1.5, None)
    """
    quota, period = text.split()[:2]
    if quota == 'max' or int(quota) < 0:
        return None
    return int(quota) / int(period)
