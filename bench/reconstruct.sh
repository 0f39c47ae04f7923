#!/bin/bash
# Benchmark of our reconstruct and quota -f against the real Cyrus 3.6.1
# tools on the same store in the same run (issue 4, Speed). Not a test:
# nothing fails on speed, but a store the real reconstruct -n would still
# change after ours does (exit 70).
#
#   bench/reconstruct.sh [NMSG]       default 100000; the store is made by
#                                     bench/gen-store.sh (kept in
#                                     $BENCH_STORE if set, else a temp dir)
#
# Rows, every cyrus.index and cyrus.cache lost before each reconstruct:
#   floor     cat + sha1sum of every message file (the page cache is warm
#             for all rows: each is run after a read of every file)
#   reconstruct -r user   the real one, then ours sequential (-j 1), then
#                         ours with a worker per core (the default)
#   quota -f              the real one, then ours
#   RSS flat: ours on one user (2,500 messages at most) vs the whole store
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-100000}
REAL=/usr/lib/cyrus/bin
OURS=$top/bin/cyrus
[ -x "$REAL/reconstruct" ] || { echo "bench: the real Cyrus tools are not installed ($REAL)"; exit 69; }
[ -x "$OURS" ] || { echo "bench: build first (make)"; exit 69; }
command -v /usr/bin/time >/dev/null || { echo "bench: needs /usr/bin/time (Debian package time)"; exit 69; }
ASC=()
[ "$(id -u)" = 0 ] && ASC=(setpriv --reuid=cyrus --regid=mail --init-groups --)

if [ -n "${BENCH_STORE:-}" ]; then
	store=$BENCH_STORE
	work=$(mktemp -d "${TMPDIR:-/tmp}/cyrrecbench.XXXXXX")
	trap 'rm -rf "$work"' EXIT
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/cyrrecbench.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	store=$work/store
fi
chmod 755 "$work"
conf=$store/imapd.conf
if [ ! -f "$store/layout" ] || [ "$(awk '{n += $1} END {print n}' "$store/layout")" != "$N" ]; then
	bash "$top/bench/gen-store.sh" "$store" "$N"
fi
part=$store/part

run() { # LABEL CMD...: sets T (seconds) and M (peak KB)
	local label=$1; shift
	/usr/bin/time -f '%e %M' -o "$work/time" "$@" \
		>"$work/out.$label" 2>"$work/err.$label" || {
		echo "bench: $label failed:"; tail -5 "$work/err.$label"; exit 70; }
	read -r T M <"$work/time"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a <= 0) a = 0.005; printf "%.1fx", b / a }'; }
lose() { find "$part" \( -name cyrus.index -o -name cyrus.cache \) -delete; }
files() { find "$part" -name '*.' -type f -print0; }

nfiles=$(files | tr -cd '\0' | wc -c)
bytes=$(files | du -cb --files0-from=- | tail -n1 | cut -f1)
mib=$((bytes / 1048576))
echo "store: $nfiles messages, $mib MiB, $(wc -l <"$store/layout") mailboxes; $(nproc) cores"

# Warm the page cache, then the floor.
files | xargs -0 cat >/dev/null
run floor sh -c "find '$part' -name '*.' -type f -print0 | xargs -0 cat | sha1sum"
floor_t=$T

lose
run real "${ASC[@]}" "$REAL/reconstruct" -C "$conf" -q -r user
real_t=$T real_m=$M
lose
run ours1j "${ASC[@]}" "$OURS" reconstruct -C "$conf" -q -j 1 -r user
our1j_t=$T
lose
run ours "${ASC[@]}" "$OURS" reconstruct -C "$conf" -q -r user
our_t=$T our_m=$M
run check "${ASC[@]}" "$REAL/reconstruct" -C "$conf" -n
if grep -v '^user\.[A-Za-z0-9.]*$' "$work/out.check" | grep -q .; then
	echo "bench: the real reconstruct -n would change our result:"
	grep -v '^user\.[A-Za-z0-9.]*$' "$work/out.check" | head
	exit 70
fi

one=$(head -n1 "$store/layout" | cut -d' ' -f2)
lose
run ours1 "${ASC[@]}" "$OURS" reconstruct -C "$conf" -q -r user.u00000
one_m=$M
"${ASC[@]}" "$OURS" reconstruct -C "$conf" -q -r user >/dev/null

run realq "${ASC[@]}" "$REAL/quota" -C "$conf" -f
realq_t=$T realq_m=$M
run oursq "${ASC[@]}" "$OURS" quota -C "$conf" -f
oursq_t=$T oursq_m=$M
cmp -s "$work/out.realq" "$work/out.oursq" || { echo "bench: quota -f reports differ"; diff "$work/out.realq" "$work/out.oursq" | head; exit 70; }

printf '\n%-28s %9s %10s\n' "" time "peak RSS"
printf '%-28s %8ss\n' "floor (cat | sha1sum)" "$floor_t"
printf '%-28s %8ss %8sKB\n' "real reconstruct -r" "$real_t" "$real_m"
printf '%-28s %8ss\n' "our reconstruct -r -j 1" "$our1j_t"
printf '%-28s %8ss %8sKB\n' "our reconstruct -r -j $(nproc)" "$our_t" "$our_m"
printf '%-28s %8s  %8sKB\n' "our reconstruct, one user" "" "$one_m"
printf '%-28s %8ss %8sKB\n' "real quota -f" "$realq_t" "$realq_m"
printf '%-28s %8ss %8sKB\n' "our quota -f" "$oursq_t" "$oursq_m"
echo
echo "reconstruct: ours $(ratio "$our_t" "$real_t") faster than the real one (target 3x);" \
	"$(awk -v a="$our_t" -v b="$floor_t" 'BEGIN { printf "%.2f", a / (b > 0 ? b : 0.005) }')x the floor (target <= 2x)"
echo "quota -f: ours $(ratio "$oursq_t" "$realq_t") faster (target 5x)"
echo "RSS: ours $our_m KB vs real $real_m KB; one user $one_m KB vs whole store $our_m KB"
: "$one"
