#!/bin/bash
# cyrus ctl_cyrusdb against the real ctl_cyrusdb: -c puts the same files
# with the same modes into db.backup1 and rotates into db.backup2; -r
# recovers a crashed twoskip byte for byte as the real one does, converts
# a skiplist mailboxes.db, refuses beside a running server, and names a
# corrupt database while still handling the others.
test_description='ctl_cyrusdb checkpoint and recover'
. "$(dirname "$0")/../lib/test-lib.sh"
. "$TOP/tests/lib/instance.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'

real() { as_cyrus "$REAL_BIN/$1" "${@:2}"; }
# A copy of the instance's config directory with its own imapd.conf.
copy_store() {
	rm -rf "$TEST_SCRATCH/$1" &&
	cp -a "$CYR_CONFIGDIR" "$TEST_SCRATCH/$1" &&
	rm -rf "$TEST_SCRATCH/$1"/db.backup* &&
	sed "s|^configdirectory: .*|configdirectory: $TEST_SCRATCH/$1|" \
		"$CYR_CONF" >"$TEST_SCRATCH/$1.conf"
}
# File, mode, owner and group of everything under db.backup*.
tree() { (cd "$TEST_SCRATCH/$1" && find db.backup* -printf '%p %m %u %g\n' | sort); }
show() { real cyr_dbtool -C "$TEST_SCRATCH/$1.conf" "$TEST_SCRATCH/$1/$2" "${3:-twoskip}" show; }

test_expect_success 'a store filled by the real imapd' '
	instance_start &&
	instance_fill >/dev/null &&
	test_path_is_file "$CYR_CONFIGDIR/mailboxes.db"
'

test_expect_success '-r refuses while the instance runs (EX_TEMPFAIL)' '
	cp "$CYR_CONFIGDIR/mailboxes.db" before &&
	test_expect_code 75 cyrus -C "$CYR_CONF" ctl_cyrusdb -r -x 2>err &&
	grep "refusing to recover: a Cyrus server is running" err &&
	grep "pid $CYR_MASTER_PID" err &&
	cmp before "$CYR_CONFIGDIR/mailboxes.db"
'

test_expect_success '-c runs beside the live server' '
	cyrus -C "$CYR_CONF" ctl_cyrusdb -c &&
	test_path_is_file "$CYR_CONFIGDIR/db.backup1/mailboxes.db"
'

test_expect_success 'stop the instance' '
	keep=$CYR_DIR &&
	KEEP_SCRATCH=1 instance_stop &&
	_CYR_OWN_DIR=$keep &&
	test_path_is_file "$CYR_CONF"
'

test_expect_success '-c: same files and modes in db.backup1 as the real -c' '
	copy_store real && copy_store ours &&
	real ctl_cyrusdb -C "$TEST_SCRATCH/real.conf" -c &&
	cyrus -C "$TEST_SCRATCH/ours.conf" ctl_cyrusdb -c >out 2>err &&
	! test -s out && ! test -s err &&
	tree real >expect && tree ours >actual &&
	test_cmp expect actual &&
	grep "^db.backup1/mailboxes.db 600 cyrus mail" actual &&
	grep "^db.backup1/annotations.db 600 cyrus mail" actual &&
	grep "^db.backup1 700 " actual
'

test_expect_success '-c: each copy reads as the real copy (cyr_dbtool show)' '
	for f in mailboxes.db annotations.db; do
		show real db.backup1/$f >expect &&
		show ours db.backup1/$f >actual &&
		test_cmp expect actual &&
		show ours $f >orig &&
		test_cmp orig actual || return 1
	done &&
	show ours db.backup1/mailboxes.db | grep -a "user.alice"
'

test_expect_success '-c again: db.backup1 rotates into db.backup2, as the real one' '
	real ctl_cyrusdb -C "$TEST_SCRATCH/real.conf" -c &&
	cyrus -C "$TEST_SCRATCH/ours.conf" ctl_cyrusdb -c &&
	tree real >expect && tree ours >actual &&
	test_cmp expect actual &&
	grep "^db.backup2/mailboxes.db " actual
'

test_expect_success '-r on a twoskip with a crashed transaction: byte for byte the real -r' '
	copy_store real && copy_store ours &&
	test_must_fail real cyr_dbtool -C "$TEST_SCRATCH/real.conf" \
		"$TEST_SCRATCH/real/mailboxes.db" twoskip damage 2>/dev/null &&
	! cmp -s "$CYR_CONFIGDIR/mailboxes.db" real/mailboxes.db &&
	cp -p real/mailboxes.db ours/mailboxes.db &&
	real ctl_cyrusdb -C "$TEST_SCRATCH/real.conf" -r &&
	cyrus -C "$TEST_SCRATCH/ours.conf" ctl_cyrusdb -r -x &&
	cmp real/mailboxes.db ours/mailboxes.db &&
	show ours mailboxes.db >actual &&
	! grep CRASHME actual &&
	real cyr_dbtool -C "$TEST_SCRATCH/ours.conf" "$TEST_SCRATCH/ours/mailboxes.db" \
		twoskip consistent >out &&
	grep "^Yes, consistent" out
'

test_expect_success '-r on a twoskip with garbage appended: the committed records' '
	copy_store ours &&
	show ours mailboxes.db >expect &&
	head -c 1000 /dev/urandom >>ours/mailboxes.db &&
	cyrus -C "$TEST_SCRATCH/ours.conf" ctl_cyrusdb -r -x &&
	show ours mailboxes.db >actual &&
	test_cmp expect actual
