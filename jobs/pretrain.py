"""Ray job entrypoint: pretrain a decoder LM on Ray Train + DeepSpeed.

    python jobs/pretrain.py --config jobs/configs/demo.yaml [--set train.lr=3e-4 ...]
    ray job submit --working-dir . -- python jobs/pretrain.py --config jobs/configs/demo.yaml
"""

import sys

from ringbit.workflows import run_job_entrypoint

if __name__ == "__main__":
    sys.exit(run_job_entrypoint("pretrain", sys.argv[1:]))
