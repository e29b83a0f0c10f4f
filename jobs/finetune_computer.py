"""Ray job entrypoint: fine-tune an LM as the computer-control agent on recorded demonstrations.

    python jobs/finetune_computer.py --config jobs/configs/finetune-computer-smollm2.yaml
    ringbit submit finetune-computer -c jobs/configs/finetune-computer-smollm2.yaml --set data.demos=runs:/RUN_ID/demos.jsonl
"""

import sys

from ringbit.workflows import run_job_entrypoint

if __name__ == "__main__":
    sys.exit(run_job_entrypoint("finetune-computer", sys.argv[1:]))
