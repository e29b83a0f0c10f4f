"""The note a training job prints when its workers do not fit in the free resources (a real
local Ray cluster with 2 CPUs; one actor holds 1.5 of them, as a Serve replica would)."""

import time

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


def test_workers_that_cannot_be_placed_fail_after_the_timeout(busy_cluster):
    from ringbit.train.resources import PlacementTimeout, wait_for_placement

    with pytest.raises(PlacementTimeout) as err:
        wait_for_placement(2, 1.0, False, timeout_s=2)
    message = str(err.value)
    assert "within 2 s" in message and "workers.placement_timeout_s" in message
    assert "2 CPUs (free 0.5 of 2)" in message and "ringbit serve down" in message
    # the probe's reservation is released: what fits still fits, and nothing is left held
    wait_for_placement(2, 0.25, False, timeout_s=30)
    deadline = time.monotonic() + 30  # removing a placement group returns its CPUs asynchronously
    while busy_cluster.available_resources().get("CPU", 0) < 0.5 - 1e-6 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert busy_cluster.available_resources().get("CPU", 0) == pytest.approx(0.5)


def test_a_job_that_cannot_be_placed_ends_failed_with_the_message(busy_cluster, tmp_path):
    """The whole path: fit_on_ray gives up, the MLflow run is FAILED, nothing waits forever."""
    from mlflow.tracking import MlflowClient

    from ringbit.train.config import WorkersConfig
    from ringbit.train.driver import fit_on_ray
    from ringbit.train.resources import PlacementTimeout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("placement")).info.run_id
    lines = []
    with pytest.raises(PlacementTimeout):
        fit_on_ray(lambda config: None, {}, name="unplaceable", workers=WorkersConfig(
                       num_workers=2, cpus_per_worker=1.0, placement_timeout_s=2),
                   storage=tmp_path / "runs", client=client, run_id=run_id, log=lines.append)
    assert any("note: 2 workers need" in line for line in lines)
    assert client.get_run(run_id).info.status == "FAILED"
