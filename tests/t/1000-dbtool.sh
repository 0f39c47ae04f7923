#!/bin/bash
test_description='cyrus dbtool against the real cyr_dbtool, all backends'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"

conf=$PWD/imapd.conf
mkdir -p conf part
printf 'configdirectory: %s/conf\npartition-default: %s/part\n' "$PWD" "$PWD" >"$conf"
[ "$(id -u)" = 0 ] && chown -R cyrus:mail conf part
real() { as_cyrus "$REAL_BIN/cyr_dbtool" -C "$conf" "$@"; }
ours() { cyrus dbtool -C "$conf" "$@"; }

# Records for set-from-stdin: key TAB value per line. 0x01, 0x1f, 8-bit,
# quotes, spaces, empty values, keys that are prefixes of each other.
printf 'apple\tred\napple.pie\tsweet\napple pie\t\nbanana\tyellow\n' >recs
printf 'k\001x\tv\001y\nu\303\244\t\303\244\nq"x\t"quoted" %%v\nNIL\tNIL\n' >>recs
printf 'user\037bob\t%%(T e I x P default)\nz\t\n' >>recs
cp recs recs.small
# A 100 KB value (cyr_dbtool's stdin lines stop at 64000 bytes: the real
# tool gets it through batch as a quoted string).
bigval=$(head -c 102400 /dev/zero | tr '\0' 'x')
printf 'big\t%s\n' "$bigval" >>recs
printf 'SET big "%s"\n' "$bigval" >big.batch

for be in twoskip skiplist flat; do
	test_expect_success "$be: what we write, the real tool reads identically" "
		ours -n \"\$PWD/ours.$be\" $be set <recs &&
		ours \"\$PWD/ours.$be\" $be set apple green &&
		ours \"\$PWD/ours.$be\" $be delete banana &&
		real \"\$PWD/ours.$be\" $be show >expect &&
		ours \"\$PWD/ours.$be\" $be show >actual &&
		test_cmp expect actual &&
		grep -c . actual >n && test \$(cat n) = 10 &&
		real \"\$PWD/ours.$be\" $be consistent >c &&
		echo 'Yes, consistent' >c.expect && test_cmp c.expect c
	"
	test_expect_success "$be: what the real tool writes (with history), we read identically" "
		real -n \"\$PWD/real.$be\" $be set <recs.small &&
		real \"\$PWD/real.$be\" $be batch <big.batch &&
		real \"\$PWD/real.$be\" $be get big | grep -c x >n && test \$(cat n) = 1 &&
		real \"\$PWD/real.$be\" $be set apple green &&
		real \"\$PWD/real.$be\" $be delete banana &&
		printf 'cherry\tred\napple\tred again\n' | real -T \"\$PWD/real.$be\" $be set &&
		real \"\$PWD/real.$be\" $be show >expect &&
		ours \"\$PWD/real.$be\" $be show >actual &&
		test_cmp expect actual &&
		for p in apple u q k NIL z nothing; do
			real \"\$PWD/real.$be\" $be show \$p >e.\$p &&
			ours \"\$PWD/real.$be\" $be show \$p >a.\$p &&
			test_cmp e.\$p a.\$p || return 1
		done &&
		for k in apple apple.pie banana nope; do
			real \"\$PWD/real.$be\" $be get \$k >e.get &&
			ours \"\$PWD/real.$be\" $be get \$k >a.get &&
			test_cmp e.get a.get || return 1
		done
	"
	test_expect_success "$be: batch SHOW and GET print what cyr_dbtool prints" "
		printf 'SHOW\nGET apple\nGET NIL\nGET nope\nSHOW apple\n' >batch &&
		real \"\$PWD/real.$be\" $be batch <batch >expect &&
		ours \"\$PWD/real.$be\" $be batch <batch >actual &&
		test_cmp expect actual
	"
done

test_expect_success 'binary keys (NUL, TAB, LF, 0xff) through batch literals' '
	printf "BEGIN\nSET {7}\r\nk\0\t\r\n\377z {6}\r\nv\0\t\r\n\377\nSET \"a b\" \"x\ty\"\nSET e \"\"\nCOMMIT\n" >bin.batch &&
	for be in twoskip skiplist flat; do
		ours -n "$PWD/bin.$be" $be batch <bin.batch &&
		real "$PWD/bin.$be" $be show >expect &&
		ours "$PWD/bin.$be" $be show >actual &&
		test_cmp expect actual &&
		echo SHOW | real "$PWD/bin.$be" $be batch >expect &&
		echo SHOW | ours "$PWD/bin.$be" $be batch >actual &&
		test_cmp expect actual &&
		grep -c "{7}" actual >/dev/null || return 1
	done
'

test_expect_success 'batch errors: same FAILED line on stderr' '
	for cmd in COMMIT ABORT "BEGIN\nBEGIN" FROB "GET \"open"; do
		printf "$cmd\n" | real "$PWD/real.twoskip" twoskip batch 2>expect >/dev/null
		printf "$cmd\n" | ours "$PWD/real.twoskip" twoskip batch 2>actual >/dev/null
		test_cmp expect actual || return 1
	done
'

test_expect_success 'batch: a transaction aborted leaves nothing, a commit keeps all' '
	ours "$PWD/real.twoskip" twoskip show >before &&
	printf "BEGIN\nSET t1 v\nDELETE apple\nABORT\n" | ours "$PWD/real.twoskip" twoskip batch &&
	ours "$PWD/real.twoskip" twoskip show >after &&
	test_cmp before after &&
	printf "BEGIN\nSET t1 v\nSET t2 w\nCOMMIT\n" | ours "$PWD/real.twoskip" twoskip batch &&
	real "$PWD/real.twoskip" twoskip get t2 >got &&
	echo w >want && test_cmp want got
