"""The undo journal every cloud deploy records into: what a failed run made goes, newest first."""

from __future__ import annotations

from cloudml.progress import SILENT
from cloudml.providers.cloud import UndoJournal


class Notes:
    def __init__(self):
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


def test_undo_runs_newest_first_and_keeps_going_past_a_failure():
    done: list[str] = []
    progress = Notes()
    journal = UndoJournal(progress)  # type: ignore[arg-type]
    journal.record("bucket object", lambda: done.append("object"))
    journal.record("model m1", lambda: (_ for _ in ()).throw(RuntimeError("throttled")))
    journal.record("endpoint e1", lambda: done.append("endpoint"))
    assert len(journal) == 3
    journal.undo()
    assert done == ["endpoint", "object"]
    assert progress.lines == ["could not remove model m1 after the failure: throttled"]
    assert len(journal) == 0
    journal.undo()  # nothing twice
    assert done == ["endpoint", "object"]


def test_an_empty_journal_undoes_nothing():
    UndoJournal(SILENT).undo()
