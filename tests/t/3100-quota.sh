#!/bin/bash
# cyrus quota against the real quota: the same report (text and JSON) on a
# live store the real imapd made; then, on two copies damaged the same way
# by hand, the real quota -f on one and ours on the other must print the
# same and leave the same quota database and the same cyrus.header and
# cyrus.index files. -n changes nothing. Roots on a sub-mailbox and on a
# shared mailbox survive (cyrus-imapd #2877), also where the real tool
# drops them.
test_description='quota report and quota -f'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'

real_quota() { as_cyrus "$REAL_BIN/quota" "$@"; }
our_quota() { as_cyrus cyrus quota "$@"; }

# both_report ARGS...: the real and our report on the live store, same
# stdout, same exit status.
both_report()
{
	real_quota -C "$CYR_CONF" "$@" >expect 2>expect.err
	echo "rc=$?" >>expect
	our_quota -C "$CYR_CONF" "$@" >actual 2>actual.err
	echo "rc=$?" >>actual
	test_cmp expect actual
}

test_expect_success 'a store with quota roots on users, a sub-mailbox and a shared mailbox' '
	instance_start &&
	instance_fill &&
	instance_create_user dave Sub Sub.deep Other &&
	instance_imap_script >/dev/null <<-\EOF &&
	SETQUOTA user.alice (STORAGE 3 MESSAGE 0 X-NUM-FOLDERS 7)
	SETQUOTA user.dave (STORAGE 100000 MESSAGE 1000)
	SETQUOTA user.dave.Sub (MESSAGE 50)
	SETACL user.dave.Sub anyone p
	SETQUOTA shared (STORAGE 500)
	CREATE shared.child
	EOF
	for i in 1 2 3; do
		printf "From: a@b\nSubject: s%s\n\nbody %s\n" $i $i |
			instance_deliver dave || return 1
	done &&
	printf "From: a@b\nSubject: sub\n\nin Sub\n" | instance_deliver dave Sub &&
	test_path_is_file "$CYR_CONFIGDIR/quota/d/user.dave.Sub"
'

for args in "" "user.dave" "user.dave.Sub" "user.b" "shared" "user.dave user.alice" \
	"-u dave" "-d example.com" "nosuch" "-J" "-J user.alice shared" "-J nosuch" \
	"-n" "-q"; do
	test_expect_success "report '$args': same as the real quota" "
		both_report $args
	"
done

test_expect_success 'cyrquota (argv[0]) is the same command' '
	ln -s "$TOP/bin/cyrus" cyrquota &&
	as_cyrus ./cyrquota -C "$CYR_CONF" >actual &&
	real_quota -C "$CYR_CONF" >expect &&
	test_cmp expect actual
'

test_expect_success '--json parses and carries used bytes and limits in bytes' '
	our_quota -C "$CYR_CONF" --json >out.json &&
	/usr/bin/python3 - out.json <<-\EOF
	import json, sys
	d = json.load(open(sys.argv[1]))
	assert list(d) == ["shared", "user.alice", "user.bob", "user.dave",
	                   "user.dave.Sub"], list(d)
	assert d["user.bob"]["STORAGE"]["limit"] == 10240 * 1024
	assert d["user.alice"]["X-NUM-FOLDERS"] == {"used": 4, "limit": 7}
	assert "limit" not in d["user.alice"]["MESSAGE"]   # limit 0
	assert d["user.dave.Sub"]["MESSAGE"] == {"used": 1, "limit": 50}
	EOF
'

test_expect_success 'quota -f on the live store finds nothing and changes nothing' '
	our_quota -C "$CYR_CONF" -f >actual 2>err &&
	test_line_count = 0 err &&
	real_quota -C "$CYR_CONF" >expect &&
	test_cmp expect actual &&
	real_quota -C "$CYR_CONF" -f -n >/dev/null 2>err &&
	test_line_count = 0 err
'

test_expect_success 'quota -f while the server delivers: the real one agrees after' '
	(
		for i in 1 2 3 4 5 6 7 8; do
			printf "From: a@b\nSubject: live %s\n\nbody\n" $i |
				instance_deliver dave Sub || exit 1
			printf "From: a@b\nSubject: live %s\n\nbody\n" $i |
				instance_deliver bob || exit 1
		done
	) &
	pid=$! &&
	for i in 1 2 3 4 5; do
		our_quota -C "$CYR_CONF" -f -q || return 1
	done &&
	wait $pid &&
	real_quota -C "$CYR_CONF" -f -n >/dev/null 2>err &&
	test_line_count = 0 err
'

test_expect_success 'bad option: 64, as the real quota' '
	test_expect_code 64 real_quota -C "$CYR_CONF" -y &&
	test_expect_code 64 our_quota -C "$CYR_CONF" -y &&
	test_expect_code 64 our_quota -C "$CYR_CONF" --bogus
'

test_expect_success 'missing imapd.conf: 78, as the real quota' '
	test_expect_code 78 real_quota -C /nonexistent/imapd.conf &&
	test_expect_code 78 our_quota -C /nonexistent/imapd.conf
'

test_expect_success 'the store, offline, as a base for twins' '
	KEEP_SCRATCH=1 instance_stop &&
	cp -a "$CYR_DIR" base &&
	rm -rf "$CYR_DIR"
'

