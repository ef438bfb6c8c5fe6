"""LLM providers behind one port (`ports.AIProvider`): Claude (`anthropic`) and the offline explainer.

Importing this package does not import the `anthropic` SDK; `AnthropicProvider` does so on its
first call.
"""

from kubilitics.ai.providers.anthropic import AnthropicProvider
from kubilitics.ai.providers.base import (
    DEFAULT_SYSTEM_PROMPT,
    AIRequest,
    AIResult,
    Tool,
    ToolCall,
    ToolCallback,
    Usage,
    kubernetes_toolset,
)
from kubilitics.ai.providers.offline import OfflineProvider

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "AIRequest",
    "AIResult",
    "AnthropicProvider",
    "OfflineProvider",
    "Tool",
    "ToolCall",
    "ToolCallback",
    "Usage",
    "kubernetes_toolset",
]
