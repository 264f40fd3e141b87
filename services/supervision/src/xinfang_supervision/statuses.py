"""How the lifecycle statuses (matters.status.v1) bear on deadlines."""

from __future__ import annotations

from xinfang_shared.contracts.events import MatterStatus
from xinfang_shared.contracts.reference import DeadlineType

S = MatterStatus
D = DeadlineType

# Accepted at each review level (routing's state machine): the deciding deadline that starts.
DECIDING_OPENS = {S.ACCEPTED: D.HANDLING, S.IN_REVIEW: D.REVIEW, S.IN_RE_REVIEW: D.RE_REVIEW}
# A conclusion at each level: the deciding deadline it meets.
CONCLUSION_MEETS = {S.CONCLUDED: D.HANDLING, S.REVIEW_CONCLUDED: D.REVIEW, S.RE_REVIEW_CONCLUDED: D.RE_REVIEW}
# A conclusion that opens the petitioner's window to ask one level up (the deadline it is published as).
REQUEST_OPENS = {S.CONCLUDED: D.REVIEW, S.REVIEW_CONCLUDED: D.RE_REVIEW}
# The request came: the window it was made in is met.
REQUEST_MEETS = {S.REVIEW_REQUESTED: D.REVIEW, S.RE_REVIEW_REQUESTED: D.RE_REVIEW}
# Nothing is due any more.
ENDS_EVERYTHING = {S.CLOSED, S.TERMINATED, S.DUPLICATE, S.NOT_ACCEPTED_AGAIN}
