"""Workflows: the definition language and builder (:mod:`.definition`), its static type checker
(:mod:`.typecheck`), the version/alias store (:mod:`.store`), the engine (:mod:`.engine`, with the
block kinds in :mod:`.blocks`) and the built-in ``runyard/workflow`` app that runs it (:mod:`.app`).

Importing this package loads only the definition language (``from runyard.workflows import Workflow``).
"""

from .definition import (
    KINDS,
    Workflow,
    WorkflowProblem,
    env,
    normalize,
    parse_definition,
    validate_definition,
)

__all__ = ["KINDS", "Workflow", "WorkflowProblem", "env", "normalize", "parse_definition", "validate_definition"]
