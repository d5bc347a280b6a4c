"""Request parameters shared by the API and the pages, bounded so that no value reaches the
database out of its range (an id past 64 bits would be a 500, not a 404)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

#: The largest id a run can have (a 64-bit signed integer, as the database keeps it).
MAX_ID = 2**63 - 1

RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="A run's id.")]
RevisionNumber = Annotated[int, Path(ge=1, le=MAX_ID, description="A revision's number.")]
#: A revision's number given as a query parameter (``?revision=N``, ``?older=A&newer=B``).
RevisionQuery = Annotated[int, Query(ge=1, le=MAX_ID)]
#: Most lines of an engine's log one tail may ask for (the whole log is a download).
MAX_LOG_LINES = 10_000
LogLines = Annotated[int, Query(ge=1, le=MAX_LOG_LINES, description="Lines from the log's end.")]
