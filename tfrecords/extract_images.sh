#!/usr/bin/env bash
# Unpack NIH ChestX-ray14's images_*.tar.gz into OUT_DIR (giving OUT_DIR/images/*.png),
# after checking every archive's listing for entries that would land outside OUT_DIR.
#
#   tfrecords/extract_images.sh ARCHIVE_DIR OUT_DIR
#   tfrecords/extract_images.sh ARCHIVE.tar.gz [ARCHIVE.tar.gz | ARCHIVE_DIR]... OUT_DIR
#
# A directory argument stands for its ${ARCHIVE_GLOB:-images_*.tar.gz} files, sorted.
# Each archive's listing (tar -tvf) is checked before anything is extracted. An archive
# is refused, naming the archive and the entry, when an entry:
#   - has an absolute path or a '..' component;
#   - is a symlink whose target is absolute or resolves outside OUT_DIR;
#   - is a hard link whose target is absolute or has a '..' component;
#   - goes through a symlink that the archive itself creates (a path that only looks
#     inside OUT_DIR, e.g. link/../../x, or link/file where link -> ..);
#   - is a device, FIFO or other special file;
#   - or the listing cannot be parsed (fail closed).
# The NIH archives hold only images/ and regular PNG files.
# An archive that was extracted completely leaves OUT_DIR/.extracted-<archive name> and
# is skipped on later runs (delete the marker to extract it again).
# Exit status: 0 when every archive is extracted or skipped, 1 when one was refused or
# failed (the others are still processed), 2 on bad usage. Needs GNU tar.
set -euo pipefail
set -f # no globbing of entry names; re-enabled where a directory is expanded

PROG=${0##*/}
if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
    echo "$PROG: bash >= 4.4 is required (this is $BASH_VERSION)" >&2
    exit 1
fi

usage() { sed -n '2,24s/^# \{0,1\}//p' "$0"; }
die() { echo "$PROG: error: $*" >&2; exit 1; }

case ${1:-} in -h | --help) usage; exit 0 ;; esac
(($# >= 2)) || { usage >&2; exit 2; }
tar --version 2>/dev/null | head -n 1 | grep -q 'GNU tar' || die "GNU tar is required (the listing format is GNU tar's)"

OUT_DIR=${!#}
INPUTS=("${@:1:$#-1}")

ARCHIVES=()
for arg in "${INPUTS[@]}"; do
    if [[ -d $arg ]]; then
        set +f
        shopt -s nullglob
        # shellcheck disable=SC2206 # the pattern is meant to glob
        found=("$arg"/${ARCHIVE_GLOB:-images_*.tar.gz})
        shopt -u nullglob
        set -f
        ((${#found[@]})) || die "no ${ARCHIVE_GLOB:-images_*.tar.gz} in $arg"
        mapfile -t found < <(printf '%s\n' "${found[@]}" | LC_ALL=C sort)
        ARCHIVES+=("${found[@]}")
    elif [[ -f $arg ]]; then
        ARCHIVES+=("$arg")
    else
        die "no such archive or directory: $arg"
    fi
done

compress_flag() { # ARCHIVE -> tar option for its compression
    case $1 in
        *.tar.gz | *.tgz) echo -z ;;
        *.tar.bz2 | *.tbz2) echo -j ;;
        *.tar.xz | *.txz) echo -J ;;
        *.tar) echo "" ;;
        *) echo -a ;;
    esac
}

# escapes PATH: true when the relative PATH, read from OUT_DIR, climbs above OUT_DIR.
escapes() {
    local depth=0 part
    local -a parts
    IFS=/ read -r -a parts <<<"$1"
    for part in "${parts[@]}"; do
        case $part in
            '' | .) ;;
            ..)
                depth=$((depth - 1))
                ((depth >= 0)) || return 0
                ;;
            *) depth=$((depth + 1)) ;;
        esac
    done
    return 1
}

has_dotdot() { [[ /$1/ == */../* ]]; }

strip_dot() { # drop leading ./ and trailing /
    local p=$1
    while [[ $p == ./* ]]; do p=${p#./}; done
    while [[ $p == */ && $p != / ]]; do p=${p%/}; done
    echo "$p"
}

