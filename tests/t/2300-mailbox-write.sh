#!/bin/bash
# cyrus mailbox create/delete/rename against the real imapd: the same
# operation done by imapd on a twin (user "ta", shared "sa"...) and by us
# offline on the other twin ("tb", "sb"...) must leave the same
# mailboxes.db records (real ctl_mboxlist -d, uniqueids and times
# normalised), the same cyrus.header/cyrus.index and quota records; what
# we made is then served by the restarted imapd, and the real
# reconstruct -n and chk_cyrus find nothing to fix.
test_description='mailbox create, delete, rename'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'

# set_conf KEY VALUE: replace or add an imapd.conf line (paused store).
set_conf()
{
	sed -i "/^$1:/d" "$CYR_CONF" && echo "$1: $2" >>"$CYR_CONF"
}

ours() { cyrus mailbox "$1" -C "$CYR_CONF" "${@:2}"; }

# snapshot TWIN: the real ctl_mboxlist -d entries of one twin (names
# containing ".TWIN" as a component, or starting with TWIN), normalised:
# the twin's name -> X, uniqueids -> the name that first had them,
# times and uidvalidities -> T, DELETED hex -> HEX.
cat >normalise.py <<'PY'
import json, re, sys
twin = sys.argv[2]
d = json.load(open(sys.argv[1]))
pat = re.compile(r'(^|\.)' + re.escape(twin) + r'(?=\.|$)')
def mine(n):
    return bool(pat.search(n))
def norm(s):
    s = pat.sub(lambda m: m.group(1) + 'X', s)
    return re.sub(r'\.[0-9A-F]{8}$', '.HEX', s)
ids = {}
for n, e in sorted(d.items()):
    if mine(n) and 'uniqueid' in e:
        first = e.get('name_history', [{}])[-1].get('name', n) \
            if e.get('name_history') else n
        ids.setdefault(e['uniqueid'], 'ID(' + norm(first) + ')')
def fix(v, k=None):
    if isinstance(v, dict):
        return {norm(a): fix(b, a) for a, b in v.items()}
    if isinstance(v, list):
        return [fix(x) for x in v]
    if k in ('mtime', 'uidvalidity'):
        return 'T' if int(v) > 1000000000 else v
    if k == 'uniqueid':
        return ids.get(v, 'ID(?)')
    if isinstance(v, str):
        return norm(v)
    return v
for n, e in sorted(d.items()):
    if mine(n):
        print(norm(n), json.dumps(fix(e), sort_keys=True))
PY

snapshot()
{
	as_cyrus "$REAL_BIN/ctl_mboxlist" -C "$CYR_CONF" -d -y >dump.json &&
	/usr/bin/python3 normalise.py dump.json "$1" | sort
}

# compare_twins A B: same records for both twins.
compare_twins()
{
	snapshot "$1" >"snap.$1" &&
	snapshot "$2" >"snap.$2" &&
	test_line_count -gt 0 "snap.$1" &&
	test_cmp "snap.$1" "snap.$2"
}

# raw_records: mailboxes.db as the real cyr_dbtool shows it, I records
# keyed by their name (0x1F as '.').
raw_records()
{
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" \
		"$CYR_CONFIGDIR/mailboxes.db" twoskip show | tr '\037' '.' |
		sed 's/^I[0-9a-z]*\t\(%(T [a-z]* N \)\([^ ]*\)/I\2\t\1\2/'
}

# files_of NAME: cyrus.header (name, uniqueid normalised) and the index
# header without the times and the CRCs, as hex.
cat >files.py <<'PY'
import re, struct, sys
hdr, idx, twin = sys.argv[1:4]
h = open(hdr, 'rb').read()
pat = re.compile(rb'(^|[. (])' + re.escape(twin.encode()) + rb'(?=[. )]|$)')
body = pat.sub(lambda m: m.group(1) + b'X', h[115:])
body = re.sub(rb' I [0-9a-z]+ ', b' I ID ', body)
body = re.sub(rb'\.[0-9A-F]{8}( I )', rb'.HEX\1', body)
print(h[:115].hex(), body.decode())
i = bytearray(open(idx, 'rb').read())
# uidvalidity, last_appenddate, header_file_crc, sync crc (has the
# internaldates), recenttime, annotation sync crc (differs between twins
# already as imapd's APPEND leaves it), changes_epoch, header crc
for off in (24, 44, 96, 100, 108, 120, 136, 156):
    i[off:off + 4] = b'\0\0\0\0'
print(len(i), i[:160].hex())
PY

