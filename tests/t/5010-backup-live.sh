#!/bin/bash
# cyrus backup restore beside a running server: the real imapd and lmtpd
# are never stopped. Restores under a new name (--as) while IMAP clients
# work on other mailboxes, and a deleted user under its own name (with
# the user's seen, sub and counters databases and sieve files); each time
# the same imapd serves the restored mailboxes as they were in the
# snapshot, takes an APPEND into one, and the real reconstruct -n,
# chk_cyrus and quota find nothing to fix. A restore that fails half-way
# leaves nothing behind; --force over a live mailbox and --all are
# refused.
test_description='backup restore beside a running Cyrus, through its locks'
. "$(dirname "$0")/../lib/test-lib.sh"
. "$TOP/tests/lib/backup-lib.sh"

backup_require
# Small parts, so that cyrus.cache and cyrus.index are stored in parts.
export CYRUS_BACKUP_PART_SIZE=1024
backup_start

# The restored names the baseline of the real checks lacks.
RESTORED='^user\.[a-z]*\.Again\|^user\.bob\.Restored\|^user\.bob\.Locked'
mboxdb() { as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" "$CYR_CONFIGDIR/mailboxes.db" twoskip show; }
tree() { find "$CYR_PART" "$CYR_PART2" | sort; }

# client USER MAILBOX: works on one of USER's mailboxes until the file
# stop exists, one round after another (an append, flags set and
# cleared, a fetch); each round that succeeds adds a line to USER.rounds;
# any failure ends it with status 1.
client()
{
	local u=$1 mb=$2
	: >"$u.rounds"
	while [ ! -f stop ]; do
		_instance_msg 900 "during the restore" "$u" | imap_append "$u" "$mb" ||
			return 1
		instance_imap_script -u "$u" -w "$u" >/dev/null <<-EOF || return 1
		SELECT "$mb"
		STORE 1:* +FLAGS (\\Flagged)
		UID FETCH 1:* (FLAGS BODY.PEEK[HEADER])
		STORE 1:* -FLAGS (\\Flagged)
		EOF
		echo round >>"$u.rounds"
	done
}

test_expect_success 'setup: a filled store, users files, a snapshot' '
	instance_fill &&
	bulk_deliver bob 120 &&
	instance_imap_script -u bob -w bob >/dev/null <<-\EOF &&
	SUBSCRIBE INBOX.Sent
	SELECT INBOX
	STORE 3:40 +FLAGS (\Seen)
	STORE 7 +FLAGS (\Answered $Label1)
	EOF
	instance_imap_script -u carol -w carol >/dev/null <<-\EOF &&
	SUBSCRIBE INBOX
	SUBSCRIBE shared
	SELECT shared
	STORE 1 +FLAGS (\Seen)
	EOF
	sieve_keep carol &&
	udir=$(as_cyrus "$REAL_BIN/mbpath" -C "$CYR_CONF" -U user.carol) &&
	test_path_is_file "$udir/sub.db" &&
	test_path_is_file "$udir/seen.db" &&
	head -c 296 /dev/urandom >counters.orig &&
	as_cyrus tee "$udir/counters.db" <counters.orig >/dev/null &&
	imap_state bob INBOX >bob-before &&
	imap_state alice INBOX >alice-before &&
	imap_state carol INBOX >carol-before &&
	instance_imap_script -u carol -w carol <<-\EOF >carol-shared-before &&
	EXAMINE shared
	FETCH 1 FLAGS
	EOF
	grep -q "FLAGS (\\\\Seen)" carol-shared-before &&
	real_checks "$RESTORED" >baseline-checks &&
	real_quota >quota-before &&
	cyrus backup create $C "$B" &&
	manifest_text >text &&
	grep -q "^user	carol	counters	" text &&
	grep -q "^user	carol	seen	" text &&
	grep -q "^sievelink	carol	defaultbc	main.script\$" text
'

# bob works in his Trash (same user, same quota root as the restored
# tree), alice and carol in their INBOXes.
test_expect_success 'restore --as while imapd serves clients on other mailboxes' '
	rm -f stop &&
	client alice INBOX & ca=$!
	client bob INBOX.Trash & cb=$!
	client carol INBOX & cc=$!
	for i in $(seq 1 300); do
		[ -s alice.rounds ] && [ -s bob.rounds ] && [ -s carol.rounds ] &&
			break
		sleep 0.1
	done
	cyrus backup restore $C "$B" --as user.bob.Restored "user.bob*" >out 2>err
	rc=$?
	sleep 1 &&
	touch stop &&
	wait $ca && wait $cb && wait $cc &&
	test $rc = 0 &&
	test_must_be_empty out && test_must_be_empty err &&
	test $(wc -l <alice.rounds) -ge 2 &&
	test $(wc -l <bob.rounds) -ge 2 &&
	test $(wc -l <carol.rounds) -ge 2
'

test_expect_success 'the same imapd serves the restored mailboxes as in the snapshot' '
	imap_state bob user.bob.Restored | grep -v MAILBOXID >restored &&
	grep -v MAILBOXID bob-before >expect &&
	test_cmp expect restored &&
	grep -q "^\* 122 EXISTS" restored &&
	instance_imap_script -u bob -w bob <<-\EOF >list &&
	LIST "" "INBOX.Restored*"
	EOF
	grep "^\* LIST" list | sed "s/^[^\"]*\"\.\" //" | sort >names &&
	printf "%s\n" "INBOX.Restored" "\"INBOX.Restored.My Folder\"" \
		"INBOX.Restored.Sent" "INBOX.Restored.Trash" | sort >want &&
	test_cmp want names &&
	imap_state bob "user.bob.Restored.My Folder" | grep -q "in my folder"
'

test_expect_success 'the real reconstruct -n, chk_cyrus and quota find nothing' '
	real_checks "$RESTORED" >checks &&
	test_cmp baseline-checks checks &&
	real_quota >q1 &&
	as_cyrus "$REAL_BIN/quota" -C "$CYR_CONF" -f >/dev/null 2>fix &&
	real_quota >q2 &&
	test_cmp q1 q2 &&
	test_must_be_empty fix &&
	used() { awk -v r="$2" "\$NF == \"user.bob\" && \$(NF-1) == r {print \$(NF-2)}" "$1"; } &&
	test $(used q1 MESSAGE) = $(( 2 * $(used quota-before MESSAGE) + $(wc -l <bob.rounds) )) &&
	test $(used q1 X-NUM-FOLDERS) = $(( 2 * $(used quota-before X-NUM-FOLDERS) ))
'

test_expect_success 'an APPEND into the restored mailbox works, without a restart' '
	_instance_msg 901 "after the restore" bob | imap_append bob INBOX.Restored &&
	instance_imap_script -u bob -w bob <<-\EOF >after &&
	SELECT INBOX.Restored
	UID FETCH 1:* (UID)
	FETCH 123 BODY.PEEK[HEADER.FIELDS (SUBJECT)]
	EOF
	grep -q "^\* 123 EXISTS" after &&
	grep -q "Subject: after the restore" after &&
	last=$(grep "^\* 122 FETCH" after | sed "s/.*UID \([0-9]*\).*/\1/") &&
	grep -q "^\* 123 FETCH (UID $((last + 1)))" after &&
	real_quota >q1 &&
	as_cyrus "$REAL_BIN/quota" -C "$CYR_CONF" -f >/dev/null 2>&1 &&
	real_quota >q2 &&
	test_cmp q1 q2
'

test_expect_success 'restore waits for a user namespace lock a server process holds' '
	ns=$(find "$CYR_CONFIGDIR/lock" -name "\*U\*bob.lock") &&
	test -n "$ns" &&
	"$_CYR_PY" -c "
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
open(\"held\", \"w\").close()
time.sleep(3)" "$ns" &
	holder=$!
	while [ ! -f held ]; do sleep 0.1; done
	cyrus backup restore $C "$B" --as user.bob.Locked "user.bob.My Folder" &
	rpid=$!
	sleep 1.5 &&
	kill -0 $rpid &&
	mboxdb >during &&
	! grep -q Locked during &&
	wait $holder && wait $rpid &&
	mboxdb >after &&
	grep -q Locked after &&
	imap_state bob user.bob.Locked | grep -q "in my folder" &&
	real_quota >q1 &&
	as_cyrus "$REAL_BIN/quota" -C "$CYR_CONF" -f >/dev/null 2>fix &&
	real_quota >q2 &&
	test_cmp q1 q2 && test_must_be_empty fix
'

test_expect_success 'a deleted user comes back under its own name, with its files' '
	udir=$(as_cyrus "$REAL_BIN/mbpath" -C "$CYR_CONF" -U user.carol) &&
	instance_imap_script >/dev/null <<-\EOF &&
	SETACL user.carol cyrus x
	DELETE user.carol
	EOF
	test_path_is_missing "$udir/sub.db" &&
	cyrus backup restore $C "$B" user.carol >out 2>err &&
	test_must_be_empty out && test_must_be_empty err &&
	imap_state carol INBOX | grep -v MAILBOXID >carol-after &&
	grep -v MAILBOXID carol-before >expect &&
	test_cmp expect carol-after &&
	instance_imap_script -u carol -w carol <<-\EOF >carol-shared-after &&
	EXAMINE shared
	FETCH 1 FLAGS
	EOF
	grep -q "FLAGS (\\\\Seen)" carol-shared-after &&
	instance_imap_script -u carol -w carol <<-\EOF >lsub &&
	LSUB "" "*"
	EOF
	grep -q "^\* LSUB .* INBOX\$" lsub && grep -q "^\* LSUB .* shared\$" lsub &&
	udir=$(as_cyrus "$REAL_BIN/mbpath" -C "$CYR_CONF" -U user.carol) &&
	cmp counters.orig "$udir/counters.db" &&
	sieve=$(as_cyrus "$REAL_BIN/mbpath" -C "$CYR_CONF" -S user.carol) &&
	test "$(cat "$sieve/main.script")" = "keep;" &&
	test "$(readlink "$sieve/defaultbc")" = main.script &&
	real_checks "$RESTORED" >checks &&
	test_cmp baseline-checks checks &&
	real_quota >q1 &&
	as_cyrus "$REAL_BIN/quota" -C "$CYR_CONF" -f >/dev/null 2>&1 &&
	real_quota >q2 &&
	test_cmp q1 q2
'

test_expect_success 'a restore that fails half-way leaves nothing behind' '
	s=$(manifest_text | awk -F"\t" "\$1==\"mailbox\"{mb=\$2}
		\$1==\"file\"{f=(mb==\"user.alice\" && \$2==\"cyrus.index\"); if (f) w=\$3}
		\$1==\"part\" && f && !p {p=\$3} END {print p ? p : w}") &&
	o="$B/files/${s:0:2}/$s.gz" &&
	test_path_is_file "$o" &&
	mv "$o" index.gz &&
	tree >tree-before && mboxdb >db-before && real_quota >q-before &&
	test_expect_code 66 cyrus backup restore $C "$B" --as user.alice.Again user.alice 2>err &&
	grep "cannot restore .user.alice.: .*missing" err &&
	tree >tree-after && mboxdb >db-after && real_quota >q-after &&
	test_cmp tree-before tree-after &&
	test_cmp db-before db-after &&
	test_cmp q-before q-after &&
	instance_imap_script -u alice -w alice <<-\EOF >list &&
	LIST "" "*Again*"
	EOF
	! grep -q "^\* LIST" list &&
	mv index.gz "$o" &&
	cyrus backup restore $C "$B" --as user.alice.Again user.alice &&
	imap_state alice user.alice.Again | grep -v MAILBOXID >again &&
	grep -v MAILBOXID alice-before >expect &&
	test_cmp expect again
'

test_expect_success 'over a live mailbox: --force and --all are refused, naming --as' '
	mboxdb >db-before &&
	test_expect_code 75 cyrus backup restore $C "$B" --force user.bob 2>err &&
	grep -q "server is running" err && grep -q -- "--as NEWNAME" err &&
	test_expect_code 75 cyrus backup restore $C "$B" user.bob.Sent 2>err &&
	grep -q -- "--as NEWNAME" err &&
	test_expect_code 75 cyrus backup restore $C "$B" --all 2>err &&
	grep -q "needs a stopped one" err &&
	test_expect_code 75 cyrus backup restore $C "$B" -n user.bob &&
	cyrus backup restore $C "$B" -n --as user.bob.Copy user.bob >out &&
	grep -q "would restore user.bob as user.bob.Copy (122 messages) .* beside the running server" out &&
	mboxdb >db-after &&
	test_cmp db-before db-after &&
	imap_state bob INBOX >bob-now &&
	test_cmp bob-before bob-now
'

test_done
