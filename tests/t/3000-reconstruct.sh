#!/bin/bash
# cyrus reconstruct against the real one: a store filled by the real
# 3.6.1 imapd/lmtpd (instance_fill plus tricky messages: nested
# message/rfc822, multipart/alternative with attachments, encoded words,
# a multipart without closing boundary, a digest; raw files indexed by the
# real reconstruct: bare LF, 8-bit headers, NULs in header and body),
# stopped. 1) Our parse gives byte-identical cache records: ours -G
# changes no byte of any cyrus.index or cyrus.cache. 2) Each damage on two
# copies, the real reconstruct on one, ours on the other: the same output
# (uidvalidity, which is "now", normalised), and the real reconstruct -n,
# chk_cyrus and mbexamine find nothing wrong with ours. 3) A cache record
# garbled inside its text (the real one is blind to it, cyrus-imapd
# #2933): ours -n reports it, ours fixes it. 4) imapd restarted on our
# repair serves the FLAGS, ENVELOPE and BODYSTRUCTURE it served before.
# 5) Bad input and exit codes.
test_description='reconstruct'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to start master'
[ -x "$TOP/bin/cyrus" ] || test_skip_all 'bin/cyrus is not built'

tricky_msgs()
{
	local d=$1
	mkdir -p "$d"
	cat >"$d/01.eml" <<'M'
From: "Doe, John" <John.Doe@Example.COM>, jane@example.org (Jane Roe)
Sender: list-owner@example.net
Reply-To: Group: a@b.c, "Q \"x\"" <q@r.s>;
To: undisclosed-recipients:;
Cc: <@route.one,@route.two:user@host.example>, bare
Bcc: =?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>
Subject: =?UTF-8?B?w4RwZmVs?= und =?UTF-8?Q?Birnen_=C3=BC?=
 =?iso-8859-1?q?_caf=E9?= tail
Date: Thu, 4 May 2023 08:00:00 -0700
Message-ID: <nested.1@example.org>
In-Reply-To: <parent@example.org>
References: <a@b> <parent@example.org>
X-Mailer: test-mailer 1.0
X-Other: not cached
Priority: urgent
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"; foo*0="part one"; foo*1=" part two"
Content-Language: en, de-DE

This is the preamble.
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset="ISO-8859-1"
Content-Transfer-Encoding: quoted-printable

Gr=FC=DFe aus M=FCnchen =
soft break line
--inner
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PGh0bWw+PGJvZHk+SGFsbG8gV2VsdDwvYm9keT48L2h0bWw+Cg==
--inner--
--outer
Content-Type: message/rfc822
Content-Disposition: attachment; filename="fwd.eml"

From: Inner Sender <inner@example.com>
To: someone@example.com
Subject: inner message
Date: Wed, 3 May 2023 12:00:00 +0000
Message-ID: <inner.1@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="deep"

--deep
Content-Type: text/plain

deep text
--deep
Content-Type: message/rfc822

From: deepest@example.com
Subject: deepest

just text
--deep--
--outer
Content-Type: application/pdf; name="=?UTF-8?Q?B=C3=BCcher.pdf?="
Content-Disposition: attachment; filename*=UTF-8''B%C3%BCcher.pdf
Content-Transfer-Encoding: base64
Content-ID: <pdf@x>
Content-Description: a document
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Location: http://example.com/doc.pdf

JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K
--outer--
The epilogue.
M
	cat >"$d/02.eml" <<'M'
From: broken@example.org
To: you@example.org
Subject: broken multipart without closing boundary
Date: Fri, 5 May 2023 10:00:00 +0200
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="never-closed"

--never-closed
Content-Type: text/plain; charset=us-ascii

first part
--never-closed
Content-Type: text/plain; charset=x-unknown-charset
Content-Transfer-Encoding: x-uuencode

second part, no end
M
	cat >"$d/03.eml" <<'M'
From: nobody
Subject: multipart without boundary parameter
Content-Type: multipart/mixed
Content-Transfer-Encoding: 7bit

--x
some text
M
	cat >"$d/04.eml" <<'M'
From: =?utf-8?q?M=C3=BCller?= <mueller@example.de>
To: =?unknown-cs?q?x?= <a@b.c>, "=?utf-8?b?w7w=?=" <u@example.com>
Subject: =?utf-8?q?broken?=nospace =?bogus?x?abc?= =?utf-8?q?trail=
Date: bogus date
Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes
Content-Transfer-Encoding: 8bit

Body with ümlauts.
M
	cat >"$d/05.eml" <<'M'
From: digest@example.org
Subject: a digest
Content-Type: multipart/digest; boundary=dig

--dig

From: one@example.org
Subject: first

one
--dig

From: two@example.org
Subject: second

two
--dig--
M
	# Raw files, byte for byte.
	printf 'From: bare@example.org\nTo: lf@example.org\nSubject: bare LF message\nDate: Sat, 6 May 2023 11:00:00 +0000\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nline\n--b--\n' >"$d/raw-01"
	printf 'From: eight@example.org\r\nTo: =?utf-8?q?x?= <x@example.org>\r\nSubject: 8-bit Gr\xc3\xbc\xc3\x9fe \xe9t\xe9\r\nX-Weird: \xff\xfe\r\nComment: caf\xe9\r\nDate: Sun, 7 May 2023 12:00:00 +0000\r\n\r\nbody \xe9\r\n' >"$d/raw-02"
	printf 'From: nul@example.org\r\nSubject: NUL in body\r\nDate: Mon, 8 May 2023 12:00:00 +0000\r\n\r\nbefore\0after\r\n' >"$d/raw-03"
	printf 'From: nulhdr@example.org\r\nSubject: NUL\0in header\r\nTo: after@example.org\r\n\r\nbody\r\n' >"$d/raw-04"
	printf 'Subject: no body at all\r\nFrom: x@y.z\r\n' >"$d/raw-05"
	printf 'From: mixed@example.org\r\nSubject: mixed endings\nContent-Type: text/plain; charset=iso-8859-15\r\n\r\nline one\nline two\r\n' >"$d/raw-06"
	printf 'From: a@b.c\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n--b--\r\n' >"$d/raw-07"
	printf 'Content-Type: text/plain; charset=utf-8\r\nSubject: =?utf-8?b?4pyTIGNoZWNr?= =?utf-8?b?IA==?=  =?UTF-8?Q?=E2=9C=93?=\r\nFrom: "Last, First" <first.last@EXAMPLE.org>\r\nTo: group:;, list: a@b.c, d@e.f;\r\n\r\n' >"$d/raw-08"
}

