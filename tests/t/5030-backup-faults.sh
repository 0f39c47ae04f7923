#!/bin/bash
# cyrus backup when things go wrong, against a private real Cyrus:
#  - a full disk: the archive on a small tmpfs (create fails with one line
#    and a sysexits code, the earlier snapshots stay whole, tmp/ is left
#    empty, and once there is room again the next run completes); a
#    partition on a small tmpfs (restore fails cleanly: no mailboxes.db
#    entry, no directory, the mailboxes there untouched);
#  - kill -9 of create and of prune at random moments on a store of a few
#    thousand messages: every complete snapshot still verifies and the next
#    run completes;
#  - bad input that 5000-backup.sh does not try: a DIR that is not an
#    archive or does not exist, an archive of a newer format, a snapshot id
#    that climbs out of the archive, a manifest whose checksum is wrong:
#    one clear line, a sysexits code, nothing changed in the store or in
#    the archive.
test_description='backup on a full disk, killed, and given bad input'
. "$(dirname "$0")/../lib/test-lib.sh"
. "$TOP/tests/lib/backup-lib.sh"

backup_require

SA=$TEST_SCRATCH/small-archive	# a tmpfs: the archive of the full-disk tests
SP=$TEST_SCRATCH/small-part	# a tmpfs: partition-small
mkdir -p "$SA" "$SP"
mounted=
umount_small()
{
	local m
	for m in $mounted; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	mounted=
}
# Before instance_start: the EXIT trap then stops the instance first (it
# has files open on the partition), unmounts, and removes the scratch dir.
_instance_trap_exit umount_small
if mount -t tmpfs -o size=2m,mode=0755 tmpfs "$SA" 2>/dev/null; then
	mounted="$SA"
	if mount -t tmpfs -o size=1m,mode=0750 tmpfs "$SP" 2>/dev/null; then
		mounted="$mounted $SP"
		test_set_prereq TMPFS
	fi
fi
test_have_prereq TMPFS || say "cannot mount a tmpfs: the full-disk tests are skipped"
# The tools run as cyrus.
chown cyrus:mail "$SA" "$SP"

CYR_EXTRA_CONF="partition-small: $SP" backup_start

# one_line FILE WORDS: FILE (a stderr) is one line, and has WORDS.
one_line()
{
	cat "$1"
	test_line_count = 1 "$1" && grep -q "$2" "$1"
}

# sysexits RC: RC is one of the sysexits codes of a failure (64-78).
sysexits()
{
	test "$1" -ge 64 && test "$1" -le 78 ||
		{ echo "exit status $1 is not a sysexits code" >&2; return 1; }
}

# tree DIR...: every path with its type and mode, and the SHA-1 of every
# file, sorted: what "nothing changed" compares. Not the directories of
# the uuid hash (uuid/a/b: Cyrus makes them as needed and leaves them).
tree()
{
	find "$@" -type d \( -name "?" -o -name uuid \) -o \
		-printf '%y %m %p\n' 2>/dev/null | sort
	find "$@" -type f -exec sha1sum {} + 2>/dev/null | sort -k 2
}

# store_tree: the store (partitions and the databases a restore writes),
# for a paused server.
store_tree()
{
	tree "$CYR_DIR/part" "$SP" "$CYR_CONFIGDIR/mailboxes.db" \
		"$CYR_CONFIGDIR/quota" "$CYR_CONFIGDIR/user" "$CYR_DIR/sieve" |
		grep -v "$SP/filler"
}