# check_listing ARCHIVE LISTING_FILE: prints the first bad entry and returns 1, or returns 0.
check_listing() {
    local archive=$1 listing=$2 line type rest name target p prefix
    local re='^(.)[^ ]* +[^ ]+ +[0-9]+(, *[0-9]+)? +[0-9]{4}-[0-9]{2}-[0-9]{2} +[0-9]{2}:[0-9]{2}(:[0-9]{2})? (.*)$'
    local -A links=()
    local -a parts
    while IFS= read -r line; do
        if [[ ! $line =~ $re ]]; then
            echo "unparsable listing line: $line"
            return 1
        fi
        type=${BASH_REMATCH[1]}
        rest=${BASH_REMATCH[4]}
        target=""
        case $type in
            - | d) name=$rest ;;
            l)
                name=${rest%% -> *}
                target=${rest#* -> }
                [[ $target != *' -> '* ]] || { echo "ambiguous symlink entry: $rest"; return 1; }
                ;;
            h)
                name=${rest%% link to *}
                target=${rest#* link to }
                [[ $target != *' link to '* ]] || { echo "ambiguous hard link entry: $rest"; return 1; }
                ;;
            *)
                echo "special file (type '$type'): $rest"
                return 1
                ;;
        esac
        [[ -n $name ]] || { echo "empty entry name: $line"; return 1; }
        [[ $name != /* ]] || { echo "absolute path: $name"; return 1; }
        ! has_dotdot "$name" || { echo "'..' in path: $name"; return 1; }
        p=$(strip_dot "$name")
        # No entry may pass through a symlink created earlier in the same archive.
        IFS=/ read -r -a parts <<<"$p"
        prefix=""
        local i
        for ((i = 0; i < ${#parts[@]} - 1; i++)); do
            prefix=${prefix:+$prefix/}${parts[i]}
            [[ -z ${links[$prefix]+set} ]] || { echo "path goes through the archive's symlink $prefix: $name"; return 1; }
        done
        case $type in
            l)
                [[ $target != /* ]] || { echo "symlink to an absolute path: $name -> $target"; return 1; }
                local dir=.
                [[ $p == */* ]] && dir=${p%/*}
                ! escapes "$dir/$target" || { echo "symlink pointing outside OUT_DIR: $name -> $target"; return 1; }
                links[$p]=1
                ;;
            h)
                [[ $target != /* ]] || { echo "hard link to an absolute path: $name link to $target"; return 1; }
                ! has_dotdot "$target" || { echo "hard link with '..' in its target: $name link to $target"; return 1; }
                target=$(strip_dot "$target")
                IFS=/ read -r -a parts <<<"$target"
                prefix=""
                for ((i = 0; i < ${#parts[@]} - 1; i++)); do
                    prefix=${prefix:+$prefix/}${parts[i]}
                    [[ -z ${links[$prefix]+set} ]] || { echo "hard link target goes through the archive's symlink $prefix: $name link to $target"; return 1; }
                done
                ;;
        esac
    done <"$listing"
    return 0
}

mkdir -p -- "$OUT_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/extract_images.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT

total=${#ARCHIVES[@]}
failed=()
n=0
for archive in "${ARCHIVES[@]}"; do
    n=$((n + 1))
    name=${archive##*/}
    tag="[$n/$total] $name"
    marker="$OUT_DIR/.extracted-$name"
    if [[ -f $marker ]]; then
        echo "$tag: already extracted ($marker), skipping"
        continue
    fi
    zflag=$(compress_flag "$archive")
    start=$SECONDS
    echo "$tag: checking the listing"
    listing="$WORK/listing"
    # --absolute-names: list names and link targets exactly as stored (GNU tar would
    # otherwise strip a leading '/' from them in the listing, hiding the problem).
    if ! LC_ALL=C tar ${zflag:+"$zflag"} --absolute-names -tvf "$archive" >"$listing" 2>"$WORK/err"; then
        echo "$PROG: ERROR: cannot list $archive (damaged or incomplete?): $(head -c 500 "$WORK/err")" >&2
        failed+=("$archive")
        continue
    fi
    entries=$(wc -l <"$listing" | tr -d ' ')
    if ! why=$(check_listing "$archive" "$listing"); then
        echo "$PROG: ERROR: refusing to extract $archive: $why" >&2
        failed+=("$archive")
        continue
    fi
    echo "$tag: $entries entries are safe; extracting into $OUT_DIR"
    if ! LC_ALL=C tar ${zflag:+"$zflag"} -xf "$archive" -C "$OUT_DIR" --no-same-owner 2>"$WORK/err"; then
        echo "$PROG: ERROR: extracting $archive failed: $(head -c 500 "$WORK/err")" >&2
        failed+=("$archive")
        continue
    fi
    printf 'archive=%s\nbytes=%s\nentries=%s\nextracted=%s\n' \
        "$archive" "$(wc -c <"$archive" | tr -d ' ')" "$entries" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$marker"
    echo "$tag: done in $((SECONDS - start)) s"
done

if ((${#failed[@]})); then
    echo "$PROG: ERROR: ${#failed[@]} of $total archive(s) not extracted: ${failed[*]}" >&2
    exit 1
fi
echo "All $total archive(s) are extracted in $OUT_DIR"
