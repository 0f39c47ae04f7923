#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "buf.h"
#include "cyrusdb.h"
#include "error.h"

static char *dir;

static void set_env(bool virtdomains, bool fulldirhash)
{
	struct cyrusdb_env env = { .skiplist_always_checkpoint = true,
				   .nosync = true,
				   .virtdomains = virtdomains,
				   .fulldirhash = fulldirhash };
	cyrusdb_init(&env);
}

/* A fresh config directory per test; returns the handle on quotas.db. */
static struct cyrusdb *open_db(const char *sub, int flags)
{
	struct cyrusdb *db = NULL;
	char *p = xasprintf("%s/%s/quotas.db", dir, sub);
	struct error err = ERROR_INIT;
	if (cyrusdb_open("quotalegacy", p, flags | CYRUSDB_CREATE, &db, &err))
		printf("# open %s: %s\n", p, err.msg);
	free(p);
	return db;
}

static bool file_is(const char *sub, const char *rel, const char *want)
{
	char *p = xasprintf("%s/%s/%s", dir, sub, rel);
	char got[512];
	int fd = open(p, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, got, sizeof(got));
	if (fd >= 0)
		close(fd);
	bool ok = n >= 0 && (size_t)n == strlen(want) && !memcmp(got, want, n);
	if (!ok)
		printf("# %s: got %zd bytes\n", p, n);
	free(p);
	return ok;
}

static bool exists(const char *sub, const char *rel)
{
	char *p = xasprintf("%s/%s/%s", dir, sub, rel);
	bool ok = access(p, F_OK) == 0;
	free(p);
	return ok;
}

static void spew(const char *sub, const char *rel, const char *data,
		 size_t len)
{
	char *p = xasprintf("%s/%s/%s", dir, sub, rel);
	char *cmd = xasprintf("mkdir -p \"$(dirname '%s')\"", p);
	if (system(cmd) != 0)
		printf("# %s failed\n", cmd);
	free(cmd);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		printf("# cannot write %s\n", p);
	if (fd >= 0)
		close(fd);
	free(p);
}

#define PUTS(db, k, v) cyrusdb_store(db, k, strlen(k), v, strlen(v), NULL)

static int collect_cb(void *rock, const char *k, size_t kl, const char *d,
		      size_t dl)
{
	struct buf *b = rock;
	buf_add(b, k, kl);
	buf_addch(b, '=');
	buf_add(b, d, dl);
	buf_addch(b, ';');
	return 0;
}

static void test_spec_paths(void)
{
	const char *d;
	size_t dl;
	test_begin("quotalegacy: spec 7.5 paths and values");
	set_env(false, false);
	struct cyrusdb *db = open_db("s1", 0);
	test_assert_int(PUTS(db, "user.fred", "%(S (0 1024) M (3))"), 0);
	test_assert_int(PUTS(db, "example.com!user.joe", "0 100"), 0);
	test_assert(file_is("s1", "quota/f/user.fred",
			    "%(S (0 1024) M (3))\n"));
	test_assert(file_is("s1", "quota/c/example.com!user.joe",
			    "0\n100\n"));
	test_assert(!exists("s1", "quotas.db"));
	test_assert(!exists("s1", "quota/f/user.fred.NEW"));
	test_assert_int(cyrusdb_fetch(db, "example.com!user.joe", 20, &d, &dl,
				      NULL), 0);
	test_assert_mem(d, dl, "0 100", 5);
	/* Hash rule: after the first dot, non-letters to 'q', lower case. */
	PUTS(db, "shared", "1 2");
	PUTS(db, "user.Zed", "1 2");
	PUTS(db, "user.9x", "1 2");
	test_assert(exists("s1", "quota/s/shared"));
	test_assert(exists("s1", "quota/z/user.Zed"));
	test_assert(exists("s1", "quota/q/user.9x"));
	test_assert_int(cyrusdb_store(db, "a/b", 3, "1", 1, NULL),
			CYRUSDB_INTERNAL);
	test_assert_int(cyrusdb_store(db, "..", 2, "1", 1, NULL),
			CYRUSDB_INTERNAL);
	cyrusdb_close(&db);
	test_end();
}