mboxlist() { as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$CYR_CONF" -d; }

# short_state USER MAILBOX: imap_state without the bodies, for mailboxes
# of thousands of messages.
short_state()
{
	STATE_ITEMS="UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]" \
		imap_state "$1" "$2" | grep -v MAILBOXID
}

# random_msg N KB: a message of about KB kilobytes that gzip cannot shrink
# much (base64 of random bytes).
random_msg()
{
	printf 'From: a@example.org\nTo: b@example.org\nSubject: random %s\n' "$1"
	printf 'Message-ID: <random.%s.%s@example.org>\n\n' "$1" "$$"
	head -c $(($2 * 768)) /dev/urandom | base64
}

# avail DIR: free bytes on the filesystem of DIR.
avail() { df -B1 --output=avail "$1" | tail -n 1 | tr -d ' '; }

# fill_up DIR KB: a file DIR/filler that leaves about KB kilobytes free.
fill_up()
{
	local n
	n=$(( $(avail "$1") - $2 * 1024 ))
	test $n -gt 0 || return 0
	head -c $n /dev/zero >"$1/filler" 2>/dev/null
	sync -f "$1/filler"
	echo "$(avail "$1") bytes free on $1"
}


# verify_all DIR: every complete snapshot verifies (none at all: list
# shows none, once the archive has its FORMAT).
verify_all()
{
	local n
	n=$(manifests "$1")
	if [ "$n" = 0 ]; then
		[ -f "$1/FORMAT" ] || return 0
		cyrus backup list "$1" >.list && test_line_count = 1 .list
		return
	fi
	cyrus backup verify "$1" >.verify || { cat .verify; return 1; }
	test $(grep -c ": ok," .verify) = "$n" || { cat .verify; return 1; }
}

# kill_after MS CMD...: CMD in the background, SIGKILLed after MS ms;
# KILL_RC is its exit status (137 if the kill landed before it finished).
kill_after()
{
	local ms=$1 pid
	shift
	"$@" >/dev/null 2>&1 &
	pid=$!
	sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	KILL_RC=$?
	echo "killed after ${ms}ms: $* (exit $KILL_RC)"
}

# timed_ms CMD...: how many milliseconds CMD takes (fails if CMD does).
timed_ms()
{
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null 2>&1 || return 1
	t1=$(date +%s%N)
	echo $(( (t1 - t0) / 1000000 + 1 ))
}

# ---- a full disk ----

test_expect_success 'setup: a store, users dave and erin on the small partition' '
	instance_fill &&
	instance_create_user -p small dave Work &&
	instance_create_user -p small erin &&
	instance_imap_script >/dev/null <<-\EOF &&
	SETQUOTA user.dave (STORAGE 100000)
	EOF
	(
		for i in 1 2 3 4 5 6 7 8; do
			random_msg dave$i 8 | instance_deliver dave || exit 1
		done
	) &&
	_instance_msg 20 "for the Work folder" dave | instance_deliver dave Work &&
	_instance_msg 21 "erin one" erin | instance_deliver erin &&
	_instance_msg 22 "erin two" erin | instance_deliver erin &&
	instance_imap_script -u dave -w dave >/dev/null <<-\EOF &&
	SELECT INBOX
	STORE 1:3 +FLAGS (\Seen)
	STORE 2 +FLAGS (\Flagged)
	EOF
	case $(as_cyrus "$REAL_BIN/mbpath" -C "$CYR_CONF" user.dave) in
	"$SP"/*) ;; *) false ;; esac
'

test_expect_success TMPFS 'a first snapshot fits on the small archive' '
	cyrus backup create $C "$SA" &&
	cyrus backup verify "$SA" >out &&
	grep -q ": ok," out &&
	du -sk "$SA"
'

test_expect_success TMPFS 'create on a full disk fails: a sysexits code, the first snapshot whole' '
	(
		for i in 1 2 3 4; do
			random_msg big$i 40 | instance_deliver dave || exit 1
		done
	) &&
	first=$(ls "$SA/snapshots") &&
	fill_up "$SA" 48 &&
	{ cyrus backup create $C "$SA" >out 2>err; rc=$?; } &&
	cat err && echo "exit $rc" &&
	sysexits $rc &&
	grep -q "No space left on device" err &&
	test_must_be_empty out &&
	cp err full.err &&
	test "$(ls "$SA/snapshots")" = "$first" &&
	cyrus backup verify "$SA" "$first" >out &&
	grep -q "^$first: ok," out &&
	ls -A "$SA/tmp" >tmp.left &&
	test_must_be_empty tmp.left
'

# A full archive stops the run: no snapshot with holes, one line.
test_expect_success TMPFS 'create on a full disk says so in one line' '
	cat full.err &&
	test_line_count = 1 full.err
'

test_expect_success TMPFS 'once there is room again, create completes and verifies' '
	rm -f "$SA/filler" &&
	cyrus backup create $C "$SA" >out 2>err &&
	test_must_be_empty err &&
	id=$(ls "$SA/snapshots" | sort | tail -n 1) &&
	cyrus backup verify "$SA" "$id" >out &&
	grep -q "^$id: ok," out &&
	cyrus backup verify "$SA" "$first" >out &&
	grep -q "^$first: ok," out &&
	ls -A "$SA/tmp" >tmp.left &&
	test_must_be_empty tmp.left &&
	cyrus backup list "$SA" --json >list.json &&
	/usr/bin/python3 -c "import json; d = json.load(open(\"list.json\"));
assert d[-1][\"messages\"] == d[0][\"messages\"] + 4, d"
'

test_expect_success TMPFS 'restore into a full partition: one line, nothing half-restored' '
	imap_state dave INBOX >dave.before &&
	imap_state erin INBOX >erin.before &&
	instance_pause &&
	test_when_finished instance_resume &&
	mboxlist >mbl.before &&
	real_quota >quota.before &&
	store_tree >store.before &&
	fill_up "$SP" 16 &&
	{ cyrus backup restore $C "$SA" --as user.dave.Restored user.dave >out 2>err
	  rc=$?; } &&
	echo "exit $rc" &&
	sysexits $rc &&
	one_line err "No space left on device" &&
	mboxlist >mbl.after &&
	test_cmp mbl.before mbl.after &&
	! grep -q Restored mbl.after &&
	real_quota >quota.after &&
	test_cmp quota.before quota.after &&
	store_tree >store.after &&
	test_cmp store.before store.after
'

test_expect_success TMPFS 'the mailboxes on the full partition are served as before' '
	imap_state dave INBOX >now &&
	test_cmp dave.before now &&
	imap_state erin INBOX >now &&
	test_cmp erin.before now
'

test_expect_success TMPFS 'once there is room again, the restore completes' '
	rm -f "$SP/filler" &&
	instance_pause &&
	cyrus backup restore $C "$SA" --as user.dave.Restored user.dave &&
	instance_resume &&
	imap_state dave INBOX.Restored >r.state &&
	imap_state dave INBOX >d.state &&
	grep -v MAILBOXID r.state >restored &&
	grep -v MAILBOXID d.state >expect &&
	test_cmp expect restored &&
	real_quota >q1 &&
	as_cyrus "$REAL_BIN/quota" -C "$CYR_CONF" -f >/dev/null &&
	real_quota >q2 &&
	test_cmp q1 q2
'

# ---- bad input ----

BA=$TEST_SCRATCH/ba

test_expect_success 'setup: an archive of two snapshots' '
	cyrus backup create $C "$BA" &&
	cyrus backup create $C "$BA" &&
	test $(manifests "$BA") = 2 &&
	test $(ls "$BA"/snapshots/*/manifest.gz | wc -l) = 2 &&
	mkdir notarch && echo "not an archive" >notarch/file &&
	echo "a file" >plainfile
