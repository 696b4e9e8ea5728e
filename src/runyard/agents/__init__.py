"""Agents: the tool builder (:mod:`.builder`, re-exported here), configs (:mod:`.config`), the chat
store (:mod:`.chats`), the loop (:mod:`.loop`) and the tools it runs server-side (:mod:`.tools`,
:mod:`.sandbox`).

Importing this package loads only the builder::

    from runyard.agents import tool, string, integer, app_tool, internal_tools
"""

from . import builder
from .builder import *  # noqa: F403 - the builder's public names (its __all__)

__all__ = builder.__all__
