/* Unit tests of the skiplist backend (lib/cyrusdb_skiplist.c). */
#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "buf.h"
#include "cyrusdb.h"
#include "error.h"

static char *dir;
static int nfile;

static void env_set(const char *configdir, bool always_checkpoint)
{
	struct cyrusdb_env env = {
		.configdir = configdir,
		.skiplist_always_checkpoint = always_checkpoint,
		.nosync = true,
	};
	cyrusdb_init(&env);
}

static char *newpath(void)
{
	return xasprintf("%s/db%d.sl", dir, ++nfile);
}

static uint32_t be32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 |
	       (uint32_t)u[2] << 8 | u[3];
}

static void put_be32(char *p, uint32_t v)
{
	p[0] = (char)(v >> 24);
	p[1] = (char)(v >> 16);
	p[2] = (char)(v >> 8);
	p[3] = (char)v;
}

static void slurp(const char *path, struct buf *b)
{
	char tmp[65536];
	buf_reset(b);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return;
	ssize_t n;
	while ((n = read(fd, tmp, sizeof(tmp))) > 0)
		buf_add(b, tmp, (size_t)n);
	close(fd);
}

static void spew(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
}

static struct cyrusdb *opendb(const char *path, int flags)
{
	struct cyrusdb *db = NULL;
	struct error err = ERROR_INIT;
	if (cyrusdb_open("skiplist", path, flags, &db, &err))
		printf("# open '%s': %s\n", path, err.msg);
	return db;
}

/* Collects "key=value;" for every record, bytes escaped as %XX. */
static int collect(void *rock, const char *key, size_t keylen,
		   const char *data, size_t datalen)
{
	struct buf *b = rock;
	for (size_t i = 0; i < keylen; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c > 32 && c < 127 && c != '%' && c != '=' && c != ';')
			buf_addch(b, c);
		else
			buf_printf(b, "%%%02X", c);
	}
	buf_addch(b, '=');
	if (datalen > 64) {
		buf_printf(b, "<%zu>", datalen);
	} else {
		for (size_t i = 0; i < datalen; i++) {
			unsigned char c = (unsigned char)data[i];
			if (c > 32 && c < 127 && c != '%' && c != ';')
				buf_addch(b, c);
			else
				buf_printf(b, "%%%02X", c);
		}
	}
	buf_addch(b, ';');
	return 0;
}

static char *listall(struct cyrusdb *db, const char *prefix)
{
	struct buf b = BUF_INIT;
	int r = cyrusdb_foreach(db, prefix, strlen(prefix), NULL, collect, &b,
				NULL);
	if (r)
		buf_printf(&b, "ERROR %d", r);
	return buf_detach(&b, NULL);
}

static bool fetch_is(struct cyrusdb *db, const char *key, size_t keylen,
		     const char *want, size_t wantlen)
{
	const char *d;
	size_t dl;
	if (cyrusdb_fetch(db, key, keylen, &d, &dl, NULL))
		return false;
	return dl == wantlen && (!dl || !memcmp(d, want, dl));
}

static void test_empty_file(void)
{
	char *path = newpath();
	struct buf b = BUF_INIT;
	time_t before = time(NULL);

	test_begin("skiplist: a new file has Cyrus's 144-byte header and DUMMY");
	env_set(NULL, true);
	struct cyrusdb *db = NULL;
	/* Missing without CREATE. */
	test_assert_int(cyrusdb_open("skiplist", path, 0, &db, NULL),
			CYRUSDB_NOTFOUND);
	test_assert(db == NULL);
	db = opendb(path, CYRUSDB_CREATE);
	test_assert(db != NULL);
	cyrusdb_close(&db);
	slurp(path, &b);
	test_assert_int(b.len, 144);
	if (b.len == 144) {
		test_assert_mem(b.s, 20, "\241\002\213\015skiplist file\0\0\0",
				20);
		test_assert_int(be32(b.s + 20), 1);	/* version */
		test_assert_int(be32(b.s + 24), 2);	/* minor */
		test_assert_int(be32(b.s + 28), 20);	/* maxlevel */
		test_assert_int(be32(b.s + 32), 1);	/* curlevel */
		test_assert_int(be32(b.s + 36), 0);	/* listsize */
		test_assert_int(be32(b.s + 40), 144);	/* logstart */
		test_assert(be32(b.s + 44) >= (uint32_t)before &&
			    be32(b.s + 44) <= (uint32_t)time(NULL));
		test_assert_int(be32(b.s + 48), 257);	/* DUMMY */
		bool zero = true;
		for (size_t i = 52; i < 140; i++)
			zero = zero && !b.s[i];
		test_assert(zero);
		test_assert_int(be32(b.s + 140), 0xffffffffU);
	}
	buf_release(&b);
	free(path);
	test_end();
}

