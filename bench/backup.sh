#!/bin/bash
# Benchmark of `cyrus backup` on a store filled by a private real Cyrus
# 3.6.1 (tests/lib/instance.sh), against the sysadmin's alternative, tar
# -czf of the partitions and the config directory with the server stopped.
# Prints wall time, peak RSS and sizes, the ratios the issue asks for, and
# what a third snapshot of the unchanged store adds (its manifest).
# Not a test: nothing here fails on speed.
#
#   bench/backup.sh [NMSGS]     messages in the store, default 100000; one
#                               mailbox (user.big) gets NMSGS/10 of them
#                               (10000 by default), the rest go to 20 users
#   CYRUS_BIN=PATH              the cyrus binary to measure (default
#                               bin/cyrus): compare two builds on one machine
# Run as root (the private master binds as root and becomes cyrus).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-100000}
OURS=${CYRUS_BIN:-$top/bin/cyrus}
[ -x "$OURS" ] || { echo "bench: build first (make)"; exit 69; }
command -v /usr/bin/time >/dev/null ||
	{ echo "bench: needs /usr/bin/time (Debian package time)"; exit 69; }
. "$top/tests/lib/instance.sh"
real_cyrus_available || { echo "bench: the real Cyrus is not installed"; exit 69; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cyrbkbench.XXXXXX")
chmod 755 "$work"
chown cyrus:mail "$work"
trap 'instance_stop; rm -rf "$work"' EXIT
instance_start || exit 70
# A copy, so that a rebuild meanwhile does not hit a busy binary.
cp "$OURS" "$work/cyrus" && OURS=$work/cyrus
B=$work/archive

run() { # LABEL CMD...: sets T (seconds) and M (peak KB)
	local label=$1
	shift
	if ! /usr/bin/time -f '%e %M' -o "$work/time" "$@" \
		>"$work/out.$label" 2>"$work/err.$label"; then
		echo "bench: $label failed:"
		cat "$work/err.$label"
		exit 70
	fi
	read -r T M <"$work/time"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) b = 0.005; printf "%.2f", a / b }'; }

# Bulk delivery over one LMTP connection: message I goes to user.big if
# I % 10 == 0, else to u(I % 20).
deliver() { # FIRST COUNT
	"${_CYR_PY:-python3}" - "$CYR_LMTP" "$CYR_SERVERNAME" "$1" "$2" <<'PY'
import random, smtplib, sys
sock, host, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
words = ("mail store backup cyrus index cache quota message folder restore "
         "snapshot archive server client imap lmtp sieve header body text "
         "meeting report invoice project budget schedule review").split()
c = smtplib.LMTP(sock)
c.ehlo("localhost")
for i in range(first, first + count):
    rnd = random.Random(i)
    user = "big" if i % 10 == 0 else "u%02d" % (i % 20)
    body = "\n".join(" ".join(rnd.choice(words) for _ in range(rnd.randint(6, 14)))
                     for _ in range(rnd.randint(10, 60)))
    msg = ("From: sender%d@example.org\nTo: %s@example.org\nSubject: message %d %s\n"
           "Date: Mon, 1 May 2023 10:%02d:00 +0000\nMessage-ID: <bench.%d@example.org>\n"
           "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n%s\n"
           % (i % 97, user, i, rnd.choice(words), i % 60, i, body))
    c.sendmail("sender@example.org", ["%s@%s" % (user, host)], msg.encode())
c.quit()
PY
}

echo "Filling a store with $N messages over LMTP ..."
instance_create_user big
for u in $(seq -f 'u%02g' 0 19); do instance_create_user "$u" || exit 70; done
deliver 0 "$N" || exit 70
du -sb "$CYR_PART" | awk '{ print "partition: " $1 " bytes" }'

printf '\n%-44s %9s %10s %12s\n' "" "time" "peak RSS" "bytes"
if [ -n "${PERF:-}" ]; then
	perf record -g -o "$PERF" "$OURS" backup create -C "$CYR_CONF" "$work/perfarchive" >/dev/null 2>&1
	chmod 644 "$PERF"
fi
run create1 "$OURS" backup create -C "$CYR_CONF" "$B"
t1=$T
arch1=$(find "$B" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
disk1=$(du -sk "$B" | cut -f1)
# Where the bytes are: messages (packs, or loose in format 1), their
# indexes, the other files, the manifests.
parts1=$(find "$B" -type f -printf '%P %s\n' | awk '
	$1 ~ /^packs\/.*\.tar\.gz$/ || $1 ~ /^messages\// { m += $2; next }
	$1 ~ /^packs\/.*\.idx\.gz$/ { i += $2; next }
	$1 ~ /^files\// { f += $2; next }
	$1 ~ /^snapshots\// { s += $2 }
	END { printf "messages %d, pack indexes %d, files %d, manifests %d", m, i, f, s }')
printf '%-44s %8ss %8sKB %12s\n' "backup create, first (server running)" "$T" "$M" "$arch1"

instance_pause
run tar tar -czf "$work/store.tar.gz" -C / "${CYR_PART#/}" "${CYR_PART2#/}" "${CYR_CONFIGDIR#/}"
tt=$T
tarsz=$(stat -c %s "$work/store.tar.gz")
printf '%-44s %8ss %8sKB %12s\n' "tar -czf partitions+config (server stopped)" "$T" "$M" "$tarsz"
instance_resume

# 1% of the messages change: new ones arrive, some get flags.
deliver "$N" $((N / 100)) || exit 70
instance_imap_script -u big -w big >/dev/null <<EOF
SELECT INBOX
STORE 1:$((N / 1000)) +FLAGS (\\Flagged)
EOF
run create2 "$OURS" backup create -C "$CYR_CONF" "$B"
t2=$T
arch2=$(find "$B" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
printf '%-44s %8ss %8sKB %12s\n' "backup create, after 1% changed" "$T" "$M" "+$((arch2 - arch1))"

# Nothing changed since: what a snapshot alone costs (its manifest).
run create3 "$OURS" backup create -C "$CYR_CONF" "$B"
arch3=$(find "$B" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
printf '%-44s %8ss %8sKB %12s\n' "backup create, nothing changed" "$T" "$M" "+$((arch3 - arch2))"

run verify "$OURS" backup verify "$B"
printf '%-44s %8ss %8sKB\n' "backup verify (three snapshots)" "$T" "$M"

instance_pause
run restore "$OURS" backup restore -C "$CYR_CONF" "$B" --as user.big.Restored user.big
printf '%-44s %8ss %8sKB\n' "restore of user.big ($((N / 10 + N / 1000)) msgs, --as)" "$T" "$M"
instance_resume

echo
echo "first snapshot / tar -czf time:        $(ratio "$t1" "$tt")  (target <= 1)"
echo "first / second snapshot time:          $(ratio "$t1" "$t2")  (target >= 20)"
echo "archive after first / tar.gz size:     $(ratio "$arch1" "$tarsz")  (target <= 1; file bytes)"
echo "  of which:                            $parts1"
echo "archive disk use after first:          ${disk1} KB (du -sk)"
echo "snapshot of an unchanged store adds:   $((arch3 - arch2)) bytes"
