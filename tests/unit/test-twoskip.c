/* Unit tests of the twoskip backend (lib/cyrusdb_twoskip.c). */
#include "harness.h"

#include <endian.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "buf.h"
#include "cyrusdb.h"
#include "error.h"
#include "twoskip-private.h"

static char *dir;

/* ---- helpers ---- */

static char *path(const char *name)
{
	return xasprintf("%s/%s", dir, name);
}

static struct cyrusdb *open_db(const char *fname, int flags, int *r_out)
{
	struct cyrusdb *db = NULL;
	struct error err = ERROR_INIT;
	int r = cyrusdb_open("twoskip", fname, flags, &db, &err);
	if (r_out)
		*r_out = r;
	return r ? NULL : db;
}

static char *read_file(const char *fname, size_t *len_r)
{
	struct buf b = BUF_INIT;
	char chunk[65536];
	int fd = open(fname, O_RDONLY);
	ssize_t n;
	while (fd >= 0 && (n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_add(&b, chunk, n);
	if (fd >= 0)
		close(fd);
	return buf_detach(&b, len_r);
}

static void write_file(const char *fname, const void *data, size_t len)
{
	int fd = open(fname, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
		perror(fname);
		exit(EX_OSERR);
	}
	close(fd);
}

static bool same_file(const char *fname, const char *data, size_t len)
{
	size_t n;
	char *now = read_file(fname, &n);
	bool same = n == len && !memcmp(now, data, len);
	free(now);
	return same;
}

static uint64_t get64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

static uint32_t get32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static void put64(char *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static void put32(char *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static void fix_header_crc(char *f)
{
	put32(f + 60, crc32(0, (const Bytef *)f, 60));
}

/* Length of the head of the record at f+off (up to the CRCs). */
static size_t head_len(const char *rec)
{
	size_t len = 8;
	if ((unsigned char)rec[2] == 0xff && (unsigned char)rec[3] == 0xff)
		len += 8;
	if (get32(rec + 4) == UINT32_MAX)
		len += 8;
	return len + 8 * ((unsigned char)rec[1] + 1);
}

static void fix_head_crc(char *f, size_t off)
{
	size_t len = head_len(f + off);
	put32(f + off + len, crc32(0, (const Bytef *)f + off, len));
}

/* Offset of the first '+' record with this key, found by a scan. */
static size_t find_record(const char *f, size_t flen, const char *key)
{
	size_t klen = strlen(key);
	for (size_t off = 64; off + 24 <= (size_t)flen; off += 8) {
		if (f[off] != '+' || get32(f + off + 4) == UINT32_MAX)
			continue;
		size_t hl = head_len(f + off) + 8;
		if ((size_t)((unsigned char)f[off + 2] << 8 |
			     (unsigned char)f[off + 3]) == klen && off + hl + klen <= flen &&
		    !memcmp(f + off + hl, key, klen))
			return off;
	}
	return 0;
}

static int collect_cb(void *rock, const char *key, size_t keylen,
		      const char *data, size_t datalen)
{
	struct buf *b = rock;
	buf_add(b, key, keylen);
	buf_addch(b, '=');
	buf_add(b, data, datalen);
	buf_addch(b, ';');
	return 0;
}

/* "k=v;" for every record, in order. Caller frees. */
static char *listing(struct cyrusdb *db, const char *prefix)
{
	struct buf b = BUF_INIT;
	int r = cyrusdb_foreach(db, prefix, strlen(prefix), NULL, collect_cb,
				&b, NULL);
	if (r)
		buf_printf(&b, "ERROR %d", r);
	return buf_detach(&b, NULL);
}

static char *listing_of(const char *fname, int flags)
{
	struct cyrusdb *db = open_db(fname, flags, NULL);
	if (!db)
		return xstrdup("OPEN FAILED");
	char *s = listing(db, "");
	cyrusdb_close(&db);
	return s;
}

static int set(struct cyrusdb *db, const char *k, const char *v,
	       struct cyrusdb_txn **tid)
{
	return cyrusdb_store(db, k, strlen(k), v, strlen(v), tid);
}

/* ---- tests ---- */

static void test_empty_file(void)
{
	/* docs/formats/cyrusdb.md 7.1, as written by cyr_dbtool -n */
	static const unsigned char head[] = {
		0xa1, 0x02, 0x8b, 0x0d, 't', 'w', 'o', 's', 'k', 'i', 'p', ' ',
		'f', 'i', 'l', 'e', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
		0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x50,
		0, 0, 0, 0, 0, 0, 1, 0x50, 0, 0, 0, 0, 0xa2, 0x94, 0x38, 0x80,
		'=', 0x1f, 0, 0, 0, 0, 0, 0,
	};
	unsigned char want[336];
	memset(want, 0, sizeof(want));
	memcpy(want, head, sizeof(head));
	memcpy(want + 0x148, "\x43\x39\xbc\x53", 4);

	test_begin("twoskip: a new database is the 336-byte Cyrus file");
	char *p = path("empty.db");
	int r;
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE, &r);
	test_assert_int(r, 0);
	test_assert(same_file(p, (const char *)want, sizeof(want)));
	char *l = listing(db, "");
	test_assert_str(l, "");
	free(l);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	/* reopening changes nothing */
	db = open_db(p, 0, &r);
	test_assert_int(r, 0);
	cyrusdb_close(&db);
	test_assert(same_file(p, (const char *)want, sizeof(want)));
	free(p);
	test_end();
}

static void test_missing(void)
{
	test_begin("twoskip: missing file without CREATE is NOTFOUND");
	char *p = path("nonexistent.db");
	struct cyrusdb *db = NULL;
	struct error err = ERROR_INIT;
	int r = cyrusdb_open("twoskip", p, 0, &db, &err);
	test_assert_int(r, CYRUSDB_NOTFOUND);
	test_assert(db == NULL);
	test_assert(access(p, F_OK) < 0);
	free(p);
	test_end();
}

static void test_sequence(void)
{
	test_begin("twoskip: the spec 7.2 sequence reads back, header right");
	char *p = path("seq.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE, NULL);
	test_assert_int(set(db, "apple", "red", NULL), 0);
	test_assert_int(set(db, "banana", "yellow", NULL), 0);
	test_assert_int(set(db, "apple", "green", NULL), 0);
	test_assert_int(cyrusdb_delete(db, "banana", 6, NULL, false), 0);
	test_assert_int(set(db, "k\001x", "v\001y", NULL), 0);
	char *l = listing(db, "");
	test_assert_str(l, "apple=green;k\001x=v\001y;");
	free(l);
	test_assert_int(cyrusdb_consistent(db), 0);
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(db, "banana", 6, &d, &dl, NULL),
			CYRUSDB_NOTFOUND);
	test_assert_int(cyrusdb_delete(db, "banana", 6, NULL, false),
			CYRUSDB_NOTFOUND);
	test_assert_int(cyrusdb_delete(db, "banana", 6, NULL, true), 0);
	test_assert_int(cyrusdb_create(db, "apple", 5, "x", 1, NULL),
			CYRUSDB_EXISTS);
	test_assert_int(cyrusdb_fetch(db, "apple", 5, &d, &dl, NULL), 0);
	test_assert_mem(d, dl, "green", 5);
	cyrusdb_close(&db);

	size_t flen;
	char *f = read_file(p, &flen);
	test_assert_int(get64(f + 24), 1);          /* generation */
	test_assert_int(get64(f + 32), 2);          /* num_records */
	test_assert_int(get64(f + 40), 336);        /* repack_size */
	test_assert_int(get64(f + 48), flen);       /* current_size */
	test_assert_int(get32(f + 56), 0);          /* flags */
	/* each of the 5 writes ends with a COMMIT pointing at its start */
	int commits = 0;
	for (size_t off = 64; off + 24 <= flen; off += 8)
		if (f[off] == '$' && f[off + 1] == 0 &&
		    get64(f + off + 8) < off && get64(f + off + 8) >= 336)
			commits++;
	test_assert_int(commits, 5);
	/* the first record starts right after the DUMMY */
	test_assert(f[336] == '+' && get64(f + 336 + 8) == 0);
	free(f);
	free(p);
	test_end();
}

static void test_blank_padding(void)
{
	test_begin("twoskip: BLANKs keep record heads within 512-byte blocks");
	char *p = path("blank.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE | CYRUSDB_NOCOMPACT,
				     NULL);
	char key[32];
	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "key%03d", i * 7 % 300);
		test_assert_int(set(db, key, "v", NULL), 0);
	}
	cyrusdb_close(&db);
	size_t flen;
	char *f = read_file(p, &flen);
	/* walk the file as recovery2 does and check every head */
	size_t off = 64, blanks = 0, bad = 0, records = 0;
	while (off < flen) {
		if (!memcmp(f + off, " BLANK\x07\xa0", 8)) {
			blanks++;
			off += 8;
			continue;
		}
		size_t hl = head_len(f + off) + 8;
		if (hl <= 504 && (off + 8) / 512 != (off + hl - 1) / 512)
			bad++;
		uint64_t kl = (unsigned char)f[off + 2] << 8 |
			      (unsigned char)f[off + 3];
		uint64_t vl = get32(f + off + 4);
		off += hl + ((kl + vl + 7) & ~7ULL);
		records++;
	}
	test_assert_int(off, flen);
	test_assert(blanks > 0);
	test_assert_int(bad, 0);
	test_assert(records > 600);
	free(f);
	free(p);
	test_end();
}

static void test_binary(void)
{
	test_begin("twoskip: binary keys, empty and big values, long key");
	char *p = path("bin.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE, NULL);
	struct cyrusdb_txn *tid = NULL;
	static const char k1[] = { 'a', 0, '\t', '\n', (char)0xff, 'z' };
	static const char v1[] = { 0, '\t', '\n', (char)0xff };
	char *big = xmalloc(100 * 1024);
	for (int i = 0; i < 100 * 1024; i++)
		big[i] = (char)(i * 31 + 7);
	char *longkey = xmalloc(70000);
	memset(longkey, 'L', 70000);
	longkey[69999] = 'x';

	test_assert_int(cyrusdb_store(db, k1, sizeof(k1), v1, sizeof(v1),
				      &tid), 0);
	test_assert_int(cyrusdb_store(db, "empty", 5, "", 0, &tid), 0);
	test_assert_int(cyrusdb_store(db, "null", 4, NULL, 0, &tid), 0);
	test_assert_int(cyrusdb_store(db, "big", 3, big, 100 * 1024, &tid), 0);
	test_assert_int(cyrusdb_store(db, longkey, 70000, "1", 1, &tid), 0);
	test_assert_int(cyrusdb_store(db, "ab", 2, "2", 1, &tid), 0);
	test_assert_int(cyrusdb_store(db, "a", 1, "1", 1, &tid), 0);
	test_assert_int(cyrusdb_store(db, "abc", 3, "3", 1, &tid), 0);
	/* visible inside the transaction before the commit */
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(db, "big", 3, &d, &dl, &tid), 0);
	test_assert_mem(d, dl, big, 100 * 1024);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	cyrusdb_close(&db);

	db = open_db(p, 0, NULL);
	test_assert_int(cyrusdb_fetch(db, k1, sizeof(k1), &d, &dl, NULL), 0);
	test_assert_mem(d, dl, v1, sizeof(v1));
	test_assert_int(cyrusdb_fetch(db, "empty", 5, &d, &dl, NULL), 0);
	test_assert(d != NULL && dl == 0);
	test_assert_int(cyrusdb_fetch(db, "null", 4, &d, &dl, NULL), 0);
	test_assert_int(dl, 0);
	test_assert_int(cyrusdb_fetch(db, "big", 3, &d, &dl, NULL), 0);
	test_assert_mem(d, dl, big, 100 * 1024);
	test_assert_int(cyrusdb_fetch(db, longkey, 70000, &d, &dl, NULL), 0);
	test_assert_mem(d, dl, "1", 1);
	test_assert_int(cyrusdb_fetch(db, longkey, 69999, &d, &dl, NULL),
			CYRUSDB_NOTFOUND);
	/* prefixes of each other, in order */
	char *l = listing(db, "a");
	test_assert(!strncmp(l, "a=1;a\0\t\n\xffz=\0\t\n\xff;ab=2;abc=3;", 30));
	free(l);
	l = listing(db, "ab");
	test_assert_str(l, "ab=2;abc=3;");
	free(l);
	const char *fk;
	size_t fkl;
	test_assert_int(cyrusdb_fetchnext(db, "ab", 2, &fk, &fkl, &d, &dl,
					  NULL), 0);
	test_assert_mem(fk, fkl, "abc", 3);
	test_assert_int(cyrusdb_fetchnext(db, "aa", 2, &fk, &fkl, &d, &dl,
					  NULL), 0);
	test_assert_mem(fk, fkl, "ab", 2);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);

	/* the 70000-byte key uses the long length form (spec 7.2a) */
	size_t flen;
	char *f = read_file(p, &flen);
	bool found = false;
	for (size_t off = 336; off + 16 <= flen; off += 8)
		if (!memcmp(f + off, "+\0\xff\xff\0\0\0\1", 8) ||
		    (f[off] == '+' && !memcmp(f + off + 2, "\xff\xff\0\0\0\1",
					      6)))
			if (get64(f + off + 8) == 70000)
				found = true;
	test_assert(found);
	free(f);
	free(big);
	free(longkey);
	free(p);
	test_end();
}

