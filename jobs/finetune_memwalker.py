"""Ray job entrypoint: fine-tune an LM as MemWalker's reader on the synthetic generator's traces.

    python jobs/finetune_memwalker.py --config jobs/configs/finetune-memwalker-smollm2.yaml
    ringbit submit finetune-memwalker -c jobs/configs/finetune-memwalker-smollm2.yaml
"""

import sys

from ringbit.workflows import run_job_entrypoint

if __name__ == "__main__":
    sys.exit(run_job_entrypoint("finetune-memwalker", sys.argv[1:]))
