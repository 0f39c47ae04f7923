#!/bin/bash
# cyrus mbpath against the real mbpath, for every mailbox of a store made
# by the real imapd (uuid layout, a legacy mailbox, two partitions).
test_description='mbpath'
. "$(dirname "$0")/../lib/test-lib.sh"
. "$TOP/tests/lib/instance.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'

real() { as_cyrus "$REAL_BIN/mbpath" -C "$CYR_CONF" "$@"; }
our() { cyrus -C "$CYR_CONF" mbpath "$@"; }

test_expect_success 'a store made by the real imapd' '
	instance_start &&
	instance_fill &&
	instance_create_user dave "Sent Items" "&AMk-t&AOk-" &&
	echo "CREATE shared.sub" | instance_imap_script >/dev/null &&
	as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$CYR_CONF" -d |
		sed -n "s/^\"\([^\"]*\)\": {.*\"mbtype\": \"e\".*/\1/p" >names &&
	test_line_count -gt 10 names
'

for opt in "" -a -A -M -m -S -U -j; do
	test_expect_success "mbpath $opt agrees for every mailbox" '
		while read -r name; do
			real $opt "$name" >>expect.$$ || return 1
			our $opt "$name" >>actual.$$ || return 1
		done <names &&
		test_cmp expect.$$ actual.$$ &&
		rm -f expect.$$ actual.$$
	'
done

test_expect_success 'several arguments, -u, -p' '
	mapfile -t all <names &&
	real "${all[@]}" >expect &&
	our "${all[@]}" >actual &&
	test_cmp expect actual &&
	real -u alice >expect && our -u alice >actual && test_cmp expect actual &&
	real -a -u bob >expect && our -a -u bob >actual && test_cmp expect actual &&
	dir=$(our user.bob) &&
	real -p "$dir" >expect && our -p "$dir" >actual && test_cmp expect actual
'

test_expect_success 'legacy (by-name) entries, a deleted one, a non-letter user' '
	cat >legacy.json <<-\EOF &&
	{"legacyshared": {"uidvalidity": "1", "createdmodseq": "1", "foldermodseq": "1", "mbtype": "el", "partition": "default", "acl": {"anyone": "lrs"}, "uniqueid": "legacy0000000000000001"},
	"user.lena": {"uidvalidity": "1", "createdmodseq": "1", "foldermodseq": "1", "mbtype": "el", "partition": "p2", "acl": {"lena": "lrswipkxtecdan"}, "uniqueid": "legacy0000000000000002"},
	"user.lena.Sub.x^y": {"uidvalidity": "1", "createdmodseq": "1", "foldermodseq": "1", "mbtype": "el", "partition": "p2", "acl": {"lena": "lrswipkxtecdan"}, "uniqueid": "legacy0000000000000003"},
	"DELETED.user.lena.Old.6B06CDD2": {"uidvalidity": "1", "createdmodseq": "1", "foldermodseq": "1", "mbtype": "el", "partition": "default", "acl": {}, "uniqueid": "legacy0000000000000004"},
	"user.1num": {"uidvalidity": "1", "createdmodseq": "1", "foldermodseq": "1", "mbtype": "e", "partition": "default", "acl": {}, "uniqueid": "q1234567890"}}
	EOF
	as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$CYR_CONF" -u <legacy.json &&
	for n in legacyshared user.lena user.lena.Sub.x^y \
		DELETED.user.lena.Old.6B06CDD2 user.1num; do
		for opt in -a -j; do
			real $opt "$n" >expect &&
			our $opt "$n" >actual &&
			test_cmp expect actual || return 1
		done
	done &&
	our -a -u lena >actual && real -a -u lena >expect && test_cmp expect actual &&
	our legacyshared >actual &&
	grep "^$CYR_PART/l/legacyshared\$" actual
'

test_expect_success 'unknown mailbox: same message, exit 65' '
	test_expect_code 65 real user.nobody 2>expect &&
	test_expect_code 65 our user.nobody 2>actual &&
	test_cmp expect actual &&
	test_expect_code 65 our user.nobody user.alice.Nope 2>actual &&
	test_expect_code 0 our user.nobody user.alice >out 2>/dev/null &&
	test_line_count = 1 out
'

test_expect_success 'usage errors exit 64' '
	test_expect_code 64 our -a -D user.alice 2>err &&
	grep "Duplicate selectors given" err &&
	test_expect_code 64 our -u -p x 2>err &&
	grep "Multiple modes given" err &&
	test_expect_code 64 our -Z
'

test_done