static void test_abort(void)
{
	test_begin("twoskip: abort restores the committed state");
	char *p = path("abort.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE, NULL);
	struct cyrusdb_txn *tid = NULL;
	for (int i = 0; i < 50; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%02d", i);
		set(db, k, "old", &tid);
	}
	test_assert_int(cyrusdb_commit(db, tid), 0);
	size_t before_len;
	char *before = read_file(p, &before_len);
	char *l0 = listing(db, "");

	tid = NULL;
	test_assert_int(set(db, "k10", "new", &tid), 0);
	test_assert_int(set(db, "k00a", "ins", &tid), 0);
	test_assert_int(cyrusdb_delete(db, "k20", 3, &tid, false), 0);
	test_assert_int(set(db, "zzz", "end", &tid), 0);
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(db, "k20", 3, &d, &dl, &tid),
			CYRUSDB_NOTFOUND);
	test_assert_int(cyrusdb_abort(db, tid), 0);

	char *l1 = listing(db, "");
	test_assert_str(l1, l0);
	test_assert_int(cyrusdb_consistent(db), 0);
	size_t after_len;
	char *after = read_file(p, &after_len);
	test_assert_int(after_len, before_len);
	/* only level-0 slots of existing heads may differ */
	test_assert_int(get64(after + 32), 50);
	test_assert_int(get32(after + 56), 0);

	/* a failed create aborts the transaction, as in Cyrus */
	tid = NULL;
	test_assert_int(set(db, "k30", "new", &tid), 0);
	test_assert_int(cyrusdb_create(db, "k31", 3, "x", 1, &tid),
			CYRUSDB_EXISTS);
	test_assert(tid == NULL);
	char *l2 = listing(db, "");
	test_assert_str(l2, l0);
	cyrusdb_close(&db);
	free(before);
	free(after);
	free(l0);
	free(l1);
	free(l2);
	free(p);
	test_end();
}

