#!/bin/bash
# cyrus backup on every store layout of Cyrus 3.6.1 that moves files or
# names around: the default uuid directories, mailbox_legacy_dirs,
# virtdomains, a metapartition, an archive partition, unixhierarchysep with
# altnamespace; delete_mode delayed everywhere (3.6.1's default, set
# explicitly in the first). For each: a user with an INBOX (an expunged
# message, flags, a keyword), a folder, a folder deleted into DELETED.*,
# and a quota root; create and verify; restore --as beside the paused
# store (the user tree, and the DELETED mailbox); a second snapshot, and
# restore --all of it into a fresh config and partitions. Each time the
# real imapd serves the mailboxes the same, the real reconstruct -n and
# chk_cyrus find nothing, and the real quota is right.
test_description='backup create/verify/restore on each 3.6.1 store layout'
. "$(dirname "$0")/../lib/test-lib.sh"
. "$TOP/tests/lib/backup-lib.sh"

backup_require
# Small parts: cyrus.index and cyrus.cache are stored in several.
export CYRUS_BACKUP_PART_SIZE=2048

# ---- the names of one layout (set by layout_begin) ----
# S separator, UNAME user as the admin names it, DOM "@domain" or "",
# LOGIN/PW the user login, INB the user prefix of a folder ("INBOX." or ""
# in the altnamespace), IROOT the internal name of the INBOX, F1 a folder
# (external), F1I (internal).

# adm [FOLDER]: the admin name of the user INBOX or of one of its folders.
adm() { echo "user$S$UNAME${1:+$S$1}$DOM"; }

rcpt() { echo "$UNAME@${DOMAIN:-$CYR_SERVERNAME}"; }

lmtp_to() { "$_CYR_PY" -c "$_CYR_LMTP_PY" "$CYR_LMTP" "$1"; }

# append MAILBOX < message: APPEND as the user.
append() { imap_append "$LOGIN" "$1" "$PW"; }

# state LOGIN PW MAILBOX: imap_state with the password.
state() { imap_state "$1" "$3" "$2"; }

# A restored mailbox under a new name has a new uniqueid: the rest is the
# same.
no_id() { grep -v MAILBOXID "$1"; }

# checks CONF: the real reconstruct -n (every mailbox: it names each one,
# and says more if something is wrong), sorted; then what chk_cyrus says
# beyond its progress lines.
checks()
{
	as_cyrus "$REAL_BIN/reconstruct" -C "$1" -n 2>&1 | sort
	echo "--- chk_cyrus"
	as_cyrus "$REAL_BIN/chk_cyrus" -C "$1" 2>&1 |
		grep -v '^checking: \|^Examining partition'
	return 0
}


# qused RESOURCE ROOT FILE: the Used column of a quota report.
qused()
{
	awk -v r="$1" -v root="$2" '$NF == root && $(NF-1) == r {print $(NF-2)}' "$3"
}

# mailboxes.db as ctl_mboxlist -d prints it, without the mtimes (a
# restored entry gets the time of the restore) and without the tombstones
# of deleted mailboxes (mbtype d: restore --all makes mailboxes.db from
# the mailboxes of the snapshot), one entry a line, sorted.
mboxlist()
{
	as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$1" -d >.mboxlist.json &&
	/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for k in sorted(d):
    if "d" in d[k].get("mbtype", ""):
        continue
    d[k].pop("mtime", None)
    print(json.dumps(d[k], sort_keys=True))' .mboxlist.json
}

mbpath() { as_cyrus "$REAL_BIN/mbpath" -C "$@"; }

# count_msgs DIR: the message files ("UID.") in DIR.
count_msgs() { ls "$1" | grep -c '^[0-9][0-9]*\.$'; }


# exists STATEFILE: the EXISTS count of a state.
exists() { sed -n 's/^\* \([0-9]*\) EXISTS$/\1/p' "$1"; }

# files CONF MAILBOX: the files of a mailbox in its data, archive and
# metadata directories (mbpath -D, -A, -M: the same directory when the
# layout has no such partition): names, and the SHA-1 of the message
# files and of cyrus.cache (cyrus.header and cyrus.index name the mailbox).
files()
{
	local k d f
	for k in D A M; do
		d=$(mbpath "$1" -$k "$2") && test -n "$d" || return 1
		echo "$k:"
		for f in $(ls -p "$d" | grep -v /); do
			case $f in
			cyrus.cache | [0-9]*.)
				echo "$f $(sha1sum <"$d/$f" | cut -c1-40)" ;;
			*)	echo "$f" ;;
			esac
		done
	done
}

# ---- a second store for restore --all ----

