#!/bin/bash
# cyrus makedirs against Debian's makedirs script, both on scratch configs.
# The script always reads /etc/imapd.conf (and /etc/default/cyrus-imapd):
# we run a copy whose CONF points at the scratch config, without those two
# and without the chattr step, and check that the copy names no system file.
test_description='makedirs'
. "$(dirname "$0")/../lib/test-lib.sh"

REAL_MAKEDIRS=$REAL_BIN/makedirs
[ -r "$REAL_MAKEDIRS" ] || test_skip_all "no $REAL_MAKEDIRS"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root (chown cyrus:mail)'
id cyrus >/dev/null 2>&1 && getent group mail >/dev/null ||
	test_skip_all 'no cyrus user or mail group'

umask 022

# write_conf ROOT [EXTRA-LINES]: ROOT/imapd.conf for a tree under ROOT.
write_conf()
{
	mkdir -p "$1/conf" &&
	cat >"$1/imapd.conf" <<-EOF
	configdirectory: $1/conf
	partition-default: $1/spool/mail
	partition-p2: $1/spool2/p2
	sievedir: $1/sieve
	${2:-}
	EOF
}

# real_makedirs ROOT: the script on ROOT/imapd.conf.
real_makedirs()
{
	sed -e "s|^CONF=/etc/imapd.conf\$|CONF=$1/imapd.conf|" \
		-e '/^\[ -r \/etc\/default\/cyrus-imapd \]/d' \
		-e 's/^CYRUSOPTFILESYS=1$/CYRUSOPTFILESYS=0/' \
		"$REAL_MAKEDIRS" >"$1.real.sh" &&
	! grep -n '/etc/imapd.conf\|^\[ -r /etc/default' "$1.real.sh" &&
	grep -q "^CONF=$1/imapd.conf\$" "$1.real.sh" &&
	sh "$1.real.sh"
}

# tree ROOT: every path below ROOT with its mode and owner.
tree()
{
	(cd "$1" && find . -path ./imapd.conf -prune -o \
		-printf '%P %m %u %g\n' | sort)
}

for hash in no yes; do
	test_expect_success "same tree as the script (hashimapspool: $hash)" '
		write_conf "$PWD/real-$hash" "hashimapspool: $hash" &&
		write_conf "$PWD/ours-$hash" "hashimapspool: $hash" &&
		real_makedirs "$PWD/real-$hash" >real.out &&
		cyrus makedirs -C "$PWD/ours-$hash/imapd.conf" >ours.out &&
		tree "real-$hash" | sed "s|real-$hash|ROOT|g" >expect &&
		tree "ours-$hash" | sed "s|ours-$hash|ROOT|g" >actual &&
		test_cmp expect actual &&
		grep "^stage\. 755 cyrus mail" <(tree "ours-$hash/spool/mail") &&
		grep "^conf 750 cyrus mail" expect &&
		sed "s|real-$hash|ROOT|g" real.out >expect &&
		sed "s|ours-$hash|ROOT|g" ours.out >actual &&
		test_cmp expect actual
	'
done

test_expect_success 'hash directories follow hashimapspool' '
	test_path_is_dir ours-yes/spool2/p2/q &&
	test_path_is_missing ours-no/spool2/p2/q &&
	test_path_is_dir ours-no/conf/quota/z
'

test_expect_success 'a second run changes nothing, -n then prints no change' '
	tree ours-yes >before &&
	cyrus makedirs -C "$PWD/ours-yes/imapd.conf" >out &&
	tree ours-yes >after &&
	test_cmp before after &&
	cyrus makedirs -n -C "$PWD/ours-yes/imapd.conf" >out &&
	! grep -v "^Creating/updating" out
'

test_expect_success 'the script and we agree on each other'"'"'s tree' '
	tree ours-yes >before &&
	cp ours-yes/imapd.conf ours-yes.conf &&
	real_makedirs "$PWD/ours-yes" >/dev/null &&
	tree ours-yes >after &&
	test_cmp before after &&
	tree real-yes >before &&
	cyrus makedirs -C "$PWD/real-yes/imapd.conf" >/dev/null &&
	tree real-yes >after &&
	test_cmp before after
'

