"""The typed sections of a validated config, under the names the stages import.

The sections are declared, with their defaults, ranges and comments, in
:mod:`itcollect.config.schema`; this module only re-exports them and :func:`settings`, so
``from itcollect.settings import FilterSection, settings`` keeps working. Use:
``settings(config).filter.min_chrf``.
"""

from __future__ import annotations

from itcollect.config import settings
from itcollect.config.schema import (
    AnnotatorSection,
    AssistantSection,
    BatchSection,
    ExportSection,
    FilterSection,
    IngestSection,
    JudgeRoleSection,
    JudgeSection,
    LLMSection,
    LocalSection,
    MixSection,
    PromptsSection,
    RoleSection,
    SessionSection,
    Settings,
    SimulateSection,
    SystemSection,
    WebSection,
    WorkspaceSection,
)

__all__ = ["AnnotatorSection", "AssistantSection", "BatchSection", "ExportSection", "FilterSection",
           "IngestSection", "JudgeRoleSection", "JudgeSection", "LLMSection", "LocalSection", "MixSection",
           "PromptsSection", "RoleSection", "SessionSection", "Settings", "SimulateSection", "SystemSection",
           "WebSection", "WorkspaceSection", "settings"]