static void test_dirty_protocol(void)
{
	test_begin("twoskip: DIRTY is on disk before a transaction writes");
	char *p = path("dirty.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE, NULL);
	set(db, "a", "1", NULL);
	size_t len;
	char *f = read_file(p, &len);
	uint64_t committed = get64(f + 48);
	test_assert_int(get32(f + 56), 0);
	test_assert_int(committed, len);
	free(f);

	struct cyrusdb_txn *tid = NULL;
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(db, "a", 1, &d, &dl, &tid), 0);
	f = read_file(p, &len);
	test_assert_int(get32(f + 56), 0);  /* reading dirties nothing */
	free(f);
	set(db, "b", "2", &tid);
	f = read_file(p, &len);
	test_assert_int(get32(f + 56), 1);
	test_assert_int(get64(f + 48), committed);
	free(f);
	/* an append past the last key may be staged; a read writes it out */
	test_assert_int(cyrusdb_fetch(db, "b", 1, &d, &dl, &tid), 0);
	test_assert_mem(d, dl, "2", 1);
	f = read_file(p, &len);
	test_assert_int(get32(f + 56), 1);
	test_assert_int(get64(f + 48), committed);
	test_assert(len > committed);
	free(f);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	f = read_file(p, &len);
	test_assert_int(get32(f + 56), 0);
	test_assert_int(get64(f + 48), len);
	test_assert(f[len - 24] == '$' && get64(f + len - 16) == committed);
	free(f);
	cyrusdb_close(&db);
	free(p);
	test_end();
}