static void test_ops(void)
{
	char *path = newpath();
	struct cyrusdb_txn *tid = NULL;
	const char *d;
	size_t dl;

	test_begin("skiplist: store, create, delete, fetch, foreach, reopen");
	env_set(NULL, true);
	struct cyrusdb *db = opendb(path, CYRUSDB_CREATE);
	test_assert_int(cyrusdb_store(db, "apple", 5, "red", 3, NULL), 0);
	test_assert_int(cyrusdb_store(db, "banana", 6, "yellow", 6, NULL), 0);
	test_assert_int(cyrusdb_store(db, "apple", 5, "green", 5, NULL), 0);
	test_assert_int(cyrusdb_create(db, "apple", 5, "x", 1, NULL),
			CYRUSDB_EXISTS);
	test_assert_int(cyrusdb_create(db, "cherry", 6, "dark", 4, NULL), 0);
	test_assert_int(cyrusdb_delete(db, "banana", 6, NULL, false), 0);
	/* Cyrus: deleting a missing key is a no-op returning 0. */
	test_assert_int(cyrusdb_delete(db, "nothere", 7, NULL, false), 0);
	test_assert_int(cyrusdb_fetch(db, "banana", 6, &d, &dl, NULL),
			CYRUSDB_NOTFOUND);
	test_assert(fetch_is(db, "apple", 5, "green", 5));
	test_assert_int(cyrusdb_fetchlock(db, "cherry", 6, &d, &dl, NULL), 0);
	test_assert_mem(d, dl, "dark", 4);
	test_assert_int(cyrusdb_fetchnext(db, "a", 1, &d, &dl, &d, &dl, NULL),
			CYRUSDB_NOTIMPLEMENTED);

	/* Several operations in one transaction, seen inside it. */
	test_assert_int(cyrusdb_store(db, "date", 4, "brown", 5, &tid), 0);
	test_assert(tid != NULL);
	test_assert_int(cyrusdb_delete(db, "apple", 5, &tid, true), 0);
	test_assert_int(cyrusdb_fetch(db, "date", 4, &d, &dl, &tid), 0);
	test_assert_int(cyrusdb_fetch(db, "apple", 5, &d, &dl, &tid),
			CYRUSDB_NOTFOUND);
	/* A create of an existing key fails but keeps the transaction. */
	test_assert_int(cyrusdb_create(db, "date", 4, "x", 1, &tid),
			CYRUSDB_EXISTS);
	test_assert_int(cyrusdb_store(db, "elder", 5, "", 0, &tid), 0);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	test_assert_int(cyrusdb_consistent(db), 0);
	char *all = listall(db, "");
	test_assert_str(all, "cherry=dark;date=brown;elder=;");
	free(all);
	cyrusdb_close(&db);
	test_assert(db == NULL);

	db = opendb(path, 0);
	all = listall(db, "");
	test_assert_str(all, "cherry=dark;date=brown;elder=;");
	free(all);
	test_assert(fetch_is(db, "elder", 5, "", 0));
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	free(path);
	test_end();
}

static void test_signed_order(void)
{
	char *path = newpath();
	struct buf b = BUF_INIT;

	test_begin("skiplist: signed-char order, 0xC3 before 'a' (spec 7.7)");
	env_set(NULL, true);
	struct cyrusdb *db = opendb(path, CYRUSDB_CREATE);
	const char *keys[] = { "b", "a.b", "\xc3\xa4", "a b", "a" };
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		test_assert_int(cyrusdb_store(db, keys[i], strlen(keys[i]),
					      "v", 1, NULL), 0);
	char *all = listall(db, "");
	test_assert_str(all, "%C3%A4=v;a=v;a%20b=v;a.b=v;b=v;");
	free(all);
	/* The comparator is Cyrus's signed one, byte for byte. */
	srand(7);
	int bad = 0;
	for (int i = 0; i < 20000; i++) {
		char x[12], y[12];
		size_t xl = (size_t)rand() % 12, yl = (size_t)rand() % 12;
		for (size_t j = 0; j < 12; j++) {
			x[j] = (char)(rand() % 4 == 0 ? rand() : 'a');
			y[j] = (char)(rand() % 4 == 0 ? rand() : 'a');
		}
		int a = cyrusdb_compar(db, x, xl, y, yl);
		int e = cyrusdb_compar_signed(x, xl, y, yl);
		if ((a > 0) != (e > 0) || (a < 0) != (e < 0))
			bad++;
	}
	test_assert_int(bad, 0);
	cyrusdb_close(&db);
	buf_release(&b);
	free(path);

	path = newpath();
	db = opendb(path, CYRUSDB_CREATE | CYRUSDB_MBOXSORT);
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		cyrusdb_store(db, keys[i], strlen(keys[i]), "v", 1, NULL);
	all = listall(db, "");
	/* MBOXSORT: '.' before space; unsigned otherwise. */
	test_assert_str(all, "a=v;a.b=v;a%20b=v;b=v;%C3%A4=v;");
	free(all);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	free(path);
	test_end();
}

