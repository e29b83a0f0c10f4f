"""Whether the cluster can place a job's workers now: Ray Train waits, silently, for resources
that a Serve app or another job holds, so the job says so before it starts waiting."""

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
