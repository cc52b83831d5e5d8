#!/usr/bin/env bash
# Build a large, real-world benchmark corpus (thousands of PDFs and HTML pages) from
# Debian documentation packages. Debian's archive is one of the few sources reachable
# here, and its -doc packages hold real, varied documents: TeX Live package manuals
# (PDFs made by many generations of pdfTeX/LuaTeX/XeTeX, plus some from other tools)
# and Sphinx/DocBook/AsciiDoc HTML sites.
#
# Usage: fetch_corpus.sh TARGET_DIR [PACKAGE...]
#   TARGET_DIR   where the corpus goes: TARGET_DIR/<package>/<path under usr/share/>
#   PACKAGE...   Debian packages to take (default: the list below)
# Env: FETCH_CACHE  where the .deb files are kept (default: TARGET_DIR/../debs)
#
# Idempotent: a package whose folder holds a .fetched marker is not touched again, and a
# .deb already in the cache is not downloaded again. Only regular .pdf/.html/.htm files
# are kept (.gz ones decompressed); symlinks are skipped so nothing is counted twice.
# Needs apt-get (run `apt-get update` once first) and dpkg-deb. Never commit the corpus.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
TARGET=$(realpath -m "$1")
shift
if [[ $# -gt 0 ]]; then
    PACKAGES=("$@")
else
    PACKAGES=(
        # PDFs: ~4,600 TeX Live manuals, ~1.3 GB.
        texlive-latex-extra-doc
        texlive-pictures-doc
        texlive-science-doc
        texlive-publishers-doc
        # HTML: ~2,600 pages from four different generators (Sphinx, DocBook, AsciiDoc).
        python3.11-doc
        postgresql-doc-15
        python-django-doc
        git-doc
    )
fi
CACHE=$(realpath -m "${FETCH_CACHE:-$TARGET/../debs}")
mkdir -p "$TARGET" "$CACHE"

# Keep one document: copy it into the package folder, decompressing .gz on the way.
keep_file() {
    local src=$1 dst=$2
    mkdir -p "$(dirname "$dst")"
    if [[ $src == *.gz ]]; then
        # A broken .gz is skipped rather than aborting the whole fetch.
        gzip -dc -- "$src" > "${dst%.gz}" 2>/dev/null || { rm -f -- "${dst%.gz}"; return 0; }
    else
        cp -- "$src" "$dst"
    fi
}

for pkg in "${PACKAGES[@]}"; do
    dest="$TARGET/$pkg"
    if [[ -f $dest/.fetched ]]; then
        echo "[$pkg] already fetched ($(cat "$dest/.fetched"))"
        continue
    fi
    deb=$(compgen -G "$CACHE/${pkg}_*.deb" | head -n 1 || true)
    if [[ -z $deb ]]; then
        echo "[$pkg] downloading"
        # apt-get download writes into the current directory.
        (cd "$CACHE" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
        deb=$(compgen -G "$CACHE/${pkg}_*.deb" | head -n 1 || true)
        [[ -n $deb ]] || { echo "[$pkg] download failed" >&2; exit 1; }
    fi
    # Unpack beside the target and move into place only when complete, so an interrupted
    # run never leaves a half-filled package folder that looks finished.
    tmp="$TARGET/.tmp-$pkg"
    rm -rf -- "$tmp" "$dest"
    mkdir -p "$tmp/root" "$tmp/keep"
    dpkg-deb -x "$deb" "$tmp/root"
    while IFS= read -r -d '' f; do
        rel=${f#"$tmp/root/"}
        rel=${rel#usr/share/}
        keep_file "$f" "$tmp/keep/$rel"
    done < <(find "$tmp/root" -type f \( -iname '*.pdf' -o -iname '*.pdf.gz' \
        -o -iname '*.html' -o -iname '*.htm' -o -iname '*.html.gz' -o -iname '*.htm.gz' \) -print0)
    mv -- "$tmp/keep" "$dest"
    rm -rf -- "$tmp"
    basename "$deb" > "$dest/.fetched"
    echo "[$pkg] unpacked from $(basename "$deb")"
done

# Counts per package and in total, from what is on disk (so a re-run reports the same).
printf '\n%-28s %8s %8s %10s\n' package pdf html size
tot_pdf=0
tot_html=0
for pkg in "${PACKAGES[@]}"; do
    dest="$TARGET/$pkg"
    n_pdf=$(find "$dest" -type f -iname '*.pdf' | wc -l)
    n_html=$(find "$dest" -type f \( -iname '*.html' -o -iname '*.htm' \) | wc -l)
    printf '%-28s %8d %8d %10s\n' "$pkg" "$n_pdf" "$n_html" "$(du -sh "$dest" | cut -f1)"
    tot_pdf=$((tot_pdf + n_pdf))
    tot_html=$((tot_html + n_html))
done
printf '%-28s %8d %8d %10s\n' TOTAL "$tot_pdf" "$tot_html" "$(du -sh "$TARGET" | cut -f1)"