static void test_legacy_values(void)
{
	const char *d;
	size_t dl;
	test_begin("quotalegacy: legacy and empty values round-trip");
	set_env(false, false);
	struct cyrusdb *db = open_db("s2", 0);
	spew("s2", "quota/f/user.fred", "12\n-1\n", 6);
	test_assert_int(cyrusdb_fetch(db, "user.fred", 9, &d, &dl, NULL), 0);
	test_assert_mem(d, dl, "12 -1", 5);
	test_assert_int(cyrusdb_store(db, "user.fred", 9, d, dl, NULL), 0);
	test_assert(file_is("s2", "quota/f/user.fred", "12\n-1\n"));
	/* Only the first space becomes LF; dlist values stay as they are. */
	PUTS(db, "user.ann", "1 2 M 3 4");
	test_assert(file_is("s2", "quota/a/user.ann", "1\n2 M 3 4\n"));
	test_assert_int(cyrusdb_fetch(db, "user.ann", 8, &d, &dl, NULL), 0);
	test_assert_mem(d, dl, "1 2 M 3 4", 9);
	PUTS(db, "user.bob", "%(S (1 2))");
	test_assert(file_is("s2", "quota/b/user.bob", "%(S (1 2))\n"));
	test_assert_int(cyrusdb_store(db, "user.e", 6, "", 0, NULL), 0);
	test_assert(file_is("s2", "quota/e/user.e", "\n"));
	spew("s2", "quota/e/user.empty", "", 0);
	test_assert_int(cyrusdb_fetch(db, "user.empty", 10, &d, &dl, NULL), 0);
	test_assert_int(dl, 0);
	cyrusdb_close(&db);
	test_end();
}

static void test_virtdomains(void)
{
	struct buf b = BUF_INIT;
	test_begin("quotalegacy: virtdomains paths and foreach");
	set_env(true, false);
	struct cyrusdb *db = open_db("v", 0);
	PUTS(db, "example.com!user.joe", "%(S (1))");
	PUTS(db, "example.com!", "%(S (2))");
	PUTS(db, "other.org!user.zz", "%(S (3))");
	PUTS(db, "user.fred", "%(S (4))");
	test_assert(exists("v", "domain/e/example.com/quota/j/user.joe"));
	test_assert(exists("v", "domain/e/example.com/quota/root"));
	test_assert(exists("v", "domain/o/other.org/quota/z/user.zz"));
	test_assert(exists("v", "quota/f/user.fred"));
	cyrusdb_foreach(db, "", 0, NULL, collect_cb, &b, NULL);
	test_assert_str(b.s, "example.com!=%(S (2));"
			     "example.com!user.joe=%(S (1));"
			     "other.org!user.zz=%(S (3));user.fred=%(S (4));");
	buf_reset(&b);
	cyrusdb_foreach(db, "example.com!", 12, NULL, collect_cb, &b, NULL);
	test_assert_str(b.s, "example.com!=%(S (2));"
			     "example.com!user.joe=%(S (1));");
	buf_reset(&b);
	cyrusdb_foreach(db, "example.com!user.j", 18, NULL, collect_cb, &b,
			NULL);
	test_assert_str(b.s, "example.com!user.joe=%(S (1));");
	test_assert_int(cyrusdb_delete(db, "example.com!", 12, NULL, false),
			0);
	test_assert(!exists("v", "domain/e/example.com/quota/root"));
	cyrusdb_close(&db);
	buf_release(&b);
	test_end();
}

static void test_fulldirhash(void)
{
	test_begin("quotalegacy: fulldirhash hash characters");
	set_env(true, true);
	struct cyrusdb *db = open_db("f", 0);
	/* Values checked against Cyrus 3.6.1 (cyr_dbtool, fulldirhash: 1). */
	PUTS(db, "user.fred", "1 2");
	PUTS(db, "user", "1 2");
	PUTS(db, "user.b.c", "1 2");
	PUTS(db, "shared", "1 2");
	PUTS(db, "example.com!user.joe", "1 2");
	PUTS(db, "other.org!user.zz", "1 2");
	test_assert(exists("f", "quota/E/user.fred"));
	test_assert(exists("f", "quota/C/user"));
	test_assert(exists("f", "quota/G/user.b.c"));
	test_assert(exists("f", "quota/T/shared"));
	test_assert(exists("f", "domain/O/example.com/quota/B/user.joe"));
	test_assert(exists("f", "domain/M/other.org/quota/R/user.zz"));
	cyrusdb_close(&db);
	test_end();
}

static void test_foreach_order(void)
{
	struct buf b = BUF_INIT;
	test_begin("quotalegacy: foreach sorted by strcmp, prefix filter");
	set_env(false, false);
	struct cyrusdb *db = open_db("o", 0);
	const char *keys[] = { "user.b", "user.a b", "user.a.b", "user.a",
			       "user.B", "shared", "user" };
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		PUTS(db, keys[i], "%x");
	cyrusdb_foreach(db, "", 0, NULL, collect_cb, &b, NULL);
	test_assert_str(b.s, "shared=%x;user=%x;user.B=%x;user.a=%x;"
			     "user.a b=%x;user.a.b=%x;user.b=%x;");
	buf_reset(&b);
	cyrusdb_foreach(db, "user.a", 6, NULL, collect_cb, &b, NULL);
	test_assert_str(b.s, "user.a=%x;user.a b=%x;user.a.b=%x;");
	/* Cyrus scans only quota/u/ here; we find every match. */
	buf_reset(&b);
	cyrusdb_foreach(db, "user", 4, NULL, collect_cb, &b, NULL);
	test_assert_str(b.s, "user=%x;user.B=%x;user.a=%x;user.a b=%x;"
			     "user.a.b=%x;user.b=%x;");
	test_assert(cyrusdb_compar(db, "a.b", 3, "a b", 3) > 0);
	cyrusdb_close(&db);
	/* MBOXSORT: '.' before space. */
	db = open_db("o", CYRUSDB_MBOXSORT);
	buf_reset(&b);
	cyrusdb_foreach(db, "user.a", 6, NULL, collect_cb, &b, NULL);
	test_assert_str(b.s, "user.a=%x;user.a.b=%x;user.a b=%x;");
	cyrusdb_close(&db);
	buf_release(&b);
	test_end();
}

