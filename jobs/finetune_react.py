"""Ray job entrypoint: Fine-tune a platform LM on FireAct ReAct trajectories (val_ppl on held-out ones in MLflow).

    python jobs/finetune_react.py --config jobs/configs/finetune-react.yaml
    ringbit submit finetune-react -c jobs/configs/finetune-react.yaml
"""

import sys

from ringbit.workflows import run_job_entrypoint

if __name__ == "__main__":
    sys.exit(run_job_entrypoint("finetune-react", sys.argv[1:]))
