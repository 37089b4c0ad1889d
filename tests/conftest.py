"""One real local Ray for the whole test session, started the way users get it."""
import pytest

import towhee_ray


@pytest.fixture(scope='session')
def ray_cluster():
    """A fresh local Ray (``towhee_ray.connect()``), shut down after the last test."""
    import ray

    towhee_ray.connect()
    yield ray
    ray.shutdown()


@pytest.fixture
def alive_actors(ray_cluster):
    """A function listing the ids of the towhee_ray operator actors not (yet) dead."""
    from ray.util.state import list_actors

    # This session's own cluster by address: on a shared machine the state API would
    # otherwise refuse to choose among several local Ray instances.
    address = ray_cluster.get_runtime_context().gcs_address

    def alive():
        return [actor.actor_id for actor in list_actors(address=address, filters=[('state', '!=', 'DEAD')])
                if actor.class_name == '_OperatorActor']
    return alive
