#!/bin/bash
# cyrus dbtool FILE BACKEND salvage OUT: databases with history written by
# the real cyr_dbtool, damaged in several ways, salvaged; the real
# cyr_dbtool reads the result (show, consistent). ctl_cyrusdb -r offers
# salvage and with --salvage does it, keeping the damaged file.
test_description='dbtool salvage and ctl_cyrusdb -r --salvage'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to run the real tools as cyrus'

D=$TEST_SCRATCH
mkdir -p "$D/conf/db" && chown -R cyrus:mail "$D/conf"
printf 'configdirectory: %s/conf\npartition-default: %s/part\n' "$D" "$D" >"$D/imapd.conf"
# Skiplist: an old stamp, so the real tool does not recover on every open.
printf '\0\0\0\1' >"$D/conf/db/skipstamp" && chown cyrus:mail "$D/conf/db/skipstamp"

rt() { as_cyrus "$REAL_BIN/cyr_dbtool" -C "$D/imapd.conf" "$@"; }
ours() { cyrus dbtool -C "$D/imapd.conf" "$@"; }

# 900 keys in one transaction (repacked), then single-key transactions
# (replacements and deletes) and one large mixed transaction: history.
python3 - >"$D/c1" 3>"$D/c2" <<'EOF'
import os, random
random.seed(6)
keys = ["user.u%05d.box%d" % (i, j) for i in range(300) for j in range(3)]
c1 = ["BEGIN"] + ["SET %s v1-%s-%s" % (k, k, "x" * random.randint(100, 400))
                  for k in keys] + ["COMMIT"]
c2 = ["SET %s v2-%s" % (k, k) for k in random.sample(keys, 150)]
c2 += ["DELETE %s" % k for k in random.sample(keys, 110)]
c2 += ["BEGIN"] + ["SET %s v3" % k for k in random.sample(keys, 75)]
c2 += ["DELETE %s" % k for k in random.sample(keys, 75)] + ["COMMIT"]
print("\n".join(c1))
os.write(3, ("\n".join(c2) + "\n").encode())
EOF
# Every key/value pair ever committed (a salvage may bring back an older
# value when a newer record is damaged, never one that never existed).
sed -n 's/^SET \([^ ]*\) \(.*\)/\1\t\2/p' "$D/c1" "$D/c2" | sort -u >"$D/history"

make_db() { # FILE BACKEND
	rt -n "$1" "$2" batch <"$D/c1" && rt "$1" "$2" batch <"$D/c2"
}

# DAMAGE NAME BACKEND PYTHON: copy of the intact file, damaged.
damage() {
	cp -p "$D/orig.$2" "$D/$1.$2" &&
	F="$D/$1.$2" python3 -c "import os; F=os.environ['F']; $3"
}

# The salvaged output of NAME: readable and consistent for the real tool;
# nothing that was never committed; at most MAXLOST intact keys missing.
check_salvaged() { # NAME BACKEND MAXLOST
	ours "$D/$1.$2" "$2" salvage "$D/$1.out" >"$D/$1.report" &&
	rt "$D/$1.out" "$2" consistent >"$D/$1.cons" &&
	grep "^Yes, consistent" "$D/$1.cons" &&
	rt "$D/$1.out" "$2" show >"$D/$1.show" &&
	sort "$D/$1.show" >"$D/$1.sorted" &&
	comm -13 "$D/history" "$D/$1.sorted" >"$D/$1.invented" &&
	test_line_count = 0 "$D/$1.invented" &&
	lost=$(comm -23 "$D/expect.$2.sorted" "$D/$1.sorted" | wc -l) &&
	say "$1.$2: $lost records of the intact file missing or older" &&
	test "$lost" -le "$3"
}

for be in twoskip skiplist; do
test_expect_success "$be: a database with history by the real cyr_dbtool" "
	make_db '$D/orig.$be' $be &&
	rt '$D/orig.$be' $be show >'$D/expect.$be' &&
	sort '$D/expect.$be' >'$D/expect.$be.sorted' &&
	test_line_count -gt 500 '$D/expect.$be'
"

test_expect_success "$be: salvage of the intact file returns exactly its records" "
	ours '$D/orig.$be' $be salvage - >report &&
	grep '^kept: ' report &&
	! grep '^lost' report &&
	ours '$D/orig.$be' $be salvage '$D/intact.out' >report &&
	rt '$D/intact.out' $be show >actual &&
	test_cmp '$D/expect.$be' actual &&
	rt '$D/intact.out' $be consistent | grep '^Yes, consistent'
"