static void test_binary(void)
{
	char *path = newpath();
	char *big = xmalloc(100 * 1024);
	for (size_t i = 0; i < 100 * 1024; i++)
		big[i] = (char)(i * 7 + 3);

	test_begin("skiplist: binary keys, empty and 100 KB values, prefixes");
	env_set(NULL, true);
	struct cyrusdb *db = opendb(path, CYRUSDB_CREATE);
	struct cyrusdb_txn *tid = NULL;
	test_assert_int(cyrusdb_store(db, "k\0\t\n\xff", 5, "v\0\r\n", 4,
				      &tid), 0);
	test_assert_int(cyrusdb_store(db, "k", 1, "", 0, &tid), 0);
	test_assert_int(cyrusdb_store(db, "big", 3, big, 100 * 1024, &tid),
			0);
	test_assert_int(cyrusdb_store(db, "ab", 2, "2", 1, &tid), 0);
	test_assert_int(cyrusdb_store(db, "abc", 3, "3", 1, &tid), 0);
	test_assert_int(cyrusdb_store(db, "a", 1, "1", 1, &tid), 0);
	test_assert_int(cyrusdb_store(db, "abd", 3, "4", 1, &tid), 0);
	test_assert_int(cyrusdb_store(db, "b", 1, "5", 1, &tid), 0);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	cyrusdb_close(&db);

	/* Read back after reopen (recovery + checkpoint) and again. */
	for (int round = 0; round < 2; round++) {
		db = opendb(path, 0);
		test_assert(fetch_is(db, "k\0\t\n\xff", 5, "v\0\r\n", 4));
		test_assert(fetch_is(db, "k", 1, "", 0));
		test_assert(fetch_is(db, "big", 3, big, 100 * 1024));
		test_assert_int(cyrusdb_fetch(db, "k\0", 2, NULL, NULL, NULL),
				CYRUSDB_NOTFOUND);
		char *s = listall(db, "ab");
		test_assert_str(s, "ab=2;abc=3;abd=4;");
		free(s);
		s = listall(db, "k");
		test_assert_str(s, "k=;k%00%09%0A%FF=v%00%0D%0A;");
		free(s);
		s = listall(db, "");
		test_assert_str(s, "a=1;ab=2;abc=3;abd=4;b=5;big=<102400>;k=;"
				"k%00%09%0A%FF=v%00%0D%0A;");
		free(s);
		test_assert_int(cyrusdb_consistent(db), 0);
		cyrusdb_close(&db);
	}
	free(big);
	free(path);
	test_end();
}

static void test_abort(void)
{
	char *path = newpath();
	struct buf before = BUF_INIT, after = BUF_INIT;

	test_begin("skiplist: abort leaves the file byte for byte as it was");
	env_set(NULL, true);
	struct cyrusdb *db = opendb(path, CYRUSDB_CREATE);
	for (int i = 0; i < 50; i++) {
		char k[16];
		int n = snprintf(k, sizeof(k), "key%03d", i);
		cyrusdb_store(db, k, (size_t)n, k, (size_t)n, NULL);
	}
	slurp(path, &before);
	struct cyrusdb_txn *tid = NULL;
	for (int i = 0; i < 200; i++) {
		char k[16];
		int n = snprintf(k, sizeof(k), "key%03d", i * 3 % 250);
		if (i % 4 == 0)
			cyrusdb_delete(db, k, (size_t)n, &tid, false);
		else
			cyrusdb_store(db, k, (size_t)n, "new", 3, &tid);
	}
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(db, "key150", 6, &d, &dl, &tid), 0);
	test_assert_mem(d, dl, "new", 3);
	test_assert_int(cyrusdb_abort(db, tid), 0);
	slurp(path, &after);
	test_assert(before.len > 144);
	test_assert_mem(before.s, before.len, after.s, after.len);
	test_assert(fetch_is(db, "key007", 6, "key007", 6));
	test_assert_int(cyrusdb_fetch(db, "key150", 6, NULL, NULL, NULL),
			CYRUSDB_NOTFOUND);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	buf_release(&before);
	buf_release(&after);
	free(path);
	test_end();
}

