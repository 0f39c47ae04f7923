#!/bin/bash
test_description='backup create/list/verify/restore/prune against a live real Cyrus'
. "$(dirname "$0")/../lib/test-lib.sh"
. "$TOP/tests/lib/backup-lib.sh"

backup_require
# Small parts, so that cyrus.cache and cyrus.index are stored in parts;
# small gzip members and packs, so that a pack has several members and a
# run several packs.
export CYRUS_BACKUP_PART_SIZE=1024
export CYRUS_BACKUP_MEMBER_SIZE=4096
export CYRUS_BACKUP_PACK_SIZE=6000
backup_start
command -v strace >/dev/null && test_set_prereq STRACE

obj() { echo "$B/$1/${2:0:2}/$2.gz"; }
# The index and the pack that hold message SHA1.
idx_of() { zgrep -l "^$1	" "$B"/packs/*.idx.gz; }
pack_of() { local i; i=$(idx_of "$1") && echo "${i%.idx.gz}.tar.gz"; }
# Where the gzip member of message SHA1 starts in its pack.
member_of() { zcat "$(idx_of "$1")" | awk -F'\t' -v s="$1" '$1==s {print $2}'; }
flip() { # FILE OFFSET: one byte inverted
	/usr/bin/python3 -c 'import sys
f = open(sys.argv[1], "r+b"); o = int(sys.argv[2]); f.seek(o); b = f.read(1)
f.seek(o); f.write(bytes([b[0] ^ 255]))' "$1" "$2"
}
# The SHA-1 of message UID of MAILBOX in the newest snapshot.
msg_sha()
{
	manifest_text | awk -F'\t' -v mb="$1" -v uid="$2" '$1=="mailbox"{m=$2}
		$1=="msg" && m==mb && $2==uid {print $3}'
}

test_expect_success 'setup: a filled store, bob subscribed and reading alice' '
	instance_fill &&
	instance_imap_script -u bob -w bob <<-\EOF >/dev/null &&
	SUBSCRIBE INBOX.Sent
	SELECT user.alice
	STORE 3 +FLAGS (\Seen)
	EOF
	sieve_keep bob &&
	real_checks >baseline-checks &&
	imap_state bob INBOX >bob-before &&
	real_quota >quota-before &&
	grep "^\* 2 FETCH" bob-before | grep -q Forwarded
'

test_expect_success 'create while lmtpd delivers and imapd flags' '
	(
		for i in $(seq 1 15); do
			_instance_msg $((100 + i)) "live $i" alice |
				instance_deliver alice || exit 1
		done
	) &
	writer=$!
	(
		for i in 1 2 3; do
			instance_imap_script -u alice -w alice <<-\EOF || exit 1
			SELECT INBOX
			STORE 1:* +FLAGS (\Flagged)
			STORE 1:* -FLAGS (\Flagged)
			EOF
		done >/dev/null
	) &
	flagger=$!
	cyrus backup create $C "$B" >out 2>err &&
	wait $writer && wait $flagger &&
	test_must_be_empty out && test_must_be_empty err &&
	cyrus backup verify "$B" >verify.out &&
	grep -q ": ok, 10 mailboxes" verify.out
'

test_expect_success 'a quiet store: the second run writes only a manifest' '
	cyrus backup create $C "$B" &&
	(cd "$B" && find packs files -type f | sort) >objs1 &&
	grep -q "^packs/.*\.tar\.gz\$" objs1 &&
	test_path_is_missing "$B/messages" &&
	ls "$B/snapshots" >snaps1 &&
	cyrus backup create $C "$B" >out 2>err &&
	test_must_be_empty out && test_must_be_empty err &&
	(cd "$B" && find packs files -type f | sort) >objs2 &&
	ls "$B/snapshots" >snaps2 &&
	test_cmp objs1 objs2 &&
	test $(wc -l <snaps2) = $(( $(wc -l <snaps1) + 1 )) &&
	cyrus backup create $C -n "$B" >dry &&
	grep "^would back up 10 mailboxes, 24 messages .*; 0 new objects" dry &&
	ls "$B/snapshots" >snaps3 && test_cmp snaps2 snaps3 &&
	cyrus backup create $C -n "$TEST_SCRATCH/none" "user.bob*" >dry &&
	grep "^would back up 4 mailboxes, 3 messages" dry &&
	test_path_is_missing "$TEST_SCRATCH/none" &&
	manifest_text | grep -q "^stats	mailboxes	10	messages	24	bytes	[0-9]*	new	0\$"
'

test_expect_success 'the snapshot holds the users files and the quota root' '
	m=$(newest) &&
	test "${m##*/}" = manifest.gz &&
	gzip -t "$m" &&
	zcat "$m" >text &&
	grep -q "^user	bob	sub	" text &&
	grep -q "^user	bob	seen	" text &&
	grep -q "^quota	user.bob	%(S (" text &&
	grep -q "^db	mailboxes.db	twoskip	" text &&
	grep -q "^part	1024	" text &&
	zcat "$m" | head -n -1 | sha1sum | cut -d" " -f1 >want &&
	zcat "$m" | tail -n 1 | cut -f2 >got &&
	test_cmp want got &&
	test $(stat -c %s "$m") -lt $(( $(wc -c <text) / 2 ))
