# instance.sh: a private, throwaway real Cyrus IMAP 3.6.1 (Debian's
# cyrus-imapd) for the tests and the demo.  Source it, then:
#
#	instance_start                  # master + imapd + lmtpd, all under a
#	                                # fresh directory; stopped at EXIT
#	instance_create_user bob Sent "My Folder"
#	instance_imap_script <<-EOF     # raw IMAP as the admin, one command
#	SETACL user.bob fred lrs        # a line, tags added; fails on NO/BAD
#	EOF
#	instance_deliver bob [FOLDER] < message.eml   # over LMTP
#	instance_fill                   # a small realistic store
#	instance_pause / instance_resume  # stop master keeping the store,
#	                                # and start it again on it
#	instance_stop                   # also run at EXIT; safe to repeat
#
# Exported by instance_start:
#	CYR_DIR          the instance's directory (removed at stop unless
#	                 KEEP_SCRATCH=1)
#	CYR_CONF         its imapd.conf; always pass it with -C
#	CYR_MASTERCONF   its cyrus.conf
#	CYR_CONFIGDIR    configdirectory (mailboxes.db, quota/, user/, ...)
#	CYR_PART         partition-default directory
#	CYR_PART2        partition-p2 directory
#	CYR_PORT         imapd on 127.0.0.1:CYR_PORT (plain, LOGIN/PLAIN)
#	CYR_LMTP         lmtpd's unix socket
#	CYR_ADMIN        the admin user (cyrus); CYR_PASS its password
#	CYR_SERVERNAME   servername (also the sasldb realm)
#	CYR_MASTER_PID   master's pid (a shell variable, not exported)
#
# Set CYR_EXTRA_CONF to extra imapd.conf lines before instance_start to vary
# the configuration ("hashimapspool: false", "mailbox_legacy_dirs: yes", ...);
# a key given there replaces the default one (Cyrus refuses a key given
# twice).  To change the configuration of a running instance, edit
# $CYR_CONF with that in mind; new imapd/lmtpd processes read it.
# CYR_EXTRA_SERVICES: more lines for the SERVICES section of cyrus.conf,
# e.g. an imaps service on a port of the test's choosing:
#	imaps cmd="@REAL_BIN@/imapd -s -C @CYR_CONF@" listen="127.0.0.1:PORT"
# (@REAL_BIN@ and @CYR_CONF@ become their values at instance_start).
#
# Never touches /etc/imapd.conf, /var/lib/cyrus or /var/spool/cyrus: every
# real tool gets -C, master gets -C and -M, and every path in the private
# imapd.conf points inside CYR_DIR.
#
# Needs root: master binds as root and drops to cyrus:mail.

: "${REAL_BIN:=/usr/lib/cyrus/bin}"
export REAL_BIN

# The Debian python3, not a pyenv shim (slow, and not usable as cyrus).
if [ -x /usr/bin/python3 ]; then
	_CYR_PY=/usr/bin/python3
else
	_CYR_PY=python3
fi

# real_cyrus_available: the Debian cyrus-imapd binaries are installed.
real_cyrus_available()
{
	local b
	for b in master imapd lmtpd ctl_cyrusdb ctl_mboxlist cyr_dbtool; do
		[ -x "$REAL_BIN/$b" ] || return 1
	done
	command -v saslpasswd2 >/dev/null 2>&1 || [ -x /usr/sbin/saslpasswd2 ]
}

# as_cyrus CMD ARGS...: run a command as cyrus:mail when root (the real
# tools insist on it), as is otherwise.
as_cyrus()
{
	if [ "$(id -u)" != 0 ]; then
		"$@"
	elif command -v setpriv >/dev/null 2>&1; then
		setpriv --reuid=cyrus --regid=mail --init-groups -- "$@"
	else
		runuser -u cyrus -g mail -- "$@"
	fi
}