# new_store DIR: an empty configdirectory and partitions for the config of
# the instance, moved to DIR (its own port); NEW, NEWCONF, NEWPORT.
new_store()
{
	local d
	NEW=$1
	NEWPORT=$(_instance_free_port) || return 1
	mkdir -p "$NEW" || return 1
	# $L/ first: NEW is under it.
	sed -e "s|$L/|$NEW/|g" -e "s|$CYR_DIR|$NEW|g" "$CYR_CONF" \
		>"$NEW/imapd.conf" &&
	sed -e "s|$CYR_DIR|$NEW|g" -e "s|127.0.0.1:$CYR_PORT|127.0.0.1:$NEWPORT|" \
		"$CYR_MASTERCONF" >"$NEW/cyrus.conf" &&
	cp "$CYR_DIR/sasldb2" "$NEW/" || return 1
	for d in db lock log msg proc ptclient quota sieve socket sync user \
		md5; do
		mkdir -p "$NEW/conf/$d" || return 1
	done
	mkdir -p "$NEW/part/default" "$NEW/part/p2" "$NEW/tmp" "$NEW/sieve" \
		"$NEW/meta" "$NEW/archive" &&
	chown -R cyrus:mail "$NEW" &&
	NEWCONF=$NEW/imapd.conf
}

# new_master_start / new_master_stop: a master on the new store.
new_master_start()
{
	local i
	setsid "$REAL_BIN/master" -C "$NEWCONF" -M "$NEW/cyrus.conf" \
		-p "$NEW/master.pid" -L "$NEW/master.log" </dev/null \
		>>"$NEW/master.log" 2>&1 &
	NEWMASTER=$!
	for i in $(seq 1 150); do
		kill -0 "$NEWMASTER" 2>/dev/null || return 1
		(CYR_PORT=$NEWPORT; _instance_greets) && return 0
		sleep 0.2
	done
	return 1
}
new_master_stop()
{
	[ -n "${NEWMASTER:-}" ] || return 0
	kill -TERM "$NEWMASTER" 2>/dev/null
	wait "$NEWMASTER" 2>/dev/null
	NEWMASTER=
	return 0
}

# ---- one layout ----

# layout_begin NAME: the names of the layout; L its scratch directory (an
# extra partition lives there), B its archive.
layout_begin()
{
	LAYOUT=$1
	L=$TEST_SCRATCH/$1
	B=$L/archive-dir
	S=. UNAME=bob DOM= DOMAIN= LOGIN=bob PW=bob-pw INB=INBOX.
	IROOT=user.bob F1=Sent F1I=Sent
	hook_filled() { :; }
	hook_restored() { :; }
	mkdir -p "$L/meta" "$L/archive" && chown -R cyrus:mail "$L"
}

# fill: the user tree: INBOX (4 messages, one expunged, flags and a
# keyword), F1 (1), Old (2) with the quota root on the INBOX.
fill()
{
	instance_add_sasl_user "$LOGIN" "$PW" &&
	instance_imap_script >/dev/null <<-EOF &&
	CREATE "$(adm)"
	CREATE "$(adm "$F1")"
	CREATE "$(adm Old)"
	SETQUOTA "$(adm)" (STORAGE 100000 MESSAGE 1000)
	EOF
	_instance_msg 1 "plain one" | lmtp_to "$(rcpt)" &&
	_instance_msg 2 "to be expunged" | lmtp_to "$(rcpt)" &&
	_instance_msg_multipart | lmtp_to "$(rcpt)" &&
	_instance_msg_attachment | lmtp_to "$(rcpt)" &&
	_instance_msg 3 "sent one" | append "$INB$F1" &&
	_instance_msg 4 "old one" | append "$INB"Old &&
	_instance_msg 5 "old two" | append "$INB"Old &&
	instance_imap_script -u "$LOGIN" -w "$PW" >/dev/null <<-EOF
	SELECT INBOX
	STORE 2 +FLAGS (\\Deleted)
	EXPUNGE
	STORE 1 +FLAGS (\\Seen)
	STORE 3 +FLAGS (\\Flagged \$Forwarded)
	SELECT "${INB}Old"
	STORE 2 +FLAGS (\\Answered)
	EOF
}

# snap_states: the state of each user mailbox before the backup (st.*),
# and the list of mailboxes the old and the new store must serve the same
# (mboxes: LOGIN TAB PW TAB MAILBOX).
snap_states()
{
	state "$LOGIN" "$PW" INBOX >st.inbox &&
	state "$LOGIN" "$PW" "$INB$F1" >st.f1 &&
	state "$LOGIN" "$PW" "${INB}Old" >st.old &&
	printf '%s\t%s\t%s\n' "$LOGIN" "$PW" INBOX "$LOGIN" "$PW" "$INB$F1" \
		>mboxes
}