/* A file as a crash could leave it in the middle of a transaction. */
static void crash_copy(const char *src, const char *dst, int how)
{
	size_t len;
	char *f = read_file(src, &len);
	uint64_t cs = get64(f + 48);
	if (how == 1)
		len = cs + (len - cs) / 2 + 3;        /* torn: cut mid-record */
	if (how == 2)
		for (size_t i = cs + (len - cs) / 3; i < len; i++)
			f[i] = (char)(i * 131 + 17);  /* garbage tail */
	if (how == 3)
		len = cs;             /* data lost, head rewrites kept */
	write_file(dst, f, len);
	free(f);
}

static void test_crash(void)
{
	test_begin("twoskip: crash mid-transaction recovers the commits only");
	char *p = path("crash.db");
	char *c = path("crash-copy.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE | CYRUSDB_NOCOMPACT,
				     NULL);
	struct cyrusdb_txn *tid = NULL;
	char k[32];
	for (int i = 0; i < 200; i++) {
		snprintf(k, sizeof(k), "key%03d", i * 37 % 200);
		set(db, k, "committed", &tid);
	}
	test_assert_int(cyrusdb_commit(db, tid), 0);
	char *want = listing(db, "");

	size_t cs;
	char *f0 = read_file(p, &cs);
	free(f0);

	tid = NULL;
	for (int i = 0; i < 300; i++) {
		snprintf(k, sizeof(k), "key%03d", i * 53 % 300);
		if (i % 5 == 0)
			cyrusdb_delete(db, k, strlen(k), &tid, true);
		else
			set(db, k, "uncommitted", &tid);
	}
	for (int how = 0; how < 4; how++) {
		crash_copy(p, c, how);
		char *got = listing_of(c, 0);
		test_assert_idx(!strcmp(got, want), how);
		free(got);
		struct cyrusdb *cdb = open_db(c, 0, NULL);
		test_assert_idx(cdb && !cyrusdb_consistent(cdb), how);
		cyrusdb_close(&cdb);
		size_t len;
		char *f = read_file(c, &len);
		test_assert_idx(get32(f + 56) == 0 && get64(f + 48) == len,
				how);
		test_assert_idx(get64(f + 32) == 200, how);
		/* recovery1 (not a rebuild): the committed size is kept */
		test_assert_idx(len == cs, how);
		free(f);
	}
	test_assert_int(cyrusdb_commit(db, tid), 0);
	cyrusdb_close(&db);
	free(want);
	free(p);
	free(c);
	test_end();
}

