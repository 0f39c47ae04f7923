/* Unit tests of lib/mailbox.h: cyrus.header, cyrus.index, locks. */
#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include "buf.h"
#include "error.h"
#include "lock.h"
#include "config.h"
#include "mailbox.h"
#include "mboxlist.h"
#include "mboxname.h"

static char tmpdir[] = "/tmp/test-mailbox.XXXXXX";

static size_t unhex(const char *hex, unsigned char *out)
{
	size_t n = 0;
	int hi = -1;
	for (const char *p = hex; *p; p++) {
		int v;
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			v = *p - 'a' + 10;
		else
			continue;
		if (hi < 0) {
			hi = v;
		} else {
			out[n++] = (unsigned char)(hi << 4 | v);
			hi = -1;
		}
	}
	return n;
}

/* The empty index 3.6.1 wrote for a new mailbox (docs 5.1, verified). */
static const char empty_index_hex[] =
	"0000 0000 0000 0000 0000 0011 0000 00a0"
	"0000 0070 0000 0000 0000 0000 0000 0000"
	"0000 0000 0000 0000 0000 0000 6553 f100"
	"0000 0000 0000 0000 0000 0000 0000 0001"
	"0000 0000 0000 0000 0000 0001 0000 0000"
	"0000 0000 0000 0000 0000 0000 0000 0000"
	"f427 acee 0000 0000 0000 0000 0000 0000"
	"0000 0000 0000 0000 00bc 614e 0000 0000"
	"0000 0000 0000 0001 6b06 cdef 0000 0000"
	"0000 0000 0000 0000 0000 0000 41a1 9515";

/* A record 3.6.1 wrote (docs 5.2, verified). */
static const char record_hex[] =
	"00000001 6b06cc04 65920080 00000098 0000008d 65928d20 00000004 6b06cc04"
	"00000000 00000001 00000000 00000000 00000000 6b06cc04 0000000b"
	"2b02ec335d30b0760cab4cc88e2da6df28a37f19 0000000000000003 0000000000000000"
	"0000000000000003 fc39047c 5540943b";

static void test_index_header_real(void)
{
	unsigned char b[200], out[MAILBOX_INDEX_HEADER_SIZE];
	struct mailbox_index_header ih;
	struct error err = ERROR_INIT;
	bool crcbad = true;

	test_begin("mailbox: decode and re-encode a real empty index header");
	size_t n = unhex(empty_index_hex, b);
	test_assert_int(n, 160);
	test_assert_int(mailbox_index_header_decode(b, n, &ih, &crcbad, &err), 0);
	test_assert(!crcbad);
	test_assert_int(ih.minor_version, 17);
	test_assert_int(ih.uidvalidity, 1700000000);
	test_assert_int(ih.highestmodseq, 1);
	test_assert_int(ih.createdmodseq, 1);
	test_assert_int(ih.header_file_crc, 0xf427acee);
	test_assert_int(ih.sync_crc_annot, 12345678);
	test_assert_int(ih.changes_epoch, 0x6b06cdef);
	test_assert_int(ih.options, 1);
	test_assert_int(mailbox_index_header_encode(&ih, out), 160);
	test_assert_mem(out, 160, b, 160);
	test_end();
}

static void test_index_header_bad(void)
{
	unsigned char b[200];
	struct mailbox_index_header ih;
	struct error err = ERROR_INIT;
	bool crcbad = false;
	size_t n = unhex(empty_index_hex, b);

	test_begin("mailbox: index header CRC, version and truncation errors");
	b[44] ^= 1;
	test_assert_int(mailbox_index_header_decode(b, n, &ih, &crcbad, &err), -1);
	test_assert(crcbad);
	test_assert(strstr(err.msg, "checksum") != NULL);
	b[44] ^= 1;
	test_assert_int(mailbox_index_header_decode(b, 100, &ih, &crcbad, &err), -1);
	test_assert(!crcbad);
	test_assert(strstr(err.msg, "truncated") != NULL);
	test_assert_int(mailbox_index_header_decode(b, 4, &ih, NULL, &err), -1);
	b[11] = 18; /* a newer version */
	test_assert_int(mailbox_index_header_decode(b, n, &ih, NULL, &err), -1);
	test_assert(strstr(err.msg, "version 18") != NULL);
	b[11] = 11; /* never existed */
	test_assert_int(mailbox_index_header_decode(b, n, &ih, NULL, &err), -1);
	test_end();
}

