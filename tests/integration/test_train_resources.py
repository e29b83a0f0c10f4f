"""The note a training job prints when its workers do not fit in the free resources (a real
local Ray cluster with 2 CPUs; one actor holds 1.5 of them, as a Serve replica would)."""

import pytest

from ringbit.train.resources import placement_note


@pytest.fixture(scope="module")
def busy_cluster(local_ray):
    @local_ray.remote(num_cpus=1.5)
    class Holder:
        def ready(self) -> bool:
            return True

    holder = Holder.remote()
    local_ray.get(holder.ready.remote())
    yield local_ray
    local_ray.kill(holder)


def test_note_names_the_shortfall_and_the_fix(busy_cluster):
    note = placement_note(2, 1.0)
    assert note is not None
    assert "2 CPUs (free 0.5 of 2)" in note and "workers.cpus_per_worker" in note
    assert "GPU" not in note
    assert "GPUs (free 0 of 0)" in placement_note(1, 0.25, use_gpu=True)


def test_no_note_when_the_workers_fit(busy_cluster):
    assert placement_note(2, 0.25) is None
