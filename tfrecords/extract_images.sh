#!/usr/bin/env bash
# Unpack NIH ChestX-ray14's images_*.tar.gz into OUT_DIR (giving OUT_DIR/images/*.png),
# refusing any archive with an entry that would land or link outside OUT_DIR.
#
#   tfrecords/extract_images.sh ARCHIVE_DIR OUT_DIR
#   tfrecords/extract_images.sh ARCHIVE.tar.gz [ARCHIVE.tar.gz | ARCHIVE_DIR]... OUT_DIR
#
# A directory argument stands for its ${ARCHIVE_GLOB:-images_*.tar.gz} files, sorted.
# This is `python -m tfxr.extract` (see its --help): every archive is checked
# completely before anything is written, then extracted with Python's tarfile data
# filter. An archive is refused, naming the archive and the entry, when an entry has an
# absolute path or a '..' component, is a link pointing outside OUT_DIR, goes through a
# symbolic link (one the archive creates or one already in OUT_DIR), or is a device,
# FIFO or other special file. Damaged archives are reported; the others still proceed.
# An archive that was extracted completely leaves OUT_DIR/.extracted-<archive name>-<sha256> and
# is skipped on later runs (delete the marker to extract it again).
#
# Environment: PYTHON (default: the repo's .venv/bin/python if present, else python3;
# needs Python >= 3.11.4), ARCHIVE_GLOB.
# Exit status: 0 every archive extracted or skipped, 2 bad usage or a missing input,
# 3 an archive was refused or could not be read.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { sed -n '2,21s/^# \{0,1\}//p' "$0"; }

case ${1:-} in -h | --help) usage; exit 0 ;; esac
if (($# < 2)); then
    usage >&2
    exit 2
fi

PYTHON=${PYTHON:-}
if [[ -z $PYTHON ]]; then
    PYTHON=python3
    if [[ -x $REPO_DIR/.venv/bin/python ]]; then PYTHON=$REPO_DIR/.venv/bin/python; fi
fi
read -r -a PY <<<"$PYTHON"
# Let `python -m tfxr...` find the package even when it is not pip-installed.
export PYTHONPATH="$REPO_DIR${PYTHONPATH:+:$PYTHONPATH}"
exec "${PY[@]}" -m tfxr.extract "$@"
