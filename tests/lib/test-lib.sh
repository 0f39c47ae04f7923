# test-lib.sh: the library of the integration tests tests/t/NNNN-name.sh
# (git's t/test-lib.sh, smaller).  A test script:
#
#	#!/bin/bash
#	test_description='dbtool shows what cyr_dbtool shows'
#	. "$(dirname "$0")/../lib/test-lib.sh"
#
#	real_cyrus_available || test_skip_all 'no Debian cyrus-imapd'
#	instance_start || test_skip_all 'cannot start a private Cyrus'
#
#	test_expect_success 'show' '
#		as_cyrus $REAL_BIN/cyr_dbtool ... >expect &&
#		cyrus dbtool ... >actual &&
#		test_cmp expect actual
#	'
#	test_done
#
# Each script runs in its own scratch directory (cwd), removed at exit unless
# KEEP_SCRATCH=1; it is owned by cyrus:mail when run as root, so the real
# tools (as_cyrus) can write there too.  Output is TAP: "ok N - title",
# "not ok N - title", diagnostics as "# ...".  A test body's own output is
# shown (as "# " lines) only when it fails, or always with TEST_VERBOSE=1
# (or -v on the script's command line).
#
# Exported: TOP (the checkout), CYRUS ($TOP/bin/cyrus), REAL_BIN
# (/usr/lib/cyrus/bin), TEST_SCRATCH (the scratch dir); PATH starts with
# $TOP/bin.  tests/lib/instance.sh is sourced too (instance_start, ...,
# as_cyrus, real_cyrus_available).

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || exit 1
CYRUS=$TOP/bin/cyrus
REAL_BIN=/usr/lib/cyrus/bin
PATH=$TOP/bin:$PATH
export TOP CYRUS REAL_BIN PATH

. "$TOP/tests/lib/instance.sh"

for _tl_arg in "$@"; do
	case $_tl_arg in
	-v | --verbose) TEST_VERBOSE=1 ;;
	-k | --keep) KEEP_SCRATCH=1 ;;
	esac
done
unset _tl_arg

test_count=0
test_failed=0
test_fixed=0
test_broken=0
_tl_cleanup=
_tl_in_test=
_tl_prereqs=" "

# Unlike git we keep LC_ALL fixed: output comparisons with the real tools.
LC_ALL=C.UTF-8
LANG=C.UTF-8
TZ=UTC
export LC_ALL LANG TZ
unset CDPATH

TEST_SCRATCH=$(mktemp -d "${TEST_TMPDIR:-/tmp}/cyrtap.XXXXXX") || {
	echo "Bail out! cannot make a scratch directory"
	exit 1
}
export TEST_SCRATCH
if [ "$(id -u)" = 0 ] && id cyrus >/dev/null 2>&1; then
	chown cyrus:mail "$TEST_SCRATCH"
	chmod 0775 "$TEST_SCRATCH"
else
	chmod 0755 "$TEST_SCRATCH"
fi

_tl_exit()
{
	if [ "${KEEP_SCRATCH:-0}" = 1 ]; then
		echo "# scratch directory kept: $TEST_SCRATCH"
	else
		cd / && rm -rf "$TEST_SCRATCH"
	fi
}
trap _tl_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
cd "$TEST_SCRATCH" || exit 1

# Prerequisites (git's test_set_prereq): REAL_CYRUS, ROOT, CYRUS_BIN are
# set here; a test given a prereq it lacks is skipped.
test_set_prereq()
{
	_tl_prereqs="$_tl_prereqs$1 "
}
test_have_prereq()
{
	local p
	for p in ${1//,/ }; do
		case $_tl_prereqs in *" $p "*) ;; *) return 1 ;; esac
	done
}
real_cyrus_available && test_set_prereq REAL_CYRUS
[ "$(id -u)" = 0 ] && test_set_prereq ROOT
[ -x "$CYRUS" ] && test_set_prereq CYRUS_BIN

_tl_diag()
{
	sed -e 's/^/# /' "$@"
}

say()
{
	echo "# $*"
}

# test_skip_all REASON: nothing runs; valid before the first test.
test_skip_all()
{
	if [ "$test_count" -gt 0 ]; then
		echo "not ok $((test_count + 1)) - skip_all after tests: $1"
		echo "1..$((test_count + 1))"
		exit 1
	fi
	echo "1..0 # SKIP $1"
	exit 0
}

# _tl_run BODY: runs BODY in this shell (variables persist), then the
# test_when_finished commands; output to a file.  Returns BODY's status,
# or 1 when a cleanup failed.
_tl_run()
{
	local ret cret=0
	_tl_cleanup=
	_tl_in_test=1
	_tl_out=$TEST_SCRATCH/.test-output
	{
		(exit 0)
		eval "$1"
	} >"$_tl_out" 2>&1 </dev/null
	ret=$?
	if [ -n "$_tl_cleanup" ]; then
		_tl_cret=0
		{ eval "$_tl_cleanup"; } >>"$_tl_out" 2>&1 </dev/null
		cret=$_tl_cret
		if [ $cret != 0 ]; then
			echo "test_when_finished commands failed ($cret)" \
				>>"$_tl_out"
			[ $ret = 0 ] && ret=1
		fi
	fi
	_tl_in_test=
	cd "$TEST_SCRATCH" || ret=1
	return $ret
}

