#!/bin/bash
# cyrus ctl_cyrusdb on bad input: an unknown backend in imapd.conf, a
# directory where a database should be, an unreadable database, a
# NAME_db_path or configdirectory that does not exist. Each gives one
# clear line naming the database and the reason, a sysexits code, the
# other databases are still handled, and the originals are left as they
# were. -r checks record by record only what recovery touched, or every
# database with --check.
test_description='ctl_cyrusdb: bad input'
. "$(dirname "$0")/../lib/test-lib.sh"

real_cyrus_available || test_skip_all "Debian's cyrus-imapd is not installed"
[ "$(id -u)" = 0 ] || test_skip_all 'needs root to make an unreadable file'

D=$TEST_SCRATCH
rt() { as_cyrus "$REAL_BIN/cyr_dbtool" -C "$D/imapd.conf" "$@"; }

# A config with mailboxes.db and annotations.db written by the real tool.
store() {
	rm -rf "$D/conf" && mkdir -p "$D/conf/db" && chown -R cyrus:mail "$D/conf" &&
	printf 'configdirectory: %s/conf\npartition-default: %s/part\n' "$D" "$D" >"$D/imapd.conf" &&
	seq 1 300 | sed 's/.*/SET user.u& value-&/' >"$D/keys" &&
	rt -n "$D/conf/mailboxes.db" twoskip batch <"$D/keys" &&
	rt -n "$D/conf/annotations.db" twoskip batch <"$D/keys" &&
	cp -p "$D/conf/mailboxes.db" "$D/mailboxes.orig" &&
	cp -p "$D/conf/annotations.db" "$D/annotations.orig"
}
conf_with() { cp "$D/imapd.conf" "$D/bad.conf" && printf '%s\n' "$@" >>"$D/bad.conf"; }
untouched() { cmp "$D/mailboxes.orig" "$D/conf/mailboxes.db" && cmp "$D/annotations.orig" "$D/conf/annotations.db"; }

test_expect_success 'setup: two databases by the real cyr_dbtool' '
	store &&
	cyrus -C "$D/imapd.conf" ctl_cyrusdb -r &&
	cyrus -C "$D/imapd.conf" ctl_cyrusdb -c &&
	untouched
'

test_expect_success 'an unknown backend (annotation_db): EX_CONFIG, the key named, as the real one' '
	conf_with "annotation_db: nosuchdb" &&
	test_expect_code 78 cyrus -C "$D/bad.conf" ctl_cyrusdb -r 2>err &&
	grep "invalid value .nosuchdb. for annotation_db" err &&
	test_line_count = 1 err &&
	test_expect_code 78 cyrus -C "$D/bad.conf" ctl_cyrusdb -c 2>err &&
	test_expect_code 78 as_cyrus "$REAL_BIN/ctl_cyrusdb" -C "$D/bad.conf" -r 2>/dev/null &&
	untouched && test_path_is_missing "$D/conf/db.backup2"
'

test_expect_success 'a directory instead of a database file: EX_NOINPUT, the others handled' '
	store && mv "$D/conf/annotations.db" "$D/ann" &&
	mkdir "$D/conf/annotations.db" && chown cyrus "$D/conf/annotations.db" &&
	test_expect_code 66 cyrus -C "$D/imapd.conf" ctl_cyrusdb -r --summary >out 2>err &&
	grep "cannot recover .*/annotations.db.: not a regular file$" err &&
	grep "1 database failed: annotations.db$" err &&
	! grep salvage err &&
	grep "^mailboxes.db *twoskip *recovered" out &&
	test_expect_code 66 cyrus -C "$D/imapd.conf" ctl_cyrusdb -c 2>err &&
	grep "cannot archive .*/annotations.db.: not a regular file$" err &&
	cmp "$D/mailboxes.orig" "$D/conf/db.backup1/mailboxes.db" &&
	test_path_is_missing "$D/conf/db.backup1/annotations.db" &&
	test_path_is_dir "$D/conf/annotations.db" &&
	rmdir "$D/conf/annotations.db" && mv "$D/ann" "$D/conf/annotations.db" &&
	untouched
'

test_expect_success 'an unreadable database: EX_NOPERM, the others handled, the file untouched' '
	store && chown root "$D/conf/annotations.db" && chmod 000 "$D/conf/annotations.db" &&
	test_expect_code 77 cyrus -C "$D/imapd.conf" ctl_cyrusdb -r 2>err &&
	grep "cannot recover .*/annotations.db.: cannot open it for writing: Permission denied$" err &&
	grep "1 database failed: annotations.db$" err &&
	! grep salvage err &&
	test_expect_code 77 cyrus -C "$D/imapd.conf" ctl_cyrusdb -c 2>err &&
	grep "cannot archive .*/annotations.db.: cannot open it: Permission denied$" err &&
	test_path_is_file "$D/conf/db.backup1/mailboxes.db" &&
	test "$(stat -c "%a %U" "$D/conf/annotations.db")" = "0 root" &&
	untouched
