"""The one training driver's bookkeeping without a cluster: the progress line and its parser, the
failure path's run status (a stopped run stays KILLED, a finished one FINISHED, and a tracking
server that fails does not replace the job's error), the DeepSpeed config without a
PretrainConfig. Ray Train and MLflow themselves run for real in tests/integration/."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ringbit.jobs import parse_progress as jobs_parse_progress
from ringbit.train.config import DeepSpeedConfig, PretrainConfig, SFTConfig, TrainConfig
from ringbit.train.progress import format_progress, parse_progress


def test_progress_line_round_trips():
    line = format_progress(12, 300, {"train_loss": 4.123456789, "lr": 3e-4, "val_ppl": 61.25})
    assert line == "[ringbit] step=12/300 train_loss=4.12346 lr=0.0003 val_ppl=61.25"
    assert parse_progress("(pid=1) " + line) == (12, 300, {"train_loss": 4.12346, "lr": 3e-4, "val_ppl": 61.25})
    assert jobs_parse_progress is parse_progress  # the CLI's progress bar reads what jobs print
    first = format_progress(0, 30, {"val_loss": 6.2, "val_ppl": 493.0}, note="(1.5 s)")
    assert first == "[ringbit] step=0/30 val_loss=6.2 val_ppl=493 (1.5 s)"
    assert parse_progress(first) == (0, 30, {"val_loss": 6.2, "val_ppl": 493.0})
    assert format_progress(3, 9, {"em": 0.123456}, fmt=".4g") == "[ringbit] step=3/9 em=0.1235"
    assert parse_progress("[ringbit] resumed from checkpoint at step 20") is None


class Client:
    """An MLflow client's two calls the failure path makes, recorded."""

    def __init__(self, status: str, fail_get: bool = False, fail_set: bool = False):
        self.status, self.fail_get, self.fail_set, self.calls = status, fail_get, fail_set, []

    def get_run(self, run_id):
        if self.fail_get:
            raise ConnectionError("tracking server down")
        return SimpleNamespace(info=SimpleNamespace(status=self.status))

    def set_terminated(self, run_id, status):
        self.calls.append(status)
        if self.fail_set:
            raise ConnectionError("tracking server down")
        self.status = status


@pytest.mark.parametrize("status, expected", [("RUNNING", "FAILED"), ("KILLED", "KILLED"),
                                              ("FINISHED", "FINISHED"), ("FAILED", "FAILED")])
def test_a_failure_marks_failed_but_keeps_killed_and_finished(status, expected):
    from ringbit.tracking import mark_failed

    client = Client(status)
    mark_failed(client, "run", log=lambda line: None)
    assert client.status == expected


def test_the_failure_path_never_raises():
    from ringbit.tracking import mark_failed

    lines = []
    client = Client("RUNNING", fail_get=True)
    mark_failed(client, "run", log=lines.append)
    assert client.calls == ["FAILED"]  # unknown status: still not left RUNNING
    mark_failed(Client("RUNNING", fail_set=True), "run", log=lines.append)
    assert len(lines) == 2 and all("tracking server down" in line for line in lines)


def test_deepspeed_config_needs_no_pretrain_config():
    from ringbit.train.engine import deepspeed_config

    sft = SFTConfig(train=TrainConfig(global_batch_size=16, micro_batch_size=2, warmup_steps=1),
                    deepspeed=DeepSpeedConfig(zero_stage=3, extra={"gradient_clipping": 0.5}))
    ds = deepspeed_config(sft.train, sft.deepspeed, False, data_parallel=sft.workers.num_workers)
    assert ds["train_batch_size"] == 16 and ds["train_micro_batch_size_per_gpu"] == 2
    assert ds["gradient_accumulation_steps"] == 4 and ds["zero_optimization"] == {"stage": 3}
    assert ds["gradient_clipping"] == 0.5 and ds["bf16"] == {"enabled": False}
    # pretraining with sequence parallelism: DeepSpeed's batch counts every SP shard
    pre = PretrainConfig(workers={"num_workers": 4}, parallel={"sequence_parallel": 2},
                         train={"global_batch_size": 8, "micro_batch_size": 2, "warmup_steps": 1})
    ds = deepspeed_config(pre.train, pre.deepspeed, False, data_parallel=pre.data_parallel,
                          sequence_parallel=pre.parallel.sequence_parallel)
    assert ds["train_batch_size"] == 16 and ds["gradient_accumulation_steps"] == pre.grad_accum_steps == 2