static void test_txn(void)
{
	struct buf b = BUF_INIT;
	const char *d;
	size_t dl;
	test_begin("quotalegacy: transactions, commit, abort, create");
	set_env(false, false);
	struct cyrusdb *db = open_db("t", 0);
	PUTS(db, "user.a", "1 2");
	struct cyrusdb_txn *t = NULL;
	test_assert_int(cyrusdb_fetch(db, "user.a", 6, &d, &dl, &t), 0);
	test_assert_int(cyrusdb_store(db, "user.a", 6, "3 4", 3, &t), 0);
	test_assert_int(cyrusdb_store(db, "user.new", 8, "5 6", 3, &t), 0);
	test_assert_int(cyrusdb_fetch(db, "user.a", 6, &d, &dl, &t), 0);
	test_assert_mem(d, dl, "3 4", 3);
	test_assert(file_is("t", "quota/a/user.a", "1\n2\n"));
	cyrusdb_foreach(db, "", 0, NULL, collect_cb, &b, &t);
	test_assert_str(b.s, "user.a=3 4;user.new=5 6;");
	test_assert_int(cyrusdb_abort(db, t), 0);
	test_assert(file_is("t", "quota/a/user.a", "1\n2\n"));
	test_assert(!exists("t", "quota/n/user.new"));

	t = NULL;
	test_assert_int(cyrusdb_create(db, "user.a", 6, "9", 1, &t),
			CYRUSDB_EXISTS);
	test_assert_int(cyrusdb_create(db, "user.c", 6, "7 8", 3, &t), 0);
	test_assert_int(cyrusdb_delete(db, "user.a", 6, &t, false), 0);
	test_assert_int(cyrusdb_fetch(db, "user.a", 6, &d, &dl, &t),
			CYRUSDB_NOTFOUND);
	test_assert_int(cyrusdb_delete(db, "user.x", 6, &t, false),
			CYRUSDB_NOTFOUND);
	test_assert_int(cyrusdb_delete(db, "user.x", 6, &t, true), 0);
	test_assert(exists("t", "quota/a/user.a"));
	test_assert_int(cyrusdb_commit(db, t), 0);
	test_assert(!exists("t", "quota/a/user.a"));
	test_assert(file_is("t", "quota/c/user.c", "7\n8\n"));
	test_assert(!exists("t", "quota/c/user.c.NEW"));
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	buf_release(&b);
	test_end();
}

static void test_bad_input(void)
{
	struct buf b = BUF_INIT;
	const char *d;
	size_t dl;
	test_begin("quotalegacy: file without final LF is an I/O error");
	set_env(false, false);
	struct cyrusdb *db = open_db("b", 0);
	PUTS(db, "user.a", "1 2");
	spew("b", "quota/b/user.b", "1\n2", 3);
	test_assert_int(cyrusdb_fetch(db, "user.b", 6, &d, &dl, NULL),
			CYRUSDB_IOERROR);
	test_assert(strstr(cyrusdb_errmsg(db), "user.b") != NULL);
	test_assert_int(cyrusdb_foreach(db, "", 0, NULL, collect_cb, &b, NULL),
			CYRUSDB_IOERROR);
	test_assert_str(b.s, "user.a=1 2;");
	test_assert_int(cyrusdb_fetch(db, "user.zz", 7, &d, &dl, NULL),
			CYRUSDB_NOTFOUND);
	cyrusdb_close(&db);
	struct cyrusdb *none = NULL;
	char *p = xasprintf("%s/nodir/quotas.db", dir);
	test_assert_int(cyrusdb_open("quotalegacy", p, 0, &none, NULL),
			CYRUSDB_NOTFOUND);
	free(p);
	buf_release(&b);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_spec_paths, test_legacy_values, test_virtdomains,
		test_fulldirhash, test_foreach_order, test_txn,
		test_bad_input, NULL,
	};
	dir = test_tmpdir();
	int r = test_run(tests);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# cleanup failed\n");
	free(cmd);
	free(dir);
	return r;
}