'

test_expect_success '-r writes db/skipstamp (4-byte big-endian now) as the real one' '
	copy_store real && copy_store ours &&
	rm -f real/db/skipstamp ours/db/skipstamp &&
	before=$(date +%s) &&
	real ctl_cyrusdb -C "$TEST_SCRATCH/real.conf" -r -x &&
	cyrus -C "$TEST_SCRATCH/ours.conf" ctl_cyrusdb -r -x &&
	after=$(date +%s) &&
	stat -c "%s %a %U %G" real/db/skipstamp >expect &&
	stat -c "%s %a %U %G" ours/db/skipstamp >actual &&
	test_cmp expect actual &&
	t=$(od -An -tu1 ours/db/skipstamp | awk "{print ((\$1*256+\$2)*256+\$3)*256+\$4}") &&
	test "$t" -ge "$before" && test "$t" -le "$after"
'

test_expect_success '-r with db/skipcleanshutdown: removes it, no new stamp' '
	copy_store ours &&
	printf "\0\0\0\1" >ours/db/skipstamp &&
	: >ours/db/skipcleanshutdown &&
	cyrus -C "$TEST_SCRATCH/ours.conf" ctl_cyrusdb -r -x &&
	test_path_is_missing ours/db/skipcleanshutdown &&
	printf "\0\0\0\1" | cmp - ours/db/skipstamp
'

test_expect_success '-r converts a skiplist mailboxes.db to the configured twoskip' '
	copy_store real && copy_store ours &&
	show ours mailboxes.db >expect &&
	real cvt_cyrusdb -C "$TEST_SCRATCH/ours.conf" "$TEST_SCRATCH/ours/mailboxes.db" twoskip \
		"$TEST_SCRATCH/ours/mb.skiplist" skiplist >/dev/null &&
	mv ours/mb.skiplist ours/mailboxes.db &&
	cp -p ours/mailboxes.db real/mailboxes.db &&
	head -c 20 ours/mailboxes.db | grep -aq "skiplist file" &&
	real ctl_cyrusdb -C "$TEST_SCRATCH/real.conf" -r -x &&
	cyrus -C "$TEST_SCRATCH/ours.conf" ctl_cyrusdb -r -x &&
	head -c 20 ours/mailboxes.db | grep -aq "twoskip file" &&
	show ours mailboxes.db >actual &&
	test_cmp expect actual &&
	show real mailboxes.db >real.out &&
	test_cmp real.out actual &&
	stat -c "%a %U %G" real/mailboxes.db >expect &&
	stat -c "%a %U %G" ours/mailboxes.db >actual &&
	test_cmp expect actual
'

test_expect_success '-r: a corrupt database fails, is named, the others are still handled' '
	copy_store ours &&
	real cyr_dbtool -C "$TEST_SCRATCH/ours.conf" "$TEST_SCRATCH/ours/deliver.db" twoskip show >expect &&
	test_must_fail real cyr_dbtool -C "$TEST_SCRATCH/ours.conf" \
		"$TEST_SCRATCH/ours/deliver.db" twoskip damage 2>/dev/null &&
	printf "\241\002\213\015twoskip file\0\0\0\0garbage garbage garbage garbage garbage" \
		>ours/annotations.db &&
	cp ours/annotations.db annotations.before &&
	test_must_fail cyrus -C "$TEST_SCRATCH/ours.conf" ctl_cyrusdb -r -x 2>err &&
	grep "annotations.db" err &&
	grep "1 database failed: annotations.db$" err &&
	show ours deliver.db >actual &&
	test_cmp expect actual &&
	cmp annotations.before ours/annotations.db
'

test_expect_success '-c: a database that cannot be read fails and is named, the others are copied' '
	copy_store ours &&
	rm -f ours/annotations.db && mkdir ours/annotations.db &&
	test_must_fail cyrus -C "$TEST_SCRATCH/ours.conf" ctl_cyrusdb -c 2>err &&
	grep "cannot archive .*annotations.db" err &&
	grep "1 database failed: annotations.db$" err &&
	test_path_is_file ours/db.backup1/mailboxes.db &&
	test_path_is_missing ours/db.backup1/annotations.db
'

test_expect_success '-r from a master START entry (our ancestor) is allowed, from elsewhere not' '
	copy_store ours &&
	cp /bin/sh "$TEST_SCRATCH/master" &&
	"$TEST_SCRATCH/master" -c "cyrus -C \"\$1\" ctl_cyrusdb -r -x; true" -C "$TEST_SCRATCH/ours.conf" &&
	{ "$TEST_SCRATCH/master" -c "sleep 30" -C "$TEST_SCRATCH/ours.conf" & pid=$!; } &&
	test_when_finished "kill $pid" &&
	sleep 0.3 &&
	test_expect_code 75 cyrus -C "$TEST_SCRATCH/ours.conf" ctl_cyrusdb -r -x 2>err &&
	grep "pid $pid" err
'

test_expect_success 'usage: -x without -r, -r with -c, nothing: 64' '
	test_expect_code 64 cyrus ctl_cyrusdb -c -x &&
	test_expect_code 64 cyrus ctl_cyrusdb -r -c &&
	test_expect_code 64 cyrus ctl_cyrusdb &&
	test_expect_code 64 cyrus ctl_cyrusdb -Z &&
	cyrus ctl_cyrusdb --help | grep "^usage: ctl_cyrusdb"
'

test_done
