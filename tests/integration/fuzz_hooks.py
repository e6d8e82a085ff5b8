"""schemathesis hooks for ``tests/test_fuzz.py`` (loaded through ``SCHEMATHESIS_HOOKS``).

Valid ``?wait=N`` values above a few seconds only make the fuzzer sit idle while a job it
queued finishes, so they are lowered to 3; invalid ones (0, 61, text) are sent as generated.
"""

from __future__ import annotations

from typing import Any

import schemathesis

WAIT_CAP_S = 3


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    query = case.query
    if isinstance(query, dict):
        wait = query.get("wait")
        if isinstance(wait, int) and not isinstance(wait, bool) and WAIT_CAP_S < wait <= 60:
            query["wait"] = WAIT_CAP_S