test_expect_success "$be: truncated in the middle of a record" "
	damage trunc $be 'os.truncate(F, 150003)' &&
	test_expect_code 65 ours '$D/trunc.$be' $be salvage - >report &&
	grep '^lost' report &&
	check_salvaged trunc $be 900
"

test_expect_success "$be: a 4 KiB block zeroed in the log" "
	damage zero $be 'f=open(F,\"r+b\"); f.seek(os.path.getsize(F)-9000); f.write(bytes(4096))' &&
	check_salvaged zero $be 120 &&
	grep '^lost: damaged bytes' '$D/zero.report'
"

test_expect_success "$be: garbage appended: every record back" "
	damage garbage $be 'f=open(F,\"ab\"); f.write(os.urandom(5000))' &&
	check_salvaged garbage $be 0
"

test_expect_success "$be: another database appended: every record back" "
	damage concat $be 'f=open(F,\"ab\"); f.write(open(F.replace(\"concat\",\"orig\"),\"rb\").read()[:70000])' &&
	check_salvaged concat $be 0
"
done

test_expect_success 'twoskip: bytes flipped in record bodies and heads: only those records go' '
	damage flip twoskip "
d=bytearray(open(F,\"rb\").read())
for o in (100000, 100001, 180003, 250007, 310011): d[o] ^= 0x55
open(F,\"wb\").write(d)" &&
	check_salvaged flip twoskip 10 &&
	test $(grep -c "^lost: damaged bytes" "$D/flip.report") -le 5
'

test_expect_success 'twoskip: a damaged header: the records are still read' '
	damage hdr twoskip "f=open(F,\"r+b\"); f.seek(40); f.write(b\"XXXX\")" &&
	test_must_fail rt "$D/hdr.twoskip" twoskip show >/dev/null 2>&1 &&
	check_salvaged hdr twoskip 0 &&
	grep "^header: damaged" "$D/hdr.report"
'

test_expect_success 'twoskip: pointers damaged in every 7th record: every record back' '
	damage ptr twoskip "
import struct
d = bytearray(open(F, \"rb\").read())
off, n, hit = 64, 0, 0
while off + 8 <= len(d):
    if d[off:off + 8] == b\" BLANK\\x07\\xa0\":
        off += 8
        continue
    t, lvl = d[off], d[off + 1]
    klen, vlen = struct.unpack(\">HI\", d[off + 2:off + 8])
    head = 8 + 8 * (lvl + 1)
    size = head + 8 + ((klen + vlen + 7) & ~7)
    if t == ord(\"+\"):
        n += 1
        if n % 7 == 0:
            d[off + 8:off + 16] = b\"\\xde\\xad\\xbe\\xef\" * 2
            hit += 1
    off += size
assert hit > 100, hit
open(F, \"wb\").write(d)" &&
	rt "$D/ptr.twoskip" twoskip consistent 2>&1 | grep "^No, not consistent" &&
	check_salvaged ptr twoskip 0 &&
	grep "^damaged: [0-9]* records with a damaged head" "$D/ptr.report" &&
	rt "$D/ptr.out" twoskip show >actual &&
	test_cmp "$D/expect.twoskip" actual
'

test_expect_success 'skiplist: a damaged header: the records are still read' '
	damage hdr skiplist "f=open(F,\"r+b\"); f.seek(4); f.write(b\"XXXX\"); f.seek(28); f.write(b\"\\xff\" * 4)" &&
	test_must_fail rt "$D/hdr.skiplist" skiplist show >/dev/null 2>&1 &&
	check_salvaged hdr skiplist 0
'

test_expect_success 'twoskip: flipped bytes in the repacked part: nothing else lost' '
	damage flip2 twoskip "
d=bytearray(open(F,\"rb\").read())
for o in (20000, 60001, 120002): d[o] ^= 0xff
open(F,\"wb\").write(d)" &&
	check_salvaged flip2 twoskip 3
'

test_expect_success 'salvage: bad input gives clear errors and sysexits codes' '
	test_expect_code 64 ours "$D/orig.twoskip" flat salvage - 2>err &&
	grep "only twoskip and skiplist" err &&
	test_expect_code 64 ours "$D/orig.twoskip" twoskip salvage 2>err &&
	test_expect_code 64 ours "$D/orig.twoskip" twoskip salvage "$D/orig.twoskip" 2>err &&
	grep "onto itself" err &&
	test_expect_code 66 ours "$D/nonexistent" twoskip salvage - 2>err &&
	mkdir -p "$D/adir" && chown cyrus "$D/adir" &&
	test_expect_code 66 ours "$D/adir" twoskip salvage - 2>err &&
	grep "not a regular file" err &&
	cp "$D/orig.twoskip" "$D/noread" && chmod 000 "$D/noread" &&
	chown root "$D/noread" &&
	test_expect_code 77 ours "$D/noread" twoskip salvage - 2>err &&
	head -c 4000 /dev/urandom >"$D/random" && chown cyrus "$D/random" &&
	test_expect_code 65 ours "$D/random" twoskip salvage - 2>err &&
	grep "not a twoskip file" err &&
	cmp "$D/orig.twoskip" "$D/noread"
'

# ctl_cyrusdb -r on a config whose annotations.db is damaged.
ctl_store() {
	rm -rf "$D/store" && mkdir -p "$D/store/db" &&
	cp -p "$D/orig.twoskip" "$D/store/mailboxes.db" &&
	damage ann twoskip "f=open(F,\"r+b\"); f.seek(40); f.write(b\"XXXX\"); f.seek(100000); f.write(bytes(64))" &&
	cp -p "$D/ann.twoskip" "$D/store/annotations.db" &&
	chown -R cyrus:mail "$D/store" &&
	printf "configdirectory: %s/store\npartition-default: %s/part\n" "$D" "$D" >"$D/store.conf"
}

test_expect_success 'ctl_cyrusdb -r: a database recovery cannot open: the salvage commands are named' '
	ctl_store &&
	test_must_fail cyrus -C "$D/store.conf" ctl_cyrusdb -r -x 2>err &&
	grep "cyrus dbtool -C $D/store.conf $D/store/annotations.db twoskip salvage -" err &&
	grep "cyrus ctl_cyrusdb -C $D/store.conf -r --salvage" err &&
	grep "1 database failed: annotations.db$" err &&
	cmp "$D/ann.twoskip" "$D/store/annotations.db"
'

test_expect_success 'ctl_cyrusdb -r --salvage: salvaged, the damaged file kept beside it' '
	ctl_store &&
	cyrus -C "$D/store.conf" ctl_cyrusdb -r -x --salvage --summary >out 2>err &&
	grep "^annotations.db *twoskip *salvaged" out &&
	grep "^mailboxes.db *twoskip *recovered" out &&
	grep "salvaged .*annotations.db: .* keys kept; the damaged file is kept as" err &&
	kept=$(ls "$D"/store/annotations.db.damaged-*) &&
	cmp "$D/ann.twoskip" "$kept" &&
	rt "$D/store/annotations.db" twoskip consistent | grep "^Yes, consistent" &&
	rt "$D/store/annotations.db" twoskip show | sort >actual &&
	test $(comm -23 "$D/expect.twoskip.sorted" actual | wc -l) -le 2 &&
	cyrus -C "$D/store.conf" ctl_cyrusdb -r -x
'

test_expect_success 'ctl_cyrusdb -c --json and --summary: databases, sizes, times' '
	ctl_store && cp -p "$D/orig.twoskip" "$D/store/annotations.db" &&
	cyrus -C "$D/store.conf" ctl_cyrusdb -c --json >out &&
	test_line_count = 8 out &&
	size=$(stat -c %s "$D/store/mailboxes.db") &&
	grep "^{\"operation\": \"checkpoint\", \"database\": \"mailboxes.db\", \"path\": \"$D/store/mailboxes.db\", \"backend\": \"twoskip\", \"status\": \"archived\", \"bytes\": $size, \"seconds\": [0-9.]*}$" out &&
	grep "\"database\": \"deliver.db\", .*\"status\": \"missing\"" out &&
	python3 -c "import json,sys; [json.loads(l) for l in open(\"out\")]" &&
	cyrus -C "$D/store.conf" ctl_cyrusdb -c --summary >out &&
	grep "^mailboxes.db *twoskip *archived *$size bytes *[0-9.]*s$" out &&
	grep "^checkpoint: 2 databases archived" out &&
	test_expect_code 64 cyrus ctl_cyrusdb -c --json --summary &&
	test_expect_code 64 cyrus ctl_cyrusdb -c --salvage
'

# The mailboxes.db entry fixes of -r without -x, against the real -r on a
# copy of the same mailboxes.db (M, the modification time, is masked).
entries() {
	printf "Nuser\037bob\t%%(A %%(bob lrswipkxtecdan fred lr admin lrs anyone r) I 11111111-1111-4000-8000-000000000001 P default V 1700000000 F 1 M 1700000000)\n"
	printf "Nuser\037bob\037Sent\t%%(A %%(bob lrswipkxtecdan jane l) I 11111111-1111-4000-8000-000000000002 P default V 1700000000 F 1 M 1700000000)\n"
	printf "Nshared\t%%(A %%(anyone lr fred w jane lrs) I 11111111-1111-4000-8000-000000000003 P default V 1700000000 F 1 M 1700000000)\n"
	printf "Nuser\037zed\t%%(T z A %%(zed lrswipkxtecdan) P default V 1700000000 F 1 M 1700000000)\n"
	printf "Nuser\037zed\037sub\t%%(A %%(zed lrswipkxtecdan) I 11111111-1111-4000-8000-000000000009 P default V 1700000000 F 1 M 1700000000)\n"
	printf "Nuser\037ann\t%%(T z P default V 1700000000 F 1 M 1700000000)\n"
	printf "Nuser\037amz\t%%(T z A %%(amz lrswipkxtecdan) I 11111111-1111-4000-8000-00000000000b P default V 1700000000 F 1 M 1700000000)\n"
	printf "I11111111-1111-4000-8000-00000000000b\t%%(N user\037amz T z P default V 1700000000 F 1 M 1700000000)\n"
	printf "Nuser\037amy\t%%(T z A %%(amy lrswipkxtecdan) I 11111111-1111-4000-8000-00000000000a P default V 1700000000 F 1 M 1700000000)\n"
}
fix_store() { # reverseacls
	for s in real ours; do
		rm -rf "$D/fx$s" && mkdir -p "$D/fx$s/db" &&
		printf "configdirectory: %s/fx%s\npartition-default: %s/part\nreverseacls: %s\nadmins: cyrus admin\n" \
			"$D" "$s" "$D" "$1" >"$D/fx$s.conf" &&
		chown -R cyrus:mail "$D/fx$s" &&
		entries | rt -n "$D/fx$s/mailboxes.db" twoskip set || return 1
	done
}
fxshow() { rt "$D/fx$1/mailboxes.db" twoskip show | sed "s/ M [0-9]*)\$/ M X)/"; }

test_expect_success 'skiplist: damaged pointers cost no record (no checksums to trust)' '
	damage skptr skiplist "
import struct
d = bytearray(open(F, \"rb\").read())
off, n = 48 + 96, 0
while off + 8 <= len(d) and struct.unpack(\">I\", d[off:off+4])[0] in (1, 2):
    kl = struct.unpack(\">I\", d[off+4:off+8])[0]
    pos = off + 8 + (kl + 3) // 4 * 4
    vl = struct.unpack(\">I\", d[pos:pos+4])[0]
    pos += 4 + (vl + 3) // 4 * 4
    if n % 7 == 0:
        d[pos:pos+4] = b\"\\x12\\x34\\x56\\x77\"
    while struct.unpack(\">I\", d[pos:pos+4])[0] != 0xFFFFFFFF:
        pos += 4
    n += 1
    off = pos + 4
open(F, \"wb\").write(d)
assert n > 50" &&
	check_salvaged skptr skiplist 0
'

test_expect_success '-r entry fixes: reserved entries, reverse ACLs added, as the real -r' '
	fix_store 1 &&
	as_cyrus "$REAL_BIN/ctl_cyrusdb" -C "$D/fxreal.conf" -r &&
	cyrus -C "$D/fxours.conf" ctl_cyrusdb -r &&
	fxshow real >expect && fxshow ours >actual &&
	test_cmp expect actual &&
	grep -a "^AU.fred.user.bob" actual &&
	grep -a "^Nuser.zed	%(T ei M X)" actual &&
	grep -a "^Nuser.ann	%(T ed M X)" actual &&
	grep -a "^Nuser.amy	%(T ed M X)" actual &&
	grep -a "^Nuser.amz	%(T z A" actual
'

test_expect_success '-r entry fixes: reverse ACLs removed when switched off, as the real -r' '
	for s in real ours; do
		sed -i "s/^reverseacls: 1/reverseacls: 0/" "$D/fx$s.conf" || return 1
	done &&
	as_cyrus "$REAL_BIN/ctl_cyrusdb" -C "$D/fxreal.conf" -r &&
	cyrus -C "$D/fxours.conf" ctl_cyrusdb -r &&
	fxshow real >expect && fxshow ours >actual &&
	test_cmp expect actual &&
	! grep -a "^AS" actual
'

test_expect_success '-r -x: no entry fixes, as the real -r -x' '
	fix_store 1 &&
	as_cyrus "$REAL_BIN/ctl_cyrusdb" -C "$D/fxreal.conf" -r -x &&
	cyrus -C "$D/fxours.conf" ctl_cyrusdb -r -x &&
	fxshow real >expect && fxshow ours >actual &&
	test_cmp expect actual &&
	! grep -a "^A" actual
'

test_done
