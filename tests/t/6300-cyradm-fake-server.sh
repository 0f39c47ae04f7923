#!/bin/bash
# cyradm against a fake IMAP server (python3, written here): the server
# going away in the middle of a command, and Murder referrals -- a fake
# frontend that answers NO [REFERRAL imap://...] and sends both cyradms on
# to the real private Cyrus, the backend.
#
# The Perl one is compared where it behaves; where it does not, ours is
# checked alone and the Perl one's output is kept as the record:
#  - when the server closes the connection it never prints its
#    "Connection to server lost." (imclient does not call the EOF callback
#    while a command waits), prints "createmailbox: " with no reason, and
#    dies of SIGPIPE (exit 141) at the next command; ours says it lost the
#    server and why, goes on unconnected and exits as told;
#  - after a referral, a create that fails on the backend prints a stale
#    error ("createmailbox: " and whatever failed before), a rename sends
#    "RENAME box box newbox" (the new name as a partition), and mboxconfig
#    asks for "/shared/shared/comment"; ours reports the backend's answer,
#    renames, and sets the comment.
test_description='cyradm: connection lost, Murder referrals'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'
[ -x /usr/bin/cyradm ] || test_skip_all "Debian's cyrus-admin is not installed"
[ -x "$TOP/bin/cyradm" ] || test_skip_all 'bin/cyradm is not built'

CYR_EXTRA_CONF='delete_mode: immediate
expunge_mode: immediate'
instance_start || test_skip_all 'cannot start a private Cyrus'

export HOME=$TEST_SCRATCH USER=cyrus INPUTRC=/dev/null COLUMNS=
unset LOGNAME

cat >fake.py <<'PY'
# fake.py PORTFILE MODE [ARG]: a tiny IMAP server for cyradm's error paths.
# It greets, answers CAPABILITY, LOGIN, AUTHENTICATE PLAIN and RLIST, then
# per MODE:
#   close CMD        closes the connection when a command CMD (e.g. CREATE,
#                    or * for any other) arrives
#   bye CMD          sends "* BYE ..." then closes at CMD
#   partial CMD      sends half an untagged response to CMD, then closes
#   referral URLBASE answers CREATE/DELETE/SETACL/... with
#                    NO [REFERRAL URLBASE/MAILBOX]
# Serves connections one after another until killed.
import socket, sys
portfile, mode = sys.argv[1], sys.argv[2]
arg = sys.argv[3] if len(sys.argv) > 3 else "*"
caps = "IMAP4rev1 LITERAL+ ID"
if mode == "referral":
    caps += " MAILBOX-REFERRALS METADATA"
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(5)
with open(portfile + ".tmp", "w") as f:
    f.write("%d\n" % srv.getsockname()[1])
import os
os.rename(portfile + ".tmp", portfile)
log = open(portfile + ".log", "a")

def words(line):
    out, i = [], 0
    while i < len(line):
        if line[i] == " ":
            i += 1
            continue
        if line[i] == '"':
            j = line.index('"', i + 1)
            out.append(line[i + 1:j])
            i = j + 1
        else:
            j = line.find(" ", i)
            j = len(line) if j < 0 else j
            out.append(line[i:j])
            i = j
    return out

def serve(c):
    f = c.makefile("rb")
    def send(s):
        c.sendall(s.encode() + b"\r\n")
    send("* OK [CAPABILITY %s] fake server ready" % caps)
    while True:
        raw = f.readline()
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        # Literals: {N+} or {N}
        while line.endswith("}") and "{" in line:
            n = line[line.rindex("{") + 1:-1]
            sync = not n.endswith("+")
            n = int(n.rstrip("+"))
            if sync:
                send("+ go ahead")
            data = f.read(n).decode("utf-8", "replace")
            rest = f.readline().decode("utf-8", "replace").rstrip("\r\n")
            line = line[:line.rindex("{")] + '"' + data + '"' + rest
        log.write(line + "\n")
        log.flush()
        w = words(line)
        if len(w) < 2:
            send("* BAD no tag")
            continue
        tag, cmd, args = w[0], w[1].upper(), w[2:]
        if cmd == "CAPABILITY":
            send("* CAPABILITY " + caps)
            send(tag + " OK Completed")
        elif cmd == "LOGIN":
            send(tag + " OK [CAPABILITY %s] User logged in" % caps)
        elif cmd == "LOGOUT":
            send("* BYE LOGOUT received")
            send(tag + " OK Completed")
            return
        elif mode == "partial" and cmd == arg:
            # Half a response, then gone.
            c.sendall(b'* LIST (\\HasNoChildren) "." "user.half')
            return
        elif cmd in ("RLIST", "LIST", "RLSUB", "LSUB", "NOOP", "ID"):
            send(tag + " OK Completed")
        elif mode in ("close", "bye") and (arg == "*" or arg == cmd):
            if mode == "bye":
                send("* BYE Fatal error: server shutting down")
            return
        elif mode == "referral" and args:
            box = args[0]
            if cmd == "RENAME" and len(args) > 1:
                send("%s NO [REFERRAL %s/%s %s/%s] Remote mailbox"
                     % (tag, arg, box, arg, args[1]))
            else:
                send("%s NO [REFERRAL %s/%s] Remote mailbox"
                     % (tag, arg, box))
        else:
            send(tag + " NO fake server does not do " + cmd)

