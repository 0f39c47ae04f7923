#!/bin/bash
# cyrus mailbox list against the real imapd's LIST "" PATTERN as the
# admin: same names, same order, on a store the real imapd made.
test_description='mailbox list'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'

# real_list PATTERN: the names of the real imapd's LIST "" PATTERN, one a
# line, without the IMAP framing and quoting.
real_list()
{
	local q=${1//\\/\\\\}
	q=${q//\"/\\\"}
	printf 'LIST "" "%s"\n' "$q" | instance_imap_script >list.raw &&
	/usr/bin/python3 -c '
import re, sys
for line in open(sys.argv[1], encoding="utf-8"):
    m = re.match(r"\* LIST \([^)]*\) (?:NIL|\"(?:[^\"\\\\]|\\\\.)\") (.*)$",
                 line.rstrip("\n"))
    if not m:
        continue
    n = m.group(1)
    if n.startswith("\""):
        n = re.sub(r"\\\\(.)", r"\1", n[1:-1])
    print(n)
' list.raw
}

our_list() { cyrus mailbox list -C "$CYR_CONF" "$@"; }

test_expect_success 'a store made by the real imapd' '
	instance_start &&
	instance_fill &&
	instance_create_user dave "Sent Items" "&AMk-t&AOk-" a.b.c Zed aa &&
	instance_imap_script >/dev/null <<-\EOF &&
	CREATE shared.sub
	CREATE Abc
	CREATE zzz.deep.x
	EOF
	real_list "*" >names &&
	test_line_count -gt 20 names
'

for pat in '*' 'user.*' '%' 'user.%' 'user.%.%' '*a*' 'user.dave.*' \
	'%.sub' 'zzz.%' 'user.bob.My Folder' 'Nothing*' 'user.nobody'; do
	test_expect_success "LIST \"\" \"$pat\": same names, same order" '
		real_list "$pat" >expect &&
		our_list "$pat" >actual &&
		test_cmp expect actual
	'
done

test_expect_success 'a pattern matching nothing: exit 0, no output' '
	our_list "no.such.*" >actual &&
	test_line_count = 0 actual &&
	our_list --json "no.such.*" >actual.json &&
	/usr/bin/python3 -c "import json,sys; assert json.load(open(sys.argv[1])) == []" actual.json
'

test_expect_success 'no pattern lists everything, several patterns the union' '
	our_list >actual &&
	test_cmp names actual &&
	our_list "user.carol" "shared" "user.carol" >actual &&
	printf "user.carol\nshared\n" >expect &&
	test_cmp expect actual
'

test_expect_success '--json parses, has one object per mailbox' '
	our_list --json >out.json &&
	/usr/bin/python3 -m json.tool out.json >/dev/null &&
	/usr/bin/python3 - out.json names <<-\EOF
	import json, sys
	objs = json.load(open(sys.argv[1]))
	names = open(sys.argv[2]).read().splitlines()
	assert [o["name"] for o in objs] == names, (objs, names)
	bob = [o for o in objs if o["name"] == "user.bob"][0]
	assert bob["intname"] == "user.bob"
	assert bob["partition"] == "default"
	assert bob["mbtype"] == "e" and bob["flags"] == []
	assert bob["acl"]["bob"] == "lrswipkxtecdan", bob
	assert len(bob["uniqueid"]) > 10
	carol = [o for o in objs if o["name"] == "user.carol"][0]
	assert carol["partition"] == "p2"
	EOF
'

test_expect_success 'DELETED. hierarchy: listed last, as LIST does' '
	cat >extra.json <<-\EOF &&
	{"DELETED.user.dave.Old.6B06CDD2": {"uidvalidity": "1", "createdmodseq": "1", "foldermodseq": "1", "mbtype": "e", "partition": "default", "acl": {"dave": "lrswipkxtecdan"}, "uniqueid": "legacy0000000000000004"}}
	EOF
	as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$CYR_CONF" -u <extra.json &&
	for pat in "*" "%" "user.dave.*" "DELETED.*"; do
		real_list "$pat" >expect &&
		our_list "$pat" >actual &&
		test_cmp expect actual || return 1
	done &&
	grep -c "^DELETED.user.dave.Old" actual >n && echo 1 >one &&
	test_cmp one n &&
	our_list -a --json "DELETED.*" >del.json &&
	/usr/bin/python3 -m json.tool del.json >/dev/null
'

test_expect_success 'usage: --help 0; no subcommand, bad option 64' '
	cyrus mailbox --help >out &&
	grep "^usage: cyrus mailbox list" out &&
	grep "^       cyrus mailbox rename" out &&
	test_expect_code 64 cyrus mailbox 2>err &&
	test_expect_code 64 cyrus mailbox frob 2>err &&
	test_expect_code 64 cyrus mailbox list -C "$CYR_CONF" -Z 2>err
'

test_done