# delete_old: Old goes to DELETED.* (delete_mode delayed); DELNAME is its
# internal name there.
delete_old()
{
	instance_imap_script -u "$LOGIN" -w "$PW" >/dev/null <<-EOF &&
	DELETE "${INB}Old"
	EOF
	as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$CYR_CONF" -d >mbl.json &&
	DELNAME=$(/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("\n".join(k for k in d if ("DELETED." + sys.argv[2] + ".Old.") in k))' \
		mbl.json "${IROOT#*!}") &&
	echo "deleted: $DELNAME" &&
	test -n "$DELNAME" && test $(echo "$DELNAME" | wc -l) = 1
}

# The hooks of a layout (layout_begin resets them): hook_filled after fill;
# hook_restored CONF STOREDIR EXTRADIR after restore --as (the instance:
# CYR_DIR, L) and after restore --all (the new store: NEW, NEW).

# layout_tests: every test of the current layout; the instance is started
# with CYR_EXTRA_CONF and stopped at the end.
layout_tests()
{
	test_expect_success "$LAYOUT: a store with a user tree, a deleted folder, a quota root" '
		instance_start &&
		fill &&
		hook_filled &&
		snap_states &&
		delete_old &&
		checks "$CYR_CONF" >checks.base &&
		sed -n "/^--- chk_cyrus/,\$p" checks.base >chk &&
		test_line_count = 1 chk &&
		real_quota "$CYR_CONF" >q.base &&
		N0=$(( $(exists st.inbox) + $(exists st.f1) )) &&
		test "$(qused MESSAGE "$(adm)" q.base)" = $N0
	'

	test_expect_success "$LAYOUT: create is silent, verify finds it whole" '
		cyrus backup create -C "$CYR_CONF" "$B" >out 2>err &&
		test_must_be_empty out && test_must_be_empty err &&
		cyrus backup verify "$B" >verify.out &&
		cat verify.out &&
		grep -q ": ok, [0-9]* mailboxes, [0-9]* messages" verify.out &&
		test $(manifests "$B") = 1 &&
		manifest_text >M &&
		grep -q "^mailbox	$IROOT\$" M &&
		grep -q "^mailbox	$IROOT.$F1I\$" M &&
		grep -q "^mailbox	$DELNAME\$" M &&
		grep -q "^quota	$IROOT	" M &&
		sed "/^--- chk_cyrus/,\$d" checks.base >recon &&
		test_line_count = $(grep -c "^mailbox	" M) recon
	'

	test_expect_success "$LAYOUT: restore --as beside the paused store, served the same" '
		instance_pause &&
		cyrus backup restore -C "$CYR_CONF" "$B" --as "$IROOT.Restored" "$IROOT*" &&
		cyrus backup restore -C "$CYR_CONF" "$B" --as "$IROOT.Recovered" "$DELNAME" &&
		instance_resume &&
		state "$LOGIN" "$PW" INBOX >now && test_cmp st.inbox now &&
		state "$LOGIN" "$PW" "$INB$F1" >now && test_cmp st.f1 now &&
		state "$LOGIN" "$PW" "${INB}Restored" >r.inbox &&
		no_id st.inbox >expect && no_id r.inbox >actual &&
		test_cmp expect actual &&
		state "$LOGIN" "$PW" "${INB}Restored$S$F1" >r.f1 &&
		no_id st.f1 >expect && no_id r.f1 >actual &&
		test_cmp expect actual &&
		state "$LOGIN" "$PW" "${INB}Recovered" >r.old &&
		no_id st.old | grep -v HIGHESTMODSEQ >expect &&
		no_id r.old | grep -v HIGHESTMODSEQ >actual &&
		test_cmp expect actual &&
		printf "%s\t%s\t%s\n" "$LOGIN" "$PW" "${INB}Restored" \
			"$LOGIN" "$PW" "${INB}Restored$S$F1" \
			"$LOGIN" "$PW" "${INB}Recovered" >>mboxes &&
		hook_restored "$CYR_CONF" "$CYR_DIR" "$L"
	'

	${FILES_TEST:-test_expect_success} "$LAYOUT: restore --as: the same files as the original" '
		files "$CYR_CONF" "$(adm)" >files.orig &&
		files "$CYR_CONF" "$(adm Restored)" >files.restored &&
		cat files.orig &&
		test_cmp files.orig files.restored &&
		grep -q "^cyrus.cache " files.orig
	'

	test_expect_success "$LAYOUT: after restore --as: reconstruct -n, chk_cyrus, quota" '
		checks "$CYR_CONF" >checks.as &&
		{ sed "/^--- chk_cyrus/,\$d" checks.base &&
		  adm Restored && adm "Restored$S$F1" && adm Recovered; } |
			sort >expect &&
		echo "--- chk_cyrus" >>expect &&
		test_cmp expect checks.as &&
		real_quota "$CYR_CONF" >q1 &&
		as_cyrus "$REAL_BIN/quota" -C "$CYR_CONF" -f >/dev/null &&
		real_quota "$CYR_CONF" >q2 &&
		test_cmp q1 q2 &&
		test "$(qused MESSAGE "$(adm)" q2)" = $((2 * N0 + $(exists st.old))) &&
		test "$(qused X-NUM-FOLDERS "$(adm)" q2)" = 5
	'

	test_expect_success "$LAYOUT: restore --all of a second snapshot into an empty store" '
		cyrus backup create -C "$CYR_CONF" "$B" &&
		cyrus backup verify "$B" >verify.out &&
		test $(grep -c ": ok," verify.out) = 2 &&
		new_store "$L/new" &&
		cyrus backup restore -C "$NEWCONF" "$B" --all &&
		checks "$CYR_CONF" >checks.old &&
		checks "$NEWCONF" >checks.new &&
		test_cmp checks.old checks.new &&
		real_quota "$CYR_CONF" >q.old &&
		real_quota "$NEWCONF" >q.new &&
		test_cmp q.old q.new &&
		as_cyrus "$REAL_BIN/quota" -C "$NEWCONF" -f >/dev/null &&
		real_quota "$NEWCONF" >q.fixed &&
		test_cmp q.new q.fixed &&
		mboxlist "$CYR_CONF" >mbl.old &&
		mboxlist "$NEWCONF" >mbl.new &&
		test_cmp mbl.old mbl.new &&
		test_when_finished new_master_stop &&
		new_master_start &&
		same=yes &&
		while IFS="	" read -r u p mb; do
			state "$u" "$p" "$mb" >old.state &&
			(CYR_PORT=$NEWPORT; state "$u" "$p" "$mb") >new.state &&
			test_cmp old.state new.state || { same=no; break; }
		done <mboxes &&
		test $same = yes &&
		test $(wc -l <mboxes) -ge 5 &&
		hook_restored "$NEWCONF" "$NEW" "$NEW"
	'

	${FILES_TEST:-test_expect_success} "$LAYOUT: restore --all: the same files as the original" '
		files "$CYR_CONF" "$(adm)" >files.old &&
		files "$NEWCONF" "$(adm)" >files.new &&
		test_cmp files.old files.new &&
		files "$CYR_CONF" "$(adm Recovered)" >files.old &&
		files "$NEWCONF" "$(adm Recovered)" >files.new &&
		test_cmp files.old files.new
	'

	test_expect_success "$LAYOUT: stop" '
		instance_stop
	'
}

# ---- the layouts ----

# uuid: 3.6.1 default directories (uuid/a/b/UNIQUEID), delete_mode delayed.
layout_begin uuid
hook_restored()
{
	local p
	p=$(mbpath "$1" "$(adm Restored)") &&
	echo "$p" && case $p in "$2"/part/default/uuid/*) ;; *) return 1 ;; esac &&
	test_path_is_file "$p/cyrus.index" &&
	p=$(mbpath "$1" "$(adm Recovered)") &&
	case $p in */uuid/*) ;; *) return 1 ;; esac
}
CYR_EXTRA_CONF="delete_mode: delayed" layout_tests

# legacy: by-name directories (b/user/bob/...), DELETED under its own name.
layout_begin legacy
hook_filled()
{
	local p
	p=$(mbpath "$CYR_CONF" "$(adm "$F1")") &&
	test "$p" = "$CYR_PART/b/user/bob/$F1"
}
hook_restored()
{
	local p
	p=$(mbpath "$1" "$(adm "Restored$S$F1")") &&
	test "$p" = "$2/part/default/b/user/bob/Restored/$F1" &&
	test_path_is_file "$p/cyrus.index" &&
	test $(count_msgs "$p") = 1 &&
	p=$(mbpath "$1" "$(adm Recovered)") &&
	test "$p" = "$2/part/default/b/user/bob/Recovered" &&
	test $(count_msgs "$p") = 2
}
CYR_EXTRA_CONF="mailbox_legacy_dirs: yes" layout_tests

# virtdomains: bob@example.com is example.com!user.bob; another bob in
# another domain stays what it was.
layout_begin virtdomains
DOM=@example.com DOMAIN=example.com LOGIN=bob@example.com IROOT=example.com!user.bob
hook_filled()
{
	instance_add_sasl_user bob@example.org other-pw &&
	instance_imap_script >/dev/null <<-\EOF &&
	CREATE user.bob@example.org
	EOF
	_instance_msg 9 "the other bob" | lmtp_to bob@example.org &&
	state bob@example.org other-pw INBOX >st.other
}
hook_restored()
{
	mboxlist "$1" >mbl &&
	grep -q "\"name\": \"example.com!user.bob.Restored.$F1I\"" mbl &&
	grep -q "\"name\": \"example.com!user.bob.Recovered\"" mbl &&
	grep -q "\"name\": \"example.org!user.bob\"" mbl &&
	! grep -q "\"name\": \"example.org!user.bob.Re" mbl &&
	if [ "$1" = "$CYR_CONF" ]; then
		state bob@example.org other-pw INBOX >now &&
		test_cmp st.other now &&
		printf "%s\t%s\t%s\n" bob@example.org other-pw INBOX >>mboxes
	fi
}
CYR_EXTRA_CONF="virtdomains: userid" layout_tests

# metapartition: cyrus.header, .index, .cache, .annotations on their own
# partition, the message files on the spool.
layout_begin metapartition
hook_filled()
{
	local p
	p=$(mbpath "$CYR_CONF" -M "$(adm)") &&
	case $p in "$L"/meta/*) ;; *) return 1 ;; esac &&
	test_path_is_file "$p/cyrus.index" &&
	test_path_is_missing "$(mbpath "$CYR_CONF" -D "$(adm)")/cyrus.index"
}
hook_restored()
{
	local m d mb
	for mb in Restored "Restored$S$F1" Recovered; do
		m=$(mbpath "$1" -M "$(adm "$mb")") &&
		d=$(mbpath "$1" -D "$(adm "$mb")") &&
		case $m in "$3"/meta/*) ;; *) return 1 ;; esac &&
		case $d in "$2"/part/default/*) ;; *) return 1 ;; esac &&
		test_path_is_file "$m/cyrus.header" &&
		test_path_is_file "$m/cyrus.index" &&
		test_path_is_missing "$d/cyrus.header" &&
		test_path_is_missing "$d/cyrus.index" &&
		test_path_is_missing "$d/cyrus.cache" &&
		test $(count_msgs "$d") -ge 1 &&
		test $(count_msgs "$m") = 0 || return 1
	done
}
CYR_EXTRA_CONF="metapartition-default: $L/meta
metapartition_files: header index cache expunge squat annotations" layout_tests

# archive: the real cyr_expire -A 0 moves every message to the archive
# partition (and their cache records to its cyrus.cache), but for the
# expunged one; one more message arrives after it and stays on the spool.
layout_begin archive
hook_filled()
{
	as_cyrus "$REAL_BIN/cyr_expire" -C "$CYR_CONF" -A 0 >/dev/null &&
	_instance_msg 6 "after the archiving" | lmtp_to "$(rcpt)" &&
	A0=$(count_msgs "$(mbpath "$CYR_CONF" -A "$(adm)")") &&
	D0=$(count_msgs "$(mbpath "$CYR_CONF" -D "$(adm)")") &&
	echo "archived $A0, on the spool $D0" &&
	test $A0 = 3 && test $D0 = 2
}
hook_restored()
{
	local a d
	a=$(mbpath "$1" -A "$(adm Restored)") &&
	d=$(mbpath "$1" -D "$(adm Restored)") &&
	case $a in "$3"/archive/*) ;; *) return 1 ;; esac &&
	case $d in "$2"/part/default/*) ;; *) return 1 ;; esac &&
	test $(count_msgs "$a") = $A0 &&
	test $(count_msgs "$d") = $D0
}
# The archive partition has its own cyrus.cache (the cache records of
# the archived messages): it must come back too.
CYR_EXTRA_CONF="archive_enabled: yes
archivepartition-default: $L/archive" layout_tests

# unixhierarchysep and altnamespace: bob.smith is user.bob^smith, the
# folder Sent.2023 is Sent^2023; the user sees INBOX and Sent.2023 beside.
layout_begin unixsep
S=/ UNAME=bob.smith LOGIN=bob.smith INB= IROOT=user.bob^smith F1=Sent.2023 F1I=Sent^2023
hook_restored()
{
	mboxlist "$1" >mbl &&
	grep -q "\"name\": \"user.bob^smith.Restored.Sent^2023\"" mbl
}
CYR_EXTRA_CONF="unixhierarchysep: yes
altnamespace: yes" layout_tests

test_done
