"""``speakerdb speakers``, ``speakerdb recordings`` and ``speakerdb enroll``: speaker
management."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from speakerdb.cli.shell import (Device, Home, Json, MaxDuration, NoWait, err, print_json,
                                 open_db, shell)

__all__ = ["register", "speakers_app", "recordings_app"]

speakers_app = typer.Typer(help="Labelled speakers: list, rename, merge, delete.",
                           no_args_is_help=True)
recordings_app = typer.Typer(help="Stored recordings: delete one.", no_args_is_help=True)


_open = open_db


def _print_info(verb: str, info: dict) -> None:
    print(f"{verb} {info['label']}: {info['recordings']} recordings, {info['segments']} "
          f"segments, {info['seconds'] / 60:.2f} min")


@speakers_app.command("list")
@shell
def speakers_list(home: Home = None, json_: Json = False):
    """Every labelled speaker: recordings, segments, minutes of audio."""
    with _open(home, catch_up=False) as db:
        infos = [i.as_dict() for i in db.speakers()]
    if json_:
        print_json({"home": str(db.home), "speakers": infos})
        return
    width = max([len("speaker")] + [len(i["label"]) for i in infos])
    print(f"{'speaker':<{width}}  {'recordings':>10}  {'segments':>8}  {'minutes':>8}")
    for i in infos:
        print(f"{i['label']:<{width}}  {i['recordings']:>10}  {i['segments']:>8}  "
              f"{i['seconds'] / 60:>8.2f}")
    print(f"{len(infos)} speakers")


@speakers_app.command("rename")
@shell
def speakers_rename(
    old: Annotated[str, typer.Argument(help="The speaker's current label.")],
    new: Annotated[str, typer.Argument(help="Its new label (must not exist: merge instead).")],
    home: Home = None,
    no_wait: NoWait = False,
    json_: Json = False,
):
    """Give a speaker a new label."""
    with _open(home, no_wait, catch_up=False) as db:
        info = db.rename_speaker(old, new).as_dict()
    if json_:
        print_json({"renamed": old, "speaker": info})
    else:
        _print_info(f"renamed {old} to", info)


@speakers_app.command("merge")
@shell
def speakers_merge(
    source: Annotated[str, typer.Argument(help="Speaker whose recordings move (then deleted).")],
    target: Annotated[str, typer.Argument(help="Speaker that receives them (must exist).")],
    home: Home = None,
    no_wait: NoWait = False,
    json_: Json = False,
):
    """Move every recording of SOURCE to TARGET and delete SOURCE."""
    with _open(home, no_wait, catch_up=False) as db:
        info = db.merge_speakers(source, target).as_dict()
    if json_:
        print_json({"merged": source, "speaker": info})
    else:
        _print_info(f"merged {source} into", info)


@speakers_app.command("delete")
@shell
def speakers_delete(
    label: Annotated[str, typer.Argument(help="The speaker to delete with all its recordings.")],
    home: Home = None,
    no_wait: NoWait = False,
    json_: Json = False,
):
    """Delete a speaker and all its recordings (asks nothing)."""
    with _open(home, no_wait) as db:
        n = db.delete_speaker(label)
    if json_:
        print_json({"deleted": label, "segments": n})
    else:
        print(f"deleted speaker {label} ({n} segments)")


@recordings_app.command("delete")
@shell
def recordings_delete(
    key: Annotated[str, typer.Argument(help="Content sha256 (or a unique prefix) or the path "
                                            "the recording was stored under.")],
    home: Home = None,
    no_wait: NoWait = False,
    json_: Json = False,
):
    """Delete one recording (its speaker too if it has no recordings left)."""
    from speakerdb.audio.names import display_name

    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # a path whose name is not UTF-8: the name it is stored under
        key = display_name(key)
    with _open(home, no_wait) as db:
        n = db.delete_recording(key)
    if json_:
        print_json({"deleted": key, "segments": n})
    else:
        print(f"deleted recording {key} ({n} segments)")


def enroll(
    speaker: Annotated[str, typer.Argument(help="Label of the speaker (new or existing).")],
    audio: Annotated[list[Path], typer.Argument(help="Audio files of the speaker.")],
    home: Home = None,
    min_duration: Annotated[Optional[float], typer.Option(
        "--min-duration", help="Seconds of signal an input needs (default 0.5).")] = None,
    max_duration: MaxDuration = None,
    device: Device = "auto",
    no_wait: NoWait = False,
    json_: Json = False,
):
    """Add recordings of one speaker; audio already stored is skipped. Exit 2 if any failed."""
    with _open(home, no_wait, device=device) as db:
        if max_duration is not None:
            db.set_max_duration(max_duration)
        r = db.enroll(speaker, [str(a) for a in audio], min_duration_s=min_duration).as_dict()
    if json_:
        print_json(r)
    else:
        for f in r["failed"]:
            err(f["error"])
        print(f"enrolled {r['speaker']}: {r['added']} recordings added ({r['segments']} "
              f"segments), {len(r['skipped'])} skipped, {len(r['failed'])} failed")
        for s in r["skipped"]:
            print(f"  skipped {s['input']}: {s['reason']}")
    if r["failed"]:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.add_typer(speakers_app, name="speakers")
    app.add_typer(recordings_app, name="recordings")
    app.command("enroll")(shell(enroll))