static void test_record_real(void)
{
	unsigned char b[200], out[MAILBOX_INDEX_RECORD_SIZE];
	struct mailbox_record r;
	struct mailbox_header h;
	char hex[41];

	test_begin("mailbox: decode, re-encode and sync CRC of a real record");
	size_t n = unhex(record_hex, b);
	test_assert_int(n, 112);
	mailbox_record_decode(b, 17, &r);
	test_assert(r.crc_ok);
	test_assert_int(r.uid, 1);
	test_assert_int(r.size, 0x98);
	test_assert_int(r.header_size, 0x8d);
	test_assert_int(r.cache_offset, 4);
	test_assert_int(r.cache_version, 11);
	test_assert_int(r.user_flags[0], 1);
	test_assert_int(r.modseq, 3);
	test_assert_int(r.createdmodseq, 3);
	test_assert_int(r.cache_crc, 0xfc39047c);
	mailbox_guid_hex(r.guid, hex);
	test_assert_str(hex, "2b02ec335d30b0760cab4cc88e2da6df28a37f19");
	test_assert_int(mailbox_record_encode(&r, 17, out), 112);
	test_assert_mem(out, 112, b, 112);

	b[13] ^= 1;
	mailbox_record_decode(b, 17, &r);
	test_assert(!r.crc_ok);
	b[13] ^= 1;

	/* Sync CRC: formula of crc_basic with user flag 0 = $Label1. */
	mailbox_record_decode(b, 17, &r);
	mailbox_header_init(&h);
	h.flagname[0] = xstrdup("$Label1");
	char s[256];
	uint32_t fc = (uint32_t)crc32(0, (const Bytef *)"$label1", 7);
	snprintf(s, sizeof(s), "1 3 %u (%u) %u %s", 0x6b06cc04u, fc,
		 0x6b06cc04u, hex);
	test_assert_int(mailbox_record_sync_crc(&r, &h),
			(uint32_t)crc32(0, (const Bytef *)s, (uInt)strlen(s)));
	r.internal_flags |= MAILBOX_FLAG_EXPUNGED;
	test_assert_int(mailbox_record_sync_crc(&r, &h), 0);
	mailbox_header_release(&h);
	test_end();
}

static void test_record_versions(void)
{
	static const uint32_t versions[] = { 6, 7, 8, 9, 10, 12, 13, 14, 15,
					     16, 17 };
	struct mailbox_record r, r2;
	unsigned char b[MAILBOX_INDEX_RECORD_SIZE];

	test_begin("mailbox: record round trip in every minor version");
	memset(&r, 0, sizeof(r));
	r.uid = 42;
	r.internaldate = 1700000001;
	r.sentdate = 1699999999;
	r.size = 12345;
	r.header_size = 678;
	r.gmtime = 1700000002;
	r.cache_offset = 0x123456789aull;
	r.last_updated = 1700000003;
	r.system_flags = MAILBOX_FLAG_SEEN | MAILBOX_FLAG_FLAGGED;
	r.internal_flags = MAILBOX_FLAG_ARCHIVED;
	r.user_flags[0] = 5;
	r.user_flags[3] = 0x80000000u;
	r.savedate = 1700000004;
	r.cache_version = 11;
	for (int k = 0; k < 20; k++)
		r.guid[k] = (unsigned char)(k * 13);
	r.modseq = 0x100000007ull;
	r.cid = 0xdeadbeefcafeull;
	r.createdmodseq = 6;
	r.cache_crc = 0x11223344;
	for (size_t k = 0; k < ARRAY_SIZE(versions); k++) {
		uint32_t v = versions[k];
		size_t n = mailbox_record_encode(&r, v, b);
		test_assert_idx(n == mailbox_index_record_size(v), v);
		mailbox_record_decode(b, v, &r2);
		test_assert_idx(r2.crc_ok, v);
		test_assert_idx(r2.uid == 42 && r2.size == 12345, v);
		test_assert_idx(r2.cache_offset == r.cache_offset, v);
		test_assert_idx(r2.user_flags[3] == 0x80000000u, v);
		test_assert_idx(r2.internal_flags == MAILBOX_FLAG_ARCHIVED, v);
		test_assert_idx(v < 8 || r2.modseq == r.modseq, v);
		test_assert_idx(v < 10 || !memcmp(r2.guid, r.guid, 20), v);
		test_assert_idx(v < 12 || r2.cache_crc == r.cache_crc, v);
		test_assert_idx(v < 13 || r2.cid == r.cid, v);
		test_assert_idx(v < 15 || r2.savedate == r.savedate, v);
		test_assert_idx(v < 16 || r2.createdmodseq == 6, v);
		test_assert_idx(v < 12 || r2.gmtime == r.gmtime, v);
		if (v >= 12) {
			b[0] ^= 0x80;
			mailbox_record_decode(b, v, &r2);
			test_assert_idx(!r2.crc_ok, v);
		}
	}
	test_end();
}

