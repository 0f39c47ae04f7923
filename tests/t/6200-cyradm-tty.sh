#!/bin/bash
# cyradm at a terminal: driven through a pseudo-terminal (python3's pty
# module, no other tool needed), the way a sysadmin types: the prompt,
# readline editing, history, completion of command and mailbox names,
# Ctrl-D, and the password prompt that does not echo.
test_description='cyradm interactive, under a pty'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'
[ -x "$TOP/bin/cyradm" ] || test_skip_all 'bin/cyradm is not built'
"$_CYR_PY" -c 'import pty' 2>/dev/null || test_skip_all 'no python3 pty'

CYR_EXTRA_CONF='delete_mode: immediate'
instance_start || test_skip_all 'cannot start a private Cyrus'

export HOME=$TEST_SCRATCH USER=cyrus INPUTRC=/dev/null COLUMNS=
unset LOGNAME

# drive TRANSCRIPT PROG ARGS... < scenario: runs PROG on a pty.  Scenario
# lines: "send TEXT" (Python escapes: \r, \t, \x04 ...), "expect REGEX"
# (what the terminal shows next, within 10 s; escapes too), "wait" (read
# to the end, print "exit N").  A missed expect fails with what was seen.
cat >drive.py <<'PY'
import codecs, os, pty, re, select, sys, time
log = open(sys.argv[1], "wb")
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "xterm"
    os.execvp(sys.argv[2], sys.argv[2:])
buf = b""
def esc(s):
    return codecs.decode(s, "unicode_escape").encode("latin-1")
def read(timeout):
    global buf
    r, _, _ = select.select([fd], [], [], max(timeout, 0))
    if not r:
        return
    try:
        d = os.read(fd, 4096)
    except OSError:
        d = b""
    if not d:
        raise EOFError
    buf += d
    log.write(d)
    log.flush()
def fail(msg):
    sys.stderr.write("drive: %s; seen:\n%r\n" % (msg, buf))
    try:
        os.kill(pid, 9)
    except OSError:
        pass
    sys.exit(1)
for line in sys.stdin.read().splitlines():
    op, _, arg = line.strip().partition(" ")
    if not op or op.startswith("#"):
        continue
    if op == "send":
        time.sleep(0.05)
        os.write(fd, esc(arg))
    elif op == "expect":
        rx = re.compile(esc(arg), re.S)
        end = time.time() + 10
        while not rx.search(buf):
            if time.time() > end:
                fail("timeout waiting for %r" % arg)
            try:
                read(end - time.time())
            except EOFError:
                fail("end of output waiting for %r" % arg)
        buf = buf[rx.search(buf).end():]
    elif op == "wait":
        end = time.time() + 10
        try:
            while time.time() < end:
                read(0.2)
        except EOFError:
            pass
        _, st = os.waitpid(pid, 0)
        print("exit %d" % (os.WEXITSTATUS(st) if os.WIFEXITED(st)
                           else 128 + os.WTERMSIG(st)))
        sys.exit(0)
    else:
        fail("bad scenario line %r" % line)
fail("scenario without wait")
PY

drive()
{
	"$_CYR_PY" drive.py "$@"
}

admin()
{
	echo "$TOP/bin/cyradm" --user cyrus -w "$CYR_PASS" --port "$CYR_PORT" \
		localhost
}

test_expect_success 'setup' '
	instance_imap_script <<-\EOF
	CREATE tty1
	CREATE completeme
	CREATE completeme.sub
	EOF
'

test_expect_success 'the prompt, and Ctrl-D at an empty line exits 0' '
	drive prompt.log $(admin) >prompt.status <<-\EOF &&
	expect localhost> $
	send \x04
	wait
	EOF
	echo "exit 0" >expect &&
	test_cmp expect prompt.status
'

test_expect_success 'line editing: Ctrl-A, Ctrl-D deletes a character' '
	drive edit.log $(admin) >edit.status <<-\EOF &&
	expect localhost> $
	send xm tty2\x01\x04c\r
	expect localhost> $
	send lm tty%\r
	expect tty1 \(\\\\HasNoChildren\)  tty2 \(\\\\HasNoChildren\)
	expect localhost> $
	send exit 4\r
	wait
	EOF
	echo "exit 4" >expect &&
	test_cmp expect edit.status
'

test_expect_success 'history: the up arrow brings back earlier lines' '
	drive hist.log $(admin) >hist.status <<-\EOF &&
	expect localhost> $
	send lm tty1\r
	expect tty1 \(\\\\HasNoChildren\)
	expect localhost> $
	send version\r
	expect name       : Cyrus IMAPD
	expect localhost> $
	send \x1b[A\x1b[A\r
	expect lm tty1.*tty1 \(\\\\HasNoChildren\)
	expect localhost> $
	send \x04
	wait
	EOF
	echo "exit 0" >expect &&
	test_cmp expect hist.status
'

test_expect_success 'completion of a command name' '
	drive cmd.log $(admin) >cmd.status <<-\EOF &&
	expect localhost> $
	send setq\t
	expect setquota $
	send \x15listac\t
	expect listac\x07?l
	send \t\t
	expect listacl +listaclmailbox
	send \x15lam tty1\r
	expect anyone lrs
	expect localhost> $
	send \x04
	wait
	EOF
	echo "exit 0" >expect &&
	test_cmp expect cmd.status
'

test_expect_success 'completion of a mailbox name, from the server' '
	drive mbox.log $(admin) >mbox.status <<-\EOF &&
	expect localhost> $
	send lam compl\t
	expect compl\x07?eteme
	send \t\t
	expect completeme +completeme.sub
	send .s\t\r
	expect anyone lrs
	expect localhost> $
	send \x04
	wait
	EOF
	echo "exit 0" >expect &&
	test_cmp expect mbox.status
'

test_expect_success 'the password prompt does not echo' '
	drive pw.log "$TOP/bin/cyradm" --user cyrus --port "$CYR_PORT" \
		localhost >pw.status <<-EOF &&
	expect Password: \$
	send $CYR_PASS\r
	expect localhost> \$
	send lm tty1\r
	expect tty1 \(\\\\\\\\HasNoChildren\)
	expect localhost> \$
	send \x04
	wait
	EOF
	echo "exit 0" >expect &&
	test_cmp expect pw.status &&
	! grep -F "$CYR_PASS" pw.log
'

# The exit status is the Perl one's errno at its die (what libsasl2 left:
# 2 with the GSSAPI plugin installed, else 255): the same from both.
test_expect_success 'a wrong password typed at the prompt' '
	for who in perl ours; do
		prog=$TOP/bin/cyradm
		[ $who = perl ] && prog=/usr/bin/cyradm
		drive badpw.$who.log "$prog" --user cyrus --port "$CYR_PORT" \
			localhost >badpw.$who.status <<-\EOF || return 1
		expect Password: $
		send wrong\r
		expect IMAP Password: $
		send wrong\r
		expect cannot authenticate to server as cyrus
		wait
		EOF
	done &&
	grep -Eqx "exit (2|255)" badpw.perl.status &&
	test_cmp badpw.perl.status badpw.ours.status &&
	! grep -F wrong badpw.ours.log
'

test_done
