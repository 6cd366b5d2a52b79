"""The words of what routers report to the control plane, named once.

Both planes need them and must not import each other: the router tags an
outcome or a stats window whose request matched no intent with
:data:`UNKNOWN_INTENT`, and the control plane accepts that name in a report
besides the intents the snapshot declares.
"""

from __future__ import annotations

# The intent of a request that matched none of its policy's intents.
UNKNOWN_INTENT = "unknown"