'

# bad_cmd WANT ARGS...: cyrus backup ARGS exits WANT (a sysexits code)
# with one line on stderr.
bad_cmd()
{
	local want=$1 rc
	shift
	cyrus backup "$@" >.out 2>.err
	rc=$?
	echo "cyrus backup $*: exit $rc: $(cat .err)"
	test "$rc" = "$want" && sysexits $rc && test_line_count = 1 .err
}

test_expect_success 'a DIR that is not an archive: list, verify, create' '
	tree notarch plainfile >before &&
	bad_cmd 66 list "$TEST_SCRATCH/notarch" &&
	bad_cmd 66 verify "$TEST_SCRATCH/notarch" &&
	bad_cmd 65 create $C "$TEST_SCRATCH/notarch" &&
	bad_cmd 65 list "$TEST_SCRATCH/plainfile" &&
	bad_cmd 65 verify "$TEST_SCRATCH/plainfile" &&
	bad_cmd 65 create $C "$TEST_SCRATCH/plainfile" &&
	tree notarch plainfile >after &&
	test_cmp before after
'

test_expect_success 'a DIR that is not an archive: prune leaves it as it was' '
	tree notarch >before &&
	bad_cmd 66 prune "$TEST_SCRATCH/notarch" --keep 1 &&
	tree notarch >after &&
	test_cmp before after
