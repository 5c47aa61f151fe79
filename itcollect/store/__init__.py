"""The store: one SQLite file per workspace, behind this package's API.

Stages call :class:`Store` methods and never touch another stage's tables directly. The class is
assembled from one mixin per area so a server database could later implement the same API.
"""

from __future__ import annotations

from itcollect.store.accounts import ROLES, AccountError, AccountsMixin
from itcollect.store.availability import Overlap
from itcollect.store.batches import BatchesMixin
from itcollect.store.claims import ClaimsMixin, process_holder
from itcollect.store.comparisons import ComparisonsMixin
from itcollect.store.copy import copy_store
from itcollect.store.core import StoreCore, dumps, loads, utcnow
from itcollect.store.dialogues import DIALOGUE_ORIGINS, SPEC_STATUSES, DialoguesMixin
from itcollect.store.exports import ExportsMixin
from itcollect.store.imports import ImportsMixin
from itcollect.store.judgements import JUDGEMENT_STATUSES, JudgementsMixin
from itcollect.store.leases import LeaseLost, LeasesMixin, human_holder
from itcollect.store.ledger import LedgerMixin
from itcollect.store.pg import try_run_lock
from itcollect.store.quality import QualityMixin
from itcollect.store.review import ReviewError, ReviewMixin
from itcollect.store.schema import MIGRATIONS, SCHEMA_VERSION
from itcollect.store.sessions import SKIP_REASONS, SessionsMixin
from itcollect.store.sources import SourcesMixin, source_id_for
from itcollect.store.specs import SpecsMixin
from itcollect.store.verdicts import VerdictsMixin
from itcollect.store.webguard import WebGuardMixin

STORE_FILE = "itcollect.db"


class Store(SourcesMixin, ReviewMixin, SessionsMixin, DialoguesMixin, LedgerMixin, ClaimsMixin, SpecsMixin,
            LeasesMixin, VerdictsMixin, ImportsMixin, ExportsMixin, BatchesMixin, AccountsMixin, JudgementsMixin,
            QualityMixin, ComparisonsMixin, WebGuardMixin, StoreCore):
    """The workspace store. Open with ``Store(path)``; it migrates the schema on open.

    A mixin that calls another area's methods derives from that area's mixin (review from
    sessions, sessions from dialogues), so each area type-checks on its own; no two mixins define
    the same method, so the order of the bases decides nothing else."""


__all__ = ["Store", "StoreCore", "STORE_FILE", "SCHEMA_VERSION", "MIGRATIONS", "SPEC_STATUSES",
           "DIALOGUE_ORIGINS", "source_id_for", "dumps", "loads", "utcnow", "process_holder", "LeaseLost",
           "human_holder", "SKIP_REASONS", "ROLES", "AccountError", "JUDGEMENT_STATUSES", "Overlap", "ReviewError",
           "copy_store", "try_run_lock"]