# twin NAME [BACKEND]: a copy of base whose imapd.conf points at itself,
# with its quota database converted to BACKEND.
twin()
{
	rm -rf "$1" &&
	cp -a base "$1" &&
	sed -i "s|$CYR_DIR|$PWD/$1|g" "$1/imapd.conf" &&
	if [ -n "${2:-}" ] && [ "$2" != quotalegacy ]; then
		as_cyrus "$REAL_BIN/cvt_cyrusdb" -C "$PWD/$1/imapd.conf" \
			"$PWD/$1/conf/quotas.db" quotalegacy \
			"$PWD/$1/conf/quotas.new" "$2" >/dev/null &&
		mv "$1/conf/quotas.new" "$1/conf/quotas.db" &&
		rm -f "$1"/conf/quota/*/* &&
		echo "quota_db: $2" >>"$1/imapd.conf"
	fi
}

# dbtool NAME BACKEND ARGS...: the real cyr_dbtool on NAME's quota db.
dbtool()
{
	local n=$1 b=$2
	shift 2
	as_cyrus "$REAL_BIN/cyr_dbtool" -C "$PWD/$n/imapd.conf" \
		"$PWD/$n/conf/quotas.db" "$b" "$@"
}

# damage NAME BACKEND: wrong usage, a legacy value, a stale root, a root
# missing (its mailboxes still name it), a new root no mailbox names yet,
# a SCAN left by an interrupted run.
damage()
{
	dbtool "$1" "$2" set user.bob "%(S (5 10240) M (9) AS (3) NF (1) MODSEQ 8)" &&
	dbtool "$1" "$2" set shared "12 500" &&
	dbtool "$1" "$2" set user.zzz "%(S (1) M (1) AS (0) NF (1) MODSEQ 1)" &&
	dbtool "$1" "$2" delete user.dave.Sub &&
	dbtool "$1" "$2" set user.alice.Archive "%(S (0) M (0) AS (0) NF (0) MODSEQ 2)" &&
	dbtool "$1" "$2" set user.alice \
		"%(S (1 3) M (4 0) AS (0) NF (4 7) SCAN %(MBOX user.alice.Archive S 5 M 1 AS 0 NF 1) MODSEQ 5)"
}

# files NAME: checksums of every cyrus.header and cyrus.index.
files()
{
	(cd "$1/part" && find . -name cyrus.header -o -name cyrus.index |
		sort | xargs md5sum)
}

# fix_both BACKEND ARGS...: real quota ARGS on twin r, ours on twin o.
fix_both()
{
	local b=$1
	shift
	twin r "$b" && twin o "$b" && damage r "$b" && damage o "$b" &&
	files o >o.before && dbtool o "$b" show >o.db.before &&
	{ real_quota -C "$PWD/r/imapd.conf" "$@" >r.out 2>r.err
	  echo "rc=$?" >>r.out; } &&
	{ our_quota -C "$PWD/o/imapd.conf" "$@" >o.out 2>o.err
	  echo "rc=$?" >>o.out; } &&
	dbtool r "$b" show >r.db && dbtool o "$b" show >o.db &&
	files r >r.files && files o >o.files
}

for backend in quotalegacy twoskip skiplist; do
	test_expect_success "$backend: -f prints, fixes and writes what the real -f does" "
		fix_both $backend -f &&
		test_cmp r.out o.out &&
		test_cmp r.err o.err &&
		test_cmp r.db o.db &&
		test_cmp r.files o.files &&
		grep -q '^user.dave.Sub: quota root user.dave.Sub --> user.dave$' o.err &&
		grep -q '^user.alice.Archive: quota root user.alice --> user.alice.Archive$' o.err &&
		grep -q '^user.zzz: removed$' o.err &&
		grep -q '^user.alice.Archive	' o.db &&
		grep -q '^shared	' o.db
	"
done

test_expect_success 'after our -f the real quota -f finds nothing to fix' '
	fix_both quotalegacy -f &&
	real_quota -C "$PWD/o/imapd.conf" -f -n >expect 2>err &&
	test_line_count = 0 err &&
	our_quota -C "$PWD/o/imapd.conf" >actual &&
	test_cmp expect actual
'

for args in "-f -q" "-f user.dave" "-f user.dave.Sub" "-f user.alice" \
	"-f shared" "-f -u dave" "-f -J" "-f nosuch"; do
	test_expect_success "quotalegacy: '$args' as the real one" "
		fix_both quotalegacy $args &&
		test_cmp r.out o.out &&
		test_cmp r.err o.err &&
		test_cmp r.db o.db &&
		test_cmp r.files o.files
	"
done

test_expect_success '-f -n prints what -f would do, and changes nothing' '
	fix_both quotalegacy -f -n &&
	test_cmp r.out o.out &&
	test_cmp r.err o.err &&
	test_line_count -gt 5 o.err &&
	dbtool o quotalegacy show >o.db.after &&
	test_cmp o.db.before o.db.after &&
	files o >o.after &&
	test_cmp o.before o.after
'

test_expect_success 'prefixes out of order keep every root (#2877; the real one drops them)' '
	fix_both quotalegacy -f user.dave user.alice &&
	grep -q "^user.alice	" o.db &&
	grep -q "^user.alice.Archive	" o.db &&
	! grep -q "quota root user.alice --> (none)" o.err &&
	grep -q " user.alice.Archive$" o.out &&
	real_quota -C "$PWD/o/imapd.conf" -f -n user.alice user.dave \
		>/dev/null 2>err &&
	test_line_count = 0 err
'

test_expect_success 'a prefix given twice counts each mailbox once' '
	fix_both quotalegacy -f user.bob user.bob user.b &&
	! grep -q "removed" o.err &&
	real_quota -C "$PWD/o/imapd.conf" -f -n user.b >/dev/null 2>err &&
	test_line_count = 0 err
'

test_done
