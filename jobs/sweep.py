"""Ray job entrypoint: a Ray Tune sweep of pretraining jobs (context length x weight bits).

    python jobs/sweep.py --config jobs/configs/sweep.yaml [--set space.seq_len=[64,128] ...]
    ray job submit --working-dir . -- python jobs/sweep.py --config jobs/configs/sweep.yaml
"""

import sys

from ringbit.workflows import run_job_entrypoint

if __name__ == "__main__":
    sys.exit(run_job_entrypoint("sweep", sys.argv[1:]))