files_of()
{
	local h i
	h=$(cyrus mbpath -C "$CYR_CONF" -M "$1")/cyrus.header &&
	i=$(cyrus mbpath -C "$CYR_CONF" -M "$1")/cyrus.index &&
	/usr/bin/python3 files.py "$h" "$i" "$2"
}

# compare_files TWIN_A NAME_A TWIN_B NAME_B
compare_files()
{
	files_of "$2" "$1" >"files.a" &&
	files_of "$4" "$3" >"files.b" &&
	test_cmp files.a files.b
}

# quota_of ROOT: the quota record without the storage used (message sizes
# differ by the user name in headers).
quota_of()
{
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" \
		"$CYR_CONFIGDIR/quota" quotalegacy get "$1" |
		sed 's/S ([0-9]*/S (N/'
}

# The real reconstruct -n and chk_cyrus find nothing: reconstruct prints
# only mailbox names, chk_cyrus only "checking:" lines.
real_checks_clean()
{
	cyrus mailbox list -C "$CYR_CONF" >names &&
	as_cyrus "$REAL_BIN/reconstruct" -C "$CYR_CONF" -n >recon 2>&1 &&
	{ grep -vxFf names recon >extra || true; } &&
	if [ -s extra ]; then
		echo "reconstruct -n found something:"
		cat -A extra
		return 1
	fi &&
	if ! as_cyrus "$REAL_BIN/chk_cyrus" -C "$CYR_CONF" >chk 2>&1; then
		echo "chk_cyrus failed:"
		cat chk
		return 1
	fi &&
	if grep -v -e '^checking: ' -e '^Examining partition' chk; then
		echo "chk_cyrus found something"
		return 1
	fi
}

# state: mailboxes.db bytes and the partition trees, to show nothing
# changed.
state()
{
	{
		md5sum "$CYR_CONFIGDIR/mailboxes.db" | cut -d' ' -f1
		find "$CYR_PART" "$CYR_PART2" "$CYR_CONFIGDIR/quota" \
			"$CYR_CONFIGDIR/user" | sort
	} >"$1"
}

msg() { printf 'From: a@example.org\nSubject: %s\n\nbody\n' "$1"; }

# append USER FOLDER < message: APPEND as USER (password USER).
append()
{
	"$_CYR_PY" -c "$_CYR_IMAP_PY" 127.0.0.1 "$CYR_PORT" "$1" "$1" 0 "$2"
}

test_expect_success 'a store made by the real imapd' '
	instance_start &&
	instance_create_user other Sent Box Box.Sub &&
	for u in ta tb qb la lb; do
		instance_add_sasl_user $u $u || return 1
	done
'

test_expect_success 'create: same records, header and index as imapd' '
	instance_imap_script >/dev/null <<-\EOF &&
	CREATE user.ta
	CREATE user.ta.Sent
	CREATE "user.ta.Sub Folder"
	CREATE user.ta.a.b.c
	CREATE sa.x.y
	CREATE user.qa p2
	SETQUOTA user.qa (STORAGE 5000)
	EOF
	instance_pause &&
	ours create user.tb user.tb.Sent "user.tb.Sub Folder" user.tb.a.b.c \
		sb.x.y &&
	ours create -p p2 --quota 5000 user.qb &&
	compare_twins ta tb &&
	test_line_count = 6 snap.tb &&
	grep "^user.X.a.b " snap.tb &&
	compare_twins sa sb &&
	test_line_count = 3 snap.sb &&
	grep "\"acl\": {\"anyone\": \"lrs\"}" snap.sb &&
	compare_twins qa qb &&
	grep "\"partition\": \"p2\"" snap.qb &&
	for n in "" .Sent ".Sub Folder" .a .a.b .a.b.c; do
		compare_files ta "user.ta$n" tb "user.tb$n" || return 1
	done &&
	compare_files sa sa.x.y sb sb.x.y &&
	compare_files qa user.qa qb user.qb &&
	quota_of user.qa >qa && quota_of user.qb >qb && test_cmp qa qb &&
	grep "S (N 5000) M (0) AS (0) NF (1) MODSEQ 2" qb
'

test_expect_success 'create: reconstruct -n and chk_cyrus find nothing' '
	real_checks_clean
'