'

test_expect_success 'a DIR that does not exist is not made by list, verify, prune' '
	bad_cmd 66 list "$TEST_SCRATCH/none" &&
	bad_cmd 66 verify "$TEST_SCRATCH/none" &&
	bad_cmd 66 prune "$TEST_SCRATCH/none" --keep 1 &&
	test_path_is_missing "$TEST_SCRATCH/none"
'

test_expect_success 'restore from a DIR that is not an archive changes nothing' '
	instance_pause &&
	test_when_finished instance_resume &&
	store_tree >before &&
	bad_cmd 66 restore $C "$TEST_SCRATCH/notarch" user.bob &&
	bad_cmd 66 restore $C "$TEST_SCRATCH/none" --all &&
	bad_cmd 65 restore $C "$TEST_SCRATCH/plainfile" user.bob &&
	test_path_is_missing "$TEST_SCRATCH/none" &&
	store_tree >after &&
	test_cmp before after
'

test_expect_success 'an archive of a newer format: every command refuses it, nothing changes' '
	cp -a "$BA" newer &&
	echo "cyrus-backup 99" >newer/FORMAT &&
	tree newer >before &&
	bad_cmd 65 create $C "$TEST_SCRATCH/newer" &&
	bad_cmd 65 list "$TEST_SCRATCH/newer" &&
	bad_cmd 65 verify "$TEST_SCRATCH/newer" &&
	bad_cmd 65 prune "$TEST_SCRATCH/newer" --keep 1 &&
	grep -q "format 99" .err &&
	instance_pause &&
	test_when_finished instance_resume &&
	store_tree >store.before &&
	bad_cmd 65 restore $C "$TEST_SCRATCH/newer" --as user.bob.X user.bob &&
	store_tree >store.after &&
	test_cmp store.before store.after &&
	tree newer >after &&
	test_cmp before after
'

test_expect_success 'a snapshot id that climbs out of the archive is not found' '
	tree "$BA" >before &&
	bad_cmd 66 verify "$BA" ../../ba/snapshots/.. &&
	grep -q "no snapshot" .err &&
	instance_pause &&
	test_when_finished instance_resume &&
	store_tree >store.before &&
	bad_cmd 66 restore $C "$BA" --snapshot ../snapshots/x user.bob &&
	store_tree >store.after &&
	test_cmp store.before store.after &&
	tree "$BA" >after &&
	test_cmp before after
'

test_expect_success 'a manifest with a bad checksum: setup' '
	cp -a "$BA" bad &&
	newest=$(ls bad/snapshots | sort | tail -n 1) &&
	oldest=$(ls bad/snapshots | sort | head -n 1) &&
	m=bad/snapshots/$newest/manifest.gz &&
	zcat "$m" | sed "/^time	/s/\$/0/" | gzip >m.new &&
	! cmp -s "$m" m.new &&
	cat m.new >"$m" &&
	zcat "$m" | head -n -1 | sha1sum | cut -d" " -f1 >sum &&
	zcat "$m" | tail -n 1 | cut -f2 >want &&
	! test_cmp sum want 2>/dev/null
'

