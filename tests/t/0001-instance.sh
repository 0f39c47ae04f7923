#!/bin/bash
# The harness itself: a private real Cyrus starts, serves IMAP and LMTP,
# its tools see what it did, and it stops.
test_description='private Cyrus instance (tests/lib/instance.sh)'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'

test_expect_success 'instance starts, with a private configuration' '
	instance_start &&
	kill -0 "$CYR_MASTER_PID" &&
	test_path_is_file "$CYR_CONF" &&
	test_path_is_file "$CYR_MASTERCONF" &&
	test_path_is_dir "$CYR_PART" &&
	test_path_is_dir "$CYR_PART2" &&
	test -S "$CYR_LMTP" &&
	grep "^configdirectory: $CYR_CONFIGDIR\$" "$CYR_CONF" &&
	! grep -e /var/lib/cyrus -e /var/spool/cyrus -e /run/cyrus \
		"$CYR_CONF" "$CYR_MASTERCONF" &&
	master_pid=$CYR_MASTER_PID
'

test_expect_success 'admin logs in and creates user.alice' '
	instance_imap_script >out <<-\EOF &&
	CREATE user.alice
	LIST "" "user.*"
	EOF
	grep "^\* LIST .* user\.alice\$" out
'

test_expect_success 'a wrong password is refused' '
	echo NOOP | test_expect_code 2 instance_imap_script -u cyrus -w wrong
'

test_expect_success 'a NO answer makes the script fail' '
	echo "CREATE user.alice" | test_must_fail instance_imap_script
'

test_expect_success 'a message delivered over LMTP shows up' '
	instance_add_sasl_user alice alice &&
	cat >msg <<-\EOF &&
	From: Sender <sender@example.org>
	To: alice@example.org
	Subject: hello
	Message-ID: <hello.1@example.org>

	Hello Alice.
	EOF
	instance_deliver alice <msg &&
	echo "STATUS INBOX (MESSAGES)" |
		instance_imap_script -u alice -w alice >out &&
	grep "^\* STATUS INBOX (MESSAGES 1)" out &&
	echo "EXAMINE INBOX" | instance_imap_script -u alice -w alice >out &&
	grep "^\* 1 EXISTS" out
'

test_expect_success 'LMTP to an unknown user fails' '
	test_must_fail instance_deliver nobody <msg
'

test_expect_success 'the real ctl_mboxlist -d sees user.alice' '
	as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$CYR_CONF" -d >dump &&
	grep "\"user\.alice\": {" dump &&
	grep "\"partition\": \"default\"" dump
'

test_expect_success 'the message file is on the default partition' '
	find "$CYR_PART" -name 1. -type f >files &&
	test_line_count = 1 files &&
	grep -q "^Subject: hello" "$(cat files)"
'

test_expect_success 'a mailbox can be put on partition p2' '
	echo "CREATE user.zed p2" | instance_imap_script &&
	as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$CYR_CONF" -d >dump &&
	grep "\"user\.zed\".*\"partition\": \"p2\"" dump &&
	test -n "$(find "$CYR_PART2" -name cyrus.header)"
'

test_expect_success 'instance_stop stops master and its children' '
	kids=$(pgrep -P "$master_pid") &&
	test -n "$kids" || kids=
	dir=$CYR_DIR &&
	instance_stop &&
	! kill -0 "$master_pid" 2>/dev/null &&
	for k in $kids; do
		! kill -0 "$k" 2>/dev/null || return 1
	done &&
	test -z "${CYR_MASTER_PID:-}" &&
	test_path_is_missing "$dir" &&
	instance_stop
'

test_expect_success 'a second instance, filled by instance_fill' '
	instance_start &&
	instance_fill &&
	as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$CYR_CONF" -d >dump &&
	for m in user.alice.Archive.2023 "user.alice.Entw&APw-rfe" \
		user.bob "user.bob.My Folder" user.carol shared; do
		grep -F "\"$m\": {" dump || return 1
	done &&
	echo "GETQUOTA user.bob" | instance_imap_script >out &&
	grep "STORAGE [0-9]* 10240" out &&
	echo "STATUS \"INBOX.My Folder\" (MESSAGES)" |
		instance_imap_script -u bob -w bob >out &&
	grep "MESSAGES 1" out
'

test_expect_success 'the real cyr_dbtool finds mailboxes.db consistent' '
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" \
		"$CYR_CONFIGDIR/mailboxes.db" twoskip consistent >out &&
	grep "^Yes, consistent" out
'

test_expect_success 'the EXIT trap stops the instance' '
	cat >child.sh <<-EOF &&
	. "$TOP/tests/lib/instance.sh"
	instance_start || exit 1
	echo "\$CYR_MASTER_PID \$CYR_DIR" >child.out
	exit 3
	EOF
	test_expect_code 3 bash child.sh &&
	read pid dir <child.out &&
	! kill -0 "$pid" 2>/dev/null &&
	test_path_is_missing "$dir"
'

test_done
