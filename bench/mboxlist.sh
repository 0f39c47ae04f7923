#!/bin/bash
# Benchmark of our ctl_mboxlist -d / -u and `mailbox create` against the
# real Cyrus 3.6.1, on the same data in the same run (issue 3, Speed).
# Prints wall time and peak RSS of each and our/real ratios. Not a test:
# nothing fails on speed, but differing results do (exit 70).
#
#   bench/mboxlist.sh [NMAILBOXES]   default 100000 (users x 5 mailboxes)
#   CREATE_N=N                       mailboxes for the create comparison
#                                    (default 10000; 0 skips it; the IMAP
#                                    side needs root for a private imapd)
#
# Steps: a generated ctl_mboxlist dump of NMAILBOXES is loaded by the real
# `ctl_mboxlist -u` and by ours into two fresh mailboxes.db; the real tool
# dumps both (must be equal but for mtime, which -u sets to "now"); then
# the real and our `-d` dump the same database (must be byte-identical).
# Then CREATE_N mailboxes are made by us offline and by the real imapd
# over one IMAP connection.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-100000}
CREATE_N=${CREATE_N:-10000}
REAL=/usr/lib/cyrus/bin
OURS=$top/bin/cyrus
[ -x "$REAL/ctl_mboxlist" ] || { echo "bench: the real Cyrus tools are not installed ($REAL)"; exit 69; }
[ -x "$OURS" ] || { echo "bench: build first (make)"; exit 69; }
command -v /usr/bin/time >/dev/null || { echo "bench: needs /usr/bin/time (Debian package time)"; exit 69; }
ASC=()
[ "$(id -u)" = 0 ] && ASC=(setpriv --reuid=cyrus --regid=mail --init-groups --)
asc() { "${ASC[@]}" "$@"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cyrmbxbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
for s in real ours create; do
	mkdir -p "$work/$s/conf/db" "$work/$s/conf/lock" "$work/$s/conf/quota" \
		"$work/$s/part"
	printf 'configdirectory: %s/%s/conf\npartition-default: %s/%s/part\n' \
		"$work" "$s" "$work" "$s" >"$work/$s.conf"
done
[ "$(id -u)" = 0 ] && chown -R cyrus:mail "$work"

run() { # LABEL CMD...: sets T (seconds) and M (peak KB); stdin from $IN
	local label=$1; shift
	/usr/bin/time -f '%e %M' -o "$work/time" "$@" <"${IN:-/dev/null}" \
		>"$work/out.$label" 2>"$work/err.$label" || {
		echo "bench: $label failed:"; tail -5 "$work/err.$label"; exit 70; }
	read -r T M <"$work/time"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a <= 0) a = 0.005; printf "%.1fx", b / a }'; }
row() { # name real_t real_m our_t our_m
	printf '%-30s %9ss %8sKB %9ss %8sKB   speed %s  memory %s\n' "$1" "$2" "$3" "$4" "$5" \
		"$(ratio "$4" "$2")" "$(awk -v a="$3" -v b="$5" 'BEGIN { if (a + 0 > 0) printf "%.2f", b / a; else printf "-" }')"
}

# A dump as ctl_mboxlist -d prints it: users with an INBOX and 4 folders.
users=$(( (N + 4) / 5 ))
echo "Generating a dump of $((users * 5)) mailboxes ($users users) ..."
awk -v users="$users" 'BEGIN {
	srand(42); n = 0
	split("Sent Trash Drafts Archive", f, " ")
	print "{"
	for (u = 0; u < users; u++) {
		for (k = 0; k <= 4; k++) {
			name = sprintf("user.u%06d", u)
			if (k) name = name "." f[k]
			id = ""
			for (c = 0; c < 24; c++) {
				x = int(rand() * 36)
				id = id substr("0123456789abcdefghijklmnopqrstuvwxyz", x + 1, 1)
			}
			printf "%s\"%s\": {\"name\": \"%s\", \"mtime\": \"1700000000\", \"uidvalidity\": \"%d\", \"createdmodseq\": \"1\", \"foldermodseq\": \"%d\", \"mbtype\": \"e\", \"partition\": \"default\", \"acl\": {\"u%06d\": \"lrswipkxtecdan\"}, \"uniqueid\": \"%s\", \"name_history\": []}", (n ? ",\n" : ""), name, name, 1700000001 + u, 1 + k, u, id
			n++
		}
	}
	print "\n}"
}' >"$work/dump.json"
chmod 644 "$work/dump.json"

