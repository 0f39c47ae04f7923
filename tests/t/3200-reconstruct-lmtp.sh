#!/bin/bash
# Disaster recovery end to end: a real 3.6.1 instance filled over LMTP with
# 320 generated messages (bench/gen-mail.py --small: multipart, attachments,
# message/rfc822 inside message/rfc822, encoded words, long folded headers,
# malformed ones), flags and keywords set over IMAP, quota roots on users and
# on a sub-mailbox. What imapd serves is recorded (UID FETCH of UID FLAGS
# INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER], and
# GETQUOTAROOT), then the store is stopped and a pristine copy kept. For
# each damage, a fresh copy of it is damaged one way, our reconstruct and
# quota -f repair it, the real reconstruct -n, chk_cyrus, mbexamine and
# quota -f -n find nothing, and the restarted imapd serves what was
# recorded. Then bad input: each mailbox broken its own way in one store;
# a clear error for each, the others done, nothing of the original gone.
test_description='reconstruct: a store filled over LMTP, damaged and repaired'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'
[ -x "$TOP/bin/cyrus" ] || test_skip_all 'bin/cyrus is not built'

PY=/usr/bin/python3
# Mailboxes as USER/FOLDER, and the LMTP address of each.
BOXES="ann/INBOX ann/Work ann/Work.2023 ben/INBOX ben/Lists cid/INBOX dee/INBOX dee/Archive"
RCPTS="ann ann+Work ann+Work.2023 ben ben+Lists cid dee dee+Archive"

# deliver_all DIR: every DIR/N. over one LMTP session, message N to the
# (N mod 8)th address of RCPTS.
deliver_all()
{
	$PY - "$CYR_LMTP" "$CYR_SERVERNAME" "$1" $RCPTS <<-\EOF
	import os, smtplib, sys
	sock, host, d = sys.argv[1:4]
	rcpts = sys.argv[4:]
	c = smtplib.LMTP(sock)
	c.ehlo("localhost")
	names = sorted(os.listdir(d), key=lambda f: int(f.rstrip(".")))
	for f in names:
	    n = int(f.rstrip("."))
	    msg = open(os.path.join(d, f), "rb").read()
	    r = rcpts[n % len(rcpts)]
	    refused = c.sendmail("sender@example.org", ["%s@%s" % (r, host)], msg)
	    if refused:
	        sys.exit("refused %s: %r" % (f, refused))
	c.quit()
	EOF
}

# every FIRST STEP LAST: "FIRST,FIRST+STEP,..." (an IMAP sequence set).
every() { seq -s, "$1" "$2" "$3"; }

set_flags()
{
	local b u f
	for b in $BOXES; do
		u=${b%%/*} f=${b#*/}
		[ "$f" = INBOX ] || f=INBOX.$f
		instance_imap_script -u $u -w $u >/dev/null <<-EOF || return 1
		SELECT $f
		STORE $(every 1 2 40) +FLAGS (\\Seen)
		STORE $(every 2 5 40) +FLAGS (\\Flagged \$Label1)
		STORE $(every 3 7 40) +FLAGS (\\Answered Project-X)
		STORE $(every 4 9 40) +FLAGS (\\Draft \$Forwarded)
		STORE $(every 5 13 40) +FLAGS (\\Deleted)
		EOF
	done
}

# record DIR: what imapd serves, one file per mailbox (DIR/USER.FOLDER):
# the FETCH responses, header literals included, and the quota lines.
record()
{
	local b u f
	mkdir -p "$1"
	for b in $BOXES; do
		u=${b%%/*} f=${b#*/}
		[ "$f" = INBOX ] || f=INBOX.$f
		instance_imap_script -u $u -w $u <<-EOF >"$1/raw.$u.${b#*/}" || return 1
		SELECT $f
		UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER])
		GETQUOTAROOT $f
		EOF
		# Keep FETCH responses (and their literals) and quota lines.
		awk '/^\* [0-9]+ FETCH /{keep=1} /^\* (QUOTA|QUOTAROOT) /{print; keep=0; next}
			/^(\* |T[0-9]+ )/ && !/^\* [0-9]+ FETCH /{keep=0}
			keep' "$1/raw.$u.${b#*/}" >"$1/$u.${b#*/}" || return 1
	done
}

# norm MODE <in >out: \Recent is per session, never compared. MODE
# noflags: FLAGS emptied (a lost cyrus.index takes every flag with it);
# nokeywords: keywords dropped (a lost cyrus.header takes their names, so
# imapd cannot show them); noquota: the quota lines dropped (their usage
# changes with the messages).
norm()
{
	$PY -c '
import re, sys
mode = sys.argv[1]
for line in sys.stdin:
    def flags(m):
        fl = [f for f in m.group(1).split() if f != "\\Recent"]
        if mode == "noflags":
            fl = []
        if mode == "nokeywords":
            fl = [f for f in fl if f.startswith("\\")]
        return "FLAGS (%s)" % " ".join(fl)
    if mode == "noquota" and re.match(r"\* QUOTA ", line):
        continue
    if re.match(r"\* \d+ FETCH ", line):
        line = re.sub(r"FLAGS \(([^)]*)\)", flags, line, count=1)
        # The sequence number follows the messages before it.
        line = re.sub(r"^\* \d+ FETCH", "* FETCH", line)
    sys.stdout.write(line)
' "${1:-}"
}

