"""Azure OpenAI: the OpenAI Chat Completions codec at Azure's deployment URLs.

Azure OpenAI serves the OpenAI wire format, so the body translations and the
stream assembly are :class:`~.openai_adapter.OpenAIAdapter`'s, unchanged; what
differs is where a request goes and how Azure words its failures:

- the URL names a *deployment*, not a model, and carries the API version:
  ``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=V``,
  where ``endpoint`` is the resource (``https://NAME.openai.azure.com``), the
  deployment is the target's model (a pool model's ``upstreamModel`` or
  ``name``) and ``V`` the target's ``api_version`` (:data:`DEFAULT_API_VERSION`
  when the pool names none);
- the key goes in an ``api-key`` header, or with ``auth: entra`` a Microsoft
  Entra ID token as ``Authorization: Bearer`` (:mod:`.azure_auth`);
- content filtering: a prompt the filter blocks is a 400 whose
  ``error.code`` is ``content_filter`` with the per-category verdicts in
  ``error.innererror.content_filter_result``, a completion it blocks ends with
  ``finish_reason: content_filter``. Both become CONTENT_FILTER (the errors
  module names the filtered categories): the client's 400, and another model
  only where the policy says so (``reliability.contentFilter: fallback``);
- a deployment that does not exist (404 ``DeploymentNotFound``, e.g. deleted or
  misnamed) is NOT_FOUND, a fault of that candidate: the next one is tried.
"""

from __future__ import annotations

from urllib.parse import quote

from skyroute.router.providers.common import Prepared, join_url
from skyroute.router.providers.openai_adapter import OpenAIAdapter
from skyroute.router.providers.types import Target

FAMILY = "azure-openai"
# The latest generally available data-plane API version that streams usage.
DEFAULT_API_VERSION = "2024-10-21"


def deployment_url(endpoint: str, deployment: str, api_version: str) -> str:
    """The chat completions URL of ``deployment`` on the resource at ``endpoint``."""
    path = f"/openai/deployments/{quote(deployment, safe='')}/chat/completions"
    return join_url(endpoint, path) + "?api-version=" + quote(api_version, safe="")


class AzureOpenAIAdapter(OpenAIAdapter):
    family = FAMILY

    def prepare(self, target: Target) -> Prepared:
        base = super().prepare(target)
        url = deployment_url(
            target.endpoint, target.model, target.api_version or DEFAULT_API_VERSION
        )
        return Prepared(url, url, base.headers, base.stream_headers, target.model, target.api_key)