# copy_store NAME: a copy of the stopped store in $TEST_SCRATCH/NAME with
# its own imapd.conf; sets CONF.
copy_store()
{
	rm -rf "$TEST_SCRATCH/$1" &&
	cp -a "$CYR_DIR" "$TEST_SCRATCH/$1" &&
	sed -i "s#$CYR_DIR#$TEST_SCRATCH/$1#g" "$TEST_SCRATCH/$1/imapd.conf" &&
	CONF=$TEST_SCRATCH/$1/imapd.conf
}

mbdir() { as_cyrus "$REAL_BIN/mbpath" -C "$CONF" "$1"; }

# The damages, one per function, on the store of $CONF.
damage_del_index() { rm "$(mbdir user.bob)/cyrus.index"; }
damage_trunc_cache() { truncate -s 600 "$(mbdir user.bob)/cyrus.cache"; }
damage_bad_record() {
	printf 'XXXX' | dd of="$(mbdir user.alice)/cyrus.cache" bs=1 \
		seek=40 conv=notrunc 2>/dev/null
}
damage_rm_msg() { rm "$(mbdir user.alice)/2."; }
damage_add_msg()
{
	local d
	d=$(mbdir user.alice) &&
	cp "$d/1." "$d/9." && touch -d '2023-01-01 00:00:00' "$d/9." &&
	chown cyrus:mail "$d/9."
}
damage_odd_file() { echo junk >"$(mbdir user.bob.Sent)/junk"; }

