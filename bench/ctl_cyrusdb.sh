#!/bin/bash
# Benchmark of our ctl_cyrusdb -c / -r -x and dbtool salvage against the
# real Cyrus 3.6.1 tools, on the same store in the same run. Prints wall
# time and peak RSS of each and our/real ratios. Not a test.
#
#   bench/ctl_cyrusdb.sh [NKEYS]      mailboxes.db keys, default 1000000
#   DAMAGE=N                          damaged spots for salvage (default 100)
# Run as root (the tools run as cyrus) or as the cyrus user.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-1000000}
DAMAGE=${DAMAGE:-100}
REAL=/usr/lib/cyrus/bin
OURS=$top/bin/cyrus
[ -x "$REAL/ctl_cyrusdb" ] || { echo "bench: the real Cyrus tools are not installed ($REAL)"; exit 69; }
[ -x "$OURS" ] || { echo "bench: build first (make)"; exit 69; }
command -v /usr/bin/time >/dev/null || { echo "bench: needs /usr/bin/time (Debian package time)"; exit 69; }
asc() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=cyrus --regid=mail --init-groups "$@"; else "$@"; fi; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cyrctlbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
for s in real ours; do
	mkdir -p "$work/$s/conf/db" "$work/$s/part"
	printf 'configdirectory: %s/%s/conf\npartition-default: %s/%s/part\n' \
		"$work" "$s" "$work" "$s" >"$work/$s.conf"
done
[ "$(id -u)" = 0 ] && chown -R cyrus:mail "$work"

run() { # LABEL CMD...: sets T (seconds) and M (peak KB); KEEP_GOING=1: T=failed
	local label=$1; shift
	if ! asc /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$work/out.$label" 2>"$work/err.$label"; then
		echo "bench: $label failed:"; grep -v "^Command exited" "$work/err.$label"
		[ "${KEEP_GOING:-0}" = 1 ] || exit 70
		T=failed M=0; return 0
	fi
	read -r T M <"$work/time"
}
ratio() { case $1$2 in *failed*) echo n/a; return;; esac; awk -v a="$1" -v b="$2" 'BEGIN { if (a <= 0) a = 0.005; printf "%.2f", b / a }'; }
row() { # name real_t real_m our_t our_m
	printf '%-28s %8ss %8sKB %8ss %8sKB   time ours/real %s  RSS ours/real %s\n' \
		"$1" "$2" "$3" "$4" "$5" "$(ratio "$2" "$4")" "$(ratio "$3" "$5")"
}

echo "Building a $N-key mailboxes.db with the real cyr_dbtool ..."
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++)
	printf "Nuser.u%07d\t%%(A %%(u%07d lrswipkxtecdan) I %08x-%04x-4000-8000-%012x P default V 1700000000 F 1 M 1700000000)\n", i, i, i, i % 65536, i }' >"$work/keys"
chmod 644 "$work/keys"
run build "$REAL/cyr_dbtool" -C "$work/real.conf" -T -n "$work/real/conf/mailboxes.db" twoskip set <"$work/keys"
cp -p "$work/real/conf/mailboxes.db" "$work/ours/conf/mailboxes.db"
ls -l "$work/real/conf/mailboxes.db" | awk '{ print "mailboxes.db: " $5 " bytes" }'

printf '\n%-28s %9s %10s %9s %10s\n' "" "real time" "real RSS" "our time" "our RSS"
for pass in 1 2; do
	run realc "$REAL/ctl_cyrusdb" -C "$work/real.conf" -c; rt=$T rm_=$M
	run ourc "$OURS" ctl_cyrusdb -C "$work/ours.conf" -c; row "ctl_cyrusdb -c (pass $pass)" "$rt" "$rm_" "$T" "$M"
done
cmp "$work/real/conf/db.backup1/mailboxes.db" "$work/ours/conf/db.backup1/mailboxes.db" ||
	{ echo "bench: the backups differ"; exit 70; }
run realr "$REAL/ctl_cyrusdb" -C "$work/real.conf" -r -x; rt=$T rm_=$M
run ourr "$OURS" ctl_cyrusdb -C "$work/ours.conf" -r -x; row "ctl_cyrusdb -r -x" "$rt" "$rm_" "$T" "$M"
run realr2 "$REAL/ctl_cyrusdb" -C "$work/real.conf" -r; rt=$T rm_=$M
run ourr2 "$OURS" ctl_cyrusdb -C "$work/ours.conf" -r; row "ctl_cyrusdb -r" "$rt" "$rm_" "$T" "$M"

# Salvage: the file with DAMAGE spots flipped, against a plain conversion
# of the undamaged file (the issue's yardstick: within 2x).
src=$work/ours/conf/mailboxes.db
cp -p "$src" "$work/damaged.db"
python3 - "$work/damaged.db" "$DAMAGE" <<'PY'
import os, random, sys
f, n = sys.argv[1], int(sys.argv[2])
random.seed(1)
d = bytearray(open(f, "rb").read())
for o in random.sample(range(400, len(d)), n):
    d[o] ^= 0xA5
open(f, "wb").write(d)
PY
[ "$(id -u)" = 0 ] && chown cyrus:mail "$work/damaged.db"
KEEP_GOING=1 run cvt "$OURS" cvt_cyrusdb -C "$work/ours.conf" "$src" twoskip "$work/cvt.db" twoskip; ct=$T cm=$M
KEEP_GOING=1 run salv "$OURS" dbtool -C "$work/ours.conf" "$work/damaged.db" twoskip salvage "$work/salvaged.db"
printf '%-28s %8ss %8sKB %8ss %8sKB   salvage/convert %s\n' "salvage ($DAMAGE spots) vs cvt" "$ct" "$cm" "$T" "$M" "$(ratio "$ct" "$T")"
grep '^kept' "$work/out.salv" || true
