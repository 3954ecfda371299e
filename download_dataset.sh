#!/usr/bin/env bash
# Fetch the public chest X-ray data sets that tfxr trains on, with resume and checksum
# verification. The URL and checksum table is data_urls.tsv next to this script.
# Run with --help for usage.
set -euo pipefail

PROG=${0##*/}
if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
    echo "$PROG: bash >= 4.4 is required (this is $BASH_VERSION)" >&2
    exit 1
fi
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TABLE="$SCRIPT_DIR/data_urls.tsv"
RETRIES=${TFXR_DOWNLOAD_RETRIES:-3}

usage() {
    local known
    known=$(awk -F'\t' '!/^#/ && NF >= 5 && !seen[$1]++ {printf "%s ", $1}' "$TABLE" 2>/dev/null || true)
    cat <<EOF
Usage: $PROG [--dry-run] [--dest DIR] DATASET...

Download public chest X-ray data sets into DIR/<dataset>/<file>, resuming partial
downloads and verifying checksums.

Datasets: ${known:-(none: $TABLE is missing)}all
  nih             NIH ChestX-ray14: images_001..012.tar.gz (about 45 GB), Data_Entry_2017_v2020.csv,
                  BBox_List_2017.csv, train_val_list.txt, test_list.txt
  montgomery      NLM Montgomery County TB set (zip)
  shenzhen        NLM Shenzhen Hospital TB set (zip)
  pneumoniamnist  MedMNIST v2 pneumoniamnist.npz (Zenodo)
  chestmnist      MedMNIST v2 chestmnist.npz (Zenodo)
  all             every data set in the table
  rsna chexpert mimic-cxr-jpg vindr tbx11k
                  no direct public download (credentialed, or only behind a web page):
                  the script prints the exact manual steps and the layout tfxr expects
                  (exit 0), and downloads the other data sets named

Options:
  -n, --dry-run   list each file, its URL, size (if known), checksum and destination,
                  then exit 0 without using the network or writing anything
  --dest DIR      where to put the data (default: ./data)
  -h, --help      show this help

How it works:
  - A file is downloaded to DIR/<dataset>/<file>.part, using curl -C - (or wget -c when
    curl is missing) so that an interrupted download continues where it stopped. When
    the checksum passes, the file is renamed to DIR/<dataset>/<file>.
  - A file that is already present with the right checksum is skipped.
  - On a checksum mismatch the download is moved to <file>.bad, and the script names the
    file with the expected and actual checksums, then exits 1 after the other files.
    Delete the .bad file and run again to retry.
  - Files with no published checksum ('none' in the table): the script computes their
    SHA-256 and records it in DIR/SHA256SUMS.local. Later runs check the file against
    that record. To check by hand: cd DIR && sha256sum -c SHA256SUMS.local
    If such a file legitimately changes upstream, delete its line there.
  - An HTML page downloaded in place of such a file (e.g. a Box or proxy error page) is
    rejected and the next URL is tried.

Environment:
  TFXR_DOWNLOAD_MIRROR   fetch every file from \$TFXR_DOWNLOAD_MIRROR/<dataset>/<file>
                         instead of the table's URLs (local mirror, tests)
  TFXR_CHECKSUM_FILE     a second table with the same TAB-separated columns as
                         data_urls.tsv. Its rows replace the rows with the same dataset and
                         file (use '-' as url to keep the original URL). Rows for new files
                         are added.
  TFXR_DOWNLOADER        auto (default: curl, else wget), curl or wget
  TFXR_DOWNLOAD_RETRIES  retries for transient network errors (default 3)

Exit status: 0 on success, 1 when a file failed (download or checksum), 2 on bad usage.
Table: $TABLE
EOF
}

die() { echo "$PROG: error: $*" >&2; exit 1; }
usage_error() { echo "$PROG: $*" >&2; echo >&2; usage >&2; exit 2; }
warn() { echo "$PROG: warning: $*" >&2; }
err() { echo "$PROG: ERROR: $*" >&2; }

# ---------------------------------------------------------------- arguments
DRY_RUN=0
DEST=data
DATASETS=()
while (($#)); do
    case $1 in
        -n | --dry-run) DRY_RUN=1 ;;
        --dest)
            (($# >= 2)) || usage_error "--dest needs a directory"
            DEST=$2
            shift
            ;;
        --dest=*) DEST=${1#--dest=} ;;
        -h | --help)
            usage
            exit 0
            ;;
        --)
            shift
            DATASETS+=("$@")
            break
            ;;
        -*) usage_error "unknown option: $1" ;;
        *) DATASETS+=("$1") ;;
    esac
    shift