while True:
    c, _ = srv.accept()
    try:
        serve(c)
    except (OSError, ValueError):
        pass
    c.close()
PY

# fake_start MODE [ARG]: a fake server in the background; FAKE_PORT,
# FAKE_PID; its log of commands received is fake.port.log.
fake_start()
{
	rm -f fake.port fake.port.log
	"$_CYR_PY" fake.py "$TEST_SCRATCH/fake.port" "$@" &
	FAKE_PID=$!
	local i=0
	while [ ! -s fake.port ] && [ $i -lt 100 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	FAKE_PORT=$(cat fake.port) && [ -n "$FAKE_PORT" ]
}

fake_stop()
{
	[ -n "${FAKE_PID:-}" ] && kill "$FAKE_PID" 2>/dev/null
	wait "$FAKE_PID" 2>/dev/null
	FAKE_PID=
	return 0
}

# run NAME PROG ARGS... < script: NAME.out, NAME.err + "exit N".
run()
{
	local name=$1 prog=$2
	shift 2
	setsid -w timeout 60 "$prog" "$@" >"$name.out" 2>"$name.err"
	echo "exit $?" >>"$name.err"
}

# compare NAME ARGS... < script: the Perl one and ours, the same.
compare()
{
	local name=$1
	shift
	cat >"$name.in"
	run "$name.p" /usr/bin/cyradm "$@" <"$name.in"
	run "$name.c" "$TOP/bin/cyradm" "$@" <"$name.in"
	test_cmp "$name.p.out" "$name.c.out" &&
	test_cmp "$name.p.err" "$name.c.err"
}

# The real backend's mailboxes, as the admin sees them.
backend_lm()
{
	echo "lm ref*" | "$TOP/bin/cyradm" --user cyrus -w "$CYR_PASS" \
		--port "$CYR_PORT" localhost
}

# Removes what a run left on the backend.
backend_clean()
{
	local m
	for m in ref3.a ref3.b ref3; do
		printf 'SETACL %s cyrus x\nDELETE %s\n' "$m" "$m"
	done | instance_imap_script -k >/dev/null 2>&1
	return 0
}

test_expect_success 'server closes the connection at a command' '
	fake_start close CREATE &&
	test_when_finished fake_stop &&
	printf "lm\ncm foo\nlm\ncm bar\nexit 2\n" >close.in &&
	run close.p /usr/bin/cyradm --user cyrus -w x --port "$FAKE_PORT" \
		localhost <close.in &&
	run close.c "$TOP/bin/cyradm" --user cyrus -w x --port "$FAKE_PORT" \
		localhost <close.in &&
	printf "createmailbox: \n\nexit 141\n" >expect &&
	test_cmp expect close.p.err &&
	cat >expect <<-\EOF &&

	Connection to server lost.
	createmailbox: connection closed by server
	listmailbox: no connection to server
	createmailbox: no connection to server
	exit 2
	EOF
	test_cmp expect close.c.err &&
	printf "%s\n" "localhost> lm" "localhost> cm foo" "cyradm> lm" \
		"cyradm> cm bar" "cyradm> exit 2" >expect &&
	test_cmp expect close.c.out
'

test_expect_success 'server says BYE, then closes' '
	fake_start bye SETACL &&
	test_when_finished fake_stop &&
	printf "sam x bob read\nver\n" | run bye.c "$TOP/bin/cyradm" \
		--user cyrus -w x --port "$FAKE_PORT" localhost &&
	cat >expect <<-\EOF &&

	Connection to server lost.
	version: no connection to server
	exit 0
	EOF
	test_cmp expect bye.c.err
'

test_expect_success 'server closes in the middle of a response' '
	fake_start partial LIST &&
	test_when_finished fake_stop &&
	printf "lm\nlm\nexit 3\n" | run partial.c "$TOP/bin/cyradm" \
		--user cyrus -w x --port "$FAKE_PORT" localhost &&
	cat >expect <<-\EOF &&

	Connection to server lost.
	listmailbox: no connection to server
	exit 3
	EOF
	test_cmp expect partial.c.err
'

test_expect_success 'simple commands lost at a BYE say why' '
	fake_start bye CREATE &&
	test_when_finished fake_stop &&
	echo "cm foo" | run byecm.c "$TOP/bin/cyradm" \
		--user cyrus -w x --port "$FAKE_PORT" localhost &&
	grep -qx "createmailbox: connection closed by server: Fatal error: server shutting down" byecm.c.err
'

admin_fake()
{
	echo --user cyrus -w "$CYR_PASS" --port "$FAKE_PORT" localhost
}

test_expect_success 'referrals followed to the backend, as Perl' '
	fake_start referral "imap://cyrus;AUTH=*@localhost:$CYR_PORT" &&
	test_when_finished fake_stop &&
	compare ref $(admin_fake) <<-\EOF &&
	cm ref
	cm ref.a
	sq ref 100
	lq ref
	lqr ref.a
	sam ref.a bob read
	lam ref.a
	dam ref.a bob
	sub ref.a
	unsub ref.a
	reconstruct ref.a
	lm
	sam ref.a cyrus all
	dm ref.a
	sq ref none
	sam ref cyrus all
	dm ref
	EOF
	grep -q "^[0-9]* CREATE ref$" fake.port.log &&
	backend_lm >lm.out &&
	printf "localhost> lm ref*\nlocalhost> " >expect &&
	test_cmp expect lm.out
'

test_expect_success 'referral: the backend in the URL, with and without user' '
	fake_start referral "imap://localhost:$CYR_PORT" &&
	test_when_finished fake_stop &&
	printf "cm ref2\nsq ref2 7\n" | run url.c "$TOP/bin/cyradm" $(admin_fake) &&
	echo "exit 0" >expect &&
	test_cmp expect url.c.err &&
	echo "lq ref2" | "$TOP/bin/cyradm" --user cyrus -w "$CYR_PASS" \
		--port "$CYR_PORT" localhost >lq.out &&
	grep -q "STORAGE 0/7" lq.out &&
	printf "sam ref2 cyrus all\ndm ref2\n" | run url2.c \
		"$TOP/bin/cyradm" $(admin_fake) &&
	test_cmp expect url2.c.err
'

test_expect_success 'referral: rename and a failing create (Perl gets them wrong)' '
	fake_start referral "imap://cyrus@localhost:$CYR_PORT" &&
	test_when_finished fake_stop &&
	printf "%s\n" "cm ref3" "cm ref3.a" "renm ref3.a ref3.b" \
		"cm ref3.b" "sam ref3.b cyrus all" "dm ref3.b" \
		"sam ref3 cyrus all" "dm ref3" "cm user.nosuch.x" >rn.in &&
	run rn.p /usr/bin/cyradm $(admin_fake) <rn.in &&
	grep -qx "renamemailbox: " rn.p.err &&
	backend_clean &&
	run rn.c "$TOP/bin/cyradm" $(admin_fake) <rn.in &&
	cat >expect <<-\EOF &&
	createmailbox: Mailbox already exists
	createmailbox: Permission denied
	exit 0
	EOF
	test_cmp expect rn.c.err &&
	backend_lm >lm.out &&
	printf "localhost> lm ref*\nlocalhost> " >expect &&
	test_cmp expect lm.out
'

test_expect_success 'referral: mboxcfg, setmd (Perl sends /shared/shared/...)' '
	fake_start referral "imap://cyrus;AUTH=*@localhost:$CYR_PORT" &&
	test_when_finished fake_stop &&
	printf "%s\n" "cm user.ref" "mboxcfg user.ref comment hi" >md.in &&
	run md.p /usr/bin/cyradm $(admin_fake) <md.in &&
	grep -q "^mboxconfig: " md.p.err &&
	printf "SETACL user.ref cyrus x\nDELETE user.ref\n" |
		instance_imap_script >/dev/null &&
	printf "%s\n" "cm user.ref" "mboxcfg user.ref comment hi" \
		"setmd user.ref.nosuch comment x" >md.in &&
	run md.c "$TOP/bin/cyradm" $(admin_fake) <md.in &&
	printf "setmetadata: Mailbox does not exist\nexit 0\n" >expect &&
	test_cmp expect md.c.err &&
	echo "getmd user.ref" | "$TOP/bin/cyradm" --user cyrus -w "$CYR_PASS" \
		--port "$CYR_PORT" localhost >md.out &&
	grep -qx "    comment: hi" md.out &&
	printf "SETACL user.ref cyrus x\nDELETE user.ref\n" |
		instance_imap_script >/dev/null
'

test_expect_success 'referral to a server that is not there' '
	fake_start referral "imap://127.0.0.1:1" &&
	test_when_finished fake_stop &&
	echo "cm refx" | run nothere.c "$TOP/bin/cyradm" $(admin_fake) &&
	cat >expect <<-EOF &&
	cyradm: cannot connect to 127.0.0.1:1
	createmailbox: [REFERRAL imap://127.0.0.1:1/refx] Remote mailbox
	exit 0
	EOF
	test_cmp expect nothere.c.err
'

test_done
