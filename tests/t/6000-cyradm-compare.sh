#!/bin/bash
# cyradm: the same scripts through the Perl cyradm (Debian's cyrus-admin,
# the oracle) and ours against one private Cyrus; stdout, stderr and exit
# status must match after normalising only what legitimately differs:
# Perl's " at FILE line N." suffixes, the random order of Perl hashes
# (aliases in help, ACL entries), and values the server makes up per
# mailbox (uniqueid, lastupdate, foldermodseq, annotsize), and the free
# space of the partitions that "info" shows server-wide (freespace, most,
# total: the disk's free KiB, different for the two runs whenever anything
# else on the machine wrote in between -- a build or other tests).
test_description='cyradm matches the Perl cyradm'
. "$(dirname "$0")/../lib/test-lib.sh"
. "$TOP/tests/lib/cyradm-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'
[ -x /usr/bin/cyradm ] || test_skip_all "Debian's cyrus-admin is not installed"
[ -x "$TOP/bin/cyradm" ] || test_skip_all 'bin/cyradm is not built'

# Every mechanism that works against sasldb: with no --auth both pick
# the strongest the server offers (SCRAM-SHA-256).
CYR_EXTRA_CONF='delete_mode: immediate
expunge_mode: immediate
sasl_mech_list: PLAIN LOGIN SCRAM-SHA-1 SCRAM-SHA-256 DIGEST-MD5 CRAM-MD5'
instance_start || test_skip_all 'cannot start a private Cyrus'
instance_add_sasl_user bob bobpw

# Perl's readline and our readline read ~/.inputrc; the rc files are off.
export HOME=$TEST_SCRATCH USER=cyrus INPUTRC=/dev/null COLUMNS=
unset LOGNAME

normalise()
{
	perl -e '
		my ($cmd, @block) = ("");
		sub flush {
			@block = sort @block if $cmd =~ /^(lam|listacl)/;
			print @block; @block = ();
		}
		while (<STDIN>) {
			s/ at \/\S+\.pm line \d+\.$//;
			s/(uniqueid|lastupdate|foldermodseq|annotsize|size|synccrcs): .*/$1: X/;
			s/^(    (?:freespace|most|total)): .*/$1: X/;
			if (/^([a-z?]+)((?:, [a-z?]+)+)( +\S.*)$/s) {
				my @a = sort split(/, /, substr($2, 2));
				$_ = join(", ", $1, @a) . $3;
			}
			if (/^(\S+> )(.*)/) { flush(); $cmd = $2; print; next; }
			if (/^  \S+ \S+$/ && $cmd =~ /^(lam|listacl)/) { push @block, $_; next; }
			if ($cmd =~ /^(lam|listacl)/ && !/^\S+:$/) { push @block, $_; next; }
			flush() if /^\S+:$/;
			print;
		}
		flush();'
}

# Deletes every user mailbox, so that both runs start from the same store.
reset_store()
{
	printf 'sam user.* cyrus all\ndm user.*\nsetinfo motd none\n' |
	setsid -w /usr/bin/cyradm --user cyrus -w "$CYR_PASS" --port "$CYR_PORT" \
		localhost >/dev/null 2>&1
	return 0
}


admin()
{
	echo --user cyrus -w "$CYR_PASS" --port "$CYR_PORT" localhost
}

test_expect_success 'mailboxes: cm, lm, dm, renm and their aliases' '
	compare mailboxes $(admin) <<-\EOF
	lm
	cm user.alice
	create user.alice.Sent
	createmailbox user.alice.Drafts
	cm "user.alice.with space"
	cm -partition p2 user.alice.Part
	cm user.alice.Part2 p2
	cm user.alice
	lm
	listmailbox user.alice.%
	lm user.%
	lm nosuch*
	lm -s
	lm a b c
	lm -x
	renm user.alice.Sent user.alice.Sent2
	rename user.alice.Drafts user.alice.Drafts2
	renamemailbox user.nosuch user.nosuch2
	renm --partition p2 user.alice.Sent2 user.alice.Sent3
	renm only-one
	lm user.alice.*
	dm user.nosuch
	dm user.alice
	sam user.alice cyrus x
	delete user.alice.Sent3
	deletemailbox user.alice.Drafts2
	dm
	dm a b
	dm -x
	sam user.alice.* cyrus all
	dm user.alice.*
	lm
	EOF
'

