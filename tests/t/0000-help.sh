#!/bin/bash
test_description='the cyrus dispatcher: help, aliases, unknown commands and options'
. "$(dirname "$0")/../lib/test-lib.sh"

test_expect_success 'cyrus help lists every command' '
	cyrus help >out &&
	grep "^usage: cyrus" out &&
	grep "^   dbtool " out &&
	grep "^   cvt_cyrusdb " out
'

# Every row of the command table: --help exits 0 with a usage line on
# stdout, an unknown option exits 64 with the usage on stderr.
for cmd in $(cyrus help | sed -n "s/^   \([a-z_]*\) .*/\1/p"); do
	[ "$cmd" = help ] && continue
	test_expect_success "$cmd --help and a bad option" "
		cyrus $cmd --help >out 2>err &&
		grep -i '^usage:' out &&
		test_must_fail test -s err &&
		test_expect_code 64 cyrus $cmd -Z >badout 2>baderr &&
		grep -i 'usage' baderr &&
		cyrus help $cmd >out2 &&
		test_cmp out out2
	"
done

test_expect_success 'no command, unknown command: usage and 64' '
	test_expect_code 64 cyrus 2>err &&
	grep "^usage: cyrus" err &&
	test_expect_code 64 cyrus dbtol 2>err &&
	grep "not a cyrus command" err &&
	grep "dbtool" err
'

test_expect_success "Debian's lookup: NAME, cyr_NAME, ctl_NAME" '
	cyrus cyr_dbtool --help >a &&
	cyrus dbtool --help >b &&
	test_cmp a b
'

test_expect_success 'called as cvt_cyrusdb through a symlink it is that command' '
	ln -s "$CYRUS" cvt_cyrusdb &&
	test_expect_code 64 ./cvt_cyrusdb 2>err &&
	grep "cvt_cyrusdb" err
'

test_expect_success 'a missing imapd.conf is EX_CONFIG with the file named' '
	test_expect_code 78 cyrus dbtool -C "$PWD/nope.conf" "$PWD/x.db" twoskip show 2>err &&
	grep "nope.conf" err &&
	test_expect_code 78 cyrus -C "$PWD/nope.conf" dbtool "$PWD/x.db" twoskip show 2>err &&
	grep "nope.conf" err
'

test_expect_success 'a bad imapd.conf line is EX_CONFIG naming file:line' '
	printf "configdirectory: /tmp\nthis line has no colon\n" >bad.conf &&
	test_expect_code 78 cyrus dbtool -C "$PWD/bad.conf" "$PWD/x.db" twoskip show 2>err &&
	grep "bad.conf:2:" err
'

test_expect_success 'make install puts cyrus and the alias symlinks in place' '
	make -C "$TOP" -s install DESTDIR="$PWD/root" PREFIX=/usr >/dev/null &&
	test -x root/usr/sbin/cyrus &&
	for a in cyrreconstruct cyrquota ctl_cyrusdb cvt_cyrusdb ctl_mboxlist cyrus-makedirs; do
		test "$(readlink root/usr/sbin/$a)" = cyrus || return 1
	done
'

test_done
