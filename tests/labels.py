"""Speaker labels that every entry refuses (manifest rows, folder names, enroll, rename and
merge on the command line, the API and HTTP), each with a word of what the message names."""

from __future__ import annotations

from speakerdb.store.speakers import label_problem

BAD_LABELS = {
    "a/b": "'/'",
    "a<b>": "'<'",
    "x" * 201: "201 characters",
    "50%": "'%'",
    "who?": "'?'",
    "#1": "'#'",
    "tab\there": "'\\t'",
    "line\nbreak": "'\\n'",
    "..": "cannot be named in a URL",
}
# a folder name cannot hold "/" nor be ".." (and names starting with "." are skipped)
FOLDER_LABELS = [label for label in BAD_LABELS if "/" not in label and label != ".."]


def message(label: str) -> str:
    """The one message every entry gives for ``label``."""
    problem = label_problem(label)
    assert problem is not None and BAD_LABELS[label] in problem, (label, problem)
    return problem