test_expect_success 'a manifest with a bad checksum: verify names it, exit 65' '
	tree bad >before &&
	test_expect_code 65 cyrus backup verify "$TEST_SCRATCH/bad" >out 2>err &&
	cat out err &&
	grep -q "^$oldest: ok," out &&
	! grep -q "^$newest: ok" out &&
	grep "$newest" err | grep -q manifest &&
	test_expect_code 65 cyrus backup verify "$TEST_SCRATCH/bad" "$newest" &&
	cyrus backup verify "$TEST_SCRATCH/bad" "$oldest" &&
	tree bad >after &&
	test_cmp before after
'

test_expect_success 'a manifest with a bad checksum: list shows the others, exit 65' '
	test_expect_code 65 cyrus backup list "$TEST_SCRATCH/bad" >out 2>err &&
	cat out err &&
	grep -q "^$oldest " out &&
	cat out err | grep -q "$newest" &&
	{ grep "^$newest " out >listed || :; } &&
	! grep -v -i damaged listed
'

test_expect_success 'a manifest with a bad checksum: restore refuses it, the store unchanged' '
	instance_pause &&
	test_when_finished instance_resume &&
	store_tree >store.before &&
	tree bad >before &&
	bad_cmd 65 restore $C "$TEST_SCRATCH/bad" --as user.bob.X user.bob &&
	bad_cmd 65 restore $C "$TEST_SCRATCH/bad" --snapshot "$newest" --as user.bob.X user.bob &&
	store_tree >store.after &&
	test_cmp store.before store.after &&
	tree bad >after &&
	test_cmp before after &&
	cyrus backup restore $C "$TEST_SCRATCH/bad" -n --snapshot "$oldest" \
		--as user.bob.X user.bob >out &&
	grep -q "would restore user.bob as user.bob.X" out
'

test_expect_success 'a manifest with a bad checksum: prune drops nothing' '
	tree bad >before &&
	{ cyrus backup prune "$TEST_SCRATCH/bad" --keep 1 2>err; rc=$?; } &&
	cat err &&
	sysexits $rc &&
	tree bad >after &&
	test_cmp before after
'

test_expect_success 'a manifest with a bad checksum: the next create completes' '
	rm -rf bad && cp -a "$BA" bad &&
	m=bad/snapshots/$newest/manifest.gz &&
	zcat "$m" | sed "/^time	/s/\$/0/" | gzip >m.new && cat m.new >"$m" &&
	cyrus backup create $C "$TEST_SCRATCH/bad" &&
	id=$(ls bad/snapshots | sort | tail -n 1) &&
	test "$id" != "$newest" &&
	cyrus backup verify "$TEST_SCRATCH/bad" "$id" >out &&
	grep -q "^$id: ok," out
'

# A manifest.gz cut short (a disk that failed under it, a copy that
# stopped): damaged, named, exit 65; the snapshot before it still
# verifies; prune changes nothing; the next create completes.
test_expect_success 'a truncated manifest.gz: verify, list and prune say so, create goes on' '
	rm -rf cut && cp -a "$BA" cut &&
	m=cut/snapshots/$newest/manifest.gz &&
	head -c $(( $(stat -c %s "$m") / 2 )) "$m" >m.cut && cat m.cut >"$m" &&
	! gzip -t "$m" 2>/dev/null &&
	tree cut >before &&
	test_expect_code 65 cyrus backup verify "$TEST_SCRATCH/cut" >out 2>err &&
	cat out err &&
	grep -q "^$oldest: ok," out &&
	grep "$newest" err | grep -q "damaged: truncated gzip data" &&
	test_expect_code 65 cyrus backup list "$TEST_SCRATCH/cut" >out 2>err &&
	grep -q "^$oldest " out &&
	grep -q "truncated gzip data" err &&
	{ cyrus backup prune "$TEST_SCRATCH/cut" --keep 1 2>err; rc=$?; } &&
	cat err && sysexits $rc &&
	tree cut >after &&
	test_cmp before after &&
	cyrus backup create $C "$TEST_SCRATCH/cut" &&
	id=$(ls cut/snapshots | sort | tail -n 1) &&
	test "$id" != "$newest" &&
	cyrus backup verify "$TEST_SCRATCH/cut" "$id" >out &&
	grep -q "^$id: ok," out
