#!/bin/bash
# cyradm over GSSAPI (Kerberos 5): the same scripts through the Perl cyradm
# (the oracle) and ours, with tickets of a private MIT realm, compared as in
# 6000 (stdout, stderr, exit status; Perl's " at FILE line N." and the hash
# order of ACL entries normalised).
#
# Everything Kerberos lives in the scratch directory: krb5.conf
# (KRB5_CONFIG), kdc.conf (KRB5_KDC_PROFILE), the databases of two realms,
# a KDC on a free loopback port, the keytab of imap/localhost (KRB5_KTNAME,
# read by imapd as cyrus), the ticket cache (KRB5CCNAME) and imapd's replay
# cache (KRB5RCACHEDIR).  imapd's servername is not "localhost", the name
# the clients use: ignore_acceptor_hostname lets it accept any imap/ key of
# its keytab.  dns_canonicalize_hostname is off, so the service principal
# is whatever host name the client hands to SASL.
test_description='cyradm GSSAPI login matches the Perl cyradm'
. "$(dirname "$0")/../lib/test-lib.sh"
. "$TOP/tests/lib/cyradm-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'
[ -x /usr/bin/cyradm ] || test_skip_all "Debian's cyrus-admin is not installed"
[ -x "$TOP/bin/cyradm" ] || test_skip_all 'bin/cyradm is not built'
PATH=$PATH:/usr/sbin
for t in kdb5_util kadmin.local krb5kdc kinit kdestroy klist; do
	command -v "$t" >/dev/null 2>&1 ||
		test_skip_all "no MIT Kerberos ($t; tests/setup-deps.sh installs it)"
