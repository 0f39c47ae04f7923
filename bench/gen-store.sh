#!/bin/bash
# A deterministic Cyrus 3.6.1 store for bench/reconstruct.sh: NMSG messages
# (default 100000) from bench/gen-mail.py (mixed sizes and MIME structures),
# in NMSG/500 users with an INBOX and four folders each (INBOX 40%, Sent
# 20%, Archive 20%, Archive.2022 10%, Lists 10%), a STORAGE quota root on
# every user. The mailboxes are made by our `mailbox create` (offline, as
# imapd makes them), the messages written as files and indexed by the real
# reconstruct.
#
#   bench/gen-store.sh DIR [NMSG]     DIR/imapd.conf, DIR/conf, DIR/part
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: gen-store.sh DIR [NMSG]}
N=${2:-100000}
REAL=/usr/lib/cyrus/bin
ASC=()
[ "$(id -u)" = 0 ] && ASC=(setpriv --reuid=cyrus --regid=mail --init-groups --)
asc() { "${ASC[@]}" "$@"; }

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -rf "$dir/conf" "$dir/part"
mkdir -p "$dir/conf/db" "$dir/conf/lock" "$dir/conf/quota" "$dir/conf/proc" \
	"$dir/part"
cat >"$dir/imapd.conf" <<EOF
configdirectory: $dir/conf
partition-default: $dir/part
mboxname_lockpath: $dir/conf/lock
proc_path: $dir/conf/proc
defaultpartition: default
hashimapspool: true
unixhierarchysep: no
altnamespace: no
EOF
[ "$(id -u)" = 0 ] && chown -R cyrus:mail "$dir"
chmod 755 "$dir"

users=$(( (N + 499) / 500 ))
echo "gen-store: $N messages in $users users x 5 mailboxes" >&2
names=()
for ((u = 0; u < users; u++)); do
	b=$(printf 'user.u%05d' $u)
	names+=("$b" "$b.Sent" "$b.Archive" "$b.Archive.2022" "$b.Lists")
done
# Quota roots first (one create per root), then the rest in one run.
for ((u = 0; u < users; u++)); do
	printf 'user.u%05d\n' $u
done | xargs -n 200 "${ASC[@]}" "$top/bin/cyrus" mailbox create -C "$dir/imapd.conf" \
	--quota 2000000 >/dev/null
printf '%s\n' "${names[@]}" | grep -v '^user\.u[0-9]*$' |
	xargs -n 500 "${ASC[@]}" "$top/bin/cyrus" mailbox create -C "$dir/imapd.conf" >/dev/null

# COUNT DIR per mailbox; the counts add up to N.
left=$N
: >"$dir/layout"
for ((u = 0; u < users; u++)); do
	per=$(( left < 500 ? left : 500 ))
	left=$((left - per))
	b=$(printf 'user.u%05d' $u)
	c1=$((per * 4 / 10)) c2=$((per * 2 / 10)) c3=$((per * 2 / 10)) c4=$((per / 10))
	c5=$((per - c1 - c2 - c3 - c4))
	i=0
	for m in "$b" "$b.Sent" "$b.Archive" "$b.Archive.2022" "$b.Lists"; do
		i=$((i + 1))
		eval "c=\$c$i"
		echo "$c $(asc "$REAL/mbpath" -C "$dir/imapd.conf" "$m")"
	done >>"$dir/layout"
done
asc /usr/bin/python3 "$top/bench/gen-mail.py" --seed 42 --dirs "$dir/layout"
echo "gen-store: $(du -sh "$dir/part" | cut -f1) of messages; indexing with the real reconstruct" >&2
asc "$REAL/reconstruct" -C "$dir/imapd.conf" -q >/dev/null
asc "$REAL/quota" -C "$dir/imapd.conf" -f -q >/dev/null 2>&1 || true