static void test_recovery2(void)
{
	test_begin("twoskip: recovery2 replays the committed transactions");
	char *p = path("rec2.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE, NULL);
	set(db, "apple", "red", NULL);
	set(db, "banana", "yellow", NULL);
	set(db, "cherry", "x", NULL);
	cyrusdb_delete(db, "banana", 6, NULL, false);
	set(db, "date", "d", NULL);
	cyrusdb_close(&db);

	/* cherry points back to apple: recovery1 finds keys out of order */
	size_t len;
	char *f = read_file(p, &len);
	size_t cherry = find_record(f, len, "cherry");
	size_t apple = find_record(f, len, "apple");
	test_assert(cherry && apple);
	put64(f + cherry + 8, apple);
	put64(f + cherry + 16, apple);
	fix_head_crc(f, cherry);
	put32(f + 56, 1);
	fix_header_crc(f);
	write_file(p, f, len);
	free(f);

	char *got = listing_of(p, 0);
	test_assert_str(got, "apple=red;cherry=x;date=d;");
	free(got);
	db = open_db(p, 0, NULL);
	test_assert(db && cyrusdb_consistent(db) == 0);
	cyrusdb_close(&db);
	f = read_file(p, &len);
	test_assert_int(get64(f + 32), 3);
	test_assert_int(get64(f + 24), 1);  /* Cyrus leaves generation 1 */
	free(f);
	char *n = path("rec2.db.NEW");
	test_assert(access(n, F_OK) < 0);
	free(n);
	free(p);
	test_end();
}

static void test_consistent(void)
{
	test_begin("twoskip: consistent detects broken pointers and counts");
	char *p = path("cons.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE, NULL);
	struct cyrusdb_txn *tid = NULL;
	char k[16];
	for (int i = 0; i < 64; i++) {
		snprintf(k, sizeof(k), "c%02d", i);
		set(db, k, "v", &tid);
	}
	cyrusdb_commit(db, tid);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);

	size_t len;
	char *orig = read_file(p, &len);
	char *f = xmemdup(orig, len);
	/* a record of level >= 2 whose level-1 pointer we break */
	size_t off = 0;
	for (size_t o = 336; o < len; o += 8)
		if (f[o] == '+' && f[o + 1] >= 2 && get64(f + o + 16)) {
			off = o;
			break;
		}
	test_assert(off != 0);
	put64(f + off + 24, 336);
	fix_head_crc(f, off);
	write_file(p, f, len);
	db = open_db(p, 0, NULL);
	test_assert_int(cyrusdb_consistent(db), CYRUSDB_INTERNAL);
	test_assert(strstr(cyrusdb_errmsg(db), p) != NULL);
	cyrusdb_close(&db);

	/* a wrong num_records in a sound header */
	memcpy(f, orig, len);
	put64(f + 32, 65);
	fix_header_crc(f);
	write_file(p, f, len);
	db = open_db(p, 0, NULL);
	test_assert_int(cyrusdb_consistent(db), CYRUSDB_INTERNAL);
	cyrusdb_close(&db);
	free(f);
	free(orig);
	free(p);
	test_end();
}

/* Opens a damaged file: must fail (or the read must) with IOERROR, an
 * error message, and leave the file as it was. */
static void check_bad(const char *what, const char *fname, const char *data,
		      size_t len, bool at_open, const char *msgpart)
{
	struct cyrusdb *db = NULL;
	struct error err = ERROR_INIT;
	write_file(fname, data, len);
	int r = cyrusdb_open("twoskip", fname, 0, &db, &err);
	const char *msg = err.msg;
	if (!at_open && !r) {
		const char *d;
		size_t dl;
		r = cyrusdb_fetch(db, "victim", 6, &d, &dl, NULL);
		if (!r || r == CYRUSDB_NOTFOUND) {
			char *l = listing(db, "");
			free(l);
			r = cyrusdb_consistent(db);
		}
		msg = cyrusdb_errmsg(db);
	}
	printf("# %s: %d %s\n", what, r, msg);
	test_assert(r == CYRUSDB_IOERROR);
	test_assert(strstr(msg, fname) != NULL);
	test_assert(strstr(msg, msgpart) != NULL);
	cyrusdb_close(&db);
	test_assert(same_file(fname, data, len));
}

static void test_bad_input(void)
{
	test_begin("twoskip: damaged files are errors and stay untouched");
	char *p = path("good.db");
	char *b = path("bad.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE, NULL);
	set(db, "victim", "value", NULL);
	set(db, "zz", "last", NULL);
	cyrusdb_close(&db);
	size_t len;
	char *good = read_file(p, &len);
	char *f = xmemdup(good, len);

	check_bad("truncated", b, good, 40, true, "too short");

	char garbage[4096];
	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (char)(i * 7 + (i >> 5));
	check_bad("garbage", b, garbage, sizeof(garbage), true, "magic");

	memcpy(f, good, len);
	f[5] = 'W';
	check_bad("magic", b, f, len, true, "magic");

	memcpy(f, good, len);
	put32(f + 20, 2);
	fix_header_crc(f);
	check_bad("version 2", b, f, len, true, "version 2");

	memcpy(f, good, len);
	f[40] ^= 1;
	check_bad("header crc", b, f, len, true, "CRC");

	/* a record whose value length runs past the end of the file */
	memcpy(f, good, len);
	size_t off = find_record(f, len, "victim");
	put32(f + off + 4, 100000);
	fix_head_crc(f, off);
	check_bad("length", b, f, len, false, "past end");

	/* a value byte changed: the tail CRC catches it, unless NOCRC */
	memcpy(f, good, len);
	f[off + head_len(f + off) + 8 + 6] ^= 0x20;
	check_bad("tail crc", b, f, len, false, "tail crc");
	db = open_db(b, CYRUSDB_NOCRC, NULL);
	const char *d;
	size_t dl;
	test_assert(db && cyrusdb_fetch(db, "victim", 6, &d, &dl, NULL) == 0);
	test_assert(db && dl == 5 && d[0] == 'V');
	cyrusdb_close(&db);

	free(f);
	free(good);
	free(p);
	free(b);
	test_end();
}

static void test_flags(void)
{
	test_begin("twoskip: SHARED is read-only, MBOXSORT orders mailboxes");
	char *p = path("flags.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE | CYRUSDB_MBOXSORT,
				     NULL);
	static const char *const keys[] = { "b", "a b", "\xc3\xa4", "a.b",
					    "a" };
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		set(db, keys[i], "v", NULL);
	char *l = listing(db, "");
	test_assert_str(l, "a=v;a.b=v;a b=v;b=v;\xc3\xa4=v;");
	free(l);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);

	db = open_db(p, CYRUSDB_SHARED | CYRUSDB_MBOXSORT, NULL);
	struct cyrusdb_txn *tid = NULL;
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(db, "a.b", 3, &d, &dl, &tid), 0);
	test_assert_int(set(db, "c", "v", &tid), CYRUSDB_READONLY);
	test_assert_int(set(db, "c", "v", NULL), CYRUSDB_READONLY);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	cyrusdb_close(&db);
	free(p);
	test_end();
}

