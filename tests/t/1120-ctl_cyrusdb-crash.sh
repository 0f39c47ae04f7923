#!/bin/bash
# A crash in the middle of a write transaction on a real mailboxes.db, at
# every byte of its tail: the real cyr_dbtool runs a batch transaction of
# stores and deletes and is killed (strace) at the fsync that precedes the
# commit's header write; copies of that file cut at each length between the
# size before the transaction and the size at the kill are recovered by the
# real ctl_cyrusdb -r and by ours. Each of our results must be the real
# one's byte for byte, show what the last committed state shows, pass the
# real cyr_dbtool consistent, and the real imapd, started on it without
# its own recovery, must list and select every mailbox.
test_description='ctl_cyrusdb -r after a transaction cut at every byte'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'
command -v strace >/dev/null || test_skip_all 'needs strace (to kill cyr_dbtool mid-commit)'

D=$TEST_SCRATCH
real() { as_cyrus "$REAL_BIN/$1" "${@:2}"; }
dbshow() { real cyr_dbtool -C "$CYR_CONF" "$1" twoskip show; }

# A config directory of its own (copied from the stopped instance) for the
# real tool and one for ours: NAME.
copy_store() {
	rm -rf "$D/$1" &&
	cp -a "$CYR_CONFIGDIR" "$D/$1" &&
	rm -rf "$D/$1"/db.backup* &&
	sed "s|^configdirectory: .*|configdirectory: $D/$1|" "$CYR_CONF" >"$D/$1.conf"
}

# Start master again on the stopped instance's directory, without the
# START recovery of cyrus.conf: imapd gets our file as we left it.
restart_instance() {
	sed -i '/^[[:space:]]*recover[[:space:]]/d' "$CYR_MASTERCONF" &&
	rm -f "$CYR_DIR/master.pid" &&
	setsid "$REAL_BIN/master" -C "$CYR_CONF" -M "$CYR_MASTERCONF" \
		-p "$CYR_DIR/master.pid" -L "$CYR_DIR/master.log" \
		</dev/null >>"$CYR_DIR/master.log" 2>&1 &
	CYR_MASTER_PID=$!
	_CYR_OWN_DIR=$CYR_DIR
	local i=0
	while ! { [ -S "$CYR_LMTP" ] && _instance_greets; }; do
		kill -0 "$CYR_MASTER_PID" 2>/dev/null || return 1
		i=$((i + 1))
		[ $i -lt 150 ] || return 1
		sleep 0.2
	done
}

# The mailboxes of a show output (the N records that are neither
# tombstones nor intermediates), as IMAP names, sorted.
mailboxes_of() {
	grep -a -v -e '(T [dzi]' -e ' T [dzi]' "$1" |
	LC_ALL=C sed -n 's/^N\([^\t]*\)\t.*/\1/p' | tr '\037' . | LC_ALL=C sort
}

# What the real imapd lists, as names, sorted.
imap_list() {
	echo 'LIST "" "*"' | instance_imap_script |
	sed -n 's/^\* LIST ([^)]*) [^ ]* //p' |
	sed -e 's/^"\(.*\)"$/\1/' | LC_ALL=C sort
}

# Mailboxes in name-based directories (as upgraded stores have them): the
# uniqueid fix below needs a mailbox found without its uniqueid.
CYR_EXTRA_CONF='mailbox_legacy_dirs: yes'

test_expect_success 'a store filled by the real imapd, the admin may read every mailbox' '
	instance_start &&
	instance_fill >/dev/null &&
	imap_list >names &&
	test_line_count -gt 8 names &&
	sed "s/.*/SETACL \"&\" cyrus lrs/" names | instance_imap_script >/dev/null &&
	keep=$CYR_DIR &&
	KEEP_SCRATCH=1 instance_stop 2>/dev/null &&
	_CYR_OWN_DIR=$keep &&
	cp -p "$CYR_CONFIGDIR/mailboxes.db" "$D/state0" &&
	dbshow "$D/state0" >"$D/show0"
'

