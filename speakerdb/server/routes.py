"""The endpoints: health and stats, identify / verify / embed, speaker management.

Every endpoint is synchronous, so FastAPI serves it from its thread pool; the one shared
``SpeakerDB`` guards its indexes with its own lock, and the write endpoints are serialised
here by ``app.state.write_lock`` as well. ``public`` holds ``/health`` only; every route of
``router`` needs a token when the server has one (read access at least, write access for the
writes), so a route added here is guarded unless it is added to ``public`` on purpose.
"""

from __future__ import annotations

from fastapi import (
    APIRouter,
    Body,
    Depends,
    File,
    Form,
    Path,
    Query,
    Request,
    UploadFile,
)

from speakerdb.config import DEFAULT_TOP_K, ScoreNorm
from speakerdb.server.auth import require_read_access, require_write_access
from speakerdb.server.models import (
    DeletedOut,
    DiarizeOut,
    EmbedOut,
    EnrollOut,
    ErrorOut,
    HealthOut,
    IdentifyOut,
    MergeIn,
    RenameIn,
    SpeakerChange,
    SpeakersOut,
    StatsOut,
    VerifyOut,
)
from speakerdb.server.uploads import one_file_each, read_uploads

__all__ = ["public", "router"]

public = APIRouter()
router = APIRouter(dependencies=[Depends(require_read_access)])

AUDIO_TYPES = "audio/* (wav, flac, ogg, mp3, m4a) or application/octet-stream"


def _errors(*codes: int) -> dict:
    text = {400: "Bad input: unreadable, empty, silent or too short audio, bad values",
            401: "No valid bearer token (the server runs with a token)",
            403: "A write with the read token",
            404: "No such speaker or recording",
            409: "A conflict with the database (model mismatch, a key naming several "
                 "recordings, another process writing)",
            413: "The upload is larger than the server's limit",
            415: "An upload that is not audio/* or application/octet-stream",
            422: "Missing or malformed fields, or several files where one is taken"}
    return {c: {"model": ErrorOut, "description": text[c]} for c in codes}


READ_ERRORS = _errors(400, 401, 409, 413, 415, 422)
WRITE_ERRORS = _errors(400, 401, 403, 404, 409, 413, 415, 422)
# a label is checked by the library (``store.speakers.check_label``), as on every other entry
Label = Path(description="A speaker label, percent-encoded (a new one: 1 to 200 characters, "
                         "none of / < > ? # % nor control characters)")


def _db(request: Request):
    return request.app.state.db


def _limit(request: Request) -> int:
    return request.app.state.max_upload_bytes


@public.get("/health", response_model=HealthOut, tags=["status"])
def health(request: Request):
    """The server is up: the database's model and counts."""
    db = _db(request)
    return {"ok": True, "model": db.model.name, "counts": db.store.counts()}


@router.get("/stats", response_model=StatsOut, responses=_errors(401), tags=["status"])
def stats(request: Request):
    """What the database holds: counts, model, vector space, vectors, threshold."""
    return _db(request).stats()


@router.post("/identify", response_model=IdentifyOut, responses=READ_ERRORS, tags=["search"],
             dependencies=[Depends(one_file_each("audio"))])
def identify(
    request: Request,
    audio: UploadFile = File(description=f"The unknown voice: {AUDIO_TYPES}"),
    top_k: int | None = Query(None, ge=1, le=100, description=f"Speakers to report (default {DEFAULT_TOP_K})"),
    threshold: float | None = Query(None, ge=-1e6, le=1e6, allow_inf_nan=False,
                                    description="Decision threshold (default: calibrated "
                                                "or the model's)"),
    score_norm: ScoreNorm = Query("none", description="Score normalisation"),
    top_k_form: int | None = Form(None, alias="top_k", ge=1, le=100,
                                  description="Same as the query parameter"),
    threshold_form: float | None = Form(None, alias="threshold", ge=-1e6, le=1e6,
                                        allow_inf_nan=False,
                                        description="Same as the query parameter"),
    score_norm_form: ScoreNorm | None = Form(
        None, alias="score_norm", description="Same as the query parameter"),
):
    """Who is speaking: cascade search over the database and an open-set decision
    (``match`` or ``unknown``). Parameters may come as query parameters or form fields."""
    from speakerdb.config import CascadeConfig

    [(name, buf)] = read_uploads([audio], "audio", _limit(request))
    k = top_k_form if top_k_form is not None else top_k
    thr = threshold_form if threshold_form is not None else threshold
    norm = score_norm_form or score_norm
    cascade = CascadeConfig(top_k=k) if k is not None else CascadeConfig()
    return _db(request).identify(buf, cascade=cascade, threshold=thr, name=name,
                                 score_norm=norm).as_dict()


@router.post("/diarize", response_model=DiarizeOut, responses=READ_ERRORS, tags=["search"],
             dependencies=[Depends(one_file_each("audio"))])
