"""The provider families (upstream wire formats) of the contract, named once.

A pool's model names its family (``ModelPool.spec.models[].provider``, the
snapshot's ``Candidate.provider``). Both planes and the simulator need the
list of names and must not import each other, so the names live here, in
the contract: the control plane's model types the field with :data:`Family`
(and the CRD's enum is checked equal to it by tests/control), the router's
provider registry declares one entry per name (checked by tests/providers),
and the simulator serves every one (checked by tests/simulator). Everything
else about a family (adapter, auth, framing, quirks) is the router's, in
``skyroute.router.providers.registry``.
"""

from __future__ import annotations

from typing import Literal, get_args

# Azure OpenAI is named first only so that the older names keep their order in messages
# ("'openai', 'anthropic' or 'gemini'"); order carries no other meaning.
Family = Literal["azure-openai", "openai", "anthropic", "gemini", "bedrock"]
FAMILY_NAMES: tuple[Family, ...] = get_args(Family)