done
ls /usr/lib/*/sasl2/libgssapiv2.so* >/dev/null 2>&1 ||
	test_skip_all 'no SASL GSSAPI plugin (libsasl2-modules-gssapi-mit)'

REALM=CYRADM.TEST
OTHER=ELSEWHERE.TEST
KRB=$TEST_SCRATCH/krb
export KRB5_CONFIG=$KRB/krb5.conf KRB5_KDC_PROFILE=$KRB/kdc.conf
export KRB5_KTNAME=FILE:$KRB/imap.keytab KRB5CCNAME=FILE:$KRB/ccache
export KRB5RCACHEDIR=$KRB/rcache
unset KRB5_TRACE

# A port free for both TCP and UDP on 127.0.0.1 (the KDC listens on both).
free_port()
{
	/usr/bin/python3 -c 'import socket
for _ in range(50):
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break'
}

KDC_PID=
kdc_stop()
{
	[ -n "$KDC_PID" ] || return 0
	kill -TERM "$KDC_PID" 2>/dev/null
	wait "$KDC_PID" 2>/dev/null
	KDC_PID=
}

# realm_setup: two realms in one KDC (ELSEWHERE.TEST trusts nothing but
# CYRADM.TEST, directly), principals, keytab; 0 once kinit works.
realm_setup()
{
	local port
	port=$(free_port) && [ -n "$port" ] || return 1
	mkdir -p "$KRB/rcache" || return 1
	cat >"$KRB5_CONFIG" <<-EOF
	[libdefaults]
		default_realm = $REALM
		dns_lookup_kdc = false
		dns_lookup_realm = false
		dns_canonicalize_hostname = false
		rdns = false
		ignore_acceptor_hostname = true
		udp_preference_limit = 1
	[realms]
		$REALM = {
			kdc = 127.0.0.1:$port
		}
		$OTHER = {
			kdc = 127.0.0.1:$port
		}
	[domain_realm]
		localhost = $REALM
		.cyradm.test = $REALM
		imapalias = $REALM
	[capaths]
		$OTHER = {
			$REALM = .
		}
	[logging]
		kdc = FILE:$KRB/kdc.log
	EOF
	cat >"$KRB5_KDC_PROFILE" <<-EOF
	[kdcdefaults]
		kdc_listen = 127.0.0.1:$port
		kdc_tcp_listen = 127.0.0.1:$port
	[realms]
		$REALM = {
			database_name = $KRB/principal
			key_stash_file = $KRB/stash
			acl_file = $KRB/kadm5.acl
			max_life = 1h
		}
		$OTHER = {
			database_name = $KRB/other
			key_stash_file = $KRB/other.stash
			acl_file = $KRB/kadm5.acl
			max_life = 1h
		}
	EOF
	: >"$KRB/kadm5.acl"
	kdb5_util create -s -r "$REALM" -P master-pw >/dev/null &&
	kdb5_util create -s -r "$OTHER" -P other-master-pw >/dev/null &&
	{
		echo "addprinc -pw cyrus-krb-pw cyrus"
		echo "addprinc -pw bob-krb-pw bob"
		echo "addprinc -randkey imap/localhost"
		echo "addprinc -randkey imap/imap.cyradm.test"
		echo "addprinc -pw cross-pw krbtgt/$REALM@$OTHER"
		echo "ktadd -k $KRB/imap.keytab imap/localhost imap/imap.cyradm.test"
	} | kadmin.local -r "$REALM" >"$KRB/kadmin.log" 2>&1 &&
	{
		echo "addprinc -pw alice-krb-pw alice"
		echo "addprinc -pw cross-pw krbtgt/$REALM@$OTHER"
	} | kadmin.local -r "$OTHER" >>"$KRB/kadmin.log" 2>&1 || return 1
	# imapd reads the keytab and writes its replay cache as cyrus.
	chown cyrus:mail "$KRB/imap.keytab" "$KRB/rcache" &&
	chmod 600 "$KRB/imap.keytab" || return 1

	krb5kdc -n -r "$REALM" -r "$OTHER" -P "$KRB/kdc.pid" \
		</dev/null >"$KRB/kdc.out" 2>&1 &
	KDC_PID=$!
	for _ in $(seq 50); do
		kill -0 "$KDC_PID" 2>/dev/null || return 1
		kinit_as cyrus 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# kinit_as NAME [kinit options]: a fresh ticket for NAME.
kinit_as()
{
	local who=$1
	shift
	kdestroy -q 2>/dev/null
	case $who in
	*@*) ;;
	*) who=$who@$REALM ;;
	esac
	echo "${who%%@*}-krb-pw" | kinit "$@" "$who" >/dev/null
}

_instance_trap_exit kdc_stop
realm_setup || {
	for f in "$KRB/kadmin.log" "$KRB/kdc.out" "$KRB/kdc.log"; do
		[ -s "$f" ] && tail -n 5 "$f" | awk -v f="$f" '{ print "# " f ": " $0 }'
	done
	test_skip_all 'cannot set up a Kerberos realm and KDC'
}

# The main port offers GSSAPI and PLAIN; a second imapd of the same store
# (its own imapd.conf, written once the first exists) offers only GSSAPI.
GSS_PORT=$(free_port)
CYR_EXTRA_CONF='delete_mode: immediate
expunge_mode: immediate
sasl_mech_list: GSSAPI PLAIN'
CYR_EXTRA_SERVICES="imapgss cmd=\"@REAL_BIN@/imapd -C $TEST_SCRATCH/gss-only.conf\" listen=\"127.0.0.1:$GSS_PORT\" prefork=0 maxchild=5"
instance_start || test_skip_all 'cannot start a private Cyrus'
sed 's/^sasl_mech_list:.*/sasl_mech_list: GSSAPI/' "$CYR_CONF" \
	>"$TEST_SCRATCH/gss-only.conf"
chmod 644 "$TEST_SCRATCH/gss-only.conf"

# Perl's readline and ours read ~/.inputrc; the rc files are off.
export HOME=$TEST_SCRATCH USER=cyrus INPUTRC=/dev/null COLUMNS=
unset LOGNAME

# A private /etc/hosts (mount namespace of one command) where the name
# imapalias is an alias of imap.cyradm.test.
printf '127.0.0.1\timap.cyradm.test imapalias\n127.0.0.1\tlocalhost\n' \
	>"$TEST_SCRATCH/hosts"