static int writer_cb(void *rock, const char *key, size_t keylen,
		     const char *data UNUSED, size_t datalen UNUSED)
{
	struct cyrusdb *db = rock;
	char nk[64];
	if (keylen > 40 || key[0] != 'a')
		return 0;
	snprintf(nk, sizeof(nk), "b%.*s", (int)keylen, key);
	return cyrusdb_store(db, nk, strlen(nk), "copy", 4, NULL);
}

static int only_odd(void *rock UNUSED, const char *key, size_t keylen,
		    const char *data UNUSED, size_t datalen UNUSED)
{
	return (key[keylen - 1] - '0') % 2;
}

static void test_foreach(void)
{
	test_begin("twoskip: foreach filter, stop, callbacks that write");
	char *p = path("each.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE, NULL);
	struct cyrusdb_txn *tid = NULL;
	char k[16];
	for (int i = 0; i < 600; i++) {
		snprintf(k, sizeof(k), "a%03d", i);
		set(db, k, "v", &tid);
	}
	cyrusdb_commit(db, tid);
	struct buf b = BUF_INIT;
	test_assert_int(cyrusdb_foreach(db, "a0", 2, only_odd, collect_cb, &b,
					NULL), 0);
	test_assert_int(b.len, 50 * 7);
	test_assert(!strncmp(b.s, "a001=v;a003=v;", 14));
	buf_release(&b);
	/* every record gets a copy written from inside the callback */
	test_assert_int(cyrusdb_foreach(db, "a", 1, NULL, writer_cb, db, NULL),
			0);
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(db, "ba599", 5, &d, &dl, NULL), 0);
	test_assert_mem(d, dl, "copy", 4);
	char *l = listing(db, "b");
	test_assert_int(strlen(l), 600 * strlen("ba000=copy;"));
	free(l);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	free(p);
	test_end();
}

static void test_handles(void)
{
	test_begin("twoskip: two handles share a file; LOCKED in a txn");
	char *p = path("two.db");
	struct cyrusdb *a = open_db(p, CYRUSDB_CREATE, NULL);
	struct cyrusdb *b = open_db(p, 0, NULL);
	test_assert(a && b);
	set(a, "x", "1", NULL);
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(b, "x", 1, &d, &dl, NULL), 0);
	struct cyrusdb_txn *tid = NULL;
	set(a, "y", "2", &tid);
	int r;
	struct cyrusdb *c = open_db(p, 0, &r);
	test_assert(c == NULL);
	test_assert_int(r, CYRUSDB_LOCKED);
	cyrusdb_commit(a, tid);
	cyrusdb_close(&a);
	test_assert_int(cyrusdb_fetch(b, "y", 1, &d, &dl, NULL), 0);
	cyrusdb_close(&b);
	free(p);
	test_end();
}

