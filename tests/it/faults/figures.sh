#!/usr/bin/env bash
# Prints the fault suite's figures (one TSV line per scenario, written by the tests) as one
# table, with totals. Usage: figures.sh DIR
set -euo pipefail
dir=${1:?usage: figures.sh DIR}
shopt -s nullglob
files=("$dir"/*.tsv)
if [ ${#files[@]} -eq 0 ]; then
    echo "fault suite: no figures in $dir (no scenario ran)"
    exit 0
fi
cat "${files[@]}" | sort | awk -F'\t' '
BEGIN {
    split("kill points|sites|recovered|left down|repeated|inputs|panics", h, "|")
    printf "%-48s", "scenario"; for (i = 1; i <= 7; i++) printf " %11s", h[i]; printf "\n"
}
{
    printf "%-48s", $1
    for (i = 2; i <= 8; i++) { printf " %11s", $i; t[i] += $i }
    printf "\n"; n++
}
END {
    printf "%-48s", "total (" n " scenarios)"; for (i = 2; i <= 8; i++) printf " %11s", t[i]; printf "\n"
    if (t[5] + t[6] + t[8] > 0) { print "fault suite: sites left down, steps repeated or panics are not 0"; exit 1 }
}'