static void test_header_versions(void)
{
	static const uint32_t versions[] = { 6, 7, 8, 9, 10, 12, 13, 14, 15,
					     16, 17 };
	struct mailbox_index_header ih, ih2;
	unsigned char b[MAILBOX_INDEX_HEADER_SIZE];
	struct error err = ERROR_INIT;

	test_begin("mailbox: index header round trip in every minor version");
	for (size_t k = 0; k < ARRAY_SIZE(versions); k++) {
		uint32_t v = versions[k];
		mailbox_index_header_new(&ih, 1234, 77, 5, 0, 1700000000);
		ih.minor_version = v;
		ih.exists = 3;
		ih.num_records = 4;
		ih.last_uid = 9;
		ih.quota_mailbox_used = 0x100000001ull;
		ih.unseen = 2;
		ih.last_repack_time = 1600000000;
		size_t n = mailbox_index_header_encode(&ih, b);
		test_assert_idx(n == mailbox_index_header_size(v), v);
		test_assert_idx(mailbox_index_header_decode(b, n, &ih2, NULL,
							    &err) == 0, v);
		test_assert_idx(ih2.last_uid == 9 && ih2.uidvalidity == 1234, v);
		test_assert_idx(ih2.quota_mailbox_used == ih.quota_mailbox_used,
				v);
		test_assert_idx(v < 8 || ih2.highestmodseq == 77, v);
		test_assert_idx(v < 12 ? ih2.exists == 4 : ih2.exists == 3, v);
		test_assert_idx(v < 14 || ih2.unseen == 2, v);
		test_assert_idx(v < 16 || ih2.createdmodseq == 5, v);
		/* v<17: last_repack_time (stored from v12 on), else now. */
		test_assert_idx(v < 12 ? ih2.changes_epoch >= 1700000000 :
				v < 17 ? ih2.changes_epoch == 1600000000 :
				ih2.changes_epoch == 1700000000, v);
	}
	test_end();
}

static const char header_dlist[] =
	"%(T e N user.bob I v28ylkblohjpeapaqfkgo2nb Q user.bob "
	"A %(bob lrswipkxtecdan cyrus lrswipkxtecda) U ($Label1))\n";

static void test_header_roundtrip(void)
{
	struct buf in = BUF_INIT, out = BUF_INIT;
	struct mailbox_header h;
	struct error err = ERROR_INIT;

	test_begin("mailbox: cyrus.header parse and byte-exact format");
	buf_add(&in, MAILBOX_HEADER_MAGIC, MAILBOX_HEADER_MAGIC_LEN);
	buf_adds(&in, header_dlist);
	test_assert_int(in.len, 227); /* the verified example's size */
	mailbox_header_init(&h);
	test_assert_int(mailbox_header_parse(in.s, in.len, &h, &err), 0);
	test_assert_str(h.name, "user.bob");
	test_assert_str(h.uniqueid, "v28ylkblohjpeapaqfkgo2nb");
	test_assert_str(h.quotaroot, "user.bob");
	test_assert_str(h.acl, "bob\tlrswipkxtecdan\tcyrus\tlrswipkxtecda\t");
	test_assert_str(h.flagname[0], "$Label1");
	test_assert(h.flagname[1] == NULL);
	test_assert_int(h.mbtype, MBTYPE_EMAIL);
	mailbox_header_format(&h, &out);
	test_assert_mem(out.s, out.len, in.s, in.len);

	/* NIL slots, legacy type, no quota root, no ACL. */
	buf_reset(&in);
	buf_add(&in, MAILBOX_HEADER_MAGIC, MAILBOX_HEADER_MAGIC_LEN);
	buf_adds(&in, "%(T el N shared I abc U (a NIL \"c d\"))\n");
	test_assert_int(mailbox_header_parse(in.s, in.len, &h, &err), 0);
	test_assert_int(h.mbtype, MBTYPE_LEGACY_DIRS);
	test_assert(h.flagname[1] == NULL);
	test_assert_str(h.flagname[2], "c d");
	test_assert(h.acl == NULL && h.quotaroot == NULL);
	buf_reset(&out);
	mailbox_header_format(&h, &out);
	test_assert_mem(out.s, out.len, in.s, in.len);
	mailbox_header_release(&h);
	buf_release(&in);
	buf_release(&out);
	test_end();
}

