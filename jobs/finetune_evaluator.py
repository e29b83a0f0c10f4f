"""Ray job entrypoint: fine-tune a platform LM to write InstructScore reports (synthetic data).

    python jobs/finetune_evaluator.py --config jobs/configs/finetune-evaluator.yaml
    ringbit submit finetune-evaluator -c jobs/configs/finetune-evaluator.yaml
"""

import sys

from ringbit.workflows import run_job_entrypoint

if __name__ == "__main__":
    sys.exit(run_job_entrypoint("finetune-evaluator", sys.argv[1:]))
