#!/bin/bash
# cyrus reconstruct's -p, -f, -x and -P against the real 3.6.1 one: twin
# copies of a store filled by the real imapd (stopped), the same damage
# on both (a mailboxes.db entry deleted, a mailbox directory left without
# its entry), the real reconstruct on one and ours on the other: the same
# output and exit code, and the real tools accept our result.
test_description='reconstruct -p -f -x -P'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'
[ -x "$TOP/bin/cyrus" ] || test_skip_all 'bin/cyrus is not built'

# copy_store NAME: a copy of the stopped store; sets CONF.
copy_store()
{
	rm -rf "$TEST_SCRATCH/$1" &&
	cp -a "$CYR_DIR" "$TEST_SCRATCH/$1" &&
	sed -i "s#$CYR_DIR#$TEST_SCRATCH/$1#g" "$TEST_SCRATCH/$1/imapd.conf" &&
	CONF=$TEST_SCRATCH/$1/imapd.conf
}

mbdir() { as_cyrus "$REAL_BIN/mbpath" -C "$CONF" "$1"; }
norm_uidv() { sed -E 's/\(([0-9]+) -> [0-9]+\)$/(\1 -> NEW)/'; }
run_real() { as_cyrus "$REAL_BIN/reconstruct" -C "$CONF" "$@"; }
run_ours() { cyrus reconstruct -C "$CONF" "$@"; }
dbtool() {
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CONF" \
		"${CONF%/imapd.conf}/conf/mailboxes.db" twoskip "$@"
}
# lose_sent: user.bob.Sent (legacy dirs) holds a message file its index
# does not list, and has no N or I record in mailboxes.db.
lose_sent()
{
	local d id
	d=$(mbdir user.bob) &&
	cp -p "$d/1." "$d/Sent/1." &&
	id=$(dbtool show | grep -a "^Nuser.bob.Sent	" |
		sed -E "s/.* I ([a-z0-9]+) .*/\1/") &&
	test -n "$id" &&
	dbtool delete "$(printf "Nuser\037bob\037Sent")" &&
	dbtool delete "I$id"
}
# compare ARGS: the real and our reconstruct ARGS on twin damaged stores:
# the same output and exit code; then the real tools accept ours.
compare()
{
	local n=$1
	shift
	copy_store real-$n && lose_sent &&
	{ run_real "$@" 2>&1; echo "rc=$?"; } | norm_uidv >expect.$n &&
	copy_store ours-$n && lose_sent &&
	{ run_ours "$@" 2>&1; echo "rc=$?"; } | norm_uidv >actual.$n &&
	test_cmp expect.$n actual.$n &&
	accepted
}
accepted()
{
	run_real -n >again &&
	test_cmp names again &&
	as_cyrus $REAL_BIN/chk_cyrus -C $CONF >chk 2>&1 &&
	! grep -iv "^checking\|^examining\|^$" chk
}

test_expect_success 'setup: a store filled by the real imapd' '
	CYR_EXTRA_CONF="mailbox_legacy_dirs: yes" instance_start &&
	instance_fill &&
	instance_pause &&
	CONF=$CYR_CONF &&
	run_real -n >names &&
	test_line_count = 10 names
'

test_expect_success '-x -p: a new mailbox over the lost one, as the real one' '
	compare xp -x -p default user.bob.Sent &&
	grep -q "user.bob.Sent uid 1 found - adding" actual.xp
'

test_expect_success '-x -r -f: the lost mailbox discovered, as the real one' '
	compare xf -x -r -f user.bob &&
	grep -q "^discovered user.bob.Sent$" actual.xf
'

# Without -x the real 3.6.1 writes an entry without uniqueid and crashes
# (SIGSEGV): ours imports the old cyrus.header: uniqueid, ACL, uidvalidity.
test_expect_success '-p and -r -f without -x: the old header imported' '
	copy_store orig && CONF=$TEST_SCRATCH/orig/imapd.conf &&
	dbtool show | grep -a "^[NI].*Sent" | sed "s/ M [0-9]* / M T /" >expect.db &&
	for a in "-p default user.bob.Sent" "-r -f user.bob"; do
		copy_store ours-p && lose_sent &&
		run_ours $a >out &&
		grep -q "^user.bob.Sent$" out &&
		dbtool show | grep -a "^[NI].*Sent" |
			sed "s/ M [0-9]* / M T /" >actual.db &&
		test_cmp expect.db actual.db &&
		accepted || return 1
	done
'

test_expect_success '-p: errors and exit codes as the real one' '
	copy_store perr &&
	for a in "-p default user.bob" "-p default" "-p default user.%"; do
		{ run_real $a 2>&1; echo "rc=$?"; } >expect &&
		{ run_ours $a 2>&1; echo "rc=$?"; } >actual &&
		test_cmp expect actual || return 1
	done
'

test_expect_success '-P: entries from cyrus.header paths, as the real one' '
	for w in real ours; do
		copy_store P$w && lose_sent &&
		d=$(mbdir user.bob) &&
		{ run_$w -P "$d/Sent" "$d/Trash/cyrus.header" /nonexist /tmp 2>&1
		  echo "rc=$?"
		  dbtool show | grep -a "^[NI].*Sent" | sed "s/ M [0-9]* / M T /"
		} | sed "s#/P$w/#/X/#g" >P.$w || return 1
	done &&
	test_cmp P.real P.ours &&
	grep -q "^created mbentry for user.bob.Sent" P.ours &&
	run_real -n | grep -v "^user.bob.Sent uid 1 found - adding$" >again &&
	test_cmp names again
'

test_done
