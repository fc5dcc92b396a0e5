#!/usr/bin/env bash
# The main job on real speech: build a database from a labelled folder (one sub-folder per
# speaker), holding back one file per speaker, then identify held-back voices it has not heard.
#   bash scripts/demo.sh [SPEECH_DIR] [HOME]
set -euo pipefail
DATA=${1:-../shared/data/speech-dev}
HOME_DIR=${2:-indexes/demo}
if [ ! -d "$DATA" ]; then
  echo "demo: no speech folder at $DATA (give one: bash scripts/demo.sh DIR)" >&2
  exit 2
fi
mkdir -p "$HOME_DIR"
ENROLL="$HOME_DIR.enroll.csv"
PROBES=$(python - "$DATA" "$ENROLL" <<'PY'
import sys
from pathlib import Path
data, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
files = sorted(p for p in data.rglob("*.wav"))
by_speaker = {}
for p in files:
    by_speaker.setdefault(p.relative_to(data).parts[0], []).append(p)
held = [ps[-1] for ps in by_speaker.values() if len(ps) > 1]
with open(out, "w") as fh:
    fh.write("path,speaker\n")
    for spk, ps in sorted(by_speaker.items()):
        for p in ps[:-1] if len(ps) > 1 else ps:
            fh.write(f"{p},{spk}\n")
print(" ".join(str(p) for p in held[::max(1, len(held) // 4)][:4]))
PY
)
speakerdb init --home "$HOME_DIR"
speakerdb ingest "$ENROLL" --layout manifest --home "$HOME_DIR"
speakerdb stats --home "$HOME_DIR"
# shellcheck disable=SC2086
speakerdb identify $PROBES --home "$HOME_DIR" --top-k 3
