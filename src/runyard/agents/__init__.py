"""Agents: the tool builder (:mod:`.builder`, re-exported here), configs (:mod:`.config`), the chat
store (:mod:`.chats`), the loop (:mod:`.loop`) and the tools it runs server-side (:mod:`.tools`,
:mod:`.sandbox`).

Importing this package loads only the builder::

    from runyard.agents import tool, string, integer, app_tool, internal_tools
"""

from .builder import (
    ToolBuilder,
    agent_tool,
    app_tool,
    array,
    boolean,
    enum_of,
    integer,
    internal_tools,
    number,
    obj,
    optional,
    string,
    tool,
    webhook_tool,
)

__all__ = [
    "ToolBuilder",
    "agent_tool",
    "app_tool",
    "array",
    "boolean",
    "enum_of",
    "integer",
    "internal_tools",
    "number",
    "obj",
    "optional",
    "string",
    "tool",
    "webhook_tool",
]