'

# ---- kill -9 ----

K=$TEST_SCRATCH/killed

test_expect_success 'setup: three thousand messages' '
	instance_create_user k1 &&
	instance_create_user k2 Sub &&
	instance_create_user k3 &&
	bulk_deliver k1 1200 a && bulk_deliver k2 900 b && bulk_deliver k3 900 c &&
	instance_imap_script -u k1 -w k1 >/dev/null <<-\EOF
	SELECT INBOX
	STORE 1:400 +FLAGS (\Seen)
	STORE 300:500 +FLAGS (\Flagged)
	EOF
'

# A random moment of a run: the same run is timed first on a copy of the
# archive (create only reads the store), then killed after a random part
# of that time.
test_expect_success 'kill -9 of create at random moments: the archive verifies, the next run completes' '
	(
		landed=0
		for r in 1 2 3 4 5 6; do
			if [ $r != 1 ]; then
				bulk_deliver k3 200 round$r || exit 1
			fi
			full=
			[ $((r % 2)) = 0 ] && full=--full
			rm -rf trial
			if [ -d "$K" ]; then cp -a "$K" trial || exit 1; fi
			t=$(timed_ms cyrus backup create $C "$TEST_SCRATCH/trial" $full) ||
				exit 1
			kill_after $((RANDOM % t)) cyrus backup create $C "$K" $full
			[ $KILL_RC = 137 ] && landed=$((landed + 1))
			verify_all "$K" || exit 1
			cyrus backup create $C "$K" || exit 1
			verify_all "$K" || exit 1
			ls -A "$K/tmp" >tmp.left
			test_must_be_empty tmp.left || exit 1
		done
		echo "$landed of 6 kills landed before the run ended"
		test $landed -ge 1
	) &&
	test $(manifests "$K") -ge 6
'

# expunge_all USER: every message of the INBOX expunged, and the files
# removed (the real cyr_expire), so that the snapshots before name objects
# the next one does not.
expunge_all()
{
	instance_imap_script -u "$1" -w "$1" >/dev/null <<-\EOF &&
	SELECT INBOX
	STORE 1:* +FLAGS (\Deleted)
	EXPUNGE
	EOF
	as_cyrus "$REAL_BIN/cyr_expire" -C "$CYR_CONF" -X 0 >/dev/null
}

test_expect_success 'kill -9 of prune at random moments: the archive verifies, the next run completes' '
	(
		landed=0
		for r in 1 2 3 4; do
			bulk_deliver k3 300 prune$r &&
			cyrus backup create $C "$K" &&
			expunge_all k3 &&
			cyrus backup create $C "$K" || exit 1
			cyrus backup prune -n "$K" --keep 1 | grep "^would remove"
			rm -rf trial && cp -a "$K" trial || exit 1
			t=$(timed_ms cyrus backup prune "$TEST_SCRATCH/trial" --keep 1) ||
				exit 1
			kill_after $((RANDOM % t)) cyrus backup prune "$K" --keep 1
			[ $KILL_RC = 137 ] && landed=$((landed + 1))
			verify_all "$K" || exit 1
			cyrus backup prune "$K" --keep 1 || exit 1
			verify_all "$K" || exit 1
			test $(manifests "$K") = 1 || exit 1
			cyrus backup prune -n "$K" --keep 1 >out || exit 1
			grep "would remove 0 objects" out || exit 1
		done
		echo "$landed of 4 kills landed before the run ended"
	)
'

test_expect_success 'after the kills the archive restores a mailbox of 1200 messages' '
	cyrus backup create $C "$K" &&
	instance_pause &&
	cyrus backup restore $C "$K" --as user.k1.Back user.k1 &&
	instance_resume &&
	short_state k1 INBOX >expect &&
	short_state k1 INBOX.Back >actual &&
	grep -q "^\* 1200 EXISTS" expect &&
	test_cmp expect actual
'

test_done
