"""Input names as text: valid UTF-8 always, unchanged for ordinary names, reversible always."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speakerdb.audio.names import display_name, input_path

pytestmark = pytest.mark.skipif(os.sep != "/", reason="POSIX file names are bytes")


@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"\x00" not in b))
def test_any_name_is_utf8_text_and_turns_back_into_its_path(raw):
    text = display_name(os.fsdecode(raw))
    text.encode("utf-8")  # strict: no lone surrogates
    assert os.fsencode(input_path(text)) == raw
    assert display_name(raw) == text


@given(st.text(min_size=1, max_size=40).filter(
    lambda t: "\\" not in t and "\x00" not in t and not any(0xD800 <= ord(c) < 0xE000 for c in t)))
def test_ordinary_names_are_kept_as_they_are(text):
    assert display_name(text) == text and input_path(text) == text


def test_escapes():
    assert display_name(os.fsdecode(b"dir/c_\xff.wav")) == "dir/c_\\xff.wav"
    assert display_name("a\\xff.wav") == "a\\\\xff.wav"  # a real backslash is doubled
    assert input_path("dir/c_\\xff.wav") == os.fsdecode(b"dir/c_\xff.wav")
    assert display_name(42) == "42"