'

test_expect_success 'a NAME_db_path in a directory that does not exist: EX_CONFIG, the setting named, nothing created' '
	store && conf_with "annotation_db_path: $D/nonexistent/dir/annotations.db" &&
	test_expect_code 78 cyrus -C "$D/bad.conf" ctl_cyrusdb -r 2>err &&
	grep "cannot recover .$D/nonexistent/dir/annotations.db.: directory .$D/nonexistent/dir. does not exist (annotation_db_path in $D/bad.conf)$" err &&
	grep "1 database failed: annotations.db$" err &&
	test_expect_code 78 cyrus -C "$D/bad.conf" ctl_cyrusdb -c 2>err &&
	grep "cannot archive .*annotation_db_path" err &&
	cmp "$D/mailboxes.orig" "$D/conf/db.backup1/mailboxes.db" &&
	test_path_is_missing "$D/nonexistent" &&
	untouched
'

test_expect_success 'a NAME_db_path whose file does not exist yet: not an error (created on first use)' '
	store && mkdir -p "$D/elsewhere" && chown cyrus "$D/elsewhere" &&
	conf_with "annotation_db_path: $D/elsewhere/annotations.db" &&
	cyrus -C "$D/bad.conf" ctl_cyrusdb -r --json >out &&
	grep "\"database\": \"annotations.db\", .*\"status\": \"missing\"" out &&
	test_path_is_missing "$D/elsewhere/annotations.db"
'

test_expect_success 'a configdirectory that does not exist: EX_CONFIG, one line' '
	store && sed "s|^configdirectory: .*|configdirectory: $D/noconf|" "$D/imapd.conf" >"$D/bad.conf" &&
	test_expect_code 78 cyrus -C "$D/bad.conf" ctl_cyrusdb -r 2>err &&
	grep "cannot recover: configdirectory .$D/noconf. is not a directory (in $D/bad.conf)$" err &&
	test_line_count = 1 err &&
	test_expect_code 78 cyrus -C "$D/bad.conf" ctl_cyrusdb -c 2>err &&
	test_path_is_missing "$D/noconf"
'

# A record body damaged in a clean file: recovery does not look at it
# (neither does the real -r); --check reads every record and finds it.
test_expect_success '-r checks what recovery touched; --check every record' '
	store &&
	python3 -c "
f = open(\"$D/conf/annotations.db\", \"r+b\"); data = f.read()
# A byte inside a live value: the CRC of its record no longer holds (a fixed
# offset may land in padding or a pointer slot that recovery rewrites).
at = data.index(b\"value-150\") + 6
f.seek(at); f.write(bytes([data[at] ^ 0x55]))" &&
	cp -p "$D/conf/annotations.db" "$D/ann.damaged" &&
	cyrus -C "$D/imapd.conf" ctl_cyrusdb -r -x &&
	test_expect_code 65 cyrus -C "$D/imapd.conf" ctl_cyrusdb -r -x --check 2>err &&
	grep "annotations.db. is not consistent after recovery" err &&
	grep "1 database failed: annotations.db$" err &&
	cmp "$D/ann.damaged" "$D/conf/annotations.db" &&
	test_expect_code 64 cyrus ctl_cyrusdb -c --check
'

test_expect_success '-r on an unclean twoskip (DIRTY) always checks it' '
	store &&
	python3 -c "
import zlib
f = open(\"$D/conf/annotations.db\", \"r+b\"); data = f.read()
# A byte inside a live value: the CRC of its record no longer holds (a fixed
# offset may land in padding or a pointer slot that recovery rewrites).
at = data.index(b\"value-150\") + 6
f.seek(at); f.write(bytes([data[at] ^ 0x55]))
f.seek(0); h = bytearray(f.read(64)); h[59] |= 1
h[60:64] = zlib.crc32(bytes(h[:60])).to_bytes(4, \"big\")
f.seek(0); f.write(h)" &&
	cp -p "$D/conf/annotations.db" "$D/ann.damaged" &&
	test_expect_code 65 cyrus -C "$D/imapd.conf" ctl_cyrusdb -r -x 2>err &&
	grep "annotations.db. is not consistent after recovery" err &&
	cmp "$D/mailboxes.orig" "$D/conf/mailboxes.db"
'

test_done