# Chain CMD in front of whatever EXIT trap is already set, so that the
# instance is stopped before a test library removes its scratch dir.
_instance_trap_exit()
{
	local cmd=$1 prev=
	eval "set -- $(trap -p EXIT)"
	[ $# -ge 3 ] && prev=$3
	case "; $prev;" in
	*"; $cmd;"*) return 0 ;;	# already there
	esac
	# shellcheck disable=SC2064
	trap "$cmd${prev:+; $prev}" EXIT
	# A signal must still run the EXIT trap.
	[ -n "$(trap -p INT)" ] || trap 'exit 130' INT
	[ -n "$(trap -p TERM)" ] || trap 'exit 143' TERM
	[ -n "$(trap -p HUP)" ] || trap 'exit 129' HUP
}

_instance_free_port()
{
	"$_CYR_PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# instance_log_tail [N]: what the instance said, for diagnostics.  Cyrus
# logs to syslog, which may not exist; master's own output and the
# configdirectory's log/ are what we have.
instance_log_tail()
{
	local n=${1:-30} f
	for f in "$CYR_DIR/master.log" "$CYR_CONFIGDIR"/log/*; do
		[ -f "$f" ] || continue
		echo "--- tail of $f"
		tail -n 200 "$f" | uniq -c | tail -n "$n"
	done
}

_instance_write_conf()
{
	local d=$CYR_DIR
	# Cyrus refuses a key given twice, so CYR_EXTRA_CONF's keys replace
	# the defaults below rather than follow them.
	awk -v extra="${CYR_EXTRA_CONF:-}" '
		BEGIN {
			n = split(extra, lines, "\n")
			for (i = 1; i <= n; i++)
				if (match(lines[i], /^[A-Za-z0-9_-]+:/))
					over[substr(lines[i], 1, RLENGTH)] = 1
		}
		match($0, /^[A-Za-z0-9_-]+:/) && over[substr($0, 1, RLENGTH)] { next }
		{ print }
		END { if (extra != "") print extra }' >"$CYR_CONF" <<EOF
# private test instance, made by tests/lib/instance.sh
servername: $CYR_SERVERNAME
configdirectory: $CYR_CONFIGDIR
defaultpartition: default
partition-default: $CYR_PART
partition-p2: $CYR_PART2
proc_path: $CYR_CONFIGDIR/proc
mboxname_lockpath: $CYR_CONFIGDIR/lock
temp_path: $d/tmp
sievedir: $d/sieve
sieveusehomedir: false
lmtpsocket: $CYR_LMTP
idlesocket: $CYR_CONFIGDIR/socket/idle
notifysocket: $CYR_CONFIGDIR/socket/notify
admins: $CYR_ADMIN
syslog_prefix: cyrtest-${d##*.}
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $d/sasldb2
sasl_mech_list: PLAIN LOGIN
sasl_auto_transition: no
allowplaintext: yes
allowanonymouslogin: no
statuscache: no
altnamespace: no
unixhierarchysep: no
virtdomains: no
hashimapspool: true
lmtp_downcase_rcpt: yes
autocreate_quota: 0
umask: 077
EOF
	# cmd= is found in service_path (Debian: /usr/lib/cyrus/bin); -C is
	# passed explicitly so that no child ever reads /etc/imapd.conf.
	local extra=${CYR_EXTRA_SERVICES:-}
	extra=${extra//@REAL_BIN@/$REAL_BIN}
	extra=${extra//@CYR_CONF@/$CYR_CONF}
	cat >"$CYR_MASTERCONF" <<EOF
# private test instance, made by tests/lib/instance.sh
START {
	recover		cmd="$REAL_BIN/ctl_cyrusdb -C $CYR_CONF -r"
}
SERVICES {
	imap		cmd="$REAL_BIN/imapd -C $CYR_CONF" listen="127.0.0.1:$CYR_PORT" prefork=0 maxchild=20
	lmtpunix	cmd="$REAL_BIN/lmtpd -C $CYR_CONF" listen="$CYR_LMTP" prefork=0 maxchild=10
$extra
}
EVENTS {
}
DAEMON {
}
EOF
}

# _instance_greets: imapd answers "* OK" on CYR_PORT.
_instance_greets()
{
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		IFS= read -r -t 2 line <&3 || exit 1
		printf "a LOGOUT\r\n" >&3
		exec 3>&-
		case $line in "* OK"*) exit 0 ;; esac
		exit 1' _ "$CYR_PORT" 2>/dev/null
}

# instance_start: start a private master; see the top of this file.
instance_start()
{
	local timeout=${CYR_START_TIMEOUT:-60} i

	if [ -n "${CYR_MASTER_PID:-}" ] && kill -0 "$CYR_MASTER_PID" 2>/dev/null; then
		echo "instance_start: already running (pid $CYR_MASTER_PID)" >&2
		return 1
	fi
	if ! real_cyrus_available; then
		echo "instance_start: Debian's cyrus-imapd is not installed" \
			"($REAL_BIN/master missing); run tests/setup-deps.sh" >&2
		return 1
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "instance_start: must run as root (master binds as root" \
			"and becomes cyrus)" >&2
		return 1
	fi
	if ! id cyrus >/dev/null 2>&1; then
		echo "instance_start: there is no user cyrus" >&2
		return 1
	fi

	# Short path: unix socket names are limited to 107 bytes.
	CYR_DIR=$(mktemp -d /tmp/cyrinst.XXXXXX) || return 1
	_CYR_OWN_DIR=$CYR_DIR	# what instance_stop may remove
	CYR_CONF=$CYR_DIR/imapd.conf
	CYR_MASTERCONF=$CYR_DIR/cyrus.conf
	CYR_CONFIGDIR=$CYR_DIR/conf
	CYR_PART=$CYR_DIR/part/default
	CYR_PART2=$CYR_DIR/part/p2
	CYR_LMTP=$CYR_CONFIGDIR/socket/lmtp
	CYR_ADMIN=cyrus
	CYR_PASS=${CYR_PASS:-cyrus-test-pw}
	CYR_SERVERNAME=cyrtest
	CYR_PORT=$(_instance_free_port) || return 1
	export CYR_DIR CYR_CONF CYR_MASTERCONF CYR_CONFIGDIR CYR_PART \
		CYR_PART2 CYR_PORT CYR_LMTP CYR_ADMIN CYR_PASS CYR_SERVERNAME
	_instance_trap_exit instance_stop

	# What cyrus-makedirs would make.
	mkdir -p "$CYR_PART" "$CYR_PART2" "$CYR_DIR/tmp" "$CYR_DIR/sieve" &&
	for i in db lock log msg proc ptclient quota sieve socket sync user \
		md5; do
		mkdir -p "$CYR_CONFIGDIR/$i" || return 1
	done || return 1
	_instance_write_conf || return 1

	# The sasldb realm must be the servername imapd passes to SASL.
	printf '%s' "$CYR_PASS" | saslpasswd2 -p -c -f "$CYR_DIR/sasldb2" \
		-u "$CYR_SERVERNAME" "$CYR_ADMIN" || {
		echo "instance_start: saslpasswd2 failed" >&2
		return 1
	}
	# Everything Cyrus writes belongs to cyrus:mail; the directory is
	# readable so that tests (root) and tools (cyrus) both get in.
	chown -R cyrus:mail "$CYR_DIR" && chmod 755 "$CYR_DIR" || return 1
	chmod 640 "$CYR_DIR/sasldb2"

	# Foreground master (no -d) in the background: $! is its pid, and it
	# is our child so we can wait for it.  -L keeps its stdout/stderr.
	# setsid: master's SIGTERM handler signals its whole process group,
	# which would kill every other instance started from the same shell;
	# in a shell without job control setsid execs in place, so $! stays
	# master's pid.
	setsid "$REAL_BIN/master" -C "$CYR_CONF" -M "$CYR_MASTERCONF" \
		-p "$CYR_DIR/master.pid" -L "$CYR_DIR/master.log" \
		</dev/null >>"$CYR_DIR/master.log" 2>&1 &
	# Not exported: a child script starts its own instance.
	CYR_MASTER_PID=$!

	local deadline=$((SECONDS + timeout))
	while :; do
		if ! kill -0 "$CYR_MASTER_PID" 2>/dev/null; then
			wait "$CYR_MASTER_PID"
			i=$?
			echo "instance_start: master exited during start-up," \
				"status $i$([ $i = 78 ] &&
				echo ' (EX_CONFIG: imapd.conf or cyrus.conf)')" >&2
			break
		fi
		if [ -S "$CYR_LMTP" ] && _instance_greets; then
			return 0
		fi
		if [ $SECONDS -ge $deadline ]; then
			echo "instance_start: imapd did not answer on" \
				"127.0.0.1:$CYR_PORT within ${timeout}s" >&2
			break
		fi
		sleep 0.2
	done
	instance_log_tail >&2
	# Cyrus logs to syslog only (often absent); cyr_info names a bad
	# imapd.conf on stderr.
	echo "--- $REAL_BIN/cyr_info -C $CYR_CONF conf-lint:" >&2
	as_cyrus "$REAL_BIN/cyr_info" -C "$CYR_CONF" conf-lint >&2 2>&1
	as_cyrus "$REAL_BIN/cyr_info" -C "$CYR_CONF" conf 2>&1 >/dev/null |
		head -n 5 >&2
	echo >&2
	KEEP_SCRATCH=1 instance_stop
	echo "instance_start: failed; instance kept in $CYR_DIR" >&2
	return 1
}

# instance_pause: stop master and its children, keeping the store (for
# tools that want the server stopped; instance_resume starts it again).
instance_pause()
{
	local i=0 k kids
	[ -n "${CYR_MASTER_PID:-}" ] || return 0
	kids=$(pgrep -P "$CYR_MASTER_PID" 2>/dev/null | tr '\n' ' ')
	kill -TERM "$CYR_MASTER_PID" 2>/dev/null
	while kill -0 "$CYR_MASTER_PID" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	wait "$CYR_MASTER_PID" 2>/dev/null
	for k in $kids; do
		i=0
		while kill -0 "$k" 2>/dev/null && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
	done
	return 0
}

# instance_resume: start master again on the same store (a few tries: a
# master started right after the last one exited may find its listening
# socket still taken and exit).
instance_resume()
{
	local try deadline
	for try in 1 2 3 4 5; do
		setsid "$REAL_BIN/master" -C "$CYR_CONF" -M "$CYR_MASTERCONF" \
			-p "$CYR_DIR/master.pid" -L "$CYR_DIR/master.log" \
			</dev/null >>"$CYR_DIR/master.log" 2>&1 &
		CYR_MASTER_PID=$!
		deadline=$((SECONDS + 30))
		while kill -0 "$CYR_MASTER_PID" 2>/dev/null; do
			[ -S "$CYR_LMTP" ] && _instance_greets && return 0
			[ $SECONDS -ge $deadline ] && return 1
			sleep 0.2
		done
		wait "$CYR_MASTER_PID"
		echo "# master exited ($?), try $try" >&2
		sleep 1
	done
	return 1
}

# instance_stop: SIGTERM to master (by its pid), wait for it and its
# children, remove CYR_DIR unless KEEP_SCRATCH=1.  Safe to call twice.
instance_stop()
{
	local pid=${CYR_MASTER_PID:-} dir=${_CYR_OWN_DIR:-} kids="" k i left

	if [ -n "$pid" ]; then
		kids=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ')
		kill -TERM "$pid" 2>/dev/null
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "instance_stop: master $pid ignored SIGTERM;" \
				"killing it" >&2
			kill -KILL "$pid" 2>/dev/null
		fi
		wait "$pid" 2>/dev/null
		# Master TERMs its children itself; whichever is left (only
		# processes of this instance: their command line names its
		# directory) gets TERM, then KILL.
		i=0
		while :; do
			left=
			for k in $kids; do
				[ -n "$dir" ] &&
					{ tr '\0' ' ' <"/proc/$k/cmdline"; } \
					2>/dev/null | grep -qF "$dir/" &&
					left="$left $k"
			done
			kids=$left
			[ -z "$kids" ] && break
			case $i in
			0) kill -TERM $kids 2>/dev/null ;;
			50) kill -KILL $kids 2>/dev/null ;;
			60) echo "instance_stop: left running:$kids" >&2; break ;;
			esac
			sleep 0.1
			i=$((i + 1))
		done
		unset CYR_MASTER_PID
	fi
	# Only the directory this shell made, never an inherited CYR_DIR.
	if [ -n "$dir" ] && [ -d "$dir" ]; then
		if [ "${KEEP_SCRATCH:-0}" = 1 ]; then
			echo "# instance kept in $dir" >&2
		else
			rm -rf "$dir"
		fi
	fi
	_CYR_OWN_DIR=
	return 0
}

# The IMAP client: reads raw commands (one a line, without tags) on stdin,
# prints every response line; exits 1 if a command got NO or BAD (with
# -k: carry on, exit 1 at the end), 2 if it cannot log in.
read -r -d '' _CYR_IMAP_PY <<'PY'
import socket, sys
host, port, user, pw, keep = sys.argv[1:6]
s = socket.create_connection((host, int(port)), timeout=60)
f = s.makefile("rb")
def resp():
    out = b""
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("imap: connection closed")
        out += line
        l = line.rstrip(b"\r\n")
        if l.endswith(b"}") and b"{" in l:
            n = l[l.rindex(b"{") + 1:-1].rstrip(b"+")
            if n.isdigit():
                out += f.read(int(n))
                continue
        return out
def q(x):
    return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
def cmd(tag, text):
    s.sendall(("%s %s\r\n" % (tag, text)).encode("utf-8"))
    lines = b""
    while True:
        r = resp()
        lines += r
        if r.startswith(tag.encode() + b" "):
            status = r.split(b" ")[1].upper()
            return status, lines
resp()
st, out = cmd("L", "LOGIN %s %s" % (q(user), q(pw)))
if st != b"OK":
    sys.stderr.write(out.decode("utf-8", "replace"))
    sys.exit(2)
if len(sys.argv) > 6:
    # APPEND stdin to mailbox argv[6] (a LITERAL+ literal).
    msg = sys.stdin.buffer.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    s.sendall(b"A APPEND " + q(sys.argv[6]).encode("utf-8") +
              b" {%d+}\r\n" % len(msg) + msg + b"\r\n")
    while True:
        r = resp()
        if r.startswith(b"A "):
            break
    if r.split(b" ")[1].upper() != b"OK":
        sys.stderr.write("imap: APPEND %s: %s" % (sys.argv[6], r.decode("utf-8", "replace")))
        sys.exit(1)
    cmd("Z", "LOGOUT")
    sys.exit(0)
bad = 0
n = 0
for text in sys.stdin.read().splitlines():
    if not text.strip() or text.lstrip().startswith("#"):
        continue
    n += 1
    st, out = cmd("T%d" % n, text)
    sys.stdout.write(out.decode("utf-8", "replace").replace("\r\n", "\n"))
    if st != b"OK":
        sys.stderr.write("imap: %s: %s" % (text, out.decode("utf-8", "replace").splitlines()[-1]) + "\n")
        bad = 1
        if keep != "1":
            break
cmd("Z", "LOGOUT")
sys.exit(bad)
PY

# instance_imap_script [-k] [-u USER -w PASS] <<EOF: IMAP commands as the
# admin (or USER), one a line, without tags; blank lines and # comments are
# skipped.  Prints the server's answers with CRLF turned into LF.  Stops at
# the first NO/BAD and returns 1 (-k: runs everything, returns 1 at the end).
instance_imap_script()
{
	local user=$CYR_ADMIN pw=$CYR_PASS keep=0 opt OPTIND=1
	while getopts ku:w: opt; do
		case $opt in
		k) keep=1 ;;
		u) user=$OPTARG ;;
		w) pw=$OPTARG ;;
		*) return 64 ;;
		esac
	done
	"$_CYR_PY" -c "$_CYR_IMAP_PY" 127.0.0.1 "$CYR_PORT" "$user" "$pw" "$keep"
}

# instance_add_sasl_user NAME PASS: a login for a non-admin user.
instance_add_sasl_user()
{
	printf '%s' "$2" | saslpasswd2 -p -c -f "$CYR_DIR/sasldb2" \
		-u "$CYR_SERVERNAME" "$1" &&
	chown cyrus:mail "$CYR_DIR/sasldb2"
}

# instance_create_user [-p PARTITION] NAME [FOLDER...]: user.NAME and
# user.NAME.FOLDER (FOLDER in IMAP's modified UTF-7, may contain spaces),
# and a login NAME with the password NAME (instance_imap_script -u NAME -w
# NAME).  The admin has no read right on users' mailboxes (only lca), so
# SELECT/STATUS/FETCH are done as the user.
instance_create_user()
{
	local part="" u f
	if [ "${1:-}" = -p ]; then
		part=" $2"
		shift 2
	fi
	u=$1
	shift
	instance_add_sasl_user "$u" "$u" || return 1
	{
		echo "CREATE \"user.$u\"$part"
		for f in "$@"; do
			echo "CREATE \"user.$u.$f\"$part"
		done
	} | instance_imap_script >/dev/null
}

read -r -d '' _CYR_LMTP_PY <<'PY'
import smtplib, sys
sock, rcpt = sys.argv[1:3]
msg = sys.stdin.buffer.read()
if not msg.endswith(b"\n"):
    msg += b"\n"
c = smtplib.LMTP(sock)
try:
    code, text = c.ehlo("localhost")
    if code != 250:
        raise SystemExit("lmtp: LHLO: %d %s" % (code, text))
    refused = c.sendmail("sender@example.org", [rcpt], msg)
    if refused:
        raise SystemExit("lmtp: refused: %r" % refused)
except smtplib.SMTPException as e:
    raise SystemExit("lmtp: %s: %s" % (rcpt, e))
finally:
    try:
        c.quit()
    except Exception:
        pass
PY

# instance_deliver USER [FOLDER] < message: deliver one RFC 5322 message
# over LMTP as USER or USER+FOLDER; lmtpd files the latter into
# user.USER.FOLDER when that exists and "anyone" may post (p) to it, else into
# the INBOX.  user.USER must exist.  lmtpd 3.6 cannot address a folder whose
# name needs quoting (a space, ...): such a message is APPENDed over IMAP as
# USER instead (password USER, as instance_create_user makes it).
instance_deliver()
{
	if [ $# -ge 2 ]; then
		case $2 in
		*[!A-Za-z0-9.+_\&-]*)
			"$_CYR_PY" -c "$_CYR_IMAP_PY" 127.0.0.1 "$CYR_PORT" \
				"$1" "$1" 0 "INBOX.$2"
			return
			;;
		esac
		set -- "$1+$2"
	fi
	"$_CYR_PY" -c "$_CYR_LMTP_PY" "$CYR_LMTP" "$1@$CYR_SERVERNAME"
}

# _instance_msg N SUBJECT [TO]: a plain text message.
_instance_msg()
{
	cat <<EOF
Return-Path: <sender@example.org>
From: Sender <sender@example.org>
To: ${3:-someone}@example.org
Subject: $2
Date: Mon, 1 May 2023 10:0$(( $1 % 10 )):00 +0000
Message-ID: <msg$1.$$@example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Message number $1.
Grüße aus dem Test.
EOF
}

_instance_msg_multipart()
{
	cat <<'EOF'
From: Alice <alice@example.org>
To: bob@example.org
Subject: =?UTF-8?Q?Bericht_f=C3=BCr_Mai?=
Date: Tue, 2 May 2023 09:15:00 +0200
Message-ID: <multi.1@example.org>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt-1"

--alt-1
Content-Type: text/plain; charset=utf-8

The plain part.
--alt-1
Content-Type: text/html; charset=utf-8

<p>The <b>HTML</b> part.</p>
--alt-1--
EOF
}

_instance_msg_attachment()
{
	cat <<'EOF'
From: Carol <carol@example.org>
To: bob@example.org
Subject: report with attachment
Date: Wed, 3 May 2023 17:45:00 -0400
Message-ID: <attach.1@example.org>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mix-1"

--mix-1
Content-Type: text/plain; charset=us-ascii

See the attached file.
--mix-1
Content-Type: application/octet-stream; name="data.bin"
Content-Disposition: attachment; filename="data.bin"
Content-Transfer-Encoding: base64

AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v
MDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5f
--mix-1--
EOF
}

# instance_fill: a small realistic store.
#	user.alice      3 plain messages (1 \Seen, 1 \Flagged), Archive,
#	                Archive.2023 (1 message), Entwürfe (Entw&APw-rfe);
#	                ACL: bob lrs on user.alice
#	user.bob        multipart + attachment messages ($Forwarded on the
#	                second), "My Folder" (1 message, APPENDed: lmtpd
#	                cannot address it), Sent, Trash; QUOTA STORAGE 10240
#	Logins: alice, bob, carol, password = name.
#	user.carol      on partition p2, 1 message
#	shared          a shared folder, anyone lrsp, 1 message
# CYR_FILL_USERS lists the users made.
instance_fill()
{
	local i
	instance_create_user alice Archive Archive.2023 'Entw&APw-rfe' &&
	instance_create_user bob Sent Trash 'My Folder' &&
	instance_create_user -p p2 carol &&
	instance_imap_script >/dev/null <<-'EOF' || return 1
	CREATE shared
	SETACL shared anyone lrsp
	SETACL user.alice bob lrs
	SETACL user.alice.Archive.2023 anyone p
	SETACL "user.bob.My Folder" anyone p
	SETQUOTA user.bob (STORAGE 10240)
	EOF
	for i in 1 2 3; do
		_instance_msg $i "plain message $i" alice |
			instance_deliver alice || return 1
	done
	_instance_msg 4 "archived" alice | instance_deliver alice Archive.2023 &&
	_instance_msg_multipart | instance_deliver bob &&
	_instance_msg_attachment | instance_deliver bob &&
	_instance_msg 5 "in my folder" bob | instance_deliver bob 'My Folder' &&
	_instance_msg 6 "on p2" carol | instance_deliver carol &&
	_instance_msg 7 "to shared" | {
		# shared folders get mail as "+shared" (postuser is empty).
		"$_CYR_PY" -c "$_CYR_LMTP_PY" "$CYR_LMTP" "+shared@$CYR_SERVERNAME"
	} || return 1
	instance_imap_script -u alice -w alice >/dev/null <<-'EOF' &&
	SELECT INBOX
	STORE 1 +FLAGS (\Seen)
	STORE 2 +FLAGS (\Flagged \Seen)
	EOF
	instance_imap_script -u bob -w bob >/dev/null <<-'EOF' || return 1
	SELECT INBOX
	STORE 2 +FLAGS ($Forwarded)
	EOF
	CYR_FILL_USERS="alice bob carol"
	export CYR_FILL_USERS
}