test_expect_success 'ACLs: sam, lam, dam, shorthands, wildcards' '
	compare acls $(admin) <<-\EOF
	cm user.carol
	cm user.carol.a
	cm user.carol.b
	lam user.carol
	sam user.carol anyone read
	sam user.carol fred post bob append
	lam user.carol
	setacl user.carol fred write
	setaclmailbox user.carol fred delete
	listacl user.carol
	sam user.carol fred all
	listaclmailbox user.carol
	sam user.carol fred none
	lam user.carol
	sam user.carol.* bob lrs
	lam user.carol.*
	dam user.carol.* bob
	lam user.carol.*
	dam user.carol anyone
	deleteacl user.carol bob
	deleteaclmailbox user.carol nobody
	lam user.carol
	lam user.nosuch
	sam user.nosuch bob read
	dam user.nosuch bob
	sam user.carol
	sam user.carol bob
	dam user.carol
	lam
	lam a b
	EOF
'

test_expect_success 'quotas: sq, lq, lqr and their aliases' '
	compare quotas $(admin) <<-\EOF
	cm user.dave
	cm user.dave.Sub
	lq user.dave
	lqr user.dave
	sq user.dave 1000
	lq user.dave
	listquota user.dave
	lqr user.dave.Sub
	lqm user.dave.Sub
	listquotaroot user.dave
	setquota user.dave STORAGE 3
	lq user.dave
	sq user.dave MESSAGE 30
	lq user.dave
	sq user.dave STORAGE x
	sq user.dave bad(atom 3
	sq user.dave a b c
	sq user.dave -1
	sq user.dave none
	lq user.dave
	lq user.nosuch
	lqr user.nosuch
	lq
	lqr a b
	EOF
'

test_expect_success 'metadata: info, getmetadata, mboxcfg, setmetadata, setinfo' '
	compare metadata $(admin) <<-\EOF
	cm user.erin
	info user.erin
	mboxcfg user.erin comment "hello world"
	mboxconfig user.erin expire 30
	info user.erin
	getmetadata user.erin
	getmd user.erin comment
	setmd user.erin comment bye
	setmetadata user.erin /shared/comment shared-bye
	info user.erin
	mboxcfg user.erin comment none
	mboxcfg user.erin bogus 1
	setinfo motd "hi there"
	info
	setinfo motd none
	setinfo motd
	info user.nosuch
	EOF
'

test_expect_success 'session: help, version, server, auth, disc, cd, subscribe, exit' '
	compare session $(admin) <<-\EOF
	help
	?
	help lm
	help exit quit ? nosuch
	help cm create createmailbox
	version
	ver
	ver extra
	server
	servername
	auth
	login
	cm user.frank
	sub user.frank
	lm -s
	subscribe user.nosuch
	unsub user.frank
	unsubscribe user.frank
	reconstruct user.frank
	reconstruct -r user.frank
	reconstruct -x user.frank
	cd /
	chdir /nonexistent
	cd
	disc
	lm
	cm x
	server
	disconnect
	echo hello | tr a-z A-Z
	echo a; echo b
	lm 2>&1
	echo $HOME "quoted  words"
	exit 3
	EOF
'

test_expect_success 'unconnected: every command says so' '
	compare unconnected --norc <<-\EOF
	lm
	cm x
	dm x
	renm x y
	lam x
	sam x a b
	dam x a
	lq x
	lqr x
	sq x 1
	info
	getmd
	mboxcfg x comment y
	setmd x comment y
	setinfo motd y
	sub x
	unsub x
	reconstruct x
	xfer x y
	ver
	server
	disc
	auth
	exit
	EOF
'

test_expect_success 'command line: --help, --version, bad options, usage' '
	: | compare help --help &&
	: | compare version --version &&
	: | compare v -v &&
	echo lm | compare badopt --bogus $(admin) &&
	: | compare both --server localhost foo &&
	: | compare toomany no.such.host.invalid 143 extra
'

test_expect_success 'errors: wrong password, refused, unknown host, bad user' '
	echo lm | compare wrongpw --user cyrus -w wrong --port "$CYR_PORT" localhost &&
	echo lm | compare wrongpw-plain --user cyrus -w wrong --auth PLAIN \
		--port "$CYR_PORT" localhost &&
	echo lm | compare refused --user cyrus -w x --port 1 localhost &&
	echo lm | compare unknown --user cyrus -w x no.such.host.invalid &&
	echo lm | compare nouser --user nosuchuser -w x --port "$CYR_PORT" localhost
'

test_expect_success 'authentication: mechanisms, authz, a non-admin user' '
	echo lm | compare plain --user cyrus -w "$CYR_PASS" --auth PLAIN \
		--port "$CYR_PORT" localhost &&
	echo lm | compare login --user cyrus -w "$CYR_PASS" --auth login \
		--port "$CYR_PORT" localhost &&
	for m in SCRAM-SHA-256 SCRAM-SHA-1 DIGEST-MD5 CRAM-MD5; do
		echo lm | compare "$m" --user cyrus -w "$CYR_PASS" --auth "$m" \
			--port "$CYR_PORT" localhost &&
		echo lm | compare "$m-wrong" --user cyrus -w wrong --auth "$m" \
			--port "$CYR_PORT" localhost || return 1
	done &&
	grep -qx "exit 0" SCRAM-SHA-256.err.c &&
	! grep -qx "exit 0" SCRAM-SHA-256-wrong.err.c &&
	echo lm | compare authz --user cyrus --authz bob -w "$CYR_PASS" \
		--port "$CYR_PORT" localhost &&
	printf "cm user.x\nlm\n" | compare bob --user bob -w bobpw \
		--port "$CYR_PORT" localhost
'

# Over quota is what the server says when a limit is hit; cyradm cannot
# APPEND, but CREATE counts against X-NUM-FOLDERS and SETMETADATA against
# X-ANNOTATION-STORAGE.  (Only one resource a root at a time: the Perl one
# prints several in its hash order.)
test_expect_success 'quota exceeded: folders and annotation storage' '
	V=$(printf "%03000d" 0) &&
	compare overquota $(admin) <<-EOF
	cm user.quinn
	sq user.quinn X-NUM-FOLDERS 2
	cm user.quinn.a
	cm user.quinn.b
	lq user.quinn
	lqr user.quinn.a
	sq user.quinn X-ANNOTATION-STORAGE 1
	mboxcfg user.quinn comment $V
	setmd user.quinn.a comment $V
	mboxcfg user.quinn comment small
	lq user.quinn
	sq user.quinn none
	cm user.quinn.b
	lm user.quinn*
	EOF
'

test_expect_success 'permission denied: a user who is not an admin' '
	instance_imap_script <<-\EOF &&
	CREATE shared.locked
	SETACL shared.locked bob lr
	CREATE user.bob
	EOF
	compare denied --user bob -w bobpw --port "$CYR_PORT" localhost <<-\EOF
	lm shared*
	lam shared.locked
	sam shared.locked bob all
	dam shared.locked anyone
	cm shared.mine
	cm shared.locked.sub
	dm shared.locked
	renm shared.locked shared.moved
	sq shared.locked 100
	sq user.bob 100
	lq user.bob
	reconstruct shared.locked
	setinfo motd hello
	mboxcfg shared.locked comment hi
	xfer shared.locked otherserver
	sam user.bob anyone read
	lam user.bob
	sam user.bob anyone none
	EOF
'

# A long script: ours spreads it over more connections (lanes) once the
# pipelining window fills; the output must not change. Keyed lines (cm,
# sam, lq, lqr, sub, dam, dm) interleave with lm, a lam and errors.
long_script()
{
	awk -v q="'" 'BEGIN {
		for (i = 0; i < 60; i++) {
			u = sprintf("user.ln%03d", i)
			print "cm " u; print "sam " u " cyrus x"; print "cm " u ".Sub"
			print "sam " u ".Sub bob lrs"; print "sub " u ".Sub"
			print "lq " u; print "lqr " u ".Sub"
			print "dam " u ".Sub bob"
			if (i % 20 == 10) print "lm user.ln01%"
			if (i == 30) print "lam user.ln005"
		}
		print "cm user.ln007"; print "dm user.nosuch"
		print "lqr user.ln005.Sub"; print "lam user.ln003.Sub"
		for (i = 0; i < 60; i++) print "dm user.ln" sprintf("%03d", i)
		print "lm user.ln*"
	}'
}

test_expect_success 'a long script over several connections: same output' '
	long_script >script.long &&
	test $(wc -l <script.long) -gt 450 &&
	CYRADM_LANES=4 compare long $(admin) <script.long &&
	grep -q "^localhost> dm user.ln059$" long.out.c &&
	reset_store &&
	CYRADM_LANES=4 CYRADM_LANES_REPORT=$PWD/lanes.n \
		"$TOP/bin/cyradm" $(admin) <script.long >/dev/null 2>&1 &&
	test $(cat lanes.n) -gt 100 &&
	reset_store &&
	CYRADM_LANES=1 CYRADM_LANES_REPORT=$PWD/lanes.1 \
		"$TOP/bin/cyradm" $(admin) <script.long >/dev/null 2>&1 &&
	test $(cat lanes.1) = 0
'

test_expect_success 'password from the first line of stdin' '
	printf "%s\nlm\n" "$CYR_PASS" |
		compare stdinpw --user cyrus --port "$CYR_PORT" localhost
'

test_done
