#!/bin/bash
# demo.sh: `make demo`.  Starts a private real Cyrus 3.6.1, fills it with a
# few users, folders and messages, and shows what the toolkit does with that
# store, section by section.  A failing step prints its failure and the demo
# goes on.  The instance is stopped at the end (KEEP_SCRATCH=1 keeps its
# directory and the demo's scratch directory).

set -u

TOP=$(cd "$(dirname "$0")/.." && pwd) || exit 1
CYRUS=$TOP/bin/cyrus
if [ "${SKIP_SETUP_DEPS:-0}" != 1 ]; then
	"$TOP/tests/setup-deps.sh" || echo "setup-deps failed; going on" >&2
fi
. "$TOP/tests/lib/instance.sh"

section()
{
	printf '\n==== %s ====\n' "$*"
}

# step CMD ARGS...: show the command, run it, show its output and, if it
# fails, its exit status.
step()
{
	local rc
	printf '$ %s\n' "$*"
	"$@" 2>&1
	rc=$?
	[ $rc = 0 ] || printf '(failed: exit status %d)\n' "$rc"
	return $rc
}

have_cyrus()
{
	[ -x "$CYRUS" ] && "$CYRUS" help "$1" >/dev/null 2>&1
}

if ! real_cyrus_available; then
	echo "demo: Debian's cyrus-imapd is not installed (see tests/setup-deps.sh)" >&2
	exit 1
fi

section "A private Cyrus 3.6.1"
instance_start || exit 1
instance_fill || { echo "demo: instance_fill failed" >&2; exit 1; }
echo "imapd on 127.0.0.1:$CYR_PORT, LMTP on $CYR_LMTP"
echo "imapd.conf: $CYR_CONF"
echo "config directory: $CYR_CONFIGDIR"
echo "partitions: default=$CYR_PART p2=$CYR_PART2"
echo "admin: $CYR_ADMIN / $CYR_PASS; users: $CYR_FILL_USERS (password = name)"
echo
echo "Mailboxes (IMAP LIST as the admin):"
echo 'LIST "" "*"' | instance_imap_script | sed -n 's/^\* LIST ([^)]*) "." /  /p'

scratch=$(mktemp -d /tmp/cyrdemo.XXXXXX) || exit 1
chown cyrus:mail "$scratch" 2>/dev/null
chmod 755 "$scratch"
cleanup()
{
	if [ "${KEEP_SCRATCH:-0}" = 1 ]; then
		echo "demo scratch directory kept: $scratch"
	else
		rm -rf "$scratch"
	fi
}
trap 'instance_stop; cleanup' EXIT
cd "$scratch" || exit 1

section "cyrus help"
if [ -x "$CYRUS" ]; then
	step "$CYRUS" help
else
	echo "(bin/cyrus is not built: run make)"
fi

mboxdb=$CYR_CONFIGDIR/mailboxes.db
section "cyrus dbtool: mailboxes.db, twoskip, show"
if have_cyrus dbtool; then
	printf '$ %s\n' "$CYRUS -C $CYR_CONF dbtool $mboxdb twoskip show"
	"$CYRUS" -C "$CYR_CONF" dbtool "$mboxdb" twoskip show >dbtool.out 2>&1 ||
		echo "(failed: exit status $?)"
	# Keys and names hold the internal separator ^_ (0x1f).
	cat -v dbtool.out
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" "$mboxdb" twoskip show \
		>real.out 2>&1
	if cmp -s dbtool.out real.out; then
		echo "-> byte for byte what the real cyr_dbtool prints"
	else
		echo "-> DIFFERS from the real cyr_dbtool:"
		diff -u real.out dbtool.out
	fi

	section "cyrus dbtool: mailboxes.db, twoskip, consistent"
	step "$CYRUS" -C "$CYR_CONF" dbtool "$mboxdb" twoskip consistent
else
	echo "(cyrus dbtool is not available)"
fi

section "cyrus cvt_cyrusdb: mailboxes.db to skiplist and flat"
if have_cyrus cvt_cyrusdb; then
	for to in skiplist flat; do
		echo
		step "$CYRUS" -C "$CYR_CONF" cvt_cyrusdb "$mboxdb" twoskip \
			"$scratch/mailboxes.$to" "$to" &&
		ls -l "$scratch/mailboxes.$to" &&
		if have_cyrus dbtool; then
			step "$CYRUS" -C "$CYR_CONF" dbtool \
				"$scratch/mailboxes.$to" "$to" show | head -n 5
			echo "..."
			as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" \
				"$scratch/mailboxes.$to" "$to" consistent 2>&1 |
				sed 's/^/real cyr_dbtool consistent: /'
		fi
	done
