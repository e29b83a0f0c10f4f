"""Ray job entrypoint: Evaluate a ReAct agent (FireAct) on HotpotQA questions: EM / F1.

    python jobs/eval_react_agent.py --config jobs/configs/agents-react.yaml
    ringbit agents eval react --n 50
"""

import sys

from ringbit.workflows import run_job_entrypoint

if __name__ == "__main__":
    sys.exit(run_job_entrypoint("eval-react", sys.argv[1:]))
