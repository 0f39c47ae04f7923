#!/bin/bash
# cyrus ctl_mboxlist against the real one: -d byte for byte, -u round
# trips through the real -d, bad input changes nothing.
test_description='ctl_mboxlist dump, undump, verify'
. "$(dirname "$0")/../lib/test-lib.sh"
. "$TOP/tests/lib/instance.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'

real_dump() { as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$CYR_CONF" -d "$@"; }
our() { cyrus -C "$CYR_CONF" ctl_mboxlist "$@"; }
# The records of mailboxes.db as the real cyr_dbtool shows them, without
# the M (record time) fields that an undump sets anew.
db_show() {
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" "${1:-$CYR_CONFIGDIR/mailboxes.db}" \
		twoskip show | sed 's/ M [0-9]*//g'
}

test_expect_success 'a store made by the real imapd' '
	instance_start &&
	instance_fill &&
	instance_create_user dave "Sent Items" "&AMk-t&AOk-" "a.b" &&
	instance_imap_script >/dev/null <<-\EOF &&
	CREATE "user.dave.Sent Items.2024" p2
	SETACL "user.dave.Sent Items" "group:staff" lrswi
	SETACL user.dave -anyone lr
	CREATE user.erin
	CREATE user.erin.gone
	SETACL user.erin.gone cyrus lrswipkxtecda
	DELETE user.erin.gone
	CREATE top.level.deep
	CREATE user.dave.Drafts (USE (\Drafts))
	CREATE user.dave.Junk (USE (\Junk))
	EOF
	real_dump >expect &&
	grep -F "\"user.dave.Drafts\": {" expect &&
	grep -F "\"user.dave.&AMk-t&AOk-\": {" expect &&
	grep -F "\"mbtype\": \"ed\"" expect
'

test_expect_success '-d prints what the real -d prints' '
	our -d >actual &&
	test_cmp expect actual
'

test_expect_success 'ctl_mboxlist alias and -y, -p, -f as the real tool' '
	real_dump -y >expect.y && our -d -y >actual.y && test_cmp expect.y actual.y &&
	real_dump -p p2 >expect.p && our -d -p p2 >actual.p &&
	test_cmp expect.p actual.p &&
	grep -F "user.carol" actual.p && ! grep -F "user.alice" actual.p &&
	cp "$CYR_CONFIGDIR/mailboxes.db" copy.db && chown cyrus:mail copy.db &&
	real_dump -f "$PWD/copy.db" >expect.f &&
	cyrus -C "$CYR_CONF" mboxlist -d -f "$PWD/copy.db" >actual.f &&
	test_cmp expect.f actual.f
'

test_expect_success 'undump into an empty db: the real -d gives the same back' '
	sed "s/\"mtime\": \"[0-9]*\"/\"mtime\": \"X\"/" expect >expect.nomtime &&
	our -u -f "$PWD/new.db" <expect &&
	chown cyrus:mail new.db &&
	real_dump -f "$PWD/new.db" |
		sed "s/\"mtime\": \"[0-9]*\"/\"mtime\": \"X\"/" >actual.nomtime &&
	test_cmp expect.nomtime actual.nomtime &&
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" "$PWD/new.db" twoskip consistent
'

test_expect_success 'our undump writes the records the real undump writes' '
	as_cyrus cp "$CYR_CONFIGDIR/mailboxes.db" /dev/null &&
	rm -f real.db && touch real.db && chown cyrus:mail real.db && rm real.db &&
	install -d -o cyrus -g mail realdir &&
	as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$CYR_CONF" -u \
		-f "$PWD/realdir/mailboxes.db" <expect &&
	db_show "$PWD/realdir/mailboxes.db" >expect.records &&
	# The real -u drops the tombstone (no partition); we keep it.
	db_show "$PWD/new.db" | grep -v "^Nuser.erin.gone	" >actual.records &&
	test_cmp expect.records actual.records
'

test_expect_success 'undump over the live db changes nothing the real -d shows' '
	db_show >before &&
	our -u <expect &&
	db_show >after &&
	real_dump | sed "s/\"mtime\": \"[0-9]*\"/\"mtime\": \"X\"/" >again &&
	test_cmp expect.nomtime again
'

test_expect_success 'a malformed dump: clear error, 65, mailboxes.db unchanged' '
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" "$CYR_CONFIGDIR/mailboxes.db" twoskip show >before.db &&
	printf "{\n\"user.new\": {\"partition\": \"default\", \"uniqueid\": \"abc\"},\n\"user.x\": {oops}\n}\n" >bad.json &&
	test_expect_code 65 our -u <bad.json 2>err &&
	grep "line 3" err &&
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" "$CYR_CONFIGDIR/mailboxes.db" twoskip show >after.db &&
	cmp before.db after.db &&
	printf "{\"user.new\": {\"partition\": \"default\", \"uniqueid\": \"abcdef\"}, \"user.nopart\": {\"uniqueid\": \"x1\"}}" >bad2.json &&
	test_expect_code 65 our -u <bad2.json 2>err &&
	grep "missing partition for user.nopart" err &&
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" "$CYR_CONFIGDIR/mailboxes.db" twoskip show >after.db &&
	cmp before.db after.db &&
	printf "{\"user.a%%b\": {\"partition\": \"default\", \"uniqueid\": \"abcdef\"}}" >bad3.json &&
	test_expect_code 65 our -u <bad3.json 2>err &&
	grep "invalid mailbox name" err &&
	printf "{\"user.q\": {\"partition\": \"default\", \"uniqueid\": \"abcdef\", \"mbtype\": \"eQ\"}}" >bad4.json &&
	test_expect_code 65 our -u <bad4.json 2>err &&
	grep "bad mbtype" err &&
	printf "{\"user.q\": {\"partition\": \"default\", \"uniqueid\":" >bad5.json &&
	test_expect_code 65 our -u <bad5.json &&
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" "$CYR_CONFIGDIR/mailboxes.db" twoskip show >after.db &&
	cmp before.db after.db
'

test_expect_success 'missing fields warn as the real tool does' '
	printf "{\"user.w\": {\"partition\": \"default\", \"uniqueid\": \"wwwwww\"}}" >warn.json &&
	our -u -f "$PWD/w.db" <warn.json 2>err &&
	grep "missing uidvalidity for user.w" err &&
	grep "missing mbtype for user.w" err &&
	chown cyrus:mail w.db &&
	real_dump -f "$PWD/w.db" >w.out &&
	grep -F "\"user.w\": {\"name\": \"user.w\"" w.out
'

test_expect_success '-x purges what it dumped (on a copy)' '
	cp "$CYR_CONFIGDIR/mailboxes.db" purge.db && chown cyrus:mail purge.db &&
	our -d -x -p p2 -f "$PWD/purge.db" >purged &&
	grep -F user.carol purged &&
	real_dump -f "$PWD/purge.db" >rest &&
	! grep -F "\"user.carol\"" rest &&
	grep -F "\"user.alice\"" rest
'

test_expect_success '-v finds nothing wrong, then a missing directory' '
	our -v >out &&
	test_must_be_empty() { test ! -s "$1"; } &&
	test_must_be_empty out &&
	hdr=$(cyrus -C "$CYR_CONF" mbpath user.erin)/cyrus.header &&
	mv "$hdr" "$hdr.away" &&
	our -v >out &&
	grep -F "'\''user.erin'\'' has a DB entry but no directory on partition '\''default'\''" out &&
	mv "$hdr.away" "$hdr"
'

test_expect_success 'options: usage 64, -m unsupported 69' '
	test_expect_code 64 our -d -u &&
	test_expect_code 64 our &&
	test_expect_code 64 our -x -u &&
	test_expect_code 64 our -Z &&
	test_expect_code 69 our -m 2>err &&
	grep "not supported" err &&
	our --help | grep "^DUMP:"
'

test_done