/* A database with committed "a" and "b" in the log, NOCOMPACT. */
static void make_log_db(const char *path, struct buf *committed)
{
	struct cyrusdb *db = opendb(path, CYRUSDB_CREATE | CYRUSDB_NOCOMPACT);
	cyrusdb_store(db, "a", 1, "1", 1, NULL);
	cyrusdb_store(db, "b", 1, "2", 1, NULL);
	cyrusdb_close(&db);
	slurp(path, committed);
}

static void write_stamp(uint32_t t)
{
	char *d = xasprintf("%s/db", dir);
	mkdir(d, 0755);
	char *name = xasprintf("%s/skipstamp", d);
	char b[4];
	put_be32(b, t);
	spew(name, b, 4);
	free(name);
	free(d);
}

static void test_crash(void)
{
	struct buf good = BUF_INIT, b = BUF_INIT;
	char *path = newpath();

	test_begin("skiplist: a transaction without COMMIT is discarded");
	/* Keep the log (no checkpoint) so the file shows what recovery did. */
	env_set(NULL, false);
	make_log_db(path, &good);
	test_assert(good.len > 144);
	test_assert_int(be32(good.s + good.len - 4), 255);

	/* An ADD + DELETE appended without COMMIT, as a crash leaves it. */
	struct buf bad = BUF_INIT;
	buf_addbuf(&bad, &good);
	char rec[28] = { 0 };
	put_be32(rec, 2);		/* ADD */
	put_be32(rec + 4, 1);		/* keylen */
	rec[8] = 'c';
	put_be32(rec + 12, 1);		/* datalen */
	rec[16] = '3';
	put_be32(rec + 20, 0);		/* level 1 pointer */
	put_be32(rec + 24, 0xffffffffU);
	buf_add(&bad, rec, sizeof(rec));
	char del[8];
	put_be32(del, 4);
	put_be32(del + 4, 144);
	buf_add(&bad, del, 8);
	spew(path, bad.s, bad.len);
	struct cyrusdb *db = opendb(path, 0);
	char *s = listall(db, "");
	test_assert_str(s, "a=1;b=2;");
	free(s);
	cyrusdb_close(&db);
	slurp(path, &b);
	test_assert_int(b.len, good.len);	/* truncated back */
	test_assert_mem(b.s + 48, b.len - 48, good.s + 48, good.len - 48);

	/* The log cut in the middle of a record. */
	spew(path, bad.s, good.len + 10);
	db = opendb(path, 0);
	s = listall(db, "");
	test_assert_str(s, "a=1;b=2;");
	free(s);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);

	/* The COMMIT of the last committed transaction lost: "b" goes. */
	spew(path, good.s, good.len - 4);
	db = opendb(path, 0);
	s = listall(db, "");
	test_assert_str(s, "a=1;");
	free(s);
	cyrusdb_close(&db);

	/*
	 * With a recovery stamp older than the file, open does not recover;
	 * the next write transaction sees the unsafe tail and recovers.
	 */
	spew(path, bad.s, bad.len);
	write_stamp(1000);
	env_set(dir, false);
	db = opendb(path, 0);
	slurp(path, &b);
	test_assert_int(b.len, bad.len);	/* untouched by open */
	test_assert_int(cyrusdb_store(db, "d", 1, "4", 1, NULL), 0);
	s = listall(db, "");
	test_assert_str(s, "a=1;b=2;d=4;");
	free(s);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	/* Replaying the log must agree: the dead tail is gone, not committed
	 * along with "d". */
	env_set(NULL, false);
	db = opendb(path, 0);
	s = listall(db, "");
	test_assert_str(s, "a=1;b=2;d=4;");
	free(s);
	cyrusdb_close(&db);

	buf_release(&good);
	buf_release(&bad);
	buf_release(&b);
	free(path);
	test_end();
}

