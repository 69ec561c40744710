"""Commands on remote hosts. ``command`` names a template in the runbook's policy; the host
checks each parameter against the template's pattern and does all quoting."""

from __future__ import annotations

from . import _host
from ._types import CommandOutput


def run(host: str, command: str, **params: str) -> CommandOutput:
    """Runs the policy's template ``command`` on ``host`` with ``params``. A non-zero exit
    is returned, not raised: check ``exit_code``."""
    return _host.current().ssh(host, command, [(k, str(v)) for k, v in params.items()])
