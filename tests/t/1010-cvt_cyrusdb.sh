#!/bin/bash
test_description='cyrus cvt_cyrusdb against the real cvt_cyrusdb, every pair'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"

conf=$PWD/imapd.conf
mkdir -p conf part
printf 'configdirectory: %s/conf\npartition-default: %s/part\n' "$PWD" "$PWD" >"$conf"
[ "$(id -u)" = 0 ] && chown -R cyrus:mail conf part
real_tool() { as_cyrus "$REAL_BIN/$1" -C "$conf" "${@:2}"; }

# Keys whose order differs between backends: skiplist compares signed
# chars, twoskip unsigned bytes, flat in mailbox order.
printf 'a\t1\n\303\244\t2\nb\t3\na.b\t4\na b\t5\nuser.x\t\nuser-x\t6\n' >recs
real_tool cyr_dbtool -n "$PWD/src.twoskip" twoskip set <recs

for to in skiplist flat twoskip; do
	test_expect_success "twoskip -> $to: same records, same order as the real tool's result" "
		real_tool cvt_cyrusdb \"\$PWD/src.twoskip\" twoskip \"\$PWD/real.$to\" $to >real.out &&
		cvt_cyrusdb_out=\$(cyrus cvt_cyrusdb -C \"\$conf\" \"\$PWD/src.twoskip\" twoskip \"\$PWD/ours.$to\" $to) &&
		test \"\$cvt_cyrusdb_out\" = \"Converting from \$PWD/src.twoskip (twoskip) to \$PWD/ours.$to ($to)\" &&
		real_tool cyr_dbtool \"\$PWD/real.$to\" $to show >expect &&
		real_tool cyr_dbtool \"\$PWD/ours.$to\" $to show >actual &&
		test_cmp expect actual &&
		test \$(wc -l <actual) = 7
	"
done

for from in skiplist flat; do
	for to in twoskip skiplist flat; do
		[ $from = $to ] && continue
		test_expect_success "$from -> $to" "
			cyrus cvt_cyrusdb -C \"\$conf\" \"\$PWD/real.$from\" $from \"\$PWD/ours.$from.$to\" $to >/dev/null &&
			real_tool cvt_cyrusdb \"\$PWD/real.$from\" $from \"\$PWD/real.$from.$to\" $to >/dev/null &&
			real_tool cyr_dbtool \"\$PWD/real.$from.$to\" $to show >expect &&
			real_tool cyr_dbtool \"\$PWD/ours.$from.$to\" $to show >actual &&
			test_cmp expect actual
		"
	done
done

test_expect_success 'twoskip <-> quotalegacy' '
	printf "user.fred\t%%(S (0 1024))\nuser.joe\t0 100\n" >q &&
	real_tool cyr_dbtool -n "$PWD/q.twoskip" twoskip set <q &&
	mkdir qdir && chown cyrus:mail qdir 2>/dev/null;
	cyrus cvt_cyrusdb -C "$conf" "$PWD/q.twoskip" twoskip "$PWD/qdir/quotas.db" quotalegacy >/dev/null &&
	test_path_is_file qdir/quota/f/user.fred &&
	real_tool cyr_dbtool "$PWD/qdir/quotas.db" quotalegacy show >expect &&
	test_cmp q expect &&
	cyrus cvt_cyrusdb -C "$conf" "$PWD/qdir/quotas.db" quotalegacy "$PWD/q.back" twoskip >/dev/null &&
	real_tool cyr_dbtool "$PWD/q.back" twoskip show >back &&
	test_cmp q back
'

test_expect_success 'in place (same name): converted, readable as the new backend' '
	cp src.twoskip inplace.db && chown cyrus:mail inplace.db 2>/dev/null;
	cyrus cvt_cyrusdb -C "$conf" "$PWD/inplace.db" twoskip "$PWD/inplace.db" skiplist >/dev/null &&
	head -c 20 inplace.db | grep -a "skiplist file" &&
	real_tool cyr_dbtool "$PWD/inplace.db" skiplist show >actual &&
	real_tool cyr_dbtool "$PWD/real.skiplist" skiplist show >expect &&
	test_cmp expect actual
'

# Many keys in one transaction, in order (our sequential fast paths), with
# keys past 0x7f mixed in (out of order for skiplist's signed compare).
test_expect_success 'bulk: 50000 keys by dbtool -T set, twoskip -> skiplist -> twoskip, checked by the real tool' '
	awk "BEGIN { for (i = 0; i < 50000; i++) printf \"user.u%06d\\tv%d\\n\", i, i;
		for (i = 0; i < 300; i++) printf \"\\303%03d\\tw%d\\n\", i, i }" >bulk.in &&
	chown cyrus:mail bulk.in 2>/dev/null;
	cyrus dbtool -C "$conf" -T -n "$PWD/bulk.twoskip" twoskip set <bulk.in &&
	test "$(real_tool cyr_dbtool "$PWD/bulk.twoskip" twoskip consistent)" = "Yes, consistent" &&
	real_tool cyr_dbtool "$PWD/bulk.twoskip" twoskip show >actual &&
	test $(wc -l <actual) = 50300 &&
	sort bulk.in >expect && sort actual >actual.sorted && test_cmp expect actual.sorted &&
	cyrus cvt_cyrusdb -C "$conf" "$PWD/bulk.twoskip" twoskip "$PWD/bulk.skiplist" skiplist >/dev/null &&
	test "$(real_tool cyr_dbtool "$PWD/bulk.skiplist" skiplist consistent)" = "Yes, consistent" &&
	real_tool cvt_cyrusdb "$PWD/bulk.twoskip" twoskip "$PWD/real.bulk.skiplist" skiplist >/dev/null &&
	real_tool cyr_dbtool "$PWD/real.bulk.skiplist" skiplist show >expect &&
	real_tool cyr_dbtool "$PWD/bulk.skiplist" skiplist show >actual &&
	test_cmp expect actual &&
	cyrus cvt_cyrusdb -C "$conf" "$PWD/bulk.skiplist" skiplist "$PWD/bulk.back" twoskip >/dev/null &&
	test "$(real_tool cyr_dbtool "$PWD/bulk.back" twoskip consistent)" = "Yes, consistent" &&
	real_tool cyr_dbtool "$PWD/bulk.back" twoskip show >actual &&
	real_tool cyr_dbtool "$PWD/bulk.twoskip" twoskip show >expect &&
	test_cmp expect actual
'

test_expect_success 'a damaged source: error, exit non-zero, the old target survives' '
	echo "precious" >target.db &&
	head -c 100 src.twoskip >broken.twoskip && chown cyrus:mail broken.twoskip target.db 2>/dev/null;
	test_must_fail cyrus cvt_cyrusdb -C "$conf" "$PWD/broken.twoskip" twoskip "$PWD/target.db" skiplist >out 2>err &&
	grep broken.twoskip err &&
	echo precious >want && test_cmp want target.db &&
	ls | grep -v cyrtmp >/dev/null &&
	test_must_fail ls *.cyrtmp.* 2>/dev/null
'

test_expect_success 'a missing source: EX_NOINPUT, no target created' '
	test_expect_code 66 cyrus cvt_cyrusdb -C "$conf" "$PWD/none" twoskip "$PWD/new.db" flat >out 2>err &&
	test_path_is_missing new.db
'

test_expect_success 'wrong number of arguments or unknown backend: 64' '
	test_expect_code 64 cyrus cvt_cyrusdb -C "$conf" a b c 2>err &&
	grep usage err &&
	test_expect_code 64 cyrus cvt_cyrusdb -C "$conf" "$PWD/src.twoskip" twoskip "$PWD/x" berkeley 2>err &&
	grep berkeley err
'

test_done