def diarize(
    request: Request,
    audio: UploadFile = File(description=f"A recording of one or more voices: {AUDIO_TYPES}"),
    num_speakers: int | None = Query(None, ge=1, le=100,
                                     description="The number of voices, when known"),
    max_speakers: int | None = Query(None, ge=1, le=100, description="At most this many voices"),
    num_speakers_form: int | None = Form(None, alias="num_speakers", ge=1, le=100,
                                         description="Same as the query parameter"),
    max_speakers_form: int | None = Form(None, alias="max_speakers", ge=1, le=100,
                                         description="Same as the query parameter"),
):
    """Who spoke when: the upload's speech cut into short windows, clustered into voices, each
    voice identified against the database (a name, or unknown-1, unknown-2, ...); the turns in
    time order. Parameters may come as query parameters or form fields."""
    [(name, buf)] = read_uploads([audio], "audio", _limit(request))
    n = num_speakers_form if num_speakers_form is not None else num_speakers
    m = max_speakers_form if max_speakers_form is not None else max_speakers
    return _db(request).diarize(buf, num_speakers=n, max_speakers=m, name=name).as_dict()


@router.post("/verify", response_model=VerifyOut, responses=READ_ERRORS, tags=["search"],
             dependencies=[Depends(one_file_each("a", "b"))])
def verify(
    request: Request,
    a: UploadFile = File(description=f"First voice: {AUDIO_TYPES}"),
    b: UploadFile = File(description=f"Second voice: {AUDIO_TYPES}"),
):
    """Same speaker or not: cosine score at every dimension and a decision."""
    (_, fa), (_, fb) = read_uploads([a, b], "a, b", _limit(request))
    return _db(request).verify(fa, fb).as_dict()


@router.post("/embed", response_model=EmbedOut, responses=READ_ERRORS, tags=["search"],
             dependencies=[Depends(one_file_each("audio"))])
def embed(request: Request, audio: UploadFile = File(description=f"A voice: {AUDIO_TYPES}")):
    """Nested 64/128/192/256-D embeddings of the audio with the database's model."""
    [(name, buf)] = read_uploads([audio], "audio", _limit(request))
    db = _db(request)
    m = db.model
    return {"model": {"name": m.name, "sha256": m.sha256, "dims": list(m.dims)},
            **db.embed(buf, name=name).as_dict()}


@router.get("/speakers", response_model=SpeakersOut, responses=_errors(401),
            tags=["speakers"])
def speakers(request: Request):
    """Every labelled speaker with its recordings, segments and seconds of audio."""
    return {"speakers": [s.as_dict() for s in _db(request).speakers()]}


@router.post("/speakers/{label}/enroll", response_model=EnrollOut, responses=WRITE_ERRORS,
             tags=["speakers"], dependencies=[Depends(require_write_access)])
def enroll(
    request: Request,
    label: str = Label,
    audio: list[UploadFile] = File(description=f"One or more recordings: {AUDIO_TYPES}"),
):
    """Add recordings of a speaker (a new label creates the speaker). Audio already stored is
    skipped; unusable audio is listed under ``failed`` with its reason."""
    files = read_uploads(audio, "audio", _limit(request))
    with request.app.state.write_lock:
        result = _db(request).enroll(label, [b for _, b in files], names=[n for n, _ in files])
    return result.as_dict()


@router.patch("/speakers/{label}", response_model=SpeakerChange, responses=WRITE_ERRORS,
              tags=["speakers"], dependencies=[Depends(require_write_access)])
def rename(request: Request, label: str = Label, body: RenameIn = Body()):
    """Give a speaker a new label (which must not exist yet: merge instead)."""
    with request.app.state.write_lock:
        info = _db(request).rename_speaker(label, body.label)
    return {"renamed": label, "speaker": info.as_dict()}


@router.post("/speakers/{label}/merge", response_model=SpeakerChange, responses=WRITE_ERRORS,
             tags=["speakers"], dependencies=[Depends(require_write_access)])
def merge(request: Request, label: str = Label, body: MergeIn = Body()):
    """Move every recording of this speaker to ``into`` and delete this speaker."""
    with request.app.state.write_lock:
        info = _db(request).merge_speakers(label, body.into)
    return {"merged": label, "speaker": info.as_dict()}


@router.delete("/speakers/{label}", response_model=DeletedOut, responses=WRITE_ERRORS,
               tags=["speakers"], dependencies=[Depends(require_write_access)])
def delete_speaker(request: Request, label: str = Label):
    """Delete a speaker and all its recordings."""
    with request.app.state.write_lock:
        n = _db(request).delete_speaker(label)
    return {"deleted": label, "segments": n}


@router.delete("/recordings/{key:path}", response_model=DeletedOut, responses=WRITE_ERRORS,
               tags=["speakers"], dependencies=[Depends(require_write_access)])
def delete_recording(
    request: Request,
    key: str = Path(min_length=1, max_length=300,
                    description="A recording's sha256, a unique prefix of it, or its stored "
                                "name"),
):
    """Delete one recording (and its speaker when it has no recordings left)."""
    with request.app.state.write_lock:
        n = _db(request).delete_recording(key)
    return {"deleted": key, "segments": n}