static void test_consistent(void)
{
	struct buf good = BUF_INIT;
	char *path = newpath();

	test_begin("skiplist: consistent detects broken pointers");
	env_set(NULL, true);
	struct cyrusdb *db = opendb(path, CYRUSDB_CREATE);
	for (int i = 0; i < 30; i++) {
		char k[16];
		int n = snprintf(k, sizeof(k), "k%02d", i);
		cyrusdb_store(db, k, (size_t)n, "v", 1, NULL);
	}
	test_assert_int(cyrusdb_repack(db), 0);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	slurp(path, &good);
	/* Stop open from recovering (which would repair the pointers). */
	write_stamp(1000);
	env_set(dir, true);

	/* Level-0 pointer of the first record: to itself, past EOF, and
	 * skipping a record. */
	uint32_t first = be32(good.s + 60);
	uint32_t klen = be32(good.s + first + 4);
	uint32_t ptr0 = first + 12 + ((klen + 3) & ~3U) + 4;
	uint32_t second = be32(good.s + ptr0);
	uint32_t third = be32(good.s + second + 20);
	uint32_t bads[] = { first, (uint32_t)good.len + 64, second + 4, 52 };
	for (size_t i = 0; i < ARRAY_SIZE(bads); i++) {
		struct buf b = BUF_INIT;
		buf_addbuf(&b, &good);
		put_be32(b.s + ptr0, bads[i]);
		spew(path, b.s, b.len);
		db = opendb(path, 0);
		test_assert_idx(db != NULL, i);
		int r = db ? cyrusdb_consistent(db) : 0;
		test_assert_idx(r == CYRUSDB_INTERNAL || r == CYRUSDB_IOERROR,
				i);
		test_assert_idx(strstr(cyrusdb_errmsg(db), "inconsistent") ||
				strstr(cyrusdb_errmsg(db), "corrupt"), i);
		cyrusdb_close(&db);
		buf_release(&b);
	}
	/* A checkpoint refuses to copy a structure that is out of order. */
	struct buf b = BUF_INIT;
	buf_addbuf(&b, &good);
	put_be32(b.s + ptr0, third);
	put_be32(b.s + third + 20, second);
	spew(path, b.s, b.len);
	db = opendb(path, 0);
	test_assert(cyrusdb_repack(db) != 0);
	cyrusdb_close(&db);
	buf_release(&b);
	buf_release(&good);
	free(path);
	test_end();
}

static void test_bad_input(void)
{
	struct buf good = BUF_INIT, b = BUF_INIT, after = BUF_INIT;
	char *path = newpath();

	test_begin("skiplist: bad files give IOERROR with a message, untouched");
	env_set(NULL, true);
	struct cyrusdb *db = opendb(path, CYRUSDB_CREATE);
	cyrusdb_store(db, "alpha", 5, "1", 1, NULL);
	cyrusdb_store(db, "beta", 4, "2", 1, NULL);
	cyrusdb_store(db, "gamma", 5, "3", 1, NULL);
	cyrusdb_repack(db);
	cyrusdb_close(&db);
	slurp(path, &good);
	test_assert(good.len > 200);

	enum { TRUNC_HEADER, TRUNC_DUMMY, TRUNC_INORDER, GARBAGE, MAGIC,
	       VERSION, MAXLEVEL, KEYLEN, DATALEN, NCASES };
	const char *want[NCASES] = {
		"too short", "too short", "damaged", "magic", "magic",
		"version", "maxlevel", "damaged", "damaged",
	};
	uint32_t first = be32(good.s + 60);
	for (int c = 0; c < NCASES; c++) {
		buf_reset(&b);
		buf_addbuf(&b, &good);
		switch (c) {
		case TRUNC_HEADER:
			buf_setlen(&b, 30);
			break;
		case TRUNC_DUMMY:
			buf_setlen(&b, 100);
			break;
		case TRUNC_INORDER:
			buf_setlen(&b, first + 10);
			break;
		case GARBAGE:
			srand(3);
			for (size_t i = 0; i < b.len; i++)
				b.s[i] = (char)rand();
			break;
		case MAGIC:
			b.s[5] = 'X';
			break;
		case VERSION:
			put_be32(b.s + 20, 2);
			break;
		case MAXLEVEL:
			put_be32(b.s + 28, 21);
			break;
		case KEYLEN:
			put_be32(b.s + first + 4, 0x7ffffff0);
			break;
		case DATALEN:
			put_be32(b.s + first + 16, 0x10000); /* "alpha" pads to 8 */
			break;
		}
		spew(path, b.s, b.len);
		struct error err = ERROR_INIT;
		db = NULL;
		int r = cyrusdb_open("skiplist", path, 0, &db, &err);
		test_assert_idx(r == CYRUSDB_IOERROR, c);
		test_assert_idx(db == NULL, c);
		test_assert_idx(strstr(err.msg, path) != NULL, c);
		test_assert_idx(strstr(err.msg, want[c]) != NULL, c);
		if (r != CYRUSDB_IOERROR || !strstr(err.msg, want[c]))
			printf("# case %d: %d %s\n", c, r, err.msg);
		cyrusdb_close(&db);
		slurp(path, &after);
		test_assert_idx(after.len == b.len &&
				!memcmp(after.s, b.s, b.len), c);
	}
	buf_release(&good);
	buf_release(&b);
	buf_release(&after);
	free(path);
	test_end();
}