'

# Archives written before manifests were compressed (format 2) have a
# plain snapshots/ID/manifest: every command reads it, and create reads
# it alongside (a damaged or unreadable one it says it does not use).
# The readers leave FORMAT alone; create makes it 3 (a format 2 tool
# would not see manifest.gz, and its prune would remove the snapshot).
test_expect_success 'a plain manifest of a format 2 archive is read by every command' '
	m=$(newest) &&
	id=$(basename "$(dirname "$m")") &&
	cyrus backup list "$B" | grep "^$id " | cut -c1-75 >list.gz &&
	gunzip "$m" &&
	echo "cyrus-backup 2" >"$B/FORMAT" &&
	test_path_is_missing "$m" &&
	test "$(newest)" = "$B/snapshots/$id/manifest" &&
	cyrus backup list "$B" | grep "^$id " | cut -c1-75 >list.plain &&
	test_cmp list.gz list.plain &&
	cyrus backup verify "$B" "$id" >out &&
	grep -q "^$id: ok, 10 mailboxes, 24 messages" out &&
	cyrus backup restore $C "$B" -n --snapshot "$id" --as user.bob.Plain \
		user.bob >out &&
	grep -q "would restore user.bob as user.bob.Plain (2 messages)" out &&
	test "$(cat "$B/FORMAT")" = "cyrus-backup 2" &&
	cyrus backup create -v $C "$B" >out 2>err &&
	test "$(cat "$B/FORMAT")" = "cyrus-backup 3" &&
	! grep "not using the previous snapshot" err &&
	n=$(newest) &&
	test "${n##*/}" = manifest.gz && test "$n" != "$m" &&
	manifest_text | grep -q "^stats	.*	new	0\$" &&
	cyrus backup verify "$B" >out &&
	test $(grep -c ": ok," out) = $(ls "$B/snapshots" | wc -l)
'

test_expect_success 'list: text and JSON' '
	cyrus backup list "$B" >list &&
	head -n 1 list | grep -q "^SNAPSHOT" &&
	test $(grep -c "^20" list) = $(ls "$B/snapshots" | wc -l) &&
	cyrus backup list "$B" --json >list.json &&
	/usr/bin/python3 -c "import json,sys; d=json.load(open(\"list.json\"));
