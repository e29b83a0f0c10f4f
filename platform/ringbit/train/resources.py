"""Whether the cluster can place a job's workers: Ray Train waits, silently and without end, for
resources that a Serve app or another job holds, so the job says so before it starts waiting and
gives up after `workers.placement_timeout_s` with the shortfall and the fix."""

from __future__ import annotations


def placement_note(num_workers: int, cpus_per_worker: float, use_gpu: bool = False) -> str | None:
    """A note for the job log when the workers do not fit in the free resources, else None."""
    import ray

    need = {"CPU": num_workers * cpus_per_worker, "GPU": num_workers if use_gpu else 0}
    free, total = ray.available_resources(), ray.cluster_resources()
    short = {k: v for k, v in need.items() if v and free.get(k, 0.0) + 1e-9 < v}
    if not short:
        return None
    what = ", ".join(f"{v:g} {k}s (free {free.get(k, 0.0):g} of {total.get(k, 0.0):g})" for k, v in short.items())
    return (f"{num_workers} workers need {what}: the job waits until they are free (a Serve app or "
            "another job holds them; an autoscaler may add nodes). To start now, lower "
            "workers.cpus_per_worker or workers.num_workers, or stop what holds them "
            "(`ringbit serve down`, `ringbit jobs`).")


class PlacementTimeout(RuntimeError):
    """The workers' resources did not become free in time; the message has the shortfall and the fix."""


def wait_for_placement(num_workers: int, cpus_per_worker: float, use_gpu: bool, timeout_s: float) -> None:
    """Reserve the workers' bundles as Ray Train will (one placement group, PACK), wait up to
    `timeout_s` for it, release it. Raises PlacementTimeout; `timeout_s` 0 returns at once."""
    if timeout_s <= 0:
        return
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    bundle = {"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    pg = placement_group([bundle] * num_workers, strategy="PACK")
    try:
        ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
        if not ready:
            note = placement_note(num_workers, cpus_per_worker, use_gpu) or (
                f"{num_workers} workers of {bundle} do not fit on one node's free resources")
            raise PlacementTimeout(
                f"the workers could not be placed within {timeout_s:g} s (workers.placement_timeout_s; "
                f"0 waits forever): {note.replace('the job waits until they are free', 'they were not freed')}")
    finally:
        remove_placement_group(pg)