struct fe_rock {
	struct cyrusdb *db;
	struct buf seen;
};

/* Deletes the next key and adds one further on, while iterating. */
static int writing_cb(void *rock, const char *key, size_t keylen,
		      const char *data UNUSED, size_t datalen UNUSED)
{
	struct fe_rock *fr = rock;
	buf_add(&fr->seen, key, keylen);
	buf_addch(&fr->seen, ';');
	if (keylen == 2 && key[0] == 'k' && key[1] < '9') {
		char next[2] = { 'k', (char)(key[1] + 1) };
		cyrusdb_delete(fr->db, next, 2, NULL, false);
		char later[3] = { 'k', (char)(key[1] + 1), 'x' };
		cyrusdb_store(fr->db, later, 3, "n", 1, NULL);
	}
	return 0;
}

static int odd_filter(void *rock UNUSED, const char *key, size_t keylen,
		      const char *data UNUSED, size_t datalen UNUSED)
{
	return keylen >= 2 && (key[1] - '0') % 2 == 1;
}

static int stop_cb(void *rock, const char *key UNUSED, size_t keylen UNUSED,
		   const char *data UNUSED, size_t datalen UNUSED)
{
	return ++*(int *)rock == 3 ? 42 : 0;
}

static void test_foreach(void)
{
	char *path = newpath();

	test_begin("skiplist: foreach with filter, stop, writes from callbacks");
	env_set(NULL, true);
	struct cyrusdb *db = opendb(path, CYRUSDB_CREATE);
	for (char c = '0'; c <= '9'; c++) {
		char k[2] = { 'k', c };
		cyrusdb_store(db, k, 2, "v", 1, NULL);
	}
	struct buf b = BUF_INIT;
	test_assert_int(cyrusdb_foreach(db, "k", 1, odd_filter, collect, &b,
					NULL), 0);
	test_assert_str(b.s, "k1=v;k3=v;k5=v;k7=v;k9=v;");
	int n = 0;
	test_assert_int(cyrusdb_foreach(db, "", 0, NULL, stop_cb, &n, NULL),
			42);
	test_assert_int(n, 3);

	struct fe_rock fr = { db, BUF_INIT };
	test_assert_int(cyrusdb_foreach(db, "", 0, NULL, writing_cb, &fr,
					NULL), 0);
	/* What a callback deletes is not seen, what it adds is. */
	test_assert_str(fr.seen.s, "k0;k1x;k2;k3x;k4;k5x;k6;k7x;k8;k9x;");
	test_assert_int(cyrusdb_consistent(db), 0);

	/* The same inside a transaction, writes going through it. */
	struct cyrusdb_txn *tid = NULL;
	buf_reset(&b);
	test_assert_int(cyrusdb_foreach(db, "k3", 2, NULL, collect, &b, &tid),
			0);
	test_assert_str(b.s, "k3x=n;");
	test_assert(tid != NULL);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	buf_release(&fr.seen);
	buf_release(&b);
	cyrusdb_close(&db);
	free(path);
	test_end();
}

static void test_repack_and_shared(void)
{
	char *path = newpath();
	struct buf b = BUF_INIT;

	test_begin("skiplist: repack, automatic checkpoint, CYRUSDB_SHARED");
	env_set(NULL, false);
	struct cyrusdb *db = opendb(path, CYRUSDB_CREATE | CYRUSDB_NOCOMPACT);
	for (int i = 0; i < 100; i++) {
		char k[16];
		int n = snprintf(k, sizeof(k), "key%03d", i);
		cyrusdb_store(db, k, (size_t)n, "0123456789", 10, NULL);
	}
	for (int i = 0; i < 100; i += 2) {
		char k[16];
		int n = snprintf(k, sizeof(k), "key%03d", i);
		cyrusdb_delete(db, k, (size_t)n, NULL, false);
	}
	slurp(path, &b);
	test_assert_int(be32(b.s + 40), 144);	/* all in the log */
	test_assert_int(cyrusdb_repack(db), 0);
	slurp(path, &b);
	test_assert_int(be32(b.s + 36), 50);	/* listsize */
	test_assert_int(be32(b.s + 40), b.len);	/* logstart = EOF */
	test_assert_int(be32(b.s + 144), 1);	/* INORDER */
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);

	/* Without NOCOMPACT a commit past 2 * logstart + 16834 compacts. */
	db = opendb(path, 0);
	uint32_t logstart = (uint32_t)b.len;
	struct cyrusdb_txn *tid = NULL;
	for (int i = 0; i < 1000; i++) {
		char k[16];
		int n = snprintf(k, sizeof(k), "new%04d", i);
		cyrusdb_store(db, k, (size_t)n, "x", 1, &tid);
	}
	test_assert_int(cyrusdb_commit(db, tid), 0);
	slurp(path, &b);
	test_assert(be32(b.s + 40) > 2 * logstart + 16834);
	test_assert_int(be32(b.s + 40), b.len);
	test_assert_int(be32(b.s + 36), 1050);
	cyrusdb_close(&db);

	db = opendb(path, CYRUSDB_SHARED);
	test_assert_int(cyrusdb_store(db, "x", 1, "y", 1, NULL),
			CYRUSDB_READONLY);
	tid = NULL;
	test_assert(fetch_is(db, "key001", 6, "0123456789", 10));
	test_assert_int(cyrusdb_fetch(db, "new0999", 7, NULL, NULL, &tid), 0);
	test_assert(tid != NULL);
	test_assert_int(cyrusdb_delete(db, "key001", 6, &tid, false),
			CYRUSDB_READONLY);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	cyrusdb_close(&db);
	buf_release(&b);
	free(path);
	test_end();
}