# Runs the real (as_cyrus) or our reconstruct on the store of $CONF;
# uidvalidity values (chosen from the clock) normalised.
norm_uidv() { sed -E 's/\(([0-9]+) -> [0-9]+\)$/(\1 -> NEW)/'; }
run_real() { as_cyrus "$REAL_BIN/reconstruct" -C "$CONF" "$@"; }
run_ours() { cyrus reconstruct -C "$CONF" "$@"; }

# mailbox_names: what a reconstruct that finds nothing prints.
test_expect_success 'setup: a store filled by the real imapd' '
	instance_start &&
	instance_fill &&
	instance_create_user dave Raw &&
	tricky_msgs msgs &&
	for f in msgs/*.eml; do instance_deliver bob <"$f" || return 1; done &&
	raw=$(as_cyrus $REAL_BIN/mbpath -C $CYR_CONF user.dave.Raw) &&
	i=1 &&
	for f in msgs/raw-*; do
		cp "$f" "$raw/$i." && chown cyrus:mail "$raw/$i." &&
		i=$((i + 1)) || return 1
	done &&
	as_cyrus $REAL_BIN/reconstruct -C $CYR_CONF user.dave.Raw >/dev/null &&
	instance_imap_script -u bob -w bob >/dev/null <<-\EOI &&
	SELECT INBOX
	STORE 3 +FLAGS (\Answered $Label1)
	STORE 4 +FLAGS (\Seen)
	EOI
	for u in alice bob carol; do
		instance_imap_script -u $u -w $u <<-\EOI >before.$u || return 1
		SELECT INBOX
		UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)
		EOI
	done &&
	instance_pause &&
	CONF=$CYR_CONF &&
	run_real -n >names &&
	test_line_count -gt 10 names
'

test_expect_success 'our parse: -G rewrites no byte of any index or cache' '
	copy_store g &&
	run_ours -G >out &&
	test_cmp names out &&
	(cd "$CYR_DIR/part" && find . -name "cyrus.*" | sort) >files &&
	test_line_count -gt 20 files &&
	while read -r f; do
		cmp "$CYR_DIR/part/$f" "$TEST_SCRATCH/g/part/$f" || return 1
	done <files
'

for dmg in del_index trunc_cache bad_record rm_msg add_msg odd_file; do
	test_expect_success "damage $dmg: same output as the real reconstruct" "
		copy_store real-$dmg && damage_$dmg &&
		run_real | norm_uidv | sed \"s#/real-$dmg/#/X/#\" >expect.$dmg &&
		copy_store ours-$dmg && damage_$dmg &&
		run_ours | norm_uidv | sed \"s#/ours-$dmg/#/X/#\" >actual.$dmg &&
		test_cmp expect.$dmg actual.$dmg
	"
	test_expect_success "damage $dmg: the real tools accept our result" "
		CONF=$TEST_SCRATCH/ours-$dmg/imapd.conf &&
		run_real -n >again.$dmg &&
		grep -v 'odd file\|remove odd files' again.$dmg >again2.$dmg &&
		test_cmp names again2.$dmg &&
		as_cyrus $REAL_BIN/chk_cyrus -C \$CONF >chk.$dmg 2>&1 &&
		! grep -iv '^checking\|^examining\|odd file\|remove odd files\|^$' chk.$dmg &&
		as_cyrus $REAL_BIN/mbexamine -C \$CONF user.bob >/dev/null &&
		as_cyrus $REAL_BIN/mbexamine -C \$CONF user.alice >/dev/null
	"
done

test_expect_success 'a garbled cache text: the real one is blind, -n reports, ours fixes' '
	copy_store blind &&
	d=$(mbdir user.alice) &&
	off=$(grep -abo "plain message 1" "$d/cyrus.cache" | head -n1 | cut -d: -f1) &&
	printf Q | dd of="$d/cyrus.cache" bs=1 seek=$off conv=notrunc 2>/dev/null &&
	run_real -n >real.n && test_cmp names real.n &&
	run_ours -n >ours.n &&
	grep "^user.alice uid 1 bad cache record: cache record CRC mismatch" ours.n &&
	run_ours >fix &&
	grep "^user.alice rewrote cache for 1 " fix &&
	run_ours -n >clean && test_cmp names clean
'

test_expect_success 'imapd serves our repair as it served the original' '
	CONF=$CYR_CONF &&
	damage_trunc_cache &&
	printf Q | dd of="$(mbdir user.alice)/cyrus.cache" bs=1 seek=$off \
		conv=notrunc 2>/dev/null &&
	rm "$(mbdir user.carol)/cyrus.index" &&
	run_ours >/dev/null &&
	instance_resume &&
	for u in alice bob carol; do
		instance_imap_script -u $u -w $u <<-\EOI >after.$u &&
		SELECT INBOX
		UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)
		EOI
		# SELECT shows the new UIDVALIDITY of a lost index.
		grep FETCH before.$u >b && grep FETCH after.$u >a &&
		test_cmp b a || return 1
	done
'

# unixhierarchysep (yes by default in 3.x): the arguments are external
# names ("user/bob"), and a pattern matches the external name.
unixsep() { sed -i 's/^unixhierarchysep:.*/unixhierarchysep: yes/' "$CONF"; }
test_expect_success 'unixhierarchysep yes: the same mailboxes as the real one' '
	copy_store unix && unixsep &&
	for args in "user/bob" "-r user/bob" "user.bob" "-r user.bob" \
		"user/bob/Sent" "user/%" "-r user/%" "user/*/Sent" "-u bob" \
		"-r user/alice/Archive" "-p default user/bob" "shared"; do
		run_real -n $args >expect.unix 2>&1; echo "exit $?" >>expect.unix
		run_ours -n $args >actual.unix 2>&1; echo "exit $?" >>actual.unix
		test_cmp expect.unix actual.unix || { echo "args: $args"; return 1; }
	done &&
	run_ours -n -r user/bob >out &&
	test_line_count = 4 out
