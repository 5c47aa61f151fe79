"""The store: one SQLite file per workspace, behind this package's API.

Stages call :class:`Store` methods and never touch another stage's tables directly. The class is
assembled from one mixin per area so a server database could later implement the same API.
"""

from __future__ import annotations

from .accounts import ROLES, AccountError, AccountsMixin
from .availability import Overlap
from .batches import BatchesMixin
from .claims import ClaimsMixin, process_holder
from .core import StoreCore, dumps, loads, utcnow
from .dialogues import DIALOGUE_ORIGINS, SPEC_STATUSES, DialoguesMixin
from .exports import ExportsMixin
from .imports import ImportsMixin
from .judgements import JUDGEMENT_STATUSES, JudgementsMixin
from .leases import LeaseLost, LeasesMixin, human_holder
from .ledger import LedgerMixin
from .quality import QualityMixin
from .review import ReviewError, ReviewMixin
from .schema import MIGRATIONS, SCHEMA_VERSION
from .sessions import REVIEW_VERDICTS, SKIP_REASONS, SessionsMixin
from .sources import SourcesMixin, source_id_for
from .specs import PlanMixin
from .verdicts import VerdictsMixin

STORE_FILE = "itcollect.db"


class Store(SourcesMixin, DialoguesMixin, LedgerMixin, ClaimsMixin, PlanMixin, LeasesMixin, SessionsMixin, VerdictsMixin, ImportsMixin, ExportsMixin, BatchesMixin, AccountsMixin,
            JudgementsMixin, ReviewMixin, QualityMixin, StoreCore):
    """The workspace store. Open with ``Store(path)``; it migrates the schema on open."""


__all__ = ["Store", "StoreCore", "STORE_FILE", "SCHEMA_VERSION", "MIGRATIONS", "SPEC_STATUSES",
           "DIALOGUE_ORIGINS", "source_id_for", "dumps", "loads", "utcnow", "process_holder", "LeaseLost",
           "human_holder", "SKIP_REASONS", "ROLES", "AccountError", "JUDGEMENT_STATUSES", "Overlap", "ReviewError",
           "REVIEW_VERDICTS"]