/* "key%05d" = vlen bytes, for i in [from, to); the listing to expect. */
static void sl_range(struct cyrusdb *db, int from, int to, size_t vlen,
		     struct cyrusdb_txn **tid, struct buf *expect)
{
	char k[32];
	char *v = xmalloc(vlen + 1);
	for (int i = from; i < to; i++) {
		int n = snprintf(k, sizeof(k), "key%05d", i);
		for (size_t j = 0; j < vlen; j++)
			v[j] = (char)('a' + (i + j) % 26);
		test_assert_idx(cyrusdb_store(db, k, (size_t)n, v, vlen,
					      tid) == 0, i);
		if (expect)
			collect(expect, k, (size_t)n, v, vlen);
	}
	free(v);
}

static void test_sequential(void)
{
	char *path = newpath();
	struct buf b = BUF_INIT, want = BUF_INIT;

	test_begin("skiplist: sequential stores, commit written as checkpoint");
	env_set(NULL, false);
	/* With COMMIT_CHECKPOINT the commit leaves no log at all. */
	struct cyrusdb *db = opendb(path, CYRUSDB_CREATE | CYRUSDB_NOCOMPACT |
				    CYRUSDB_COMMIT_CHECKPOINT);
	struct cyrusdb_txn *tid = NULL;
	sl_range(db, 0, 2000, 30, &tid, &want);
	test_assert_int(cyrusdb_delete(db, "key00100", 8, &tid, false), 0);
	sl_range(db, 2000, 2100, 30, &tid, &want);
	test_assert_int(cyrusdb_store(db, "key00100", 8, "back", 4, &tid), 0);
	sl_range(db, 2100, 2200, 30, &tid, &want);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	slurp(path, &b);
	test_assert_int(be32(b.s + 36), 2200);	/* listsize */
	test_assert_int(be32(b.s + 40), b.len);	/* logstart = EOF */
	test_assert_int(cyrusdb_consistent(db), 0);
	test_assert(fetch_is(db, "key00100", 8, "back", 4));
	char *got = listall(db, "key021");
	test_assert(!strncmp(got, "key02100=", 9));
	free(got);
	cyrusdb_close(&db);

	/* Big enough to hand the tail back while it is copied; the file
	 * the commit leaves must hold all of it. (Not empty at the start,
	 * so that the records go through the tail, not a stream.) */
	char *path2 = newpath();
	buf_reset(&want);
	db = opendb(path2, CYRUSDB_CREATE);
	test_assert_int(cyrusdb_store(db, "a", 1, "first", 5, NULL), 0);
	collect(&want, "a", 1, "first", 5);
	tid = NULL;
	sl_range(db, 0, 600, 100000, &tid, &want);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	got = listall(db, "");
	test_assert(!strcmp(got, want.s));
	free(got);
	test_assert_int(cyrusdb_consistent(db), 0);
	slurp(path2, &b);
	test_assert_int(be32(b.s + 40), b.len);
	cyrusdb_close(&db);

	/* No room for the checkpoint file: the commit goes to the log. */
	char *path3 = newpath();
	char *newname = xasprintf("%s.NEW", path3);
	buf_reset(&want);
	mkdir(newname, 0755);
	db = opendb(path3, CYRUSDB_CREATE | CYRUSDB_COMMIT_CHECKPOINT);
	tid = NULL;
	sl_range(db, 0, 500, 10, &tid, &want);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	got = listall(db, "");
	test_assert(!strcmp(got, want.s));
	free(got);
	test_assert_int(cyrusdb_consistent(db), 0);
	slurp(path3, &b);
	test_assert_int(be32(b.s + 40), 144);	/* all in the log */
	cyrusdb_close(&db);
	rmdir(newname);

	buf_release(&b);
	buf_release(&want);
	free(newname);
	free(path);
	free(path2);
	free(path3);
	test_end();
}