done
((${#DATASETS[@]})) || usage_error "no dataset given"
[[ -n $DEST ]] || usage_error "--dest must not be empty"
[[ $RETRIES =~ ^[0-9]+$ ]] || die "TFXR_DOWNLOAD_RETRIES must be a number, got '$RETRIES'"

# ---------------------------------------------------------------- the table
declare -A URLS=() ALGOS=() SUMS=() SIZES=() DS_KNOWN=()
KEYS=()
DS_ORDER=()

load_table() { # FILE
    local tsv=$1 n=0 line ds file url algo sum size extra where key
    [[ -f $tsv && -r $tsv ]] || die "cannot read the download table $tsv"
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        line=${line%$'\r'}
        [[ -z ${line//[[:space:]]/} || $line == '#'* ]] && continue
        where="$tsv:$n"
        ds='' file='' url='' algo='' sum='' size='' extra=''
        IFS=$'\t' read -r ds file url algo sum size extra <<<"$line"
        [[ -n $sum ]] || die "$where: expected at least 5 TAB-separated fields (dataset file url algorithm checksum)"
        [[ -z $extra ]] || die "$where: too many fields"
        [[ $ds =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "$where: bad dataset name '$ds'"
        [[ $file =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die "$where: bad file name '$file' (no '/' or leading '.')"
        algo=${algo,,}
        sum=${sum,,}
        case $algo in
            md5) [[ $sum =~ ^[0-9a-f]{32}$ ]] || die "$where: '$sum' is not an MD5 (32 hex digits)" ;;
            sha256) [[ $sum =~ ^[0-9a-f]{64}$ ]] || die "$where: '$sum' is not a SHA-256 (64 hex digits)" ;;
            none) [[ $sum == none || $sum == - ]] || die "$where: algorithm none needs checksum 'none'" ;;
            *) die "$where: algorithm must be md5, sha256 or none, got '$algo'" ;;
        esac
        size=${size:--}
        [[ $size == - || $size =~ ^[0-9]+$ ]] || die "$where: size must be a number of bytes or '-'"
        key="$ds/$file"
        if [[ -z ${URLS[$key]+set} ]]; then
            KEYS+=("$key")
            URLS[$key]=$url
            if [[ -z ${DS_KNOWN[$ds]+set} ]]; then
                DS_KNOWN[$ds]=1
                DS_ORDER+=("$ds")
            fi
        elif [[ $url != - ]]; then
            URLS[$key]=$url
        fi
        ALGOS[$key]=$algo
        SUMS[$key]=$sum
        if [[ $size != - || -z ${SIZES[$key]+set} ]]; then SIZES[$key]=$size; fi
    done <"$tsv"
}

load_table "$TABLE"
if [[ -n ${TFXR_CHECKSUM_FILE:-} ]]; then load_table "$TFXR_CHECKSUM_FILE"; fi

# Data sets without a direct public download: how to get them, and the layout tfxr reads.
declare -A MANUAL=(
    [rsna]='RSNA Pneumonia Detection Challenge (2018), Kaggle: needs a Kaggle account and the
competition rules accepted.
  1. Accept the rules: https://www.kaggle.com/competitions/rsna-pneumonia-detection-challenge/rules
  2. pip install kaggle; save your API token (kaggle.com > Settings > API > Create New Token)
     as ~/.kaggle/kaggle.json, then: chmod 600 ~/.kaggle/kaggle.json
  3. kaggle competitions download -c rsna-pneumonia-detection-challenge -p DEST/rsna
  4. cd DEST/rsna && unzip -q rsna-pneumonia-detection-challenge.zip
Expected layout:
  DEST/rsna/stage_2_train_labels.csv          patientId,x,y,width,height,Target (one row per box)
  DEST/rsna/stage_2_detailed_class_info.csv   patientId,class
  DEST/rsna/stage_2_train_images/<patientId>.dcm
Then: python -m tfxr.tfrecords write --source rsna --images DEST/rsna/stage_2_train_images \
        --labels DEST/rsna/stage_2_train_labels.csv --class-info DEST/rsna/stage_2_detailed_class_info.csv --out OUT'
    [chexpert]='CheXpert v1.0, Stanford AIMI: needs a (free) registration and the Stanford
University Dataset Research Use Agreement.
  1. Open https://stanfordaimi.azurewebsites.net/ , find "CheXpert", sign in and accept the agreement.
  2. Download CheXpert-v1.0-small.zip (about 11 GB; or the full-resolution CheXpert-v1.0)
     from the link the page gives, into DEST/chexpert/, and unzip it there.
Expected layout:
  DEST/chexpert/CheXpert-v1.0-small/train.csv, valid.csv
  DEST/chexpert/CheXpert-v1.0-small/train/patientNNNNN/studyM/viewK_frontal.jpg (and valid/)
Then: python -m tfxr.tfrecords write --source chexpert --images DEST/chexpert/CheXpert-v1.0-small \
        --labels DEST/chexpert/CheXpert-v1.0-small/train.csv --labels DEST/chexpert/CheXpert-v1.0-small/valid.csv \
        --uncertainty ones --out OUT'
    [mimic-cxr-jpg]='MIMIC-CXR-JPG 2.0.0, PhysioNet: needs a credentialed PhysioNet account (CITI
"Data or Specimens Only Research" training) and the signed data use agreement.
  1. https://physionet.org/content/mimic-cxr-jpg/2.0.0/ : sign in, complete the training, sign the DUA.
  2. wget -r -N -c -np --user YOUR_PHYSIONET_USER --ask-password -P DEST \
        https://physionet.org/files/mimic-cxr-jpg/2.0.0/     (about 570 GB)
Expected layout (under DEST/physionet.org/files/mimic-cxr-jpg/2.0.0/):
  mimic-cxr-2.0.0-chexpert.csv.gz, mimic-cxr-2.0.0-split.csv.gz, mimic-cxr-2.0.0-metadata.csv.gz
  files/p10/p10000032/s50414267/<dicom_id>.jpg
Then: python -m tfxr.tfrecords write --source mimic-cxr-jpg --images M --labels M/mimic-cxr-2.0.0-chexpert.csv.gz \
        --mimic-split M/mimic-cxr-2.0.0-split.csv.gz --mimic-metadata M/mimic-cxr-2.0.0-metadata.csv.gz --out OUT'
    [vindr]='VinDr-CXR: PhysioNet (credentialed, as MIMIC) or the VinBigData Kaggle competition.
  Kaggle (the train.csv tfxr reads, with class_id): accept the rules at
     https://www.kaggle.com/competitions/vinbigdata-chest-xray-abnormalities-detection/rules , then
     kaggle competitions download -c vinbigdata-chest-xray-abnormalities-detection -p DEST/vindr
     cd DEST/vindr && unzip -q vinbigdata-chest-xray-abnormalities-detection.zip
  PhysioNet: https://physionet.org/content/vindr-cxr/1.0.0/ ; wget -r -N -c -np --user USER --ask-password \
     https://physionet.org/files/vindr-cxr/1.0.0/
Expected layout (Kaggle):
  DEST/vindr/train.csv     image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max
  DEST/vindr/train/<image_id>.dicom
Then: python -m tfxr.tfrecords write --source vindr --images DEST/vindr/train --labels DEST/vindr/train.csv \
        --fusion wbf --out OUT'
    [tbx11k]='TBX11K (Liu et al., CVPR 2020): public, but only through the links on its project page
(Google Drive / Baidu Pan), which need a browser; no checksum is published.
  1. Open https://github.com/yun-liu/Tuberculosis and follow its "TBX11K dataset" download link.
  2. Save TBX11K.zip into DEST/tbx11k/ and unzip it there.
Expected layout:
  DEST/tbx11k/TBX11K/imgs/{health,sick,tb,test}/*.png
  DEST/tbx11k/TBX11K/annotations/json/TBX11K_train.json, TBX11K_val.json   (COCO style)
Then: python -m tfxr.tfrecords write --source tbx11k --images DEST/tbx11k/TBX11K/imgs \
        --labels DEST/tbx11k/TBX11K/annotations/json/TBX11K_train.json \
        --labels DEST/tbx11k/TBX11K/annotations/json/TBX11K_val.json --out OUT'
)

# Expand 'all', reject unknown names, drop repeats.
SELECTED=()
MANUAL_SELECTED=()
declare -A PICKED=()
for ds in "${DATASETS[@]}"; do
    if [[ -n ${MANUAL[$ds]+set} ]]; then
        [[ " ${MANUAL_SELECTED[*]} " == *" $ds "* ]] || MANUAL_SELECTED+=("$ds")
        continue
    fi
    if [[ $ds == all ]]; then
        names=("${DS_ORDER[@]}")
    elif [[ -n ${DS_KNOWN[$ds]+set} ]]; then
        names=("$ds")
    else
        usage_error "unknown dataset '$ds' (known: ${DS_ORDER[*]} all; by hand: ${!MANUAL[*]})"
    fi
    for n in "${names[@]}"; do
        [[ -n ${PICKED[$n]+set} ]] && continue
        PICKED[$n]=1
        SELECTED+=("$n")
    done
done

for ds in "${MANUAL_SELECTED[@]}"; do
    echo "== $ds: download by hand (no direct public URL) =="
    printf '%s\n\n' "${MANUAL[$ds]//DEST/$DEST}"
done
if ((${#MANUAL_SELECTED[@]})) && ((${#SELECTED[@]} == 0)); then
    exit 0
fi

FILES=()
for key in "${KEYS[@]}"; do
    [[ -n ${PICKED[${key%%/*}]+set} ]] && FILES+=("$key")
done

# ---------------------------------------------------------------- helpers
human_size() { # BYTES
    awk -v b="$1" 'BEGIN { split("B KiB MiB GiB TiB", u, " "); i = 1
        while (b >= 1024 && i < 5) { b /= 1024; i++ }
        printf (i == 1 ? "%d %s" : "%.1f %s"), b, u[i] }'
}

file_size() { wc -c <"$1" | tr -d '[:space:]'; }

urls_for() { # KEY -> one URL per line
    local key=$1
    if [[ -n ${TFXR_DOWNLOAD_MIRROR:-} ]]; then
        printf '%s/%s\n' "${TFXR_DOWNLOAD_MIRROR%/}" "$key"
    elif [[ ${URLS[$key]} != - ]]; then
        tr '|' '\n' <<<"${URLS[$key]}"
    fi
}

hash_file() { # ALGO FILE -> lower-case hex digest
    local algo=$1 f=$2 out
    case $algo in
        md5)
            if command -v md5sum >/dev/null; then
                out=$(md5sum <"$f")
            elif command -v md5 >/dev/null; then
                out=$(md5 -q <"$f")
            else
                out=$(openssl dgst -md5 -r <"$f")
            fi
            ;;
        sha256)
            if command -v sha256sum >/dev/null; then
                out=$(sha256sum <"$f")
            elif command -v shasum >/dev/null; then
                out=$(shasum -a 256 <"$f")
            else
                out=$(openssl dgst -sha256 -r <"$f")
            fi
            ;;
    esac
    out=${out%% *}
    echo "${out,,}"
}

LOCAL_SUMS="$DEST/SHA256SUMS.local"

local_sum_of() { # KEY -> recorded sha256, or nothing
    [[ -f $LOCAL_SUMS ]] || return 0
    awk -v k="$1" '$2 == k || $2 == "*" k { h = $1 } END { if (h != "") print h }' "$LOCAL_SUMS"
}

record_local_sum() { # KEY SHA256
    local tmp="$LOCAL_SUMS.tmp.$$"
    {
        if [[ -f $LOCAL_SUMS ]]; then awk -v k="$1" '$2 != k' "$LOCAL_SUMS"; fi
        printf '%s  %s\n' "$2" "$1"
    } >"$tmp"
    mv -f -- "$tmp" "$LOCAL_SUMS"
}

local_hint() { # ORIGIN
    if [[ $1 == "$LOCAL_SUMS" ]]; then
        echo " If the upstream file really changed, delete its line from $LOCAL_SUMS."
    fi
}

looks_like_html() { # FILE
    head -c 512 -- "$1" | LC_ALL=C tr -d '\000' | LC_ALL=C grep -qiaE '^[[:space:]]*(<!doctype html|<html)'
}

pick_downloader() {
    case ${TFXR_DOWNLOADER:-auto} in
        auto)
            if command -v curl >/dev/null; then
                DOWNLOADER=curl
            elif command -v wget >/dev/null; then
                DOWNLOADER=wget
            else
                die "neither curl nor wget is installed; install one of them"
            fi
            ;;
        curl | wget)
            DOWNLOADER=$TFXR_DOWNLOADER
            command -v "$DOWNLOADER" >/dev/null || die "TFXR_DOWNLOADER=$DOWNLOADER but $DOWNLOADER is not installed"
            ;;
        *) die "TFXR_DOWNLOADER must be auto, curl or wget, got '$TFXR_DOWNLOADER'" ;;
    esac
}

# fetch URL OUT: download URL into OUT, continuing OUT when it holds a partial download.
fetch() {
    local url=$1 out=$2 rc=0 code
    if [[ $DOWNLOADER == curl ]]; then
        local args=(--fail --location --retry "$RETRIES" --retry-delay 5 --connect-timeout 30
            --output "$out" --write-out '%{http_code}')
        if [[ -t 2 ]]; then args+=(--progress-bar); else args+=(--silent --show-error); fi
        code=$(curl "${args[@]}" --continue-at - -- "$url") || rc=$?
        if ((rc == 22)) && [[ $code == 416 && -s $out ]]; then
            # 416 to a resume request: the .part already holds the whole file (the
            # previous run stopped before verifying it). The checksum decides.
            echo "[get ] $out already holds the whole file (HTTP 416 above is expected)"
            rc=0
        elif ((rc == 33 || rc == 36)); then
            # 33: the server ignored the Range request; 36: curl could not resume.
            warn "the server cannot resume this download; starting it again from the beginning"
            rm -f -- "$out"
            rc=0
            curl "${args[@]}" -- "$url" >/dev/null || rc=$?
        fi
    else
        local args=(--tries="$((RETRIES + 1))" --timeout=60 --output-document="$out")
        if [[ -t 2 ]]; then args+=(--quiet --show-progress); else args+=(--no-verbose); fi
        wget "${args[@]}" --continue -- "$url" || rc=$?
        if ((rc != 0)) && [[ -s $out ]]; then
            warn "wget could not continue the download (exit $rc); starting it again from the beginning"
            rm -f -- "$out"
            rc=0
            wget "${args[@]}" -- "$url" || rc=$?
        fi
    fi
    return "$rc"
}

# ---------------------------------------------------------------- dry run
if ((DRY_RUN)); then
    echo "Dry run: nothing is downloaded or written. Destination: $DEST"
    total=0
    unknown=0
    for key in "${FILES[@]}"; do
        final="$DEST/$key"
        size=${SIZES[$key]}
        if [[ $size == - ]]; then
            size_txt="unknown"
            unknown=$((unknown + 1))
        else
            size_txt="$size bytes ($(human_size "$size"))"
            total=$((total + size))
        fi
        if [[ ${ALGOS[$key]} == none ]]; then
            sum_txt="none published (sha256 is recorded in $LOCAL_SUMS)"
        else
            sum_txt="${ALGOS[$key]} ${SUMS[$key]}"
        fi
        if [[ -f $final ]]; then
            state="present"
        elif [[ -f $final.part ]]; then
            state="partial, $(file_size "$final.part") bytes, would resume"
        else
            state="missing"
        fi
        echo
        echo "$key"
        mapfile -t urls < <(urls_for "$key")
        if ((${#urls[@]} == 0)); then echo "  url:      (none: set TFXR_DOWNLOAD_MIRROR)"; fi
        for u in "${urls[@]}"; do echo "  url:      $u"; done
        echo "  size:     $size_txt"
        echo "  checksum: $sum_txt"
        echo "  dest:     $final ($state)"
    done
    echo
    echo "${#FILES[@]} file(s), $(human_size "$total") known$( ((unknown)) && echo ", $unknown of unknown size")."
    exit 0
fi

# ---------------------------------------------------------------- download
pick_downloader
mkdir -p -- "$DEST"
if command -v flock >/dev/null; then
    exec 9>>"$DEST/.download_dataset.lock"
    flock -n 9 || die "another $PROG is already downloading into $DEST"
fi

# process KEY: download and verify one file; returns non-zero when it failed.
process() {
    local key=$1 final="$DEST/$1" algo=${ALGOS[$1]} expected=${SUMS[$1]} origin="the table"
    local part="$final.part" bad="$final.bad" actual url got=0 recorded
    if [[ $algo == none ]]; then
        recorded=$(local_sum_of "$key")
        if [[ -n $recorded ]]; then
            algo=sha256
            expected=$recorded
            origin=$LOCAL_SUMS
        fi
    fi

    if [[ -f $final ]]; then
        if [[ $algo == none ]]; then
            actual=$(hash_file sha256 "$final")
            record_local_sum "$key" "$actual"
            echo "[skip] $key: present; no published checksum, recorded sha256 $actual"
            return 0
        fi
        actual=$(hash_file "$algo" "$final")
        if [[ $actual == "$expected" ]]; then
            echo "[skip] $key: present, $algo verified"
            return 0
        fi
        mv -f -- "$final" "$bad"
        err "checksum mismatch for existing file $final: expected $algo $expected (from $origin), actual $actual. Moved it to $bad; delete that and run again to download it anew.$(local_hint "$origin")"
        return 1
    fi

    mkdir -p -- "${final%/*}"
    local -a urls
    mapfile -t urls < <(urls_for "$key")
    ((${#urls[@]})) || {
        err "$key has no URL; set TFXR_DOWNLOAD_MIRROR or fix the table"
        return 1
    }
    local i
    for i in "${!urls[@]}"; do
        url=${urls[$i]}
        if ((i > 0)); then
            rm -f -- "$part" # never splice bytes from two hosts
            echo "[try ] $key: next URL"
        fi
        if [[ -s $part ]]; then
            echo "[get ] $key: resuming at $(file_size "$part") bytes from $url"
        else
            echo "[get ] $key from $url"
        fi
        if ! fetch "$url" "$part"; then
            warn "download of $key from $url failed"
            continue
        fi
        if [[ $algo == none && $key != *.htm && $key != *.html ]] && looks_like_html "$part"; then
            mv -f -- "$part" "$bad"
            warn "$url sent an HTML page instead of $key (kept as $bad)"
            continue
        fi
        got=1
        break
    done
    if ((!got)); then
        err "could not download $key from any URL${TFXR_DOWNLOAD_MIRROR:+ (mirror $TFXR_DOWNLOAD_MIRROR)}; a partial download, if any, is kept in $part and the next run resumes it"
        return 1
    fi

    local size=${SIZES[$key]} have
    have=$(file_size "$part")
    if [[ $size != - && $have != "$size" ]]; then
        warn "$key is $have bytes; the table says $size (the size is informational only)"
    fi
    if [[ $algo == none ]]; then
        actual=$(hash_file sha256 "$part")
        record_local_sum "$key" "$actual"
        mv -f -- "$part" "$final"
        echo "[ok  ] $key: no published checksum; recorded sha256 $actual in $LOCAL_SUMS"
        return 0
    fi
    actual=$(hash_file "$algo" "$part")
    if [[ $actual != "$expected" ]]; then
        mv -f -- "$part" "$bad"
        local hint=""
        if looks_like_html "$bad"; then hint=" The download is an HTML page, not the file: the URL may have moved."; fi
        err "checksum mismatch for $final: expected $algo $expected (from $origin), actual $actual. The download is kept as $bad; delete it and run again to retry.$hint$(local_hint "$origin")"
        return 1
    fi
    mv -f -- "$part" "$final"
    echo "[ok  ] $key: $algo verified"
}

echo "Downloading ${#FILES[@]} file(s) into $DEST with $DOWNLOADER"
failed=()
for key in "${FILES[@]}"; do
    process "$key" || failed+=("$key")
done
if ((${#failed[@]})); then
    err "${#failed[@]} of ${#FILES[@]} file(s) failed: ${failed[*]}"
    exit 1
fi
echo "All ${#FILES[@]} file(s) are in $DEST and verified."
