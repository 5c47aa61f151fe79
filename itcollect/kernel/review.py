"""The review vocabulary, shared by the review desk (``session --review``, the web review page)
and the store that records it."""

from __future__ import annotations

#: A reviewer's command -> the verdict stored in ``dialogues.review_status`` (``accept`` of a
#: dialogue with the reviewer's fixes is stored as ``fixed``).
VERDICTS = {"accept": "accepted", "reject": "rejected"}
#: A review verdict (``dialogues.review_status``) -> its action in the session log.
REVIEW_VERDICTS = {"accepted": "review_accept", "rejected": "review_reject", "fixed": "review_fixed"}

__all__ = ["REVIEW_VERDICTS", "VERDICTS"]