test_expect_success 'create: the restarted imapd serves our mailboxes' '
	instance_resume &&
	instance_imap_script >list.out <<-\EOF &&
	LIST "" "*b*"
	GETACL user.tb
	GETACL user.tb.a.b.c
	GETACL sb.x
	GETQUOTAROOT user.qb
	EOF
	grep "LIST (\\\\HasChildren) \".\" user.tb$" list.out &&
	grep "LIST (\\\\HasNoChildren) \".\" \"user.tb.Sub Folder\"" list.out &&
	grep "LIST (\\\\HasChildren) \".\" sb.x$" list.out &&
	grep "^\* ACL user.tb tb lrswipkxtecdan$" list.out &&
	grep "^\* ACL user.tb.a.b.c tb lrswipkxtecdan$" list.out &&
	grep "^\* ACL sb.x anyone lrs$" list.out &&
	grep "^\* QUOTA user.qb (STORAGE 0 5000)$" list.out &&
	msg one | append tb INBOX.Sent &&
	msg one | append ta INBOX.Sent &&
	msg two | instance_deliver qb &&
	instance_imap_script -u tb -w tb >sel.out <<-\EOF &&
	SELECT INBOX.Sent
	FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])
	SELECT "INBOX.Sub Folder"
	EOF
	instance_imap_script -u ta -w ta >/dev/null <<-\EOF &&
	SELECT INBOX.Sent
	FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])
	SELECT "INBOX.Sub Folder"
	EOF
	grep "^\* 1 EXISTS" sel.out &&
	grep "^Subject: one" sel.out &&
	instance_imap_script -u qb -w qb >q.out <<-\EOF &&
	GETQUOTAROOT INBOX
	EOF
	grep "^\* QUOTA INBOX (STORAGE 0 5000)$" q.out &&
	quota_of user.qb >q &&
	grep "M (1) AS (0) NF (1)" q
'

test_expect_success 'delayed delete and rename: as imapd does them' '
	msg three | append ta INBOX.Sent &&
	msg three | append tb INBOX.Sent &&
	instance_imap_script >/dev/null <<-\EOF &&
	SETQUOTA user.ta (STORAGE 1000)
	SETQUOTA user.tb (STORAGE 1000)
	SETACL user.ta.Sent cyrus lrswipkxtecda
	SETACL user.tb.Sent cyrus lrswipkxtecda
	DELETE user.ta.Sent
	RENAME user.ta.a user.ta.Moved
	RENAME "user.ta.Sub Folder" "user.ta.Sub Folder" p2
	RENAME sa.x sa.z
	EOF
	instance_pause &&
	ours delete user.tb.Sent &&
	ours rename user.tb.a user.tb.Moved &&
	ours rename -p p2 "user.tb.Sub Folder" "user.tb.Sub Folder" &&
	ours rename sb.x sb.z &&
	compare_twins ta tb &&
	grep "^DELETED.user.X.Sent.HEX " snap.tb &&
	grep "^user.X.a.b.c .*\"mbtype\": \"ed\"" snap.tb &&
	raw_records | grep "^Iuser.tb.Moved.b.c	.* H (%(N user.tb.a.b.c M [0-9]* V [0-9]* C 1 F 2 T ed))" &&
	compare_twins sa sb &&
	for n in "" .Moved .Moved.b.c ".Sub Folder"; do
		compare_files ta "user.ta$n" tb "user.tb$n" || return 1
	done &&
	compare_files ta \
		"$(cyrus mailbox list -C "$CYR_CONF" "DELETED.user.ta.Sent.*")" tb \
		"$(cyrus mailbox list -C "$CYR_CONF" "DELETED.user.tb.Sent.*")" &&
	quota_of user.ta >qa && quota_of user.tb >qb && test_cmp qa qb &&
	test_path_is_dir "$(cyrus mbpath -C "$CYR_CONF" "user.tb.Sub Folder")" &&
	cyrus mbpath -C "$CYR_CONF" "user.tb.Sub Folder" | grep "^$CYR_PART2/" &&
	real_checks_clean
'

test_expect_success 'renamed and deleted mailboxes are served by imapd' '
	instance_resume &&
	instance_imap_script -u tb -w tb >sel.out <<-\EOF &&
	SELECT INBOX.Moved.b.c
	SELECT "INBOX.Sub Folder"
	LIST "" "*"
	EOF
	grep "^\* LIST .* INBOX.Moved.b.c$" sel.out &&
	! grep "INBOX.Sent" sel.out &&
	instance_imap_script >del.out <<-\EOF &&
	LIST "" "DELETED.user.tb.*"
	EOF
	grep "DELETED.user.tb.Sent" del.out
'

