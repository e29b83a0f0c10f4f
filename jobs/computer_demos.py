"""Ray job entrypoint: record computer-control demonstrations (scripted solvers as the agent's LLM).

    python jobs/computer_demos.py --config jobs/configs/agents-computer-demos.yaml
    ringbit agents demos computer --seeds 1000-1049
"""

import sys

from ringbit.workflows import run_job_entrypoint

if __name__ == "__main__":
    sys.exit(run_job_entrypoint("computer-demos", sys.argv[1:]))