else
	echo "(cyrus cvt_cyrusdb is not available)"
fi

section "cyrus ctl_mboxlist -d: mailboxes.db as JSON"
if have_cyrus ctl_mboxlist; then
	"$CYRUS" ctl_mboxlist -C "$CYR_CONF" -d >ours.dump 2>&1
	head -n 4 ours.dump; echo "..."
	as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$CYR_CONF" -d >real.dump 2>&1
	if cmp -s ours.dump real.dump; then
		echo "-> byte for byte what the real ctl_mboxlist -d prints"
	else
		echo "-> DIFFERS from the real ctl_mboxlist -d:"
		diff -u real.dump ours.dump | head -n 20
	fi
fi

section "cyrus mailbox list"
if have_cyrus mailbox; then
	step "$CYRUS" mailbox list -C "$CYR_CONF" "user.*"
	step "$CYRUS" mailbox list -C "$CYR_CONF" --json "user.bob" |
		head -n 12
fi

section "cyrus mbpath"
if have_cyrus mbpath; then
	step "$CYRUS" mbpath -C "$CYR_CONF" user.alice user.carol shared
fi

section "cyrus makedirs -n (dry run on this store: nothing to do)"
if have_cyrus makedirs; then
	step "$CYRUS" makedirs -C "$CYR_CONF" -n | head -n 10
fi

section "cyrus ctl_cyrusdb -c (checkpoint and archive)"
if have_cyrus ctl_cyrusdb; then
	step "$CYRUS" ctl_cyrusdb -C "$CYR_CONF" -c
	ls "$CYR_CONFIGDIR/db.backup1" 2>/dev/null | sed 's/^/  db.backup1\//'
fi

section "cyrus backup: two snapshots of the running server, verify"
if have_cyrus backup; then
	mkdir -p "$scratch/backup" && chown cyrus:mail "$scratch/backup"
	step "$CYRUS" backup create -C "$CYR_CONF" "$scratch/backup"
	printf 'Subject: late\r\n\r\nafter the first snapshot\r\n' | instance_deliver alice
	step "$CYRUS" backup create -C "$CYR_CONF" "$scratch/backup"
	step "$CYRUS" backup list -C "$CYR_CONF" "$scratch/backup"
	step "$CYRUS" backup verify -C "$CYR_CONF" "$scratch/backup"
fi

section "cyrus quota: the report, then -f -n (what a fix would change)"
if have_cyrus quota; then
	step "$CYRUS" quota -C "$CYR_CONF"
	step "$CYRUS" quota -C "$CYR_CONF" -f -n
fi

section "cyrus reconstruct -n on a live store (reports, changes nothing)"
if have_cyrus reconstruct; then
	step "$CYRUS" reconstruct -C "$CYR_CONF" -n -r user.alice
fi

section "With the server stopped: mailbox create, delete, rename; reconstruct"
instance_pause
if have_cyrus mailbox; then
	step "$CYRUS" mailbox create -C "$CYR_CONF" -v --quota 2048 user.dana
	step "$CYRUS" mailbox create -C "$CYR_CONF" -v "user.dana.Old Mail"
	step "$CYRUS" mailbox rename -C "$CYR_CONF" -v "user.dana.Old Mail" user.dana.Archive
	step "$CYRUS" mailbox delete -C "$CYR_CONF" -v user.bob.Trash
fi
if have_cyrus reconstruct; then
	mbdir=$("$CYRUS" mbpath -C "$CYR_CONF" user.alice)
	echo "\$ rm $mbdir/cyrus.index   # a lost index"
	rm -f "$mbdir/cyrus.index"
	step "$CYRUS" reconstruct -C "$CYR_CONF" user.alice
	as_cyrus "$REAL_BIN/reconstruct" -C "$CYR_CONF" -n user.alice 2>&1 |
		sed 's/^/real reconstruct -n: /'
fi
instance_resume || echo "demo: master did not restart"
echo "The real imapd serves what we wrote:"
printf 'LIST "" "user.dana*"\nGETQUOTAROOT user.dana\n' |
	instance_imap_script -k 2>&1 | grep -E "LIST|QUOTA"
echo "alice's rebuilt INBOX, as alice sees it:"
printf 'EXAMINE INBOX\nFETCH 1:* (FLAGS RFC822.SIZE)\n' |
	instance_imap_script -k -u alice -w alice 2>&1 | grep -E "EXISTS|FETCH"

section "Stopping the instance"
pid=$CYR_MASTER_PID
instance_stop
if kill -0 "$pid" 2>/dev/null; then
	echo "master $pid is still running!"
else
	echo "master $pid stopped"
fi
