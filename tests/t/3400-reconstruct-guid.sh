#!/bin/bash
# cyrus reconstruct -R (a message file whose GUID no longer matches its
# record: the record expunged and unlinked, the file appended under a new
# UID) and the checks of the I (by uniqueid) records of mailboxes.db,
# against the real 3.6.1 one: twin copies of a store filled by the real
# imapd (stopped), the same damage on both, the real reconstruct on one
# and ours on the other: the same output, exit code and result.
test_description='reconstruct -R and the byid checks'
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
run_real() { as_cyrus "$REAL_BIN/reconstruct" -C "$CONF" "$@"; }
run_ours() { cyrus reconstruct -C "$CONF" "$@"; }
dbtool() {
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CONF" \
		"${CONF%/imapd.conf}/conf/mailboxes.db" twoskip "$@"
}
# The N and I records of mailboxes.db, mtimes (now) left out.
db_dump() { dbtool show | sed -E "s/ M [0-9]+ / M T /"; }
uniqueid_of() {
	dbtool show | grep -a "^N$(printf '%s' "$1" | tr . '\037')	" |
		sed -E "s/.* I ([a-z0-9]+) .*/\1/"
}
# The index of MAILBOX as mbexamine shows it, what depends on the clock
# (last_updated, savedate, last_appenddate) left out.
examine() {
	as_cyrus "$REAL_BIN/mbexamine" -C "$CONF" "$1" |
		sed -E -e "s/(Last Updated|Last Appenddate|Last Change|Savedate)[^ ]*: .*/\1: T/" \
		       -e "s/(LAST_UPDATED|SAVEDATE|LASTUPD) *[:=] *[0-9]+/\1 T/g" \
		       -e "s#$TEST_SCRATCH/[^/]*/#X/#g"
}
accepted()
{
	run_real -n >again &&
	test_cmp names again &&
	as_cyrus $REAL_BIN/chk_cyrus -C $CONF >chk 2>&1 &&
	! grep -iv "^checking\|^examining\|^$" chk
}
# twin NAME DAMAGE ARGS: DAMAGE on two copies, the real reconstruct ARGS
# on one (expect.NAME), ours on the other (actual.NAME): output and rc.
twin()
{
	local n=$1 d=$2
	shift 2
	copy_store real-$n && $d &&
	{ run_real "$@" 2>&1; echo "rc=$?"; } >expect.$n &&
	copy_store ours-$n && $d &&
	{ run_ours "$@" 2>&1; echo "rc=$?"; } >actual.$n &&
	test_cmp expect.$n actual.$n
}

test_expect_success 'setup: a store filled by the real imapd' '
	CYR_EXTRA_CONF="mailbox_legacy_dirs: yes" instance_start &&
	instance_fill &&
	instance_imap_script -u alice -w alice >before <<-\EOI &&
	SELECT INBOX
	UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])
	EOI
	instance_pause &&
	CONF=$CYR_CONF &&
	run_real -n >names &&
	test_line_count = 10 names
'

# user.alice 2. now holds another message (its size changed too, so a
# plain reconstruct re-parses it).
other_msg()
{
	local f
	f=$(mbdir user.alice)/2. &&
	sed -i "s/plain message 2/another message, not 2/" "$f" &&
	touch -d "2023-01-01 00:00:00" "$f" &&
	chown cyrus:mail "$f"
}

test_expect_success '-R: the GUID mismatch re-added under a new UID, as the real one' '
	twin R other_msg -R &&
	grep -q "^user.alice uid 2 guid mismatch$" actual.R &&
	grep -q "^user.alice uid 2 marking for uid upgrade$" actual.R &&
	grep -q "^user.alice uid 2 rediscovered - appending$" actual.R &&
	CONF=$TEST_SCRATCH/real-R/imapd.conf && examine user.alice >ex.real &&
	ls "$(mbdir user.alice)" >ls.real &&
	CONF=$TEST_SCRATCH/ours-R/imapd.conf && examine user.alice >ex.ours &&
	ls "$(mbdir user.alice)" >ls.ours &&
	test_cmp ex.real ex.ours &&
	test_cmp ls.real ls.ours &&
	grep -q "^4\.$" ls.ours && ! grep -q "^2\.$" ls.ours &&
	accepted
'

test_expect_success 'without -R or -U: reported only, as the real one' '
	twin noR other_msg &&
	grep -q "^run reconstruct with -R to fix or -U to remove$" actual.noR
'

# user.bob.Trash without its I record.
lose_irec() { dbtool delete "I$(uniqueid_of user.bob.Trash)"; }
# user.bob.Trash: its I record with another uidvalidity.
bad_uidv()
{
	local id v
	id=$(uniqueid_of user.bob.Trash) && test -n "$id" &&
	v=$(dbtool get "I$id") &&
	dbtool set "I$id" "$(printf "%s" "$v" | sed -E "s/ V [0-9]+ / V 12345 /")" &&
	dbtool get "I$id" | grep -q " V 12345 "
}
# user.bob.Trash: its I record naming user.bob.Sent.
clash()
{
	local id v
	id=$(uniqueid_of user.bob.Trash) && test -n "$id" &&
	v=$(dbtool get "I$id") &&
	dbtool set "I$id" "$(printf "%s" "$v" |
		sed -E "s/ N user(.)bob(.)Trash / N user\1bob\2Sent /")" &&
	dbtool get "I$id" | grep -aq " N user.bob.Sent "
}
# The twins' mailboxes.db the same (mtimes aside), and fine for the
# real tools.
same_db()
{
	CONF=$TEST_SCRATCH/real-$1/imapd.conf && db_dump >db.real &&
	CONF=$TEST_SCRATCH/ours-$1/imapd.conf && db_dump >db.ours &&
	test_cmp db.real db.ours
}

test_expect_success 'a missing I record: rewritten, as the real one' '
	twin noI lose_irec &&
	grep -q "^Missing mboxlist entry for uniqueid - will rewrite user.bob.Trash ($(uniqueid_of user.bob.Trash))$" actual.noI &&
	same_db noI &&
	dbtool show | grep -aq "^I$(uniqueid_of user.bob.Trash)	" &&
	accepted
'

test_expect_success 'a missing I record: -n reports, changes nothing' '
	twin noIn lose_irec -n &&
	grep -q "^Missing mboxlist entry for uniqueid" actual.noIn &&
	same_db noIn
'

test_expect_success 'an I record with another uidvalidity: fixed, as the real one' '
	twin uidv bad_uidv &&
	grep -q "^mismatched uidvalidity byid user.bob.Trash ([0-9]* 12345)$" actual.uidv &&
	same_db uidv &&
	! dbtool show | grep -aq " V 12345 " &&
	accepted
'

test_expect_success 'an I record naming another mailbox: exit 1, as the real one' '
	twin clash clash &&
	grep -q "^Wrong uniqueid! user.bob.Sent (should be user.bob.Trash)$" actual.clash &&
	grep -q "^rc=1$" actual.clash &&
	same_db clash
'

test_expect_success 'imapd serves the message under its new UID' '
	CONF=$CYR_CONF && other_msg && run_ours -R >/dev/null &&
	instance_resume &&
	instance_imap_script -u alice -w alice >after <<-\EOI &&
	SELECT INBOX
	UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])
	EOI
	grep -q "UID 4 .*" after &&
	grep -qi "another message, not 2" after &&
	! grep -q "UID 2 " after &&
	instance_pause
'

test_done
