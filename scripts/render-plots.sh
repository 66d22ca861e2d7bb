#!/usr/bin/env bash
# Renders a report's SVG plots to PNG (Debian's rsvg-convert, installed here if missing) so they can
# be looked at before a report is published: axes labelled with units, legends, nothing clipped.
# usage: scripts/render-plots.sh results/<report> [out-dir]   (default out-dir: <report>/png, untracked)
set -euo pipefail
dir=${1:?usage: scripts/render-plots.sh REPORT_DIR [OUT_DIR]}
out=${2:-$dir/png}
if ! command -v rsvg-convert >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq --no-install-recommends librsvg2-bin >/dev/null 2>&1 ||
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends librsvg2-bin >/dev/null; }
fi
mkdir -p "$out"
for f in "$dir"/plots/*.svg; do
  [ -e "$f" ] || continue
  rsvg-convert -b white -o "$out/$(basename "${f%.svg}").png" "$f"
  echo "$out/$(basename "${f%.svg}").png"
done