with_hosts()
{
	unshare -m --propagation private sh -c \
		'mount --bind "$0" /etc/hosts && exec "$@"' \
		"$TEST_SCRATCH/hosts" "$@"
}
with_hosts getent hosts imapalias 2>/dev/null | grep -q imap.cyradm.test &&
	test_set_prereq HOSTS

normalise()
{
	perl -e '
		my ($cmd, @block) = ("");
		sub flush { print sort @block; @block = (); }
		while (<STDIN>) {
			s/ at \/\S+\.pm line \d+\.$//;
			if (/^(\S+> )(.*)/) { flush(); $cmd = $2; print; next; }
			if ($cmd =~ /^(lam|listacl)/) { push @block, $_; next; }
			print;
		}
		flush();'
}

# Both runs start from the same store: no user mailboxes but user.bob.
reset_store()
{
	printf 'sam user.* cyrus all\ndm user.*\ncm user.bob\n' |
	setsid -w /usr/bin/cyradm --user cyrus -w "$CYR_PASS" --auth PLAIN \
		--port "$CYR_PORT" localhost >/dev/null 2>&1
	return 0
}


admin_script()
{
	cat <<-\EOF
	lm
	cm user.carol
	cm user.carol.Sent
	lm user.carol*
	sam user.carol bob lrs
	lam user.carol
	sq user.carol 1000
	lq user.carol
	lqr user.carol.Sent
	mboxcfg user.carol comment "by kerberos"
	renm user.carol.Sent user.carol.Old
	dm user.nosuch
	sam user.carol cyrus x
	dm user.carol
	lm
	EOF
}

test_expect_success 'the realm works: a ticket, a service ticket' '
	kinit_as cyrus &&
	klist >klist.out &&
	grep -q "Default principal: cyrus@$REALM" klist.out &&
	kvno imap/localhost@$REALM
'

test_expect_success 'admin with --auth GSSAPI: same output' '
	kinit_as cyrus &&
	admin_script | compare admin --auth GSSAPI --user cyrus \
		--port "$CYR_PORT" localhost &&
	grep -qx "exit 0" admin.err.c &&
	grep -q "STORAGE 0/1000" admin.out.c
'

# Without TLS, GSSAPI's security layer wraps what follows the login, as
# in the Perl one: no command goes out in clear (strace shows the bytes;
# LeakSanitizer cannot run under ptrace, hence detect_leaks=0 there).
command -v strace >/dev/null 2>&1 && test_set_prereq STRACE
test_expect_success STRACE 'after a GSSAPI login the commands go out wrapped' '
	kinit_as cyrus &&
	echo "lm user.*" >lm.in &&
	ASAN_OPTIONS=detect_leaks=0 \
	strace -f -e trace=sendto,write -s 256 -o layer.strace \
		"$TOP/bin/cyradm" --auth GSSAPI --user cyrus \
		--port "$CYR_PORT" localhost <lm.in >layer.out 2>&1 &&
	grep -q "user.bob" layer.out &&
	grep -q "AUTHENTICATE GSSAPI" layer.strace &&
	! grep "sendto(" layer.strace | grep -q "LIST"
'

test_expect_success 'admin, no --auth: GSSAPI is picked before PLAIN' '
	kinit_as cyrus &&
	admin_script | compare admin-noauth --user cyrus \
		--port "$CYR_PORT" localhost &&
	grep -qx "exit 0" admin-noauth.err.c
'

test_expect_success 'a server offering only GSSAPI, no --auth' '
	kinit_as cyrus &&
	admin_script | compare gss-only --user cyrus \
		--port "$GSS_PORT" localhost &&
	grep -qx "exit 0" gss-only.err.c &&
	grep -q "^user.carol " gss-only.out.c
'

test_expect_success 'the admin ticket with --authz bob' '
	kinit_as cyrus &&
	printf "lm\ncm user.x\nlq user.bob\n" |
		compare authz --auth GSSAPI --user cyrus --authz bob \
		--port "$CYR_PORT" localhost &&
	grep -q "^INBOX " authz.out.c
'

