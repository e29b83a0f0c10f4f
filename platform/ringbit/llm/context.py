"""Deploy-time context checks: an application that sends prompts to an LM endpoint (the evaluator,
the agents) asks the endpoint for its model's context and refuses to start when its own largest
request cannot fit, so a too-small model is one clear deployment failure (DEPLOY_FAILED with the
reason in `ringbit serve status`) instead of a 422 on every request.

The platform's LM service reports `max_context` in /v1/models; vLLM reports `max_model_len`.
An endpoint that does not answer, or does not say, is not checked here (it may start later, or be
a hosted API); requests then meet the endpoint's own length errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ringbit.llm.client import LLMClient, LLMError

CONTEXT_KEYS = ("max_context", "max_model_len", "context_length")


class ContextTooSmallError(RuntimeError):
    """The LM behind an endpoint has a shorter context than an application's requests need."""


# What a chat template adds around one user message (SmolLM2's default system turn and the role
# markers are ~35 tokens): reserved when an application sends its prompts as chat.
CHAT_OVERHEAD_TOKENS = 64


@dataclass(frozen=True)
class EndpointContext:
    model: str
    max_context: int | None  # None: the endpoint does not say
    chat_template: bool | None = None  # the platform's LM service says whether its model has one
    prompt_format: str | None = None  # "chat" or "plain" (a fine-tune on bare prompts), when it says


def resolve_api(api: str, found: EndpointContext | None) -> str | None:
    """"completions" or "chat" for an application's `api` setting; "auto" becomes "chat" for a
    model with a chat template (SmolLM2-Instruct) and "completions" otherwise (vLLM, the
    platform's own models) or when the endpoint says its model answers bare prompts
    (`prompt_format: plain`: a fine-tune that kept its base's template); None while the endpoint
    has not answered."""
    if api != "auto":
        return api
    if found is None:
        return None
    if found.prompt_format == "plain":
        return "completions"
    return "chat" if found.chat_template else "completions"


def app_name(default: str) -> str:
    """The Serve application this replica belongs to (for hints like `--set APP.ARG=…`)."""
    try:
        from ray import serve

        return serve.get_replica_context().app_name or default
    except Exception:  # not in a replica (a test, a script)
        return default


def card_context(card: dict[str, Any]) -> int | None:
    for key in CONTEXT_KEYS:
        if isinstance(card.get(key), int):
            return card[key]
    return None


def endpoint_context(client: LLMClient) -> EndpointContext | None:
    """The context of the endpoint's model (the client's `model`, else the first listed); None
    when the endpoint cannot be reached or lists no model."""
    try:
        cards = client.model_cards()
    except (LLMError, KeyError, ValueError, TypeError):
        return None
    if not cards:
        return None
    card = next((c for c in cards if c.get("id") == client.model), cards[0])
    template, fmt = card.get("chat_template"), card.get("prompt_format")
    return EndpointContext(str(card.get("id")), card_context(card), template if isinstance(template, bool) else None,
                           fmt if fmt in ("chat", "plain") else None)


def context_problem(found: EndpointContext | None, need: int, app: str, url: str, why: str,
                    fix: str | Callable[[int], str]) -> str | None:
    """One line saying why `app` cannot use the endpoint's model, or None when it fits (or the
    endpoint did not say). `fix` says what to do; a callable gets the served context."""
    if found is None or found.max_context is None or found.max_context >= need:
        return None
    hint = fix(found.max_context) if callable(fix) else fix
    return (f"the {app} needs a {need}-token context ({why}) but the LM at {url} serves "
            f"{found.model} with a {found.max_context}-token context: {hint}")


def require_context(client: LLMClient, need: int, app: str, why: str,
                    fix: str | Callable[[int], str]) -> EndpointContext | None:
    """Raise ContextTooSmallError (one line: what is needed, what is served, what to do) when the
    endpoint reports a context below `need`; returns what the endpoint said (None: not checked)."""
    found = endpoint_context(client)
    problem = context_problem(found, need, app, client.base_url, why, fix)
    if problem:
        raise ContextTooSmallError(problem)
    return found