# txn SHOW K: batch transaction K (keys and values as IMAP literals) on
# the records of SHOW; every value it stores has its M (modification
# time) moved on by K, so that each store is a real write (twoskip skips a
# store of the same value). 1: stores of three entries, and a delete and
# re-store of user.carol's entry and its I record; 2: a delete for good of
# user.alice.Archive.2023 (entry and I record) and stores of user.bob's.
txn() {
	/usr/bin/python3 - "$@" <<-\EOF
	import re, sys
	recs = {}
	for line in open(sys.argv[1], "rb"):
	    k, _, v = line.rstrip(b"\n").partition(b"\t")
	    recs[k] = v
	K = int(sys.argv[2])
	def lit(b):
	    return b"{%d+}\r\n" % len(b) + b
	def uid(k):
	    return b"I" + recs[k].split(b" I ")[1].split(b" ")[0]
	out = [b"BEGIN\n"]
	def set_(k):
	    v = re.sub(rb" M (\d+)", lambda m: b" M %d" % (int(m.group(1)) + K), recs[k])
	    out.append(b"SET " + lit(k) + b" " + lit(v) + b"\n")
	def del_(k):
	    out.append(b"DELETE " + lit(k) + b"\n")
	N = lambda *p: b"N" + b"\x1f".join(p)
	if K == 1:
	    for k in (N(b"user", b"alice"), N(b"shared"), N(b"user", b"bob", b"Sent")):
	        set_(k)
	    c = N(b"user", b"carol")
	    del_(c); del_(uid(c)); set_(c); set_(uid(c))
	else:
	    a = N(b"user", b"alice", b"Archive", b"2023")
	    del_(a); del_(uid(a))
	    b = N(b"user", b"bob")
	    set_(b); set_(uid(b))
	out.append(b"COMMIT\n")
	sys.stdout.buffer.write(b"".join(out))
	EOF
}

test_expect_success 'two write transactions of stores and deletes (about 1-2 KB of tail)' '
	chown cyrus:mail "$D"/state0 &&
	for k in 1 2; do
		prev=$((k - 1)) &&
		txn "$D/show$prev" $k >"$D/txn$k" &&
		cp -p "$D/state$prev" "$D/crash$k" &&
		{ as_cyrus strace -o /dev/null -e trace=fsync \
			-e inject=fsync:signal=KILL:when=1 \
			"$REAL_BIN/cyr_dbtool" -C "$CYR_CONF" "$D/crash$k" \
			twoskip batch <"$D/txn$k"; test $? = 137; } &&
		cp -p "$D/state$prev" "$D/state$k" &&
		real cyr_dbtool -C "$CYR_CONF" "$D/state$k" twoskip batch <"$D/txn$k" &&
		dbshow "$D/state$k" >"$D/show$k" &&
		test "$(od -An -tu1 -j59 -N1 "$D/crash$k")" = "   1" &&
		from=$(stat -c %s "$D/state$prev") && to=$(stat -c %s "$D/crash$k") &&
		say "transaction $k: tail of $((to - from)) bytes ($from..$to)" &&
		test $((to - from)) -ge 200 || return 1
	done &&
	! cmp -s "$D/show0" "$D/show1" &&
	grep -a "^Nuser.alice.Archive.2023	" "$D/show1" &&
	! grep -a "^Nuser.alice.Archive.2023	" "$D/show2"
'

# Cut the crash file of transaction K at every length; real -r and ours
# on each; our result must be the real one's, byte for byte. Distinct
# results are kept as result.K.N for the checks that follow.
cut_and_recover() { # K
	local k=$1 prev=$(($1 - 1)) from to len bad=0 n=0
	from=$(stat -c %s "$D/state$prev") && to=$(stat -c %s "$D/crash$k") &&
	copy_store real && copy_store ours || return 1
	rm -f "$D/result.$k".*
	for ((len = from; len <= to; len++)); do
		head -c "$len" "$D/crash$k" >"$D/real/mailboxes.db" &&
		cp "$D/real/mailboxes.db" "$D/ours/mailboxes.db" &&
		real ctl_cyrusdb -C "$D/real.conf" -r &&
		cyrus -C "$D/ours.conf" ctl_cyrusdb -r 2>"$D/err" || {
			say "cut at $len: a ctl_cyrusdb -r failed"; cat "$D/err"
			return 1
		}
		if ! cmp -s "$D/real/mailboxes.db" "$D/ours/mailboxes.db"; then
			[ $bad -lt 5 ] && say "cut at $len: our result differs from the real one"
			bad=$((bad + 1))
			continue
		fi
		if [ $n = 0 ] || ! cmp -s "$D/ours/mailboxes.db" "$D/result.$k.$((n - 1))"; then
			local seen=0 i
			for ((i = 0; i < n; i++)); do
				cmp -s "$D/ours/mailboxes.db" "$D/result.$k.$i" && seen=1 && break
			done
			[ $seen = 1 ] || { cp -p "$D/ours/mailboxes.db" "$D/result.$k.$n"; n=$((n + 1)); }
		fi
	done
	say "transaction $k: $((to - from + 1)) cuts, $bad differ from the real -r, $n distinct results"
	test $bad = 0
}

