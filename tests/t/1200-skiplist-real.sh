#!/bin/bash
# skiplist files written by our dbtool read identically with the real
# cyr_dbtool (and are consistent), and the real tool's files read
# identically with ours: overwrites, deletes, several transactions, an
# aborted one, a crashed one, with and without the recovery stamp.
# Plain bash for now: exits non-zero on the first failure, 0 (skip) when
# the real Cyrus tools are not installed.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
REAL=/usr/lib/cyrus/bin/cyr_dbtool
OURS=$top/bin/cyrus
if [ ! -x "$REAL" ]; then
	echo "1..0 # SKIP real cyr_dbtool not installed"
	exit 0
fi
[ -x "$OURS" ] || { echo "not ok - build first (make)"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/skiplist-real.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/conf/db" "$work/part"
printf 'configdirectory: %s/conf\npartition-default: %s/part\n' \
	"$work" "$work" >"$work/imapd.conf"
chown -R cyrus:mail "$work" 2>/dev/null || true
chmod 755 "$work"
conf=$work/imapd.conf
n=0 fail=0

real() { "$REAL" -C "$conf" "$@"; }
ours() { "$OURS" dbtool -C "$conf" "$@"; }
check() { # title command...
	n=$((n + 1))
	if "${@:2}"; then
		echo "ok $n - $1"
	else
		echo "not ok $n - $1"
		fail=$((fail + 1))
	fi
}
same_show() { # file: both tools print the same records, both say consistent
	real "$1" skiplist show >"$work/real.out" 2>"$work/real.err" &&
	ours "$1" skiplist show >"$work/our.out" 2>"$work/our.err" &&
	cmp -s "$work/real.out" "$work/our.out" &&
	[ "$(real "$1" skiplist consistent)" = "Yes, consistent" ] &&
	[ "$(ours "$1" skiplist consistent)" = "Yes, consistent" ]
}
show_is() { # file expected-file (read by the real tool)
	real "$1" skiplist show >"$work/real.out" && cmp -s "$2" "$work/real.out"
}
stamp() { # the recovery stamp: open does not recover files newer than it
	printf '\000\000\003\350' >"$work/conf/db/skipstamp"
	chown cyrus:mail "$work/conf/db/skipstamp" 2>/dev/null || true
}
nostamp() { rm -f "$work/conf/db/skipstamp"; }

# Ours writes a log of single-record transactions; the real tool reads it
# through the pointers (stamp) and by replaying the log (no stamp).
for mode in stamp nostamp; do
	$mode
	f=$work/ours-$mode.db
	ours -n "$f" skiplist set apple red &&
	ours "$f" skiplist set banana yellow &&
	ours "$f" skiplist set apple green &&
	ours "$f" skiplist set $'tab\there' $'line\nfeed' &&
	ours "$f" skiplist set $'\xc3\xa4' umlaut &&
	ours "$f" skiplist set empty '' &&
	ours "$f" skiplist delete banana &&
	ours "$f" skiplist delete nothere
	printf '\xc3\xa4\tumlaut\napple\tgreen\nempty\t\ntab\there\tline\nfeed\n' \
		>"$work/expect"
	check "ours writes ($mode), real show" show_is "$f" "$work/expect"
	check "ours writes ($mode), both consistent, same show" same_show "$f"
done

# Many records in one transaction, then a repack by ours.
stamp
f=$work/bulk.db
seq 1 3000 | awk '{ printf "key%05d\tvalue %d\n", $1, $1 }' >"$work/keys"
ours -T -n "$f" skiplist set <"$work/keys" &&
ours "$f" skiplist delete key00007
grep -v '^key00007	' "$work/keys" >"$work/expect"
check "ours bulk transaction, real show" show_is "$f" "$work/expect"
ours "$f" skiplist repack
check "ours repack, real show" show_is "$f" "$work/expect"
check "ours repack, both consistent" same_show "$f"

# The real tool writes: overwrites, deletes, batch transactions (one
# aborted); ours reads through the pointers and by recovery.
for mode in stamp nostamp; do
	$mode
	f=$work/real-$mode.db
	real -n "$f" skiplist set a 1 &&
	real "$f" skiplist set b 2 &&
	real "$f" skiplist set $'x\ty' $'v\xff' &&
	real "$f" skiplist set a 11 &&
	real "$f" skiplist delete b &&
	printf 'BEGIN\nSET c 3\nSET d 4\nDELETE a\nCOMMIT\nBEGIN\nSET e 5\nSET c 33\nABORT\nSET f 6\n' |
		real "$f" skiplist batch >/dev/null
	cp -p "$f" "$f.copy"
	printf 'c\t3\nd\t4\nf\t6\nx\ty\tv\xff\n' >"$work/expect"
	check "real writes ($mode), real show" show_is "$f" "$work/expect"
	ours "$f.copy" skiplist show >"$work/our.out"
	check "real writes ($mode), our show" cmp -s "$work/expect" "$work/our.out"
	check "real writes ($mode), both consistent" same_show "$f"
done

# A writer that dies before COMMIT (cyr_dbtool's damage action): without
# the stamp both tools recover and drop the record.
nostamp
f=$work/crash.db
real -n "$f" skiplist set keep 1 && real "$f" skiplist set also 2
real "$f" skiplist damage >/dev/null 2>&1
cp -p "$f" "$f.copy"
printf 'also\t2\nkeep\t1\n' >"$work/expect"
ours "$f.copy" skiplist show >"$work/our.out"
check "crashed transaction dropped by our recovery" \
	cmp -s "$work/expect" "$work/our.out"
check "and by the real one" show_is "$f" "$work/expect"
check "recovered files are consistent" same_show "$f.copy"

echo "1..$n"
[ "$fail" -eq 0 ]