printf '\n%-30s %10s %10s %10s %10s\n' "" "real time" "real RSS" "our time" "our RSS"

IN=$work/dump.json run realu "${ASC[@]}" "$REAL/ctl_mboxlist" -C "$work/real.conf" -u
rt=$T rm_=$M
IN=$work/dump.json run ouru "${ASC[@]}" "$OURS" ctl_mboxlist -C "$work/ours.conf" -u
row "ctl_mboxlist -u ($((users * 5)))" "$rt" "$rm_" "$T" "$M"

# Same records: the real tool dumps both (mtime is "now" in each).
asc "$REAL/ctl_mboxlist" -C "$work/real.conf" -d |
	sed 's/"mtime": "[0-9]*"/"mtime": "T"/g' | md5sum >"$work/sum.real"
asc "$REAL/ctl_mboxlist" -C "$work/ours.conf" -d |
	sed 's/"mtime": "[0-9]*"/"mtime": "T"/g' | md5sum >"$work/sum.ours"
cmp -s "$work/sum.real" "$work/sum.ours" || { echo "bench: -u results differ!"; exit 70; }
echo "  (-u: the real ctl_mboxlist -d of both databases agrees)"

run reald "${ASC[@]}" "$REAL/ctl_mboxlist" -C "$work/real.conf" -d
rt=$T rm_=$M
run ourd "${ASC[@]}" "$OURS" ctl_mboxlist -C "$work/real.conf" -d
row "ctl_mboxlist -d ($((users * 5)))" "$rt" "$rm_" "$T" "$M"
cmp -s "$work/out.reald" "$work/out.ourd" || { echo "bench: -d outputs differ!"; exit 70; }
echo "  (-d: byte-identical output)"

if [ "$CREATE_N" -gt 0 ]; then
	echo
	# ours: offline, one run, CREATE_N shared mailboxes below one parent
	awk -v n="$CREATE_N" 'BEGIN { print "bench"; for (i = 0; i < n; i++) printf "bench.f%06d\n", i }' \
		>"$work/names"
	run ourcreate "${ASC[@]}" xargs -a "$work/names" -d '\n' "$OURS" mailbox create \
		-C "$work/create.conf"
	our_t=$T our_m=$M
	got=$(asc "$REAL/ctl_mboxlist" -C "$work/create.conf" -d | grep -c '"bench')
	[ "$got" = $((CREATE_N + 1)) ] || { echo "bench: created $got, not $((CREATE_N + 1))"; exit 70; }
	asc "$REAL/chk_cyrus" -C "$work/create.conf" >/dev/null 2>&1 ||
		{ echo "bench: chk_cyrus fails on our mailboxes"; exit 70; }
	if [ "$(id -u)" = 0 ] && [ -f "$top/tests/lib/instance.sh" ]; then
		# the real imapd, over one connection, same names
		# shellcheck source=/dev/null
		set +e	# its read -d '' returns 1 at the end of the text
		. "$top/tests/lib/instance.sh"
		set -e
		instance_start >/dev/null 2>&1 || { echo "bench: cannot start a private imapd"; exit 70; }
		sed 's/^/CREATE /' "$work/names" >"$work/imap"
		t0=$(date +%s.%N)
		instance_imap_script <"$work/imap" >"$work/out.imap" ||
			{ echo "bench: IMAP CREATE failed"; exit 70; }
		t1=$(date +%s.%N)
		T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
		row "create $((CREATE_N + 1)) (imapd vs ours)" "$T" "-" "$our_t" "$our_m"
		instance_stop
	else
		printf '%-30s %10s %10s %9ss %8sKB   (imapd side needs root)\n' \
			"create $((CREATE_N + 1)) (ours)" "-" "-" "$our_t" "$our_m"
	fi
fi
echo
echo "speed = real time / our time; memory = our peak RSS / real peak RSS"