static void test_repack(void)
{
	test_begin("twoskip: repack and automatic checkpoint");
	char *p = path("repack.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE | CYRUSDB_NOCOMPACT,
				     NULL);
	set(db, "apple", "red", NULL);
	set(db, "banana", "yellow", NULL);
	set(db, "apple", "green", NULL);
	set(db, "k\001x", "v\001y", NULL);
	char *before = listing(db, "");
	struct stat st1, st2;
	stat(p, &st1);
	test_assert_int(cyrusdb_repack(db), 0);
	stat(p, &st2);
	test_assert(st1.st_ino != st2.st_ino);
	char *after = listing(db, "");
	test_assert_str(after, before);
	test_assert_int(cyrusdb_consistent(db), 0);
	size_t len;
	char *f = read_file(p, &len);
	uint64_t rs = get64(f + 40);
	test_assert_int(get64(f + 24), 2);
	test_assert_int(get64(f + 32), 3);
	test_assert_int(get64(f + 48), len);
	/* repack_size is where the final COMMIT (maybe after BLANKs) goes */
	while (rs < len && !memcmp(f + rs, " BLANK\x07\xa0", 8))
		rs += 8;
	test_assert(rs + 24 == len && f[rs] == '$' && get64(f + rs + 8) == 336);
	free(f);
	cyrusdb_close(&db);
	free(before);
	free(after);

	/* without NOCOMPACT, rewriting the same keys triggers a checkpoint */
	db = open_db(p, 0, NULL);
	char v[200];
	memset(v, 'v', sizeof(v));
	int gen_changes = 0;
	for (int i = 0; i < 300; i++) {
		v[0] = (char)('a' + i % 26);
		cyrusdb_store(db, "same", 4, v, sizeof(v), NULL);
		f = read_file(p, &len);
		if (get64(f + 24) > 2)
			gen_changes++;
		test_assert_idx(get64(f + 48) == len, i);
		free(f);
	}
	test_assert(gen_changes > 0);
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(db, "same", 4, &d, &dl, NULL), 0);
	test_assert(dl == sizeof(v) && d[0] == 'a' + 299 % 26);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	free(p);
	test_end();
}

