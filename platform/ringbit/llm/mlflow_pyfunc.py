"""MLflow "models from code" definition for a ringbit LM (no pickled Python objects).

`mlflow.pyfunc.load_model("models:/<name>@<alias>").predict(["Once upon"])` returns continuations.
"""

from __future__ import annotations

import mlflow
from mlflow.pyfunc import PythonModel


class RingbitLM(PythonModel):
    def load_context(self, context) -> None:
        from ringbit.models.io import load_model_dir

        self.model, self.tokenizer = load_model_dir(context.artifacts["model_dir"])

    def predict(self, context, model_input, params=None):
        import torch

        params = params or {}
        prompts = model_input["prompt"].tolist() if hasattr(model_input, "columns") else list(model_input)
        outputs = []
        for prompt in prompts:
            ids = torch.tensor([self.tokenizer.encode(str(prompt)).ids or [0]])
            out = self.model.generate(
                ids, int(params.get("max_new_tokens", 32)), float(params.get("temperature", 0.0))
            )
            outputs.append(self.tokenizer.decode(out[0, ids.shape[1] :].tolist()))
        return outputs


mlflow.models.set_model(RingbitLM())
