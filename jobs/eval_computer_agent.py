"""Ray job entrypoint: Evaluate the structured-reflection computer-control agent on MiniWoB++.

    python jobs/eval_computer_agent.py --config jobs/configs/agents-computer.yaml
    ringbit agents eval computer --tasks click-button,enter-text --seeds 0-9 --trials 3
"""

import sys

from ringbit.workflows import run_job_entrypoint

if __name__ == "__main__":
    sys.exit(run_job_entrypoint("eval-computer", sys.argv[1:]))
