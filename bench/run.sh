#!/bin/bash
# Side-by-side benchmark of our cvt_cyrusdb and dbtool against the real
# Cyrus 3.6.1 tools, on the same data in the same run. Prints wall time and
# peak RSS for each, and our/real ratios. Not a test: nothing here fails on
# speed.
#
#   bench/run.sh [NKEYS]          default 1000000
#   FLAT_REAL_KEYS=N              keys for the real twoskip->flat (it is
#                                 quadratic; default 20000, and 2x that to
#                                 show the growth)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-1000000}
FLAT_REAL_KEYS=${FLAT_REAL_KEYS:-20000}
REAL=/usr/lib/cyrus/bin
OURS=$top/bin/cyrus
[ -x "$REAL/cvt_cyrusdb" ] || { echo "bench: the real Cyrus tools are not installed ($REAL)"; exit 69; }
[ -x "$OURS" ] || { echo "bench: build first (make)"; exit 69; }
command -v /usr/bin/time >/dev/null || { echo "bench: needs /usr/bin/time (Debian package time)"; exit 69; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cyrbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/conf" "$work/part"
chown -R cyrus:mail "$work" 2>/dev/null || true
chmod 755 "$work"
conf=$work/imapd.conf
printf 'configdirectory: %s/conf\npartition-default: %s/part\n' "$work" "$work" >"$conf"

# run LABEL CMD...: time one command; sets T (seconds) and M (peak KB).
run() {
	local label=$1; shift
	/usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$work/out.$label" 2>"$work/err.$label" || {
		echo "bench: $label failed:"; cat "$work/err.$label"; exit 70; }
	read -r T M <"$work/time"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a <= 0) a = 0.005; printf "%.1fx", b / a }'; }

row() { # name real_t real_m our_t our_m
	printf '%-26s %9ss %8sKB %9ss %8sKB   speed %s  memory %s\n' "$1" "$2" "$3" "$4" "$5" \
		"$(ratio "$4" "$2")" "$(awk -v a="$3" -v b="$5" 'BEGIN { printf "%.2f", b / a }')"
}

keys() { # n: mailboxes.db-like records
	awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++)
		printf "Nuser.u%07d.INBOX\t%%(A %%(u%07d lrswipkxtecdan) I %08x-%04x-4000-8000-%012x P default V 1700000000 F 1 M 1700000000)\n", i, i, i, i % 65536, i }'
}

echo "Building a $N-key twoskip with the real cyr_dbtool ..."
keys "$N" >"$work/keys"
chmod 644 "$work/keys"
run realset "$REAL/cyr_dbtool" -C "$conf" -T -n "$work/src.db" twoskip set <"$work/keys"
real_set_t=$T real_set_m=$M
check=$("$REAL/cyr_dbtool" -C "$conf" "$work/src.db" twoskip consistent)
echo "real cyr_dbtool consistent on the source: $check"
[ "$check" = "Yes, consistent" ] || exit 70
run ourset "$OURS" dbtool -C "$conf" -T -n "$work/oursrc.db" twoskip set <"$work/keys"
our_set_t=$T our_set_m=$M

printf '\n%-26s %10s %10s %10s %10s\n' "" "real time" "real RSS" "our time" "our RSS"
row "set $N (one txn)" "$real_set_t" "$real_set_m" "$our_set_t" "$our_set_m"

run realshow "$REAL/cyr_dbtool" -C "$conf" "$work/src.db" twoskip show
rt=$T rm_=$M
run ourshow "$OURS" dbtool -C "$conf" "$work/src.db" twoskip show
row "show (twoskip)" "$rt" "$rm_" "$T" "$M"
cmp -s "$work/out.realshow" "$work/out.ourshow" || { echo "bench: show outputs differ!"; exit 70; }

conv() { # label from frombe tobe
	local label=$1 from=$2 fbe=$3 tbe=$4
	run "real$label" "$REAL/cvt_cyrusdb" -C "$conf" "$from" "$fbe" "$work/real.$label" "$tbe"
	local rt=$T rmem=$M
	run "our$label" "$OURS" cvt_cyrusdb -C "$conf" "$from" "$fbe" "$work/our.$label" "$tbe"
	row "$fbe->$tbe" "$rt" "$rmem" "$T" "$M"
	# Both results must hold the same records (read back by the real tool).
	"$REAL/cyr_dbtool" -C "$conf" "$work/real.$label" "$tbe" show | md5sum >"$work/sum.real"
	"$REAL/cyr_dbtool" -C "$conf" "$work/our.$label" "$tbe" show | md5sum >"$work/sum.our"
	cmp -s "$work/sum.real" "$work/sum.our" || { echo "bench: $label results differ!"; exit 70; }
}

conv ts2sl "$work/src.db" twoskip skiplist
conv sl2ts "$work/our.ts2sl" skiplist twoskip

# The real twoskip->flat rewrites the whole file per record: measure it on
# small inputs to show the growth, ours on the full set.
for n in "$FLAT_REAL_KEYS" $((FLAT_REAL_KEYS * 2)); do
	keys "$n" >"$work/keys.$n"
	"$REAL/cyr_dbtool" -C "$conf" -T -n "$work/small.$n.db" twoskip set <"$work/keys.$n"
	conv "flat$n" "$work/small.$n.db" twoskip flat
done
run ourflat "$OURS" cvt_cyrusdb -C "$conf" "$work/src.db" twoskip "$work/our.flatN" flat
printf '%-26s %10s %10s %9ss %8sKB   (real not run: quadratic)\n' "twoskip->flat $N" "-" "-" "$T" "$M"
echo
echo "speed = real time / our time; memory = our peak RSS / real peak RSS"