test_expect_success 'modes and owners are repaired as the script does' '
	for d in real-yes ours-yes; do
		chmod 777 $d/conf/db $d/spool/mail &&
		chown root:root $d/conf/user/a $d/spool/mail/stage. &&
		touch $d/conf/db/stray && chown nobody $d/conf/db/stray &&
		rmdir $d/conf/lock/k $d/sieve/b || return 1
	done &&
	cyrus makedirs -n -C "$PWD/ours-yes/imapd.conf" >dry.out &&
	grep "^chmod 700 $PWD/ours-yes/conf/db\$" dry.out &&
	grep "^chown cyrus:mail $PWD/ours-yes/conf/db/stray\$" dry.out &&
	grep "^mkdir $PWD/ours-yes/conf/lock/k\$" dry.out &&
	grep "^chmod 755 $PWD/ours-yes/sieve/b\$" dry.out &&
	real_makedirs "$PWD/real-yes" >/dev/null &&
	cyrus makedirs -C "$PWD/ours-yes/imapd.conf" >/dev/null &&
	tree real-yes | sed "s|real-yes|ROOT|g" >expect &&
	tree ours-yes | sed "s|ours-yes|ROOT|g" >actual &&
	test_cmp expect actual &&
	grep "^conf/db/stray 644 cyrus mail" actual
'

test_expect_success '-n on a fresh config creates nothing' '
	write_conf "$PWD/dry" "hashimapspool: yes" &&
	tree dry >before &&
	cyrus makedirs -n -C "$PWD/dry/imapd.conf" >out &&
	tree dry >after &&
	test_cmp before after &&
	grep "^mkdir $PWD/dry/spool\$" out &&
	grep "^mkdir $PWD/dry/spool/mail/stage\.\$" out &&
	grep "^mkdir $PWD/dry/conf/user/a\$" out &&
	grep "^chmod 750 $PWD/dry/conf\$" out &&
	grep "^chown cyrus:mail $PWD/dry/conf\$" out &&
	test_path_is_missing dry/spool
'

test_expect_success 'no partition: exit 78, nothing made' '
	mkdir -p nopart/conf &&
	printf "configdirectory: %s\n" "$PWD/nopart/conf" >nopart/imapd.conf &&
	test_expect_code 78 cyrus makedirs -C "$PWD/nopart/imapd.conf" \
		>out 2>err &&
	grep "no partition-NAME in .*nopart/imapd.conf" err &&
	test_path_is_missing nopart/conf/db
'

test_expect_success 'missing configdirectory: exit 78; bad config: 78' '
	write_conf "$PWD/noconf" &&
	rmdir noconf/conf &&
	test_expect_code 78 cyrus makedirs -C "$PWD/noconf/imapd.conf" 2>err &&
	grep "configdirectory .* is not a directory" err &&
	test_path_is_missing noconf/spool &&
	test_expect_code 78 cyrus makedirs -C "$PWD/does-not-exist.conf"
'

test_expect_success 'fulldirhash: A..W; metapartitions; sieveusehomedir' '
	write_conf "$PWD/full" "hashimapspool: yes
fulldirhash: yes
sieveusehomedir: yes
metapartition-default: $PWD/full/meta/default
metapartition-p2: $PWD/full/spool2/p2" &&
	cyrus makedirs -C "$PWD/full/imapd.conf" >out &&
	tree full >t &&
	for d in conf/user conf/quota conf/lock spool/mail meta/default; do
		ls full/$d | grep -v "^stage\.\$" | tr "\n" " " >got &&
		printf "A B C D E F G H I J K L M N O P Q R S T U V W " >want &&
		test_cmp want got || return 1
	done &&
	grep "^meta/default 750 cyrus mail" t &&
	test_path_is_missing full/meta/default/stage. &&
	test_path_is_missing full/sieve &&
	grep -c "^Creating/updating metapartition spool" out >n &&
	echo 1 >one && test_cmp one n
'

test_expect_success 'cleansquat removes cyrus.squat files only' '
	mkdir -p ours-yes/spool/mail/uuid/x &&
	touch ours-yes/spool/mail/uuid/x/cyrus.squat \
		ours-yes/spool/mail/uuid/x/cyrus.index &&
	cyrus makedirs -n --cleansquat -C "$PWD/ours-yes/imapd.conf" >out &&
	grep "^rm $PWD/ours-yes/spool/mail/uuid/x/cyrus.squat\$" out &&
	test_path_is_file ours-yes/spool/mail/uuid/x/cyrus.squat &&
	cyrus makedirs --cleansquat -C "$PWD/ours-yes/imapd.conf" >out &&
	test_path_is_missing ours-yes/spool/mail/uuid/x/cyrus.squat &&
	test_path_is_file ours-yes/spool/mail/uuid/x/cyrus.index
'

test_expect_success 'usage: --help 0, bad option and argument 64' '
	cyrus makedirs --help >out &&
	grep "^usage: cyrus makedirs" out &&
	test_expect_code 64 cyrus makedirs -Z 2>err &&
	test_expect_code 64 cyrus makedirs extra 2>err &&
	grep "^usage:" err &&
	ln -s "$CYRUS" cyrus-makedirs &&
	./cyrus-makedirs -n -C "$PWD/ours-yes/imapd.conf" >out &&
	grep "^Creating/updating partition spool" out
'

test_done