static void test_dump(void)
{
	test_begin("twoskip: dump in Cyrus's format");
	char *p = path("dump.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE, NULL);
	set(db, "apple", "red", NULL);
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	test_assert_int(cyrusdb_dump(db, f, 3), 0);
	fclose(f);
	size_t len;
	char *file = read_file(p, &len);
	char *want = xasprintf("HEADER: v=1 fl=0 num=1 sz=(%08zX/00000150)\n"
			       "00000040 DUMMY kl=0 dl=0 lvl=31 ()\n"
			       "\t00000000 \n\t00000150 ", len);
	test_assert(!strncmp(out, want, strlen(want)));
	free(want);
	free(file);
	test_assert(strstr(out, "00000150 RECORD kl=5 dl=3 lvl=") != NULL);
	test_assert(strstr(out, "(apple)\n") && strstr(out, "\tv=(red)\n"));
	test_assert(strstr(out, "COMMIT start=00000150\n") != NULL);
	free(out);
	cyrusdb_close(&db);
	free(p);
	test_end();
}

/* "key%05d" = "v%d" repeated to vlen bytes, for i in [from, to). */
static void set_range(struct cyrusdb *db, int from, int to, size_t vlen,
		      struct cyrusdb_txn **tid, struct buf *expect)
{
	char k[32];
	char *v = xmalloc(vlen + 1);
	for (int i = from; i < to; i++) {
		snprintf(k, sizeof(k), "key%05d", i);
		for (size_t j = 0; j < vlen; j++)
			v[j] = (char)('a' + (i + j) % 26);
		test_assert_idx(cyrusdb_store(db, k, strlen(k), v, vlen,
					      tid) == 0, i);
		if (expect) {
			buf_printf(expect, "%s=", k);
			buf_add(expect, v, vlen);
			buf_addch(expect, ';');
		}
	}
	free(v);
}

static void test_sequential(void)
{
	test_begin("twoskip: stores past the last key, one transaction");
	char *p = path("seqfill.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE, NULL);
	struct buf want = BUF_INIT;
	struct cyrusdb_txn *tid = NULL;
	struct stat st1, st2;
	stat(p, &st1);
	set_range(db, 0, 3000, 40, &tid, &want);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	char *got = listing(db, "");
	test_assert_str(got, want.s);
	free(got);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	/* The file is what the repack would have written: same file, a
	 * repack's header (generation 2, repack_size at the final COMMIT). */
	stat(p, &st2);
	test_assert(st1.st_ino == st2.st_ino);
	size_t len;
	char *f = read_file(p, &len);
	uint64_t rs = get64(f + 40);
	test_assert_int(get64(f + 24), 2);
	test_assert_int(get64(f + 32), 3000);
	test_assert_int(get64(f + 48), len);
	while (rs < len && !memcmp(f + rs, " BLANK\x07\xa0", 8))
		rs += 8;
	test_assert(rs + 24 == len && f[rs] == '$' && get64(f + rs + 8) == 336);
	free(f);

	/* A second fill past the end links behind committed records; reads,
	 * out-of-order stores and deletes in between end the fast path. */
	db = open_db(p, 0, NULL);
	tid = NULL;
	set_range(db, 3000, 3500, 40, &tid, &want);
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(db, "key03499", 8, &d, &dl, &tid), 0);
	test_assert(dl == 40);
	set_range(db, 3500, 4000, 40, &tid, &want);
	test_assert_int(cyrusdb_delete(db, "key03600", 8, &tid, false), 0);
	set_range(db, 4000, 4100, 40, &tid, &want);
	test_assert_int(cyrusdb_store(db, "key00001x", 9, "mid", 3, &tid), 0);
	set_range(db, 4100, 4200, 40, &tid, &want);
	test_assert_int(cyrusdb_consistent(db), 0);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	test_assert_int(cyrusdb_consistent(db), 0);
	got = listing(db, "key0360");
	test_assert(!strncmp(got, "key03601=", 9));
	free(got);
	test_assert_int(cyrusdb_fetch(db, "key00001x", 9, &d, &dl, NULL), 0);
	test_assert_mem(d, dl, "mid", 3);

	/* An abort in the middle of the fast path leaves the committed file. */
	char *before = listing(db, "");
	f = read_file(p, &len);
	free(f);
	tid = NULL;
	set_range(db, 5000, 6000, 40, &tid, NULL);
	test_assert_int(cyrusdb_abort(db, tid), 0);
	got = listing(db, "");
	test_assert_str(got, before);
	free(got);
	size_t len2;
	f = read_file(p, &len2);
	test_assert_int(len2, len);
	free(f);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	free(before);
	buf_release(&want);
	free(p);
	test_end();
}

static void test_sequential_big(void)
{
	test_begin("twoskip: sequential stores of big values, crash, repack");
	char *p = path("seqbig.db");
	char *c = path("seqbig-copy.db");
	struct cyrusdb *db = open_db(p, CYRUSDB_CREATE | CYRUSDB_NOCOMPACT,
				     NULL);
	struct buf want = BUF_INIT;
	struct cyrusdb_txn *tid = NULL;
	/* several staging buffers, one value bigger than a buffer */
	set_range(db, 0, 150, 100000, &tid, &want);
	set_range(db, 150, 151, 5 << 20, &tid, &want);
	set_range(db, 151, 200, 100000, &tid, &want);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	char *got = listing(db, "");
	test_assert(!strcmp(got, want.s));
	free(got);
	test_assert_int(cyrusdb_consistent(db), 0);

	/* a crash in the middle of the next one loses just that one */
	tid = NULL;
	set_range(db, 200, 260, 100000, &tid, NULL);
	test_assert_int(cyrusdb_consistent(db), 0);  /* writes it out */
	set_range(db, 260, 300, 100000, &tid, NULL);
	for (int how = 0; how < 4; how++) {
		crash_copy(p, c, how);
		got = listing_of(c, 0);
		test_assert_idx(!strcmp(got, want.s), how);
		free(got);
		struct cyrusdb *cdb = open_db(c, 0, NULL);
		test_assert_idx(cdb && !cyrusdb_consistent(cdb), how);
		cyrusdb_close(&cdb);
	}
	test_assert_int(cyrusdb_abort(db, tid), 0);
	test_assert_int(cyrusdb_repack(db), 0);
	got = listing(db, "");
	test_assert(!strcmp(got, want.s));
	free(got);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	buf_release(&want);
	free(p);
	free(c);
	test_end();
}

/* Every length 0..300 at every alignment, whole and in two pieces, and a
 * few long buffers, against zlib. */
static void crc_compare(void)
{
	unsigned char buf[300 + 8];
	uint32_t seed = 12345;
	for (size_t i = 0; i < sizeof(buf); i++) {
		seed = seed * 1103515245 + 12345;
		buf[i] = seed >> 16;
	}
	for (size_t align = 0; align < 8; align++) {
		for (size_t len = 0; len <= 300; len++) {
			const unsigned char *p = buf + align;
			uint32_t init = align ? (uint32_t)(len * 2654435761u) : 0;
			uint32_t want = crc32(init, p, len);
			test_assert_idx(twoskip_crc(init, p, len) == want, len);
			uint32_t c = twoskip_crc(init, p, len / 3);
			c = twoskip_crc(c, p + len / 3, len - len / 3);
			test_assert_idx(c == want, len);
		}
	}
	static const size_t lens[] = { 1023, 1024, 2047, 2048, 4099, 70001 };
	unsigned char *big = xmalloc(70001);
	for (size_t i = 0; i < 70001; i++) {
		seed = seed * 1103515245 + 12345;
		big[i] = seed >> 16;
	}
	for (size_t i = 0; i < ARRAY_SIZE(lens); i++)
		test_assert_idx(twoskip_crc(7, big, lens[i]) ==
				crc32(7, big, lens[i]), i);
	free(big);
}

static void test_crc(void)
{
	test_begin("twoskip: our CRC-32 equals zlib's (lengths 0..300 and long)");
	bool clmul = twoskip_crc_clmul;
	crc_compare();
	/* and the table code, which the CPU may have made us skip */
	twoskip_crc_clmul = false;
	crc_compare();
	twoskip_crc_clmul = clmul;
	test_assert(twoskip_crc(0, "", 0) == 0);
	test_assert(twoskip_crc(0, "123456789", 9) == 0xCBF43926u);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_crc, test_empty_file, test_missing, test_sequence,
		test_blank_padding, test_binary, test_abort,
		test_dirty_protocol, test_crash, test_recovery2,
		test_consistent, test_bad_input, test_flags, test_foreach,
		test_handles, test_repack, test_dump, test_sequential,
		test_sequential_big, NULL,
	};
	struct cyrusdb_env env = { .skiplist_always_checkpoint = true };
	cyrusdb_init(&env);
	dir = test_tmpdir();
	int r = test_run(tests);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		r = 1;
	free(cmd);
	free(dir);
	return r;
}
