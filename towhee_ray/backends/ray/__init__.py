"""The ``ray`` backend and everything that runs on Ray: the only package of towhee_ray that
imports Ray, and only when one of its modules is loaded (this file imports nothing).

* ``backend.py``   the ``ray`` backend: a step's function as Ray tasks, its operator on a pool
* ``pool.py``      the one pool of operator actors, shared by a ``ray`` step's operators and
  :func:`towhee_ray.ray_op`: slot choice, dead actors, load failures
* ``batching.py``  gathering concurrent ``ray_op`` calls into one operator call on a list
* ``faults.py``    Ray workers that die, Ray going away, the errors that say so
* ``names.py``     the one name of a step, in errors and in Ray's dashboard
* ``resources.py`` what a step asks of Ray (CPUs, GPUs, memory, retries), and whether it fits
* ``shipping.py``  what travels to the workers, and loading it there
* ``cancel.py``    closing a step early: its tasks get a grace second, then are cancelled
* ``heap.py``      workers keep the heap a chunk of large outputs freed

The entry point ``ray = towhee_ray.backends.ray.backend:RayBackend`` (setup.cfg) is how
``set_parallel(backend='ray')`` finds it.
"""
