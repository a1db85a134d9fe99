#!/usr/bin/env bash
# Fetch the public ActivityNet Captions annotations (Krishna et al., 2017) into data/densecap/:
# train.json, val_1.json, val_2.json (and the other files of captions.zip). Run from the repository root:
#     bash scripts/download_anet.sh [DEST_DIR]
# Features cannot be downloaded by this script: see data/README.md.
set -euo pipefail

URL="http://cs.stanford.edu/people/ranjaykrishna/densevid/captions.zip"
DEST="${1:-data/densecap}"
ZIP="$(mktemp -d)/captions.zip"
trap 'rm -rf "$(dirname "$ZIP")"' EXIT

die() { echo "download_anet.sh: $*" >&2; exit 1; }

command -v unzip >/dev/null 2>&1 || die "unzip is not installed (apt-get install unzip)"
mkdir -p "$DEST"

echo "downloading $URL"
if command -v curl >/dev/null 2>&1; then
    curl --fail --location --retry 3 --output "$ZIP" "$URL" || die "curl could not fetch $URL"
elif command -v wget >/dev/null 2>&1; then
    wget --tries=3 --output-document="$ZIP" "$URL" || die "wget could not fetch $URL"
else
    die "neither curl nor wget is installed"
fi

unzip -tq "$ZIP" >/dev/null || die "$URL did not give a valid zip archive (an HTML error page?)"
# the archive holds a top-level captions/ folder; flatten it into DEST
unzip -oqj "$ZIP" -x '__MACOSX/*' -d "$DEST"

for f in train.json val_1.json val_2.json; do
    [ -s "$DEST/$f" ] || die "$DEST/$f is missing after unzip"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1], len(d), 'videos')" "$DEST/$f" \
        || die "$DEST/$f is not valid JSON"
done
echo "done: annotations in $DEST"