test_expect_success 'rename to a new name on another partition moves files' '
	msg five | append other INBOX.Box.Sub &&
	instance_pause &&
	old=$(cyrus mbpath -C "$CYR_CONF" user.other.Box.Sub) &&
	ours rename -p p2 user.other.Box user.other.Elsewhere &&
	new=$(cyrus mbpath -C "$CYR_CONF" user.other.Elsewhere.Sub) &&
	case $new in "$CYR_PART2"/*) ;; *) false ;; esac &&
	test_path_is_file "$new/cyrus.header" &&
	test_path_is_file "$new/1." &&
	test_path_is_missing "$old" &&
	cyrus mbpath -C "$CYR_CONF" user.other.Elsewhere | grep "^$CYR_PART2/" &&
	real_checks_clean &&
	instance_resume &&
	instance_imap_script -u other -w other >sel.out <<-\EOF &&
	SELECT INBOX.Elsewhere.Sub
	FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])
	EOF
	grep "^Subject: five" sel.out
'

test_expect_success 'legacy (by-name) directories: create and rename' '
	instance_pause &&
	set_conf mailbox_legacy_dirs yes &&
	instance_resume &&
	instance_imap_script >/dev/null <<-\EOF &&
	CREATE user.la
	CREATE user.la.Sub
	CREATE user.la.Sub.Deep
	EOF
	msg legacy | append la INBOX.Sub &&
	instance_pause &&
	ours create user.lb user.lb.Sub user.lb.Sub.Deep &&
	compare_twins la lb &&
	grep "\"mbtype\": \"el\"" snap.lb &&
	test_path_is_file "$CYR_PART/l/user/lb/Sub/cyrus.header" &&
	instance_resume &&
	msg legacy | append lb INBOX.Sub &&
	instance_imap_script >/dev/null <<-\EOF &&
	RENAME user.la.Sub user.la.Renamed
	EOF
	instance_pause &&
	ours rename user.lb.Sub user.lb.Renamed &&
	compare_twins la lb &&
	# imapd 3.6.1 leaves the old name in the copied cyrus.header of a
	# renamed by-name mailbox (mailbox_rename_copy re-reads the copy);
	# we write the new one, as for uuid mailboxes.
	for n in .Renamed .Renamed.Deep; do
		files_of "user.la$n" la | sed "s/ N user.X.Sub/ N user.X.Renamed/" >files.a &&
		files_of "user.lb$n" lb >files.b &&
		test_cmp files.a files.b || return 1
	done &&
	test_path_is_file "$CYR_PART/l/user/lb/Renamed/1." &&
	test_path_is_file "$CYR_PART/l/user/lb/Renamed/Deep/cyrus.index" &&
	test_path_is_missing "$CYR_PART/l/user/lb/Sub/cyrus.header" &&
	real_checks_clean &&
	set_conf mailbox_legacy_dirs no &&
	instance_resume &&
	instance_imap_script -u lb -w lb >sel.out <<-\EOF &&
	SELECT INBOX.Renamed
	FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])
	EOF
	grep "^Subject: legacy" sel.out
'

test_expect_success 'deleting a user (delayed): all mailboxes, quota, files' '
	instance_imap_script >/dev/null <<-\EOF &&
	SETACL user.ta cyrus lrswipkxtecda
	SETACL user.tb cyrus lrswipkxtecda
	DELETE user.ta
	EOF
	instance_pause &&
	tbid=$(cyrus mailbox list -C "$CYR_CONF" --json user.tb |
		/usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)[0][\"uniqueid\"])") &&
	ours delete user.tb &&
	compare_twins ta tb &&
	! grep -v "^DELETED\\.\\|\"mbtype\": \"ed\"" snap.tb &&
	quota_of user.tb >q 2>&1; ! grep MODSEQ q &&
	test_path_is_missing "$CYR_CONFIGDIR/user/uuid/${tbid:0:1}/${tbid:1:1}/$tbid/seen.db" &&
	real_checks_clean
'

test_expect_success 'immediate delete: files go, tombstones as imapd' '
	set_conf delete_mode immediate &&
	instance_resume &&
	instance_create_user ia Sent Trash &&
	instance_create_user ib Sent Trash &&
	msg four | append ia INBOX.Sent &&
	msg four | append ib INBOX.Sent &&
	instance_imap_script >/dev/null <<-\EOF &&
	SETQUOTA user.ia (STORAGE 100)
	SETQUOTA user.ib (STORAGE 100)
	SETACL user.ia.Sent cyrus lrswipkxtecda
	SETACL user.ib.Sent cyrus lrswipkxtecda
	DELETE user.ia.Sent
	EOF
	instance_pause &&
	dir=$(cyrus mbpath -C "$CYR_CONF" user.ib.Sent) &&
	ours delete user.ib.Sent &&
	test_path_is_missing "$dir" &&
	compare_twins ia ib &&
	grep "^user.X.Sent .*\"mbtype\": \"ed\"" snap.ib &&
	quota_of user.ia >qa && quota_of user.ib >qb && test_cmp qa qb &&
	grep "NF (2)" qb
'

test_expect_success 'immediate delete of a user and of a DELETED. mailbox' '
	instance_resume &&
	instance_imap_script >/dev/null <<-EOF &&
	SETACL user.ia cyrus lrswipkxtecda
	SETACL user.ib cyrus lrswipkxtecda
	DELETE user.ia
	DELETE $(cyrus mailbox list -C "$CYR_CONF" "DELETED.user.ta.Sent.*")
	EOF
	instance_pause &&
	ours delete user.ib &&
	ours delete "$(cyrus mailbox list -C "$CYR_CONF" "DELETED.user.tb.Sent.*")" &&
	compare_twins ia ib &&
	snapshot ta | grep Sent >sent.ta &&
	snapshot tb | grep Sent >sent.tb &&
	test_cmp sent.ta sent.tb &&
	! grep "^DELETED.user.X.Sent" sent.tb &&
	real_checks_clean
'

test_expect_success '-n: prints the plan, changes nothing' '
	state before &&
	ours create -n user.nn user.other.New shared.nn.deep >plan &&
	grep "^would create mailbox .user.nn.: uniqueid" plan &&
	grep "^would create mailbox .shared.nn.deep.:" plan &&
	ours delete -n user.other >plan &&
	grep "^would delete mailbox .user.other.\|^would rename mailbox .user.other. to .DELETED.user.other" plan &&
	grep "^would remove the quota roots" plan &&
	ours rename -n -p p2 user.other.Sent user.other.Gone >plan &&
	grep "^would rename mailbox .user.other.Sent. to .user.other.Gone. (moving its files to partition p2" plan &&
	state after &&
	test_cmp before after
'

test_expect_success 'bad input: clear error, sysexits code, nothing changed' '
	state before &&
	test_expect_code 65 ours create "user.other.bad%name" 2>err &&
	grep "cannot create .user.other.bad%name." err &&
	test_expect_code 65 ours create "user..x" 2>err &&
	test_expect_code 78 ours create -p nosuch user.other.X 2>err &&
	grep "unknown partition .nosuch." err &&
	test_expect_code 73 ours create user.other.Sent 2>err &&
	grep "already exists" err &&
	test_expect_code 66 ours create user.nobody.Sub 2>err &&
	grep "has no INBOX" err &&
	test_expect_code 66 ours delete user.nobody 2>err &&
	grep "does not exist" err &&
	test_expect_code 66 ours rename user.nobody user.x 2>err &&
	test_expect_code 73 ours rename user.other.Sent user.other 2>err &&
	test_expect_code 73 ours rename user.other.Sent user.other.Sent 2>err &&
	test_expect_code 73 ours rename -p default user.other.Sent \
		user.other.Sent 2>err &&
	grep "on partition .default. already" err &&
	test_expect_code 69 ours rename user.other user.someone 2>err &&
	grep "renaming a user" err &&
	test_expect_code 78 ours rename -p nosuch user.other.Sent user.other.Y 2>err &&
	state after &&
	test_cmp before after
'

test_expect_success 'a mailbox with children is not deleted (imapd: HASCHILDREN)' '
	ours create sc.parent.child &&
	state before &&
	test_expect_code 73 ours delete sc.parent 2>err &&
	grep "has mailboxes below it" err &&
	state after &&
	test_cmp before after
'

test_expect_success 'beside a running server: refused (75), -n still works' '
	instance_resume &&
	state before &&
	test_expect_code 75 ours create user.other.Live 2>err &&
	grep "refusing to change the store while Cyrus runs" err &&
	test_expect_code 75 ours delete user.other.Sent &&
	test_expect_code 75 ours rename user.other.Sent user.other.S2 &&
	ours create -n user.other.Live >plan &&
	state after &&
	test_cmp before after
'

test_expect_success 'usage: --help 0, wrong arguments 64' '
	cyrus mailbox --help >out &&
	test_expect_code 64 cyrus mailbox rename -C "$CYR_CONF" onlyone &&
	test_expect_code 64 cyrus mailbox delete -C "$CYR_CONF" &&
	test_expect_code 64 cyrus mailbox delete -C "$CYR_CONF" -p x y &&
	test_expect_code 64 cyrus mailbox create -C "$CYR_CONF" --quota x y &&
	test_expect_code 64 cyrus mailbox create -C "$CYR_CONF" -Z y
'

test_done