static void test_header_old_and_bad(void)
{
	struct buf in = BUF_INIT;
	struct mailbox_header h;
	struct error err = ERROR_INIT;

	test_begin("mailbox: 2.x cyrus.header and bad ones");
	mailbox_header_init(&h);
	buf_add(&in, MAILBOX_HEADER_MAGIC, MAILBOX_HEADER_MAGIC_LEN);
	buf_adds(&in, "user.bob\t4b3a2c1d0e9f8a7b\n$Label1 Junk\n"
		      "bob\tlrswipkxtecda\tanyone\tlrs\t\n");
	test_assert_int(mailbox_header_parse(in.s, in.len, &h, &err), 0);
	test_assert(h.oldformat);
	test_assert_str(h.quotaroot, "user.bob");
	test_assert_str(h.uniqueid, "4b3a2c1d0e9f8a7b");
	test_assert_str(h.flagname[1], "Junk");
	test_assert_str(h.acl, "bob\tlrswipkxtecda\tanyone\tlrs\t");

	test_assert_int(mailbox_header_parse("garbage", 7, &h, &err), -1);
	test_assert_int(err.kind, ERR_DATA);
	/* Truncated: magic only, no line. */
	test_assert_int(mailbox_header_parse(in.s, MAILBOX_HEADER_MAGIC_LEN,
					     &h, &err), -1);
	/* Truncated dlist. */
	buf_reset(&in);
	buf_add(&in, MAILBOX_HEADER_MAGIC, MAILBOX_HEADER_MAGIC_LEN);
	buf_adds(&in, "%(T e N user.bob I \n");
	test_assert_int(mailbox_header_parse(in.s, in.len, &h, &err), -1);
	mailbox_header_release(&h);
	buf_release(&in);
	test_end();
}

static void test_files(void)
{
	struct error err = ERROR_INIT;
	struct mailbox_header h, h2;
	struct mailbox_index_header ih;
	struct mailbox_index idx = { 0 };
	struct mailbox_record recs[3];
	char path[256], ipath[256], newpath[300];
	uint32_t crc = 0, crc2 = 1;
	bool crcbad = true;
	struct stat st;

	test_begin("mailbox: atomic header and index files, whole-index read");
	snprintf(path, sizeof(path), "%s/cyrus.header", tmpdir);
	snprintf(ipath, sizeof(ipath), "%s/cyrus.index", tmpdir);
	mailbox_header_init(&h);
	h.name = xstrdup("user.alice");
	h.uniqueid = xstrdup("u1");
	h.acl = xstrdup("alice\tlrswipkxtecdan\t");
	test_assert_int(mailbox_header_write(path, &h, &crc, &err), 0);
	snprintf(newpath, sizeof(newpath), "%s.NEW", path);
	test_assert(stat(newpath, &st) < 0);
	mailbox_header_init(&h2);
	test_assert_int(mailbox_header_read(path, &h2, &crc2, NULL, &err), 0);
	test_assert_int(crc, crc2);
	test_assert_str(h2.acl, h.acl);

	mailbox_index_header_new(&ih, 99, 10, 0, 0, 1700000000);
	ih.header_file_crc = crc;
	memset(recs, 0, sizeof(recs));
	for (int k = 0; k < 3; k++) {
		recs[k].uid = (uint32_t)(k + 1);
		recs[k].size = 100;
		recs[k].modseq = (uint64_t)(5 + k);
		recs[k].cache_version = 11;
	}
	recs[0].system_flags = MAILBOX_FLAG_SEEN | MAILBOX_FLAG_ANSWERED;
	recs[1].internal_flags = MAILBOX_FLAG_EXPUNGED;
	recs[2].system_flags = MAILBOX_FLAG_DELETED | MAILBOX_FLAG_FLAGGED;
	mailbox_index_recount(&ih, recs, 3, &h);
	test_assert_int(ih.exists, 2);
	test_assert_int(ih.unseen, 1);
	test_assert_int(ih.answered, 1);
	test_assert_int(ih.deleted, 1);
	test_assert_int(ih.flagged, 1);
	test_assert_int(ih.quota_mailbox_used, 200);
	test_assert_int(ih.last_uid, 3);
	test_assert_int(ih.highestmodseq, 10);
	test_assert_int(ih.sync_crc, mailbox_record_sync_crc(&recs[0], &h) ^
					     mailbox_record_sync_crc(&recs[2], &h));
	test_assert_int(mailbox_index_write(ipath, &ih, recs, 3, &err), 0);
	test_assert(stat(ipath, &st) == 0 && st.st_size == 160 + 3 * 112);
	test_assert_int(mailbox_index_read(ipath, &idx, &crcbad, &err), 0);
	test_assert(!crcbad);
	test_assert_int(idx.nrecs, 3);
	test_assert_int(idx.h.exists, 2);
	test_assert(idx.recs[2].crc_ok && idx.recs[2].uid == 3);

	/* Truncate a record away: the read refuses. */
	test_assert(truncate(ipath, 160 + 2 * 112 + 50) == 0);
	test_assert_int(mailbox_index_read(ipath, &idx, NULL, &err), -1);
	test_assert(strstr(err.msg, "truncated") != NULL);
	unlink(ipath);
	test_assert_int(mailbox_index_read(ipath, &idx, NULL, &err), -1);
	test_assert_int(err.kind, ERR_NOINPUT);
	mailbox_index_release(&idx);
	mailbox_header_release(&h);
	mailbox_header_release(&h2);
	test_end();
}