assert len(d) >= 3 and d[-1][\"new_bytes\"] > 0 and d[-1][\"messages\"] == 24, d"
'

test_expect_success 'a second run while one holds the lock: 75, one line' '
	/usr/bin/python3 -c "
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
open(\"locked\", \"w\").close()
time.sleep(5)" "$B/lock" &
	holder=$! &&
	while [ ! -f locked ]; do sleep 0.1; done &&
	test_expect_code 75 cyrus backup create $C "$B" 2>err &&
	test_line_count = 1 err &&
	grep -q "in use by another backup run" err &&
	kill $holder && wait $holder 2>/dev/null; true
'

test_expect_success 'the archive is format 3, in packs of several members' '
	test "$(cat "$B/FORMAT")" = "cyrus-backup 3" &&
	test $(ls "$B"/packs/*.tar.gz | wc -l) -ge 2 &&
	test $(ls "$B"/packs/*.tar.gz | wc -l) = $(ls "$B"/packs/*.idx.gz | wc -l) &&
	for i in "$B"/packs/*.idx.gz; do
		p=${i%.idx.gz}.tar.gz &&
		zcat "$i" | head -n 1 | grep -q "^cyrus-backup-pack	1\$" &&
		test "$(zcat "$i" | head -n -1 | sha1sum | cut -c1-40)" = \
			"$(zcat "$i" | tail -n 1 | cut -f2)" &&
		test "$(sha1sum <"$p" | cut -c1-40)" = "$(basename "$i" .idx.gz)" || return 1
	done &&
	i=$(ls -S "$B"/packs/*.idx.gz | head -n 1) &&
	test $(zcat "$i" | awk -F"\t" "length(\$1)==40 {print \$2}" | sort -u | wc -l) -ge 2
'

test_expect_success 'one message out with tar, gzip and sha1sum alone' '
	s=$(msg_sha user.bob 2) &&
	test -n "$s" &&
	test $(idx_of $s | wc -l) = 1 &&
	p=$(pack_of $s) &&
	zcat "$p" | tar -t >members &&
	grep -qx "$s" members &&
	! grep -v "^[0-9a-f]\{40\}\$" members &&
	tar -xzf "$p" "$s" &&
	echo "$s  $s" | sha1sum -c - &&
	grep -q "^Subject: report with attachment" "$s" &&
	(cd "$B" && tar -cf "$TEST_SCRATCH/b.tar" .) &&
	tar -xOf b.tar "./packs/${p##*/}" | tar -xzO -f - "$s" >2.eml &&
	cmp 2.eml "$s" &&
	manifest_text | awk -F"\t" "\$1==\"mailbox\"{mb=\$2} \$1==\"file\"{f=(mb==\"user.bob\" && \$2==\"cyrus.cache\")}
		\$1==\"part\" && f {print \$3}" >parts &&
	test $(wc -l <parts) -ge 2 &&
	while read S; do zcat "$B/files/${S:0:2}/$S.gz"; done <parts >cyrus.cache &&
	cmp cyrus.cache "$(as_cyrus "$REAL_BIN/mbpath" -C "$CYR_CONF" user.bob)/cyrus.cache"
'

test_expect_success 'verify names a flipped byte and a missing file, exit 65' '
	s=$(msg_sha user.bob 1) &&
	cache=$(manifest_text | awk -F"\t" "\$1==\"mailbox\"{m=\$2}
		\$1==\"file\"{f=(m==\"user.bob\" && \$2==\"cyrus.cache\")}
		\$1==\"part\" && f && \$2==0 {print \$3}") &&
	test -n "$cache" &&
	p=$(pack_of $s) && m=$(member_of $s) && test -n "$m" &&
	cp "$p" good-pack &&
	cp "$(obj files $cache)" good-cache.gz &&
	flip "$p" $((m + 12)) &&
	rm "$(obj files $cache)" &&
	test_expect_code 65 cyrus backup verify "$B" >out 2>err &&
	grep "user.bob: message 1: .*$s.*damaged" err &&
	grep "user.bob: cyrus.cache part at 0: .*missing" err &&
	grep -q DAMAGED out &&
	cat good-pack >"$p" &&
	as_cyrus tee "$(obj files $cache)" <good-cache.gz >/dev/null &&
	cyrus backup verify "$B" >/dev/null
'

test_expect_success 'verify names a missing pack and a damaged pack index' '
	s=$(msg_sha user.bob 1) &&
	i=$(idx_of $s) && p=$(pack_of $s) &&
	mv "$p" saved-pack &&
	test_expect_code 65 cyrus backup verify "$B" >out 2>err &&
	grep "user.bob: message 1: .*${p##*/}.* $s.*missing" err &&
	mv saved-pack "$p" &&
	cp "$i" saved-idx &&
	zcat saved-idx | sed "3s/	[0-9]*\$/	1/" | gzip >"$i" &&
	test_expect_code 65 cyrus backup verify "$B" >out 2>err &&
	grep "user.bob: message 1: .*$s: missing.*${i##*/}.: damaged: wrong checksum" err &&
	cat saved-idx >"$i" &&
	cyrus backup verify "$B" >/dev/null
'

test_expect_success 'restore refuses while the server runs' '
	test_expect_code 75 cyrus backup restore $C "$B" user.bob 2>err &&
	grep -q "server is running" err
'

test_expect_success 'stop the server; an existing mailbox is not overwritten' '
	instance_pause &&
	test_expect_code 73 cyrus backup restore $C "$B" user.bob 2>err &&
	grep -q "mailbox .user.bob. exists" err
'

test_expect_success 'lose user.bob (files and mailboxes.db entry), restore it' '
	dir=$(as_cyrus "$REAL_BIN/mbpath" -C "$CYR_CONF" user.bob) &&
	udir=$(as_cyrus "$REAL_BIN/mbpath" -C "$CYR_CONF" -U user.bob) &&
	sieve=$(as_cyrus "$REAL_BIN/mbpath" -C "$CYR_CONF" -S user.bob) &&
	cp -p "$udir/sub.db" sub.db.orig &&
	rm -rf "$dir" "$udir/sub.db" "$sieve/main.script" "$sieve/defaultbc" &&
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" \
		"$CYR_CONFIGDIR/mailboxes.db" twoskip delete "$(printf "Nuser\037bob")" &&
	as_cyrus "$REAL_BIN/quota" -C "$CYR_CONF" -f user.bob >/dev/null &&
	cyrus backup restore $C "$B" -n user.bob >out &&
	cat out &&
	grep -q "would restore user.bob as user.bob (2 messages)" out &&
	test_path_is_missing "$dir" &&
	cyrus backup restore $C "$B" user.bob >out 2>err &&
	test_must_be_empty out && test_must_be_empty err &&
	test_path_is_file "$dir/cyrus.index" &&
	cmp sub.db.orig "$udir/sub.db" &&
	test "$(cat "$sieve/main.script")" = "keep;" &&
	test "$(readlink "$sieve/defaultbc")" = main.script &&
	instance_resume &&
	imap_state bob INBOX >bob-after &&
	test_cmp bob-before bob-after &&
	real_quota >quota-after &&
	test_cmp quota-before quota-after
'

test_expect_success 'the real reconstruct -n and chk_cyrus find nothing' '
	real_checks >checks &&
	test_cmp baseline-checks checks
'

test_expect_success 'restore --as user.bob.Restored beside the original' '
	instance_pause &&
	cyrus backup restore $C "$B" --as user.bob.Restored user.bob &&
	instance_resume &&
	imap_state bob user.bob.Restored | grep -v MAILBOXID >restored &&
	grep -v MAILBOXID bob-before >expect &&
	test_cmp expect restored &&
	imap_state bob INBOX >bob-again &&
	test_cmp bob-before bob-again &&
	real_quota >q1 && as_cyrus "$REAL_BIN/quota" -C "$CYR_CONF" -f >/dev/null &&
	real_quota >q2 && test_cmp q1 q2 &&
	grep -q " 5 *MESSAGE user.bob" q2 &&
	real_checks "^user\.bob\.Restored\$" >checks &&
	test_cmp baseline-checks checks
'

test_expect_success 'restore --force puts back a mailbox changed since' '
	instance_imap_script -u bob -w bob >/dev/null <<-\EOF &&
	SELECT INBOX
	STORE 1 +FLAGS (\Deleted)
	EXPUNGE
	STORE 1 +FLAGS (\Answered)
	EOF
	imap_state bob INBOX >changed &&
	! test_cmp bob-before changed 2>/dev/null &&
	instance_pause &&
	cyrus backup restore $C "$B" --force user.bob &&
	instance_resume &&
	imap_state bob INBOX >bob-forced &&
	test_cmp bob-before bob-forced &&
	real_quota >q1 && as_cyrus "$REAL_BIN/quota" -C "$CYR_CONF" -f >/dev/null &&
	real_quota >q2 && test_cmp q1 q2 &&
	real_checks "^user\.bob\.Restored\$" >checks &&
	test_cmp baseline-checks checks
'

test_expect_success 'bad snapshot ids, times and archives' '
	test_expect_code 66 cyrus backup verify "$B" 19990101T000000Z &&
	test_expect_code 66 cyrus backup restore $C "$B" -n \
		--snapshot 19990101T000000Z user.bob 2>err &&
	grep -q "no snapshot" err &&
	test_expect_code 66 cyrus backup restore $C "$B" -n \
		--at 2000-01-01 user.bob &&
	test_expect_code 64 cyrus backup restore $C "$B" -n --at garbage user.bob &&
	mkdir notarchive && echo x >notarchive/file &&
	test_expect_code 65 cyrus backup create $C "$TEST_SCRATCH/notarchive" &&
	test_expect_code 66 cyrus backup verify "$TEST_SCRATCH/notarchive" &&
	mkdir newer && echo "cyrus-backup 99" >newer/FORMAT && : >newer/lock &&
	test_expect_code 65 cyrus backup verify "$TEST_SCRATCH/newer" 2>err &&
	grep -q "format 99" err
'

test_expect_success 'kill -9 of create leaves a usable archive' '
	for d in 0 0.05 0.1 0.2; do
		cyrus backup create $C "$B" --full &
		pid=$! && sleep $d && kill -9 $pid 2>/dev/null; wait $pid
	done
	cyrus backup verify "$B" >/dev/null &&
	cyrus backup create $C "$B" &&
	cyrus backup verify "$B" >/dev/null
'

test_expect_success 'prune keeps the newest N and sweeps what only the others used' '
	n=$(cyrus backup list "$B" | grep -c "^20") &&
	test $n -ge 4 &&
	mkdir -p "$B/messages/00" &&
	echo orphan | gzip >"$B/messages/00/0000000000000000000000000000000000000001.gz" &&
	cyrus backup prune "$B" -n --keep 2 >out &&
	test $(grep -c "^would drop" out) = $((n - 2)) &&
	test_path_is_file "$B/messages/00/0000000000000000000000000000000000000001.gz" &&
	(cd "$B" && find files -type f | wc -l) >before &&
	cyrus backup prune "$B" --keep 2 &&
	test $(ls "$B/snapshots" | wc -l) = 2 &&
	test_path_is_missing "$B/messages/00/0000000000000000000000000000000000000001.gz" &&
	(cd "$B" && find files -type f | wc -l) >after &&
	test $(cat after) -lt $(cat before) &&
	cyrus backup verify "$B" >out &&
	test $(grep -c ": ok" out) = 2 &&
	sleep 1 &&
	cyrus backup prune "$B" --keep-days 0 &&
	test $(ls "$B/snapshots" | wc -l) = 1 &&
	cyrus backup verify "$B" >/dev/null
'

test_expect_success 'restore --all into an empty store, served by a second imapd' '
	NEW=$TEST_SCRATCH/new &&
	mkdir -p "$NEW" &&
	sed "s|$CYR_DIR|$NEW|g" "$CYR_CONF" >"$NEW/imapd.conf" &&
	NEWPORT=$(_instance_free_port) &&
	sed -e "s|$CYR_DIR|$NEW|g" -e "s|$CYR_CONF|$NEW/imapd.conf|g" \
		-e "s|127.0.0.1:$CYR_PORT|127.0.0.1:$NEWPORT|" \
		"$CYR_MASTERCONF" >"$NEW/cyrus.conf" &&
	cp "$CYR_DIR/sasldb2" "$NEW/" &&
	for d in conf/db conf/lock conf/log conf/proc conf/quota conf/socket \
		conf/user part/default part/p2 tmp sieve; do
		mkdir -p "$NEW/$d"
	done &&
	chown -R cyrus:mail "$NEW" &&
	cyrus backup restore -C "$NEW/imapd.conf" "$B" --all &&
	as_cyrus "$REAL_BIN/chk_cyrus" -C "$NEW/imapd.conf" >chk 2>&1 &&
	! grep -v "^checking: \|^Examining partition" chk &&
	as_cyrus "$REAL_BIN/quota" -C "$NEW/imapd.conf" >q-new &&
	real_quota >q-old &&
	test_cmp q-old q-new &&
	{ "$REAL_BIN/master" -C "$NEW/imapd.conf" -M "$NEW/cyrus.conf" \
		-p "$NEW/master.pid" -L "$NEW/master.log" </dev/null \
		>>"$NEW/master.log" 2>&1 & } &&
	newmaster=$! &&
	test_when_finished "kill $newmaster; wait $newmaster" &&
	for i in $(seq 1 100); do
		(CYR_PORT=$NEWPORT; _instance_greets) && break
		sleep 0.2
	done &&
	(CYR_PORT=$NEWPORT; imap_state bob INBOX) >bob-new &&
	imap_state bob INBOX >bob-old &&
	test_cmp bob-old bob-new &&
	(CYR_PORT=$NEWPORT; imap_state bob user.bob.Restored) >r-new &&
	imap_state bob user.bob.Restored >r-old &&
	test_cmp r-old r-new
'

test_expect_success 'kill -9 of prune leaves a usable archive' '
	cyrus backup create $C "$B" && cyrus backup create $C "$B" &&
	cyrus backup create $C "$B" &&
	for d in 0 0.01 0.05; do
		cyrus backup prune "$B" --keep 2 &
		pid=$! && sleep $d && kill -9 $pid 2>/dev/null; wait $pid
	done
	cyrus backup verify "$B" >/dev/null &&
	cyrus backup prune "$B" --keep 1 &&
	cyrus backup verify "$B" >/dev/null
'

# carol gets 6 messages, a snapshot packs them, 3 are expunged for good
# and another snapshot is made: after prune --keep 1 only the other 3 may
# stay in a pack.
test_expect_success 'setup: a pack half of whose messages only an old snapshot needs' '
	for i in 1 2 3 4 5 6; do
		_instance_msg $((400 + i)) "short-lived $i" carol |
			instance_deliver carol || return 1
	done &&
	ls "$B"/packs/*.idx.gz | sort >packs-before &&
	cyrus backup create $C "$B" &&
	ls "$B"/packs/*.idx.gz | sort >packs-after &&
	comm -13 packs-before packs-after >new-packs &&
	test -s new-packs &&
	manifest_text | awk -F"\t" "\$1==\"mailbox\"{m=\$2} \$1==\"msg\" && m==\"user.carol\" {print \$2, \$3}" |
		tail -n 6 >six &&
	test_line_count = 6 six &&
	head -n 3 six | cut -d" " -f2 >dead &&
	tail -n 3 six | cut -d" " -f2 >live &&
	for s in $(cat dead live); do
		idx_of $s >>holders || return 1
	done &&
	test $(sort -u holders | wc -l) -le $(wc -l <new-packs) &&
	uids=$(head -n 3 six | cut -d" " -f1 | paste -sd,) &&
	instance_imap_script -u carol -w carol >/dev/null <<-EOF &&
	SELECT INBOX
	UID STORE $uids +FLAGS (\Deleted)
	EXPUNGE
	EOF
	as_cyrus "$REAL_BIN/cyr_expire" -C "$CYR_CONF" -X 0 -D 0 &&
	cyrus backup create $C "$B" &&
	manifest_text >text &&
	for s in $(cat dead); do ! grep -q "$s" text || return 1; done &&
	for s in $(cat live); do grep -q "$s" text || return 1; done
'

# After prune --keep 1: one snapshot, the dead messages in no pack, each
# live one in one pack, from which tar gets it intact; verify is happy.
check_pruned()
{
	local s p
	test $(ls "$B/snapshots" | wc -l) = 1 &&
	test -z "$(ls "$B/tmp")" &&
	test $(ls "$B"/packs/*.tar.gz | wc -l) = $(ls "$B"/packs/*.idx.gz | wc -l) ||
	return 1
	for s in $(cat dead); do
		test -z "$(idx_of $s)" || return 1
	done
	for s in $(cat live); do
		test $(idx_of $s | wc -l) = 1 &&
		p=$(pack_of $s) &&
		zcat "$p" | tar -xO -f - $s | sha1sum | grep -q "^$s " || return 1
	done
	cyrus backup verify "$B" >verify.out && grep -q ": ok" verify.out
}

test_expect_success STRACE 'kill -9 of prune at each rename and unlink of a pack rewrite' '
	cp -a "$B" "$TEST_SCRATCH/B0" &&
	kills=0 &&
	for call in rename unlink; do
		for n in 1 2 3 4 5 6 7 8 9 10 11 12; do
			rm -rf "$B" && cp -a "$TEST_SCRATCH/B0" "$B" || return 1
			strace -f -o /dev/null -e trace=$call \
				-e inject=$call:signal=KILL:when=$n \
				"$CYRUS" backup prune "$B" --keep 1 --max-unused 0 \
				>/dev/null 2>&1
			rc=$?
			say "prune killed at $call $n: exit $rc"
			cyrus backup verify "$B" >/dev/null &&
			cyrus backup prune "$B" --keep 1 --max-unused 0 &&
			check_pruned || return 1
			test $rc = 137 || break
			kills=$((kills + 1))
		done
	done &&
	test $kills -ge 5
'

test_expect_success 'prune -n says what it would do; --max-unused is checked' '
	test_expect_code 64 cyrus backup prune "$B" --keep 1 --max-unused 101 &&
	cyrus backup prune "$B" -n --keep 1 >out &&
	grep -q "^would remove 0 objects" out
'

test_done