_tl_skip_unless_prereq()
{
	if ! test_have_prereq "$1"; then
		test_count=$((test_count + 1))
		echo "ok $test_count # skip $2 (missing $1)"
		return 0
	fi
	return 1
}

# test_expect_success [PREREQ] 'title' 'body'
test_expect_success()
{
	if [ $# = 3 ]; then
		_tl_skip_unless_prereq "$1" "$2" && return 0
		shift
	fi
	[ $# = 2 ] || { echo "Bail out! test_expect_success: 2 or 3 args"; exit 1; }
	if _tl_run "$2"; then
		test_count=$((test_count + 1))
		echo "ok $test_count - $1"
		[ "${TEST_VERBOSE:-0}" = 1 ] && _tl_diag "$_tl_out"
	else
		test_count=$((test_count + 1))
		test_failed=$((test_failed + 1))
		echo "not ok $test_count - $1"
		_tl_diag "$_tl_out"
		# The body, for the reader of a failure.
		printf '%s\n' "$2" | sed -e '/^[[:space:]]*$/d' -e 's/^/#	/'
	fi
	return 0
}

# test_expect_failure [PREREQ] 'title' 'body': a known breakage (TAP TODO).
test_expect_failure()
{
	if [ $# = 3 ]; then
		_tl_skip_unless_prereq "$1" "$2" && return 0
		shift
	fi
	test_count=$((test_count + 1))
	if _tl_run "$2"; then
		test_fixed=$((test_fixed + 1))
		echo "ok $test_count - $1 # TODO known breakage vanished"
	else
		test_broken=$((test_broken + 1))
		echo "not ok $test_count - $1 # TODO known breakage"
		[ "${TEST_VERBOSE:-0}" = 1 ] && _tl_diag "$_tl_out"
	fi
	return 0
}

# test_when_finished 'cmd': run after the current test body, even if it
# failed (LIFO).
test_when_finished()
{
	if [ -z "$_tl_in_test" ]; then
		echo "Bail out! test_when_finished outside a test"
		exit 1
	fi
	_tl_cleanup="{ $1
} || _tl_cret=1; $_tl_cleanup"
}

# test_expect_code CODE CMD ARGS...: CMD exits with CODE.
test_expect_code()
{
	local want=$1 got
	shift
	"$@"
	got=$?
	if [ "$got" = "$want" ]; then
		return 0
	fi
	echo "test_expect_code: '$*' exited $got, wanted $want" >&2
	return 1
}

# test_must_fail CMD ARGS...: CMD fails normally (not a crash by a signal,
# not "command not found").
test_must_fail()
{
	local got
	"$@"
	got=$?
	if [ $got = 0 ]; then
		echo "test_must_fail: '$*' succeeded" >&2
		return 1
	elif [ $got -gt 128 ] && [ $got -le 192 ]; then
		echo "test_must_fail: '$*' died of signal $((got - 128))" >&2
		return 1
	elif [ $got = 126 ] || [ $got = 127 ]; then
		echo "test_must_fail: '$*': cannot run ($got)" >&2
		return 1
	fi
	return 0
}

# test_cmp EXPECTED ACTUAL: identical files, or the diff.
test_cmp()
{
	if ! cmp -s "$1" "$2"; then
		diff -u "$1" "$2" >&2
		[ -e "$1" ] && [ -e "$2" ] || echo "test_cmp: missing file" >&2
		return 1
	fi
}

# test_line_count OP N FILE: wc -l of FILE compared with N (-eq, -gt, ...).
test_line_count()
{
	local n
	n=$(wc -l <"$3") || return 1
	if ! test "$n" "$1" "$2"; then
		echo "test_line_count: $3 has $n lines, wanted $1 $2" >&2
		cat "$3" >&2
		return 1
	fi
}

# test_path_is_file / test_path_is_dir / test_path_is_missing PATH
test_path_is_file()
{
	[ -f "$1" ] || { echo "not a file: $1" >&2; return 1; }
}
test_path_is_dir()
{
	[ -d "$1" ] || { echo "not a directory: $1" >&2; return 1; }
}
test_path_is_missing()
{
	[ ! -e "$1" ] || { echo "exists: $1" >&2; return 1; }
}

# test_done: the plan; exit status 1 if any test failed.
test_done()
{
	echo "1..$test_count"
	[ $test_fixed -gt 0 ] && say "$test_fixed known breakage(s) vanished"
	[ $test_broken -gt 0 ] && say "still have $test_broken known breakage(s)"
	if [ $test_failed -gt 0 ]; then
		say "failed $test_failed among $test_count test(s)"
		exit 1
	fi
	exit 0
}