for k in 1 2; do
test_expect_success "transaction $k cut at every byte: our -r leaves what the real -r leaves" "
	cut_and_recover $k
"

test_expect_success "transaction $k: each result holds the last committed state, consistent" "
	for f in \"\$D\"/result.$k.*; do
		dbshow \"\$f\" >actual &&
		test_cmp \"\$D/show$((k - 1))\" actual &&
		real cyr_dbtool -C \"\$CYR_CONF\" \"\$f\" twoskip consistent >out &&
		grep '^Yes, consistent' out || return 1
	done
"

test_expect_success "transaction $k: the real imapd serves every mailbox of our result" "
	for f in \"\$D\"/result.$k.*; do
		cp \"\$f\" \"\$CYR_CONFIGDIR/mailboxes.db\" &&
		chown cyrus:mail \"\$CYR_CONFIGDIR/mailboxes.db\" &&
		restart_instance &&
		imap_list >listed &&
		dbshow \"\$CYR_CONFIGDIR/mailboxes.db\" >now &&
		mailboxes_of now >expect &&
		test_cmp expect listed &&
		sed 's/.*/SELECT \"&\"/' expect | instance_imap_script >selected &&
		test \$(grep -c '^T[0-9]* OK' selected) = \$(wc -l <expect) &&
		KEEP_SCRATCH=1 instance_stop 2>/dev/null &&
		_CYR_OWN_DIR=\$CYR_DIR || return 1
	done
"
done

test_expect_success 'the committed end state too: real imapd serves it after our -r' '
	copy_store ours &&
	cp -p "$D/state2" "$D/ours/mailboxes.db" &&
	cyrus -C "$D/ours.conf" ctl_cyrusdb -r &&
	cp -p "$D/ours/mailboxes.db" "$CYR_CONFIGDIR/mailboxes.db" &&
	restart_instance &&
	imap_list >listed &&
	mailboxes_of "$D/show2" >expect &&
	test_cmp expect listed &&
	! grep "Archive.2023" listed &&
	sed "s/.*/SELECT \"&\"/" expect | instance_imap_script >selected &&
	KEEP_SCRATCH=1 instance_stop 2>/dev/null &&
	_CYR_OWN_DIR=$CYR_DIR
'

# The uniqueid fix: an entry whose I field is gone gets the uniqueid of
# its cyrus.header, as the real -r does it (M, the time of the change, is
# masked).
test_expect_success '-r: an entry without uniqueid gets the one of its cyrus.header, as the real -r' '
	copy_store real && copy_store ours &&
	key=$(printf "Nuser\037bob\037Sent") &&
	val=$(grep -a "^$key	" "$D/show2" | cut -f2-) &&
	uid=$(printf "%s\n" "$val" | sed "s/.* I \([^ ]*\) .*/\1/") &&
	test -n "$uid" &&
	grep -a "$uid" "$CYR_PART"/*/user/bob/Sent/cyrus.header >/dev/null &&
	noid=$(printf "%s\n" "$val" | sed "s/ I $uid//") &&
	for s in real ours; do
		cp -p "$D/state2" "$D/$s/mailboxes.db" &&
		printf "SET {%d+}\r\n%s {%d+}\r\n%s\n" ${#key} "$key" ${#noid} "$noid" |
		real cyr_dbtool -C "$D/$s.conf" "$D/$s/mailboxes.db" twoskip batch || return 1
	done &&
	dbshow "$D/ours/mailboxes.db" >before &&
	! grep -a "^$key	.* I $uid" before &&
	real ctl_cyrusdb -C "$D/real.conf" -r &&
	cyrus -C "$D/ours.conf" ctl_cyrusdb -r 2>err &&
	dbshow "$D/real/mailboxes.db" | sed "s/ M [0-9]* / M X /" >expect &&
	dbshow "$D/ours/mailboxes.db" | sed "s/ M [0-9]* / M X /" >actual &&
	test_cmp expect actual &&
	grep -a "^$key	.* I $uid " actual &&
	real cyr_dbtool -C "$D/ours.conf" "$D/ours/mailboxes.db" twoskip consistent | grep "^Yes, consistent"
'

test_done