# drop_uid UID <in >out: without the FETCH response of UID.
drop_uid()
{
	awk -v uid="$1" '/^\* [0-9]+ FETCH /{skip = ($0 ~ (" UID " uid " "))}
		/^\* (QUOTA|QUOTAROOT) /{skip=0} !skip'
}

mbdir() { as_cyrus "$REAL_BIN/mbpath" -C "$CYR_CONF" "$1"; }
restore() { rm -rf "$CYR_DIR" && cp -a "$TEST_SCRATCH/pristine" "$CYR_DIR"; }
dbtool() { as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" "$CYR_CONFIGDIR/quotas.db" quotalegacy "$@"; }
real_quota() { as_cyrus "$REAL_BIN/quota" -C "$CYR_CONF" "$@"; }

test_expect_success 'setup: 320 generated messages over LMTP, flags over IMAP, quota roots' '
	instance_start &&
	instance_create_user ann Work Work.2023 &&
	instance_create_user ben Lists &&
	instance_create_user -p p2 cid &&
	instance_create_user dee Archive &&
	instance_imap_script >/dev/null <<-\EOF &&
	SETACL user.ann.Work anyone p
	SETACL user.ann.Work.2023 anyone p
	SETACL user.ben.Lists anyone p
	SETACL user.dee.Archive anyone p
	SETQUOTA user.ann (STORAGE 500000 MESSAGE 5000)
	SETQUOTA user.ann.Work (MESSAGE 1000)
	SETQUOTA user.ben (STORAGE 100000)
	EOF
	mkdir msgs &&
	$PY "$TOP/bench/gen-mail.py" --count 320 --small --seed 7 --out msgs &&
	deliver_all msgs &&
	set_flags &&
	record before &&
	test_line_count -gt 40 before/ann.INBOX &&
	grep -q "BODYSTRUCTURE ((" before/ann.INBOX &&
	grep -q "MESSAGE\" \"RFC822\"" before/ann.Work &&
	grep -q "Project-X" before/ben.INBOX &&
	grep -q "^\* QUOTA INBOX (STORAGE [0-9]* 500000 MESSAGE 40 5000)" before/ann.INBOX &&
	grep -q "^\* QUOTA INBOX.Work (MESSAGE 80 1000)" before/ann.Work &&
	instance_pause &&
	CONF=$CYR_CONF &&
	as_cyrus "$REAL_BIN/reconstruct" -C "$CONF" -n >names &&
	test_line_count = 8 names &&
	real_quota >quota.before &&
	cp -a "$CYR_DIR" "$TEST_SCRATCH/pristine"
'

# The damages, one per function, on the restored store.
damage_index_cache() {
	rm "$(mbdir user.ann)/cyrus.index" "$(mbdir user.ann)/cyrus.cache"
}
damage_trunc_cache() {
	local c
	c=$(mbdir user.ben)/cyrus.cache &&
	truncate -s $(($(stat -c %s "$c") / 2)) "$c"
}
damage_header() { rm "$(mbdir user.ann.Work)/cyrus.header"; }
damage_rm_msg() { rm "$(mbdir user.ben)/5."; }
damage_add_msg()
{
	local d
	d=$(mbdir user.dee) &&
	cp msgs/1. "$d/300." && touch -d '2023-01-01 00:00:00' "$d/300." &&
	chown cyrus:mail "$d/300."
}
damage_quota()
{
	local v
	v=$(dbtool get user.ann) &&
	dbtool set user.ann "$(echo "$v" | sed -E "s/S \\([0-9]+/S (1/; s/M \\([0-9]+/M (999/")" &&
	! test_cmp quota.before <(real_quota)
}

# expect_for DAMAGE BOX: how the recording of BOX is compared after DAMAGE.
mode_for()
{
	case $1:$2 in
	index_cache:ann.INBOX) echo noflags ;;
	header:ann.Work) echo nokeywords ;;
	rm_msg:ben.*) echo noquota ;;
	*) echo plain ;;
	esac
}

for dmg in index_cache trunc_cache header rm_msg add_msg quota; do
	test_expect_success "damage $dmg: ours repairs it, the real tools find nothing" "
		restore && CONF=\$CYR_CONF && damage_$dmg &&
		cyrus reconstruct -C \$CONF >ours.$dmg 2>ours.err.$dmg &&
		as_cyrus cyrus quota -C \$CONF -f >/dev/null 2>quota.$dmg &&
		as_cyrus \$REAL_BIN/reconstruct -C \$CONF -n >again.$dmg &&
		test_cmp names again.$dmg &&
		as_cyrus \$REAL_BIN/chk_cyrus -C \$CONF >chk.$dmg 2>&1 &&
		! grep -iv '^checking\|^examining\|^$' chk.$dmg &&
		for b in \$BOXES; do
			u=\${b%%/*} f=\${b#*/} &&
			m=user.\$u && { [ \$f = INBOX ] || m=\$m.\$f; } &&
			as_cyrus \$REAL_BIN/mbexamine -C \$CONF \$m >/dev/null || return 1
		done &&
		real_quota -f -n >/dev/null 2>fn.$dmg &&
		test_line_count = 0 fn.$dmg &&
		if [ $dmg != rm_msg ]; then
			real_quota >quota.after.$dmg &&
			test_cmp quota.before quota.after.$dmg
		fi
	"
	# The state that cannot survive: a lost cyrus.index takes the flags
	# of its mailbox (they live nowhere else; internaldates survive as
	# the files' mtimes, which lmtpd set); a lost cyrus.header takes the
	# names of its keywords; a removed file takes its message and its
	# share of the quota; an added file is a new message.
	test_expect_success "damage $dmg: the restarted imapd serves what was recorded" "
		instance_resume &&
		record after.$dmg &&
		instance_pause &&
		for b in \$BOXES; do
			k=\${b%%/*}.\${b#*/} &&
			mode=\$(mode_for $dmg \$k) &&
			if [ $dmg:\$k = rm_msg:ben.INBOX ]; then
				drop_uid 5 <before/\$k
			else
				cat before/\$k
			fi | norm \$mode >expect &&
			if [ $dmg:\$k = add_msg:dee.INBOX ]; then
				grep -q ' UID 300 ' after.$dmg/\$k &&
				drop_uid 300 <after.$dmg/\$k
			else
				cat after.$dmg/\$k
			fi | norm \$mode >actual &&
			test_cmp expect actual || return 1
		done
	"
done

# files: checksums of every message file and of the named cyrus.* files.
files() { (cd "$CYR_DIR" && find part* -name '[0-9]*.' | sort | xargs md5sum); }

test_expect_success 'bad input: an error per mailbox, the others done, nothing deleted' '
	restore && CONF=$CYR_CONF &&
	a=$(mbdir user.ann) && b=$(mbdir user.ben) && c=$(mbdir user.cid) &&
	d=$(mbdir user.dee) && e=$(mbdir user.dee.Archive) &&
	# Garbage index.
	$PY -c "import random,sys; r=random.Random(3); sys.stdout.buffer.write(r.randbytes(5000))" >"$a/cyrus.index" &&
	cp "$a/cyrus.index" garbage.index &&
	# An index of a newer version (minor version 99).
	printf "\0\0\0\143" | dd of="$b/cyrus.index" bs=1 seek=8 conv=notrunc 2>/dev/null &&
	cp "$b/cyrus.index" newer.index && cp "$b/cyrus.cache" newer.cache &&
	# A truncated cache record: the last one cut in the middle.
	truncate -s $(($(stat -c %s "$c/cyrus.cache") - 100)) "$c/cyrus.cache" &&
	# A message file that is not a message, with no record yet.
	head -c 3000 "$REAL_BIN/imapd" >"$d/77." && chown cyrus:mail "$d/77." &&
	# An unreadable message file that must be read (its index is gone).
	rm "$e/cyrus.index" && chmod 000 "$e/3." &&
	files >files.before &&
	test_expect_code 65 cyrus reconstruct -C $CONF >out 2>err &&
	cat err &&
	grep "'"'"'user.ann'"'"': cyrus.index: .*; rebuilt from the message files, the old one kept" err &&
	cmp garbage.index "$a/cyrus.index.damaged" &&
	grep "cannot reconstruct '"'"'user.ben'"'"': cyrus.index is version 99, newer than 17; left as it is" err &&
	cmp newer.index "$b/cyrus.index" && cmp newer.cache "$b/cyrus.cache" &&
	grep "'"'"'user.dee'"'"' uid 77: .* is not a message" err &&
	grep "'"'"'user.dee.Archive'"'"' uid 3: cannot read .*: Permission denied; left as it is" err &&
	# Every mailbox but the refused one is done and listed.
	grep -v "^user.ben$" names >expect.names &&
	grep "^user\.[A-Za-z.0-9]*$" out >done.names &&
	test_cmp expect.names done.names &&
	grep "^user.cid rewrote cache for" out &&
	chmod 600 "$e/3." &&
	files >files.after &&
	test_cmp files.before files.after &&
	# The unreadable file kept its UID: the next run, once it is
	# readable, gives it a new one and never reuses 3.
	cyrus reconstruct -C $CONF user.dee.Archive >out2 &&
	grep "user.dee.Archive uid 3 rediscovered - appending" out2
'

test_done