'

test_expect_success 'quotalegacy: roots written by us are read by the real tool' '
	ours -n "$PWD/conf/quotas.db" quotalegacy set user.fred "%(S (0 1024) M (3))" &&
	ours "$PWD/conf/quotas.db" quotalegacy set user.joe "0 100" &&
	test_path_is_file conf/quota/f/user.fred &&
	printf "0\n100\n" >want && test_cmp want conf/quota/j/user.joe &&
	real "$PWD/conf/quotas.db" quotalegacy show >expect &&
	ours "$PWD/conf/quotas.db" quotalegacy show >actual &&
	test_cmp expect actual &&
	real "$PWD/conf/quotas.db" quotalegacy set user.amy "%(S (5))" &&
	ours "$PWD/conf/quotas.db" quotalegacy get user.amy >got &&
	echo "%(S (5))" >want && test_cmp want got
'

test_expect_success 'repack keeps every record; consistent after' '
	for be in twoskip skiplist; do
		ours "$PWD/ours.$be" $be show >before &&
		ours "$PWD/ours.$be" $be repack &&
		real "$PWD/ours.$be" $be show >after &&
		test_cmp before after &&
		real "$PWD/ours.$be" $be consistent | grep -x "Yes, consistent" || return 1
	done
'

test_expect_success '-T runs get/set/delete in one transaction' '
	printf "x1\t1\nx2\t2\n" | ours -T "$PWD/ours.twoskip" twoskip set &&
	real "$PWD/ours.twoskip" twoskip show x >got &&
	printf "x1\t1\nx2\t2\n" >want && test_cmp want got
'

test_expect_success '-M: mailbox sort order as cyr_dbtool -M' '
	printf "a\t1\na.b\t2\na b\t3\nb\t4\n" >m &&
	real -M -n "$PWD/m.real" twoskip set <m &&
	ours -M -n "$PWD/m.ours" twoskip set <m &&
	real -M "$PWD/m.ours" twoskip show >expect &&
	ours -M "$PWD/m.real" twoskip show >actual &&
	test_cmp expect actual &&
	head -2 actual | tail -1 | grep "^a\.b"
'

test_expect_success 'unknown action: same stdout, exit 64' '
	real "$PWD/ours.twoskip" twoskip frob >expect &&
	test_expect_code 64 ours "$PWD/ours.twoskip" twoskip frob >actual &&
	test_cmp expect actual
'

test_expect_success 'a missing database: clear error, EX_NOINPUT, nothing created' '
	test_expect_code 66 ours "$PWD/none.db" twoskip show 2>err &&
	grep "none.db" err &&
	test_path_is_missing none.db
'

# Bad input: every backend's parser gets truncated, garbage, wrong magic,
# wrong version and a length pointing past the end. One line on stderr, a
# sysexits code, the file untouched.
good=$PWD/ours.twoskip
test_expect_success 'bad twoskip files are refused and left untouched' '
	size=$(stat -c %s "$good") &&
	head -c 100 "$good" >trunc.db &&
	head -c 4000 /dev/urandom >garbage.db &&
	{ printf "\241\002\213\015twoskop file"; tail -c +17 "$good"; } >magic.db &&
	{ head -c 23 "$good"; printf "\002"; tail -c +25 "$good"; } >version.db &&
	cp "$good" pastend.db && printf "\377\377\377\377" | dd of=pastend.db bs=1 seek=$((0x150 + 4)) conv=notrunc 2>/dev/null &&
	for f in trunc garbage magic version pastend; do
		[ "$(id -u)" = 0 ] && chown cyrus:mail $f.db
		sum=$(md5sum <$f.db) &&
		test_must_fail ours "$PWD/$f.db" twoskip show >out 2>err &&
		test $(wc -l <err) = 1 &&
		grep "$f.db" err &&
		test "$(md5sum <$f.db)" = "$sum" &&
		test_path_is_missing $f.db.NEW || { echo "case $f"; cat err; return 1; }
	done
'

test_expect_success 'bad skiplist files are refused and left untouched' '
	good=$PWD/ours.skiplist &&
	head -c 40 "$good" >strunc.db &&
	{ printf "\241\002\213\015skiplost fil"; tail -c +17 "$good"; } >smagic.db &&
	{ head -c 23 "$good"; printf "\002"; tail -c +25 "$good"; } >sversion.db &&
	for f in strunc smagic sversion; do
		[ "$(id -u)" = 0 ] && chown cyrus:mail $f.db
		sum=$(md5sum <$f.db) &&
		test_must_fail ours "$PWD/$f.db" skiplist show >out 2>err &&
		test $(wc -l <err) = 1 &&
		test "$(md5sum <$f.db)" = "$sum" || { echo "case $f"; cat err; return 1; }
	done
'

test_expect_success 'flat files with a line without TAB or LF: error, untouched' '
	printf "a\tb\nnotab\n" >bad1.flat &&
	printf "a\tb\nc\td" >bad2.flat &&
	for f in bad1 bad2; do
		[ "$(id -u)" != 0 ] || chown cyrus:mail $f.flat
		sum=$(md5sum <$f.flat) &&
		test_expect_code 74 ours "$PWD/$f.flat" flat show >out 2>err &&
		test $(wc -l <err) = 1 &&
		grep "$f.flat.*offset 4" err &&
		test "$(md5sum <$f.flat)" = "$sum" || return 1
	done
'

test_done