static void test_stream(void)
{
	char *path = newpath();
	char *newname = xasprintf("%s.NEW", path);
	struct buf b = BUF_INIT, before = BUF_INIT, want = BUF_INIT;

	test_begin("skiplist: a fill of an empty file streams to the checkpoint");
	env_set(NULL, false);
	struct cyrusdb *db = opendb(path, CYRUSDB_CREATE);
	slurp(path, &before);
	/* Streaming: the database is untouched until the commit. */
	struct cyrusdb_txn *tid = NULL;
	sl_range(db, 0, 3000, 50, &tid, &want);
	test_assert(access(newname, F_OK) == 0);
	slurp(path, &b);
	test_assert(b.len == before.len && !memcmp(b.s, before.s, b.len));
	/* an abort leaves it so and removes the stream */
	test_assert_int(cyrusdb_abort(db, tid), 0);
	test_assert(access(newname, F_OK) < 0);
	slurp(path, &b);
	test_assert(b.len == before.len && !memcmp(b.s, before.s, b.len));
	char *got = listall(db, "");
	test_assert_str(got, "");
	free(got);

	/* The commit is a checkpoint: no log, every record. */
	struct stat st1, st2;
	stat(path, &st1);
	tid = NULL;
	sl_range(db, 0, 3000, 50, &tid, NULL);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	stat(path, &st2);
	test_assert(st1.st_ino != st2.st_ino);
	test_assert(access(newname, F_OK) < 0);
	slurp(path, &b);
	test_assert_int(be32(b.s + 36), 3000);
	test_assert_int(be32(b.s + 40), b.len);
	test_assert_int(be32(b.s + 144), 1);	/* INORDER */
	test_assert_int(cyrusdb_consistent(db), 0);
	got = listall(db, "");
	test_assert_str(got, want.s);
	free(got);
	cyrusdb_close(&db);

	/* A read in the middle moves the stream into the transaction; a
	 * small commit then goes to the log, as without streaming. */
	char *path2 = newpath();
	buf_reset(&want);
	db = opendb(path2, CYRUSDB_CREATE);
	tid = NULL;
	sl_range(db, 0, 20, 5, &tid, &want);
	test_assert_int(cyrusdb_fetch(db, "key00007", 8, NULL, NULL, &tid), 0);
	sl_range(db, 20, 40, 5, &tid, &want);
	test_assert_int(cyrusdb_commit(db, tid), 0);
	slurp(path2, &b);
	test_assert_int(be32(b.s + 40), 144);	/* all in the log */
	got = listall(db, "");
	test_assert_str(got, want.s);
	free(got);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);

	buf_release(&b);
	buf_release(&before);
	buf_release(&want);
	free(newname);
	free(path);
	free(path2);
	test_end();
}

static void test_dump(void)
{
	char *path = newpath();

	test_begin("skiplist: dump prints Cyrus's record listing");
	env_set(NULL, false);
	struct cyrusdb *db = opendb(path, CYRUSDB_CREATE | CYRUSDB_NOCOMPACT);
	cyrusdb_store(db, "apple", 5, "red", 3, NULL);
	cyrusdb_delete(db, "apple", 5, NULL, false);
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	test_assert_int(cyrusdb_dump(db, f, 1), 0);
	fclose(f);
	test_assert(!strncmp(out, "0030: DUMMY kl=0 dl=0 lvl=20\n\t", 30));
	test_assert(strstr(out, "0090: ADD kl=5 dl=3 lvl=") != NULL);
	test_assert(strstr(out, ": COMMIT \n") != NULL);
	test_assert(strstr(out, ": DELETE offset=0090\n") != NULL);
	free(out);
	cyrusdb_close(&db);
	free(path);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_empty_file,
		test_ops,
		test_signed_order,
		test_binary,
		test_abort,
		test_crash,
		test_consistent,
		test_bad_input,
		test_foreach,
		test_repack_and_shared,
		test_dump,
		test_sequential,
		test_stream,
		NULL,
	};
	dir = test_tmpdir();
	int r = test_run(tests);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		r = 1;
	free(cmd);
	free(dir);
	return r;
}