test_expect_success 'bob (not an admin) with his own ticket' '
	kinit_as bob &&
	compare bob --auth GSSAPI --user bob --port "$CYR_PORT" localhost <<-\EOF &&
	lm
	cm user.x
	cm INBOX.Sub
	lm
	sam INBOX anyone read
	lam INBOX
	sq INBOX 100
	lq INBOX
	dm INBOX.Sub
	dm user.bob
	lm
	EOF
	grep -qx "exit 0" bob.err.c &&
	grep -q "Permission denied" bob.err.c
'

test_expect_success 'no ticket: --auth GSSAPI fails the same way' '
	kdestroy -q 2>/dev/null
	test_must_fail klist -s &&
	echo lm | compare noticket --auth GSSAPI --user cyrus \
		--port "$CYR_PORT" localhost &&
	! grep -qx "exit 0" noticket.err.c &&
	echo lm | compare noticket-gss-only --user cyrus \
		--port "$GSS_PORT" localhost &&
	! grep -qx "exit 0" noticket-gss-only.err.c &&
	echo lm | compare noticket-gss-only-pw --user cyrus -w "$CYR_PASS" \
		--port "$GSS_PORT" localhost &&
	! grep -qx "exit 0" noticket-gss-only-pw.err.c
'

test_expect_success 'no ticket, GSSAPI PLAIN offered, -w: a password login' '
	kdestroy -q 2>/dev/null
	echo lm | compare noticket-pw --user cyrus -w "$CYR_PASS" \
		--port "$CYR_PORT" localhost &&
	grep -qx "exit 0" noticket-pw.err.c &&
	echo lm | compare noticket-badpw --user cyrus -w wrong \
		--port "$CYR_PORT" localhost &&
	! grep -qx "exit 0" noticket-badpw.err.c
'

# Both (imclient_authenticate, and ours) drop a mechanism that fails in
# sasl_client_start and try the next (PLAIN: SASL prompts "Password: " on
# stdout), before the LOGIN fallback ("IMAP Password: " on stderr).
test_expect_success 'no ticket, GSSAPI PLAIN offered: PLAIN with the SASL prompt' '
	kdestroy -q 2>/dev/null
	printf "%s\nlm\n" "$CYR_PASS" | compare noticket-prompt --user cyrus \
		--port "$CYR_PORT" localhost &&
	grep -qx "exit 0" noticket-prompt.err.c
'

test_expect_success 'the Perl one there: SASL PLAIN, its prompt on stdout' '
	grep -q "^Password: localhost> " noticket-prompt.out.p &&
	grep -qx "exit 0" noticket-prompt.err.p
'

test_expect_success 'an expired ticket fails the same way' '
	kinit_as cyrus -l 2s &&
	i=0 &&
	while klist -s && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done &&
	test_must_fail klist -s &&
	echo lm | compare expired --auth GSSAPI --user cyrus \
		--port "$CYR_PORT" localhost &&
	! grep -qx "exit 0" expired.err.c
'

test_expect_success 'a user of another realm is refused the same way' '
	kinit_as alice@$OTHER &&
	kvno imap/localhost@$REALM &&
	echo lm | compare otherrealm --auth GSSAPI --user alice \
		--port "$CYR_PORT" localhost &&
	! grep -qx "exit 0" otherrealm.err.c
'

# imclient names the server by its canonical name (getaddrinfo
# AI_CANONNAME), to SASL and in the prompt: imap/imap.cyradm.test, which is
# in the realm (imap/imapalias, the name as typed, is not); ours too.
test_expect_success HOSTS 'a host alias: the canonical name makes the principal' '
	kinit_as cyrus &&
	echo lm | RUN=with_hosts compare alias --auth GSSAPI --user cyrus \
		--port "$CYR_PORT" imapalias &&
	grep -qx "exit 0" alias.err.c
'

test_expect_success HOSTS 'the Perl one there: logged in, imap/imap.cyradm.test' '
	grep -qx "exit 0" alias.err.p &&
	klist >klist.alias &&
	grep -q "imap/imap.cyradm.test@$REALM" klist.alias &&
	! grep -q "imap/imapalias@" klist.alias
'

test_done
