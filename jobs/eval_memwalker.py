"""Ray job entrypoint: Evaluate MemWalker on synthetic long documents with planted facts.

    python jobs/eval_memwalker.py --config jobs/configs/agents-memwalker.yaml
    ringbit agents eval memwalker --docs 8
"""

import sys

from ringbit.workflows import run_job_entrypoint

if __name__ == "__main__":
    sys.exit(run_job_entrypoint("eval-memwalker", sys.argv[1:]))