'

test_expect_success 'unixhierarchysep yes: -r user/bob repairs as the real one' '
	copy_store real-unix && damage_del_index && unixsep &&
	run_real -r user/bob | norm_uidv | sed "s#/real-unix/#/X/#" >expect &&
	copy_store ours-unix && damage_del_index && unixsep &&
	run_ours -r user/bob | norm_uidv | sed "s#/ours-unix/#/X/#" >actual &&
	test_cmp expect actual &&
	grep -q "failed to read index header" actual
'

# -j: workers take whole mailboxes; the output is the sequential run's.
damage_many()
{
	damage_del_index && damage_trunc_cache && damage_rm_msg &&
	damage_odd_file && rm "$(mbdir user.carol)/cyrus.index"
}
test_expect_success '-j 2 prints and writes what -j 1 does' '
	copy_store j1 && damage_many &&
	run_ours -j 1 | norm_uidv | sed "s#/j1/#/X/#" >expect.j &&
	copy_store j2 && damage_many &&
	run_ours -j 2 | norm_uidv | sed "s#/j2/#/X/#" >actual.j &&
	test_cmp expect.j actual.j &&
	grep -q "user.bob uid 1 found - adding" actual.j &&
	run_real -n >again.j &&
	grep -v "odd file\|remove odd files" again.j >again2.j &&
	test_cmp names again2.j &&
	test_expect_code 64 run_ours -j 0 &&
	test_expect_code 64 run_ours -j x
'

test_expect_success 'bad input: exit codes' '
	test_expect_code 64 cyrus reconstruct -C $CONF -Z &&
	test_expect_code 64 cyrus reconstruct -C $CONF -r &&
	test_expect_code 64 cyrus reconstruct -C $CONF -u &&
	test_expect_code 64 cyrus reconstruct -C $CONF -m &&
	test_expect_code 64 cyrus reconstruct -C $CONF -p default &&
	test_expect_code 64 cyrus reconstruct -C $CONF -p default "user.*" &&
	ln -sf "$CYRUS" ./cyrreconstruct &&
	test_expect_code 64 ./cyrreconstruct -C $CONF -u -P x &&
	cyrus reconstruct -C $CONF user.nosuch >out 2>err &&
	! test -s out
'

test_done