static void test_cache_create(void)
{
	char path[256];
	unsigned char b[8];
	struct error err = ERROR_INIT;

	test_begin("mailbox: empty cyrus.cache holds the generation");
	snprintf(path, sizeof(path), "%s/cyrus.cache", tmpdir);
	test_assert_int(mailbox_cache_create(path, 0x01020304, &err), 0);
	int fd = open(path, O_RDONLY);
	test_assert(read(fd, b, sizeof(b)) == 4);
	test_assert(b[0] == 1 && b[3] == 4);
	close(fd);
	test_end();
}

static void test_locks(void)
{
	struct config *cfg = NULL;
	struct mboxname_ns ns;
	struct mailbox_lock lk;
	struct error err = ERROR_INIT;
	char conf[256], want[512];

	test_begin("mailbox: lock files and order of the 3.6.1 protocol");
	snprintf(conf, sizeof(conf), "%s/imapd.conf", tmpdir);
	FILE *f = fopen(conf, "w");
	fprintf(f, "configdirectory: %s\npartition-default: %s\n"
		   "hashimapspool: true\n", tmpdir, tmpdir);
	fclose(f);
	test_assert_int(config_load(conf, NULL, &cfg, NULL), 0);
	mboxname_ns_init(&ns, cfg, true);
	test_assert_int(mailbox_lock_names(cfg, &ns, "user.a^b.Sent",
					   "v28ylkblohjpeapaqfkgo2nb", false,
					   LOCK_EXCLUSIVE, false, &lk, &err), 0);
	snprintf(want, sizeof(want), "%s/lock/q/*U*a^b.lock", tmpdir);
	test_assert_str(lk.ns_path, want);
	snprintf(want, sizeof(want), "%s/lock/v/v28ylkblohjpeapaqfkgo2nb.lock",
		 tmpdir);
	test_assert_str(lk.name_path, want);

	/* Another process cannot take either lock while we hold them. */
	pid_t pid = fork();
	if (pid == 0) {
		struct mailbox_lock lk2;
		struct error e2 = ERROR_INIT;
		int r = mailbox_lock_names(cfg, &ns, "user.a^b.Sent",
					   "v28ylkblohjpeapaqfkgo2nb", false,
					   LOCK_SHARED, true, &lk2, &e2);
		_exit(r < 0 && e2.kind == ERR_TEMPFAIL ? 0 : 1);
	}
	int status = -1;
	waitpid(pid, &status, 0);
	test_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	mailbox_lock_release(&lk);
	test_assert(lk.ns_fd == -1 && lk.name_fd == -1);

	/* Legacy dirs and shared mailboxes: by name, no namespace lock. */
	test_assert_int(mailbox_lock_names(cfg, &ns, "shared.box", "x", true,
					   LOCK_SHARED, true, &lk, &err), 0);
	test_assert(lk.ns_path == NULL);
	snprintf(want, sizeof(want), "%s/lock/b/shared/box.lock", tmpdir);
	test_assert_str(lk.name_path, want);
	mailbox_lock_release(&lk);
	config_free(&cfg);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_index_header_real, test_index_header_bad,
		test_record_real,       test_record_versions,
		test_header_versions,   test_header_roundtrip,
		test_header_old_and_bad, test_files,
		test_cache_create,      test_locks,
		NULL,
	};
	if (!mkdtemp(tmpdir))
		return 1;
	int r = test_run(tests);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		r = 1;
	return r;
}
