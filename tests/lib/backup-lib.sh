# backup-lib.sh: what the backup scripts tests/t/50*.sh share. Sourced
# after test-lib.sh:
#
#	. "$(dirname "$0")/../lib/test-lib.sh"
#	. "$TOP/tests/lib/backup-lib.sh"
#	backup_require
#	backup_start            # or instance_start with settings of its own
#
# B is the archive of the script (backup_start sets it), C the -C option
# of its instance.

# backup_require: skips the script unless the real Cyrus is there and we
# are root (the private instance); no fsync in the archive (speed).
backup_require()
{
	real_cyrus_available || test_skip_all 'no Debian cyrus-imapd'
	test_have_prereq ROOT || test_skip_all 'needs root (the private Cyrus)'
	export CYRUS_TOOLKIT_NOSYNC=1
}

# backup_start: the private instance (instance_start's environment, e.g.
# CYR_EXTRA_CONF, applies), B and C.
backup_start()
{
	instance_start || test_skip_all 'cannot start a private Cyrus'
	B=$TEST_SCRATCH/archive
	C="-C $CYR_CONF"
}

test_must_be_empty()
{
	if [ -s "$1" ]; then
		echo "'$1' is not empty:" >&2
		cat "$1" >&2
		return 1
	fi
}

# newest [DIR]: the manifest of the newest snapshot of DIR (default $B):
# manifest.gz, or the plain manifest of an older archive.
newest()
{
	local d=${1:-$B} id
	id=$(ls "$d/snapshots" | sort | tail -n 1)
	if [ -e "$d/snapshots/$id/manifest" ]; then
		echo "$d/snapshots/$id/manifest"
	else
		echo "$d/snapshots/$id/manifest.gz"
	fi
}

# manifest_text [FILE]: the text of a manifest (default: the newest of
# $B), gzip or plain, as a sysadmin reads it (zcat, cat).
manifest_text()
{
	local m=${1:-$(newest)}
	case $m in
	*.gz) zcat "$m" ;;
	*) cat "$m" ;;
	esac
}

# manifests DIR: how many snapshots of DIR have a manifest.
manifests()
{
	ls -d "$1"/snapshots/*/manifest.gz "$1"/snapshots/*/manifest \
		2>/dev/null | wc -l
}

# imap_state USER MAILBOX [PASSWORD]: what the real imapd serves of
# MAILBOX to USER (password USER unless given): the untagged answers to
# EXAMINE (which leaves \Recent alone) and to a UID FETCH of everything
# (STATE_ITEMS: of those items). Fails if the login or EXAMINE does, so
# that two empty states never compare equal.
imap_state()
{
	local items=${STATE_ITEMS:-UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[]}
	instance_imap_script -u "$1" -w "${3:-$1}" >.state.raw <<-EOF || return 1
	EXAMINE "$2"
	UID FETCH 1:* ($items)
	EOF
	grep -q "^\* OK \[UIDVALIDITY" .state.raw || return 1
	grep -v '^[TLZ][0-9]* ' .state.raw
}

# imap_append USER MAILBOX [PASSWORD] < message: APPEND as USER.
imap_append()
{
	"$_CYR_PY" -c "$_CYR_IMAP_PY" 127.0.0.1 "$CYR_PORT" "$1" "${3:-$1}" 0 "$2"
}

# real_quota [CONF]: the real quota report (default: the instance's).
real_quota() { as_cyrus "$REAL_BIN/quota" -C "${1:-$CYR_CONF}"; }

# real_checks [REGEX]: what the real reconstruct -n says of every user and
# shared mailbox of the instance (it names each one it walks; the names
# matching REGEX, restored mailboxes a baseline lacks, are dropped), then
# what chk_cyrus says beyond its progress lines.
real_checks()
{
	as_cyrus "$REAL_BIN/reconstruct" -C "$CYR_CONF" -n -r -G user.alice \
		user.bob user.carol shared 2>&1 |
		if [ -n "${1:-}" ]; then grep -v "$1"; else cat; fi
	as_cyrus "$REAL_BIN/chk_cyrus" -C "$CYR_CONF" 2>&1 |
		grep -v '^checking: \|^Examining partition'
	return 0
}

# sieve_keep USER: a sieve script main.script ("keep;") for USER, and
# the defaultbc link to it.
sieve_keep()
{
	local sieve
	sieve=$(as_cyrus "$REAL_BIN/mbpath" -C "$CYR_CONF" -S "user.$1") &&
	as_cyrus mkdir -p "$sieve" &&
	echo "keep;" | as_cyrus tee "$sieve/main.script" >/dev/null &&
	as_cyrus ln -s main.script "$sieve/defaultbc"
}

# bulk_deliver USER N [TAG]: N distinct messages of about 2 KB (random
# base64: gzip cannot shrink them much) to USER over one LMTP session.
bulk_deliver()
{
	"$_CYR_PY" - "$CYR_LMTP" "$1@$CYR_SERVERNAME" "$2" "${3:-bulk}" <<-'PY'
	import base64, os, smtplib, sys
	sock, rcpt, n, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
	c = smtplib.LMTP(sock)
	c.ehlo("localhost")
	for i in range(n):
	    body = base64.encodebytes(os.urandom(1500)).decode()
	    c.sendmail("a@example.org", [rcpt],
	               "From: a@example.org\nTo: %s\nSubject: bulk %s %d\n"
	               "Date: Mon, 1 May 2023 11:%02d:00 +0000\n"
	               "Message-ID: <bulk.%s.%d@example.org>\n\n%s"
	               % (rcpt, tag, i, i % 60, tag, i, body))
	c.quit()
	PY
}
