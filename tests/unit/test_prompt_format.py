"""How a served model wants its prompts: the model folder records it (a fine-tune on bare prompts
keeps its base's chat template but answers bare prompts), the LM service's card reports it and an
`api: auto` caller follows it."""

from __future__ import annotations

import json

import pytest
import torch

from ringbit.llm.context import EndpointContext, endpoint_context, resolve_api
from ringbit.models.config import ModelConfig
from ringbit.models.io import read_prompt_format, save_model_dir
from ringbit.quant.config import QuantConfig

CFG = ModelConfig(vocab_size=300, d_model=32, n_layers=1, n_heads=2, max_seq_len=32)
TEMPLATE = {"chat_template": "{{ messages[0]['content'] }}", "eos_token": "<|endoftext|>"}


def folder(tmp_path, name, quant=None, **kwargs):
    from ringbit.data.tokenizer import train_tokenizer
    from ringbit.models import Transformer

    tok = train_tokenizer(["a b c d e f g"] * 20, CFG.vocab_size)
    return save_model_dir(tmp_path / name, CFG, Transformer(CFG, quant=quant).state_dict(), tok.to_str(),
                          quant=quant, **kwargs)


def test_the_folder_says_how_its_model_is_prompted(tmp_path):
    assert read_prompt_format(folder(tmp_path, "base")) == "plain"  # no template
    assert read_prompt_format(folder(tmp_path, "instruct", tokenizer_config=TEMPLATE)) == "chat"
    tuned = folder(tmp_path, "sft", tokenizer_config=TEMPLATE, prompt_format="plain")
    assert read_prompt_format(tuned) == "plain"
    assert json.loads((tuned / "config.json").read_text())["prompt_format"] == "plain"
    assert "prompt_format" not in json.loads((tmp_path / "instruct" / "config.json").read_text())


def test_a_packed_export_keeps_the_record(tmp_path):
    from ringbit.quant.export import export_packed

    torch.manual_seed(0)
    src = folder(tmp_path, "b158", quant=QuantConfig(weight_bits=1.58, subln="none"),
                 tokenizer_config=TEMPLATE, prompt_format="plain")
    export_packed(src, tmp_path / "packed")
    assert read_prompt_format(tmp_path / "packed") == "plain"


@pytest.mark.parametrize("template, fmt, api", [
    (True, None, "chat"),          # an instruct model (or an older LM service that does not say)
    (True, "chat", "chat"),
    (True, "plain", "completions"),  # a fine-tune that kept its base's template
    (False, "plain", "completions"),
    (None, None, "completions"),   # vLLM and hosted APIs say nothing: completions
])
def test_auto_follows_the_cards_prompt_format(template, fmt, api):
    found = EndpointContext("m", 1024, template, fmt)
    assert resolve_api("auto", found) == api
    assert resolve_api("chat", found) == "chat" and resolve_api("completions", found) == "completions"
    assert resolve_api("auto", None) is None  # not answered yet


class CardsOnly:
    """Test double of LLMClient's /v1/models: no LLM is involved."""

    def __init__(self, cards, model=None):
        self.cards, self.model = cards, model

    def model_cards(self):
        return self.cards


def test_the_endpoint_card_is_read_with_its_prompt_format():
    cards = [{"id": "a", "max_context": 8192, "chat_template": True},
             {"id": "b", "max_context": 1024, "chat_template": True, "prompt_format": "plain"}]
    assert endpoint_context(CardsOnly(cards, "b")) == EndpointContext("b", 1024, True, "plain")
    assert endpoint_context(CardsOnly(cards)) == EndpointContext("a", 8192, True, None)
    odd = [{"id": "c", "max_model_len": 4096, "prompt_format": "weird"}]  # vLLM-style, unknown value ignored
    assert endpoint_context(CardsOnly(odd)) == EndpointContext("c", 4096, None, None)
