#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "buf.h"
#include "cyrusdb.h"
#include "error.h"

static char *dir;

static char *path_of(const char *name)
{
	return xasprintf("%s/%s", dir, name);
}

static struct cyrusdb *open_db(const char *name, int flags)
{
	struct cyrusdb *db = NULL;
	char *p = path_of(name);
	struct error err = ERROR_INIT;
	int r = cyrusdb_open("flat", p, flags, &db, &err);
	if (r)
		printf("# open %s: %s\n", p, err.msg);
	free(p);
	return db;
}

static void slurp(const char *name, struct buf *b)
{
	char *p = path_of(name);
	char chunk[4096];
	int fd = open(p, O_RDONLY);
	ssize_t n;
	buf_reset(b);
	while (fd >= 0 && (n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_add(b, chunk, (size_t)n);
	if (fd >= 0)
		close(fd);
	free(p);
}

static void spew(const char *name, const char *data, size_t len)
{
	char *p = path_of(name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (write(fd, data, len) != (ssize_t)len)
		printf("# short write\n");
	close(fd);
	free(p);
}

static int put(struct cyrusdb *db, const char *k, size_t kl, const char *v,
	       size_t vl)
{
	return cyrusdb_store(db, k, kl, v, vl, NULL);
}

#define PUTS(db, k, v) put(db, k, strlen(k), v, strlen(v))

struct collect {
	struct buf out;
	int n;
};

static int collect_cb(void *rock, const char *k, size_t kl, const char *d,
		      size_t dl)
{
	struct collect *c = rock;
	buf_add(&c->out, k, kl);
	buf_addch(&c->out, '=');
	buf_add(&c->out, d, dl);
	buf_addch(&c->out, ';');
	c->n++;
	return 0;
}

static void test_spec_examples(void)
{
	struct buf b = BUF_INIT;
	test_begin("flat: spec 7.4 file bytes and order");
	struct cyrusdb *db = open_db("ex1", CYRUSDB_CREATE);
	test_assert(db != NULL);
	test_assert_int(PUTS(db, "user.b", "x"), 0);
	test_assert_int(PUTS(db, "a\001b", "v\377w"), 0);
	test_assert_int(PUTS(db, "user.a", "y"), 0);
	test_assert_int(PUTS(db, "user-a", "z"), 0);
	test_assert_int(PUTS(db, "user a", "w"), 0);
	test_assert_int(PUTS(db, "usEr", "q"), 0);
	cyrusdb_close(&db);
	slurp("ex1", &b);
	static const char want[] = "a\001b\tv\377\377w\nusEr\tq\nuser.a\ty\n"
				   "user.b\tx\nuser a\tw\nuser-a\tz\n";
	test_assert_mem(b.s, b.len, want, sizeof(want) - 1);

	/* k NUL TAB CR LF FF z = v NUL TAB CR LF FF */
	db = open_db("ex2", CYRUSDB_CREATE);
	static const char k[] = "k\0\t\r\n\377z", v[] = "v\0\t\r\n\377";
	test_assert_int(put(db, k, 7, v, 6), 0);
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(db, k, 7, &d, &dl, NULL), 0);
	test_assert_mem(d, dl, v, 6);
	cyrusdb_close(&db);
	slurp("ex2", &b);
	static const char want2[] = "k\377\200\377\211\377\215\377\212\377\377z"
				    "\tv\377\200\377\211\377\215\377\212\377"
				    "\377\n";
	test_assert_mem(b.s, b.len, want2, sizeof(want2) - 1);
	buf_release(&b);
	test_end();
}

static void test_decode_rules(void)
{
	test_begin("flat: decoding FF x, FF FF, lone trailing FF");
	/* "a FF c1" -> a A ; "b FF" -> b ; "c" = "FF FF FF" -> FF */
	static const char file[] = "a\377\301\tx\377\n" "b\377\tv\n"
				   "c\t\377\377\377\n";
	spew("dec", file, sizeof(file) - 1);
	struct cyrusdb *db = open_db("dec", 0);
	struct collect c = { BUF_INIT, 0 };
	test_assert_int(cyrusdb_foreach(db, "", 0, NULL, collect_cb, &c, NULL),
			0);
	test_assert_str(c.out.s, "aA=x;b=v;c=\377;");
	/* Lookup is by the canonical encoding, as in Cyrus. */
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(db, "aA", 2, &d, &dl, NULL),
			CYRUSDB_NOTFOUND);
	test_assert_int(cyrusdb_fetch(db, "c", 1, &d, &dl, NULL), 0);
	test_assert_mem(d, dl, "\377", 1);
	cyrusdb_close(&db);
	buf_release(&c.out);
	test_end();
}

static void test_order_and_prefix(void)
{
	test_begin("flat: mailbox order, prefix keys, prefix foreach");
	struct cyrusdb *db = open_db("ord", CYRUSDB_CREATE);
	const char *keys[] = { "b", "a.b", "a", "a b", "ab", "a.", "A",
			       "\303\244", "a\001" };
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		test_assert_int(PUTS(db, keys[i], "v"), 0);
	struct collect c = { BUF_INIT, 0 };
	cyrusdb_foreach(db, "", 0, NULL, collect_cb, &c, NULL);
	test_assert_str(c.out.s, "A=v;a=v;a.=v;a.b=v;a\001=v;a b=v;ab=v;"
				 "b=v;\303\244=v;");
	buf_reset(&c.out);
	c.n = 0;
	cyrusdb_foreach(db, "a.", 2, NULL, collect_cb, &c, NULL);
	test_assert_str(c.out.s, "a.=v;a.b=v;");
	buf_reset(&c.out);
	cyrusdb_foreach(db, "zz", 2, NULL, collect_cb, &c, NULL);
	test_assert_int(c.out.len, 0);
	test_assert(cyrusdb_compar(db, "a.b", 3, "a b", 3) < 0);
	test_assert(cyrusdb_compar(db, "a", 1, "ab", 2) < 0);
	test_assert_int(cyrusdb_consistent(db), 0);
	cyrusdb_close(&db);
	buf_release(&c.out);
	test_end();
}

static void test_values(void)
{
	test_begin("flat: empty, binary and 100 KB values, create, delete");
	struct cyrusdb *db = open_db("val", CYRUSDB_CREATE);
	const char *d;
	size_t dl;
	test_assert_int(put(db, "e", 1, "", 0), 0);
	test_assert_int(cyrusdb_fetch(db, "e", 1, &d, &dl, NULL), 0);
	test_assert_int(dl, 0);
	test_assert_int(cyrusdb_fetch(db, "nope", 4, &d, &dl, NULL),
			CYRUSDB_NOTFOUND);
	char *big = xmalloc(100 * 1024);
	for (size_t i = 0; i < 100 * 1024; i++)
		big[i] = (char)(i * 7);
	test_assert_int(put(db, "big", 3, big, 100 * 1024), 0);
	cyrusdb_close(&db);
	db = open_db("val", 0);
	test_assert_int(cyrusdb_fetch(db, "big", 3, &d, &dl, NULL), 0);
	test_assert_mem(d, dl, big, 100 * 1024);
	test_assert_int(cyrusdb_create(db, "e", 1, "x", 1, NULL),
			CYRUSDB_EXISTS);
	test_assert_int(cyrusdb_create(db, "n", 1, "x", 1, NULL), 0);
	test_assert_int(cyrusdb_delete(db, "zz", 2, NULL, false),
			CYRUSDB_NOTFOUND);
	test_assert_int(cyrusdb_delete(db, "zz", 2, NULL, true), 0);
	test_assert_int(cyrusdb_delete(db, "e", 1, NULL, false), 0);
	test_assert_int(cyrusdb_fetch(db, "e", 1, &d, &dl, NULL),
			CYRUSDB_NOTFOUND);
	cyrusdb_close(&db);
	free(big);
	test_end();
}

static void test_txn(void)
{
	struct buf before = BUF_INIT, after = BUF_INIT;
	const char *d;
	size_t dl;
	test_begin("flat: transactions see their changes, abort, commit");
	struct cyrusdb *db = open_db("txn", CYRUSDB_CREATE);
	PUTS(db, "a", "1");
	PUTS(db, "c", "3");
	slurp("txn", &before);
	struct cyrusdb_txn *t = NULL;
	test_assert_int(cyrusdb_store(db, "b", 1, "2", 1, &t), 0);
	test_assert(t != NULL);
	test_assert_int(cyrusdb_delete(db, "a", 1, &t, false), 0);
	test_assert_int(cyrusdb_fetch(db, "b", 1, &d, &dl, &t), 0);
	test_assert_mem(d, dl, "2", 1);
	test_assert_int(cyrusdb_fetch(db, "a", 1, &d, &dl, &t),
			CYRUSDB_NOTFOUND);
	struct collect c = { BUF_INIT, 0 };
	cyrusdb_foreach(db, "", 0, NULL, collect_cb, &c, &t);
	test_assert_str(c.out.s, "b=2;c=3;");
	/* A second writer is refused while the transaction is open. */
	test_assert_int(PUTS(db, "x", "y"), CYRUSDB_LOCKED);
	slurp("txn", &after);
	test_assert_mem(after.s, after.len, before.s, before.len);
	test_assert_int(cyrusdb_abort(db, t), 0);
	test_assert_int(cyrusdb_fetch(db, "a", 1, &d, &dl, NULL), 0);
	test_assert_int(cyrusdb_fetch(db, "b", 1, &d, &dl, NULL),
			CYRUSDB_NOTFOUND);
	t = NULL;
	cyrusdb_store(db, "b", 1, "2", 1, &t);
	test_assert_int(cyrusdb_create(db, "b", 1, "9", 1, &t),
			CYRUSDB_EXISTS);
	test_assert_int(cyrusdb_commit(db, t), 0);
	slurp("txn", &after);
	test_assert_mem(after.s, after.len, "a\t1\nb\t2\nc\t3\n", 12);
	char *np = path_of("txn.NEW");
	test_assert(access(np, F_OK) < 0);
	free(np);
	cyrusdb_close(&db);
	buf_release(&c.out);
	buf_release(&before);
	buf_release(&after);
	test_end();
}

struct mod_rock {
	struct cyrusdb *db;
	struct cyrusdb_txn **tid;
	struct collect seen;
};

static int del_cb(void *rock, const char *k, size_t kl, const char *d,
		  size_t dl)
{
	struct mod_rock *mr = rock;
	collect_cb(&mr->seen, k, kl, d, dl);
	/* Delete the next key and add a later one while iterating. */
	if (kl == 1 && k[0] == 'a') {
		cyrusdb_delete(mr->db, "b", 1, mr->tid, false);
		cyrusdb_store(mr->db, "d", 1, "4", 1, mr->tid);
	}
	return 0;
}

static void test_foreach_modify(void)
{
	test_begin("flat: foreach callback changing the transaction");
	struct cyrusdb *db = open_db("mod", CYRUSDB_CREATE);
	PUTS(db, "a", "1");
	PUTS(db, "b", "2");
	PUTS(db, "c", "3");
	struct cyrusdb_txn *t = NULL;
	const char *d;
	size_t dl;
	cyrusdb_fetch(db, "a", 1, &d, &dl, &t);
	struct mod_rock mr = { db, &t, { BUF_INIT, 0 } };
	struct collect c = { BUF_INIT, 0 };
	test_assert_int(cyrusdb_foreach(db, "", 0, NULL, del_cb, &mr, &t), 0);
	test_assert_str(mr.seen.out.s, "a=1;c=3;d=4;");
	test_assert_int(cyrusdb_commit(db, t), 0);
	cyrusdb_foreach(db, "", 0, NULL, collect_cb, &c, NULL);
	test_assert_str(c.out.s, "a=1;c=3;d=4;");
	buf_release(&mr.seen.out);
	cyrusdb_close(&db);
	buf_release(&c.out);
	test_end();
}

static void test_big_txn(void)
{
	test_begin("flat: 100000 stores in one transaction (reverse order)");
	struct cyrusdb *db = open_db("big", CYRUSDB_CREATE);
	struct cyrusdb_txn *t = NULL;
	char k[32], v[32];
	int r = 0;
	for (int i = 99999; i >= 0 && !r; i--) {
		int kl = snprintf(k, sizeof(k), "user.u%06d", i);
		int vl = snprintf(v, sizeof(v), "v%d", i);
		r = cyrusdb_store(db, k, (size_t)kl, v, (size_t)vl, &t);
	}
	test_assert_int(r, 0);
	test_assert_int(cyrusdb_commit(db, t), 0);
	cyrusdb_close(&db);
	db = open_db("big", 0);
	struct collect c = { BUF_INIT, 0 };
	cyrusdb_foreach(db, "", 0, NULL, collect_cb, &c, NULL);
	test_assert_int(c.n, 100000);
	test_assert(!strncmp(c.out.s, "user.u000000=v0;user.u000001=v1;", 32));
	const char *d;
	size_t dl;
	test_assert_int(cyrusdb_fetch(db, "user.u054321", 12, &d, &dl, NULL),
			0);
	test_assert_mem(d, dl, "v54321", 6);
	cyrusdb_close(&db);
	buf_release(&c.out);
	test_end();
}

static int count_entries(const char *d)
{
	char *cmd = xasprintf("ls -A '%s' | wc -l", d);
	FILE *f = popen(cmd, "r");
	int n = -1;
	if (f && fscanf(f, "%d", &n) != 1)
		n = -1;
	if (f)
		pclose(f);
	free(cmd);
	return n;
}

static void test_spooled_txn(void)
{
	test_begin("flat: a spooled transaction (several MB, in order, then "
		   "not) reads its own changes");
	char *sub = path_of("spool");
	char *p = xasprintf("%s/db", sub);
	struct cyrusdb *db = NULL;
	test_assert_int(cyrusdb_open("flat", p, CYRUSDB_CREATE, &db, NULL), 0);
	struct cyrusdb_txn *t = NULL;
	char k[64], v[256];
	const char *d;
	size_t dl;
	int r = 0;
	memset(v, 'x', sizeof(v));
	/* 40000 x ~220 bytes in order: past the in-memory spool buffer. */
	for (int i = 0; i < 40000 && !r; i += 2) {
		int kl = snprintf(k, sizeof(k), "key%06d", i);
		int vl = snprintf(v, sizeof(v), "val%d\t", i);
		r = cyrusdb_store(db, k, (size_t)kl, v, (size_t)vl + 200, &t);
	}
	test_assert_int(r, 0);
	/* The spool is unlinked: only the database is in the directory. */
	test_assert_int(count_entries(sub), 1);
	test_assert_int(cyrusdb_fetch(db, "key000100", 9, &d, &dl, &t), 0);
	test_assert(dl == 207 && !memcmp(d, "val100\t", 7));
	/* Out of order: the odd keys backwards, overwrites, deletes. */
	for (int i = 39999; i > 0 && !r; i -= 2) {
		int kl = snprintf(k, sizeof(k), "key%06d", i);
		r = cyrusdb_store(db, k, (size_t)kl, "odd", 3, &t);
	}
	test_assert_int(r, 0);
	test_assert_int(cyrusdb_store(db, "key000000", 9, "new", 3, &t), 0);
	test_assert_int(cyrusdb_delete(db, "key000002", 9, &t, false), 0);
	test_assert_int(cyrusdb_delete(db, "key000002", 9, &t, false),
			CYRUSDB_NOTFOUND);
	test_assert_int(cyrusdb_create(db, "key000003", 9, "x", 1, &t),
			CYRUSDB_EXISTS);
	test_assert_int(cyrusdb_fetch(db, "key000000", 9, &d, &dl, &t), 0);
	test_assert_mem(d, dl, "new", 3);
	test_assert_int(cyrusdb_fetch(db, "key039999", 9, &d, &dl, &t), 0);
	test_assert_mem(d, dl, "odd", 3);
	test_assert_int(cyrusdb_fetch(db, "key000002", 9, &d, &dl, &t),
			CYRUSDB_NOTFOUND);
	struct collect c = { BUF_INIT, 0 };
	cyrusdb_foreach(db, "key00000", 8, NULL, collect_cb, &c, &t);
	test_assert_int(c.n, 9);
	test_assert(!strncmp(c.out.s, "key000000=new;key000001=odd;"
			     "key000003=odd;key000004=val4\t", 41));
	test_assert_int(cyrusdb_commit(db, t), 0);
	test_assert_int(count_entries(sub), 1);
	buf_reset(&c.out);
	c.n = 0;
	cyrusdb_foreach(db, "", 0, NULL, collect_cb, &c, NULL);
	test_assert_int(c.n, 39999);
	/* An aborted transaction leaves nothing behind either. */
	t = NULL;
	test_assert_int(cyrusdb_store(db, "zz", 2, "1", 1, &t), 0);
	test_assert_int(cyrusdb_abort(db, t), 0);
	test_assert_int(count_entries(sub), 1);
	test_assert_int(cyrusdb_fetch(db, "zz", 2, &d, &dl, NULL),
			CYRUSDB_NOTFOUND);
	cyrusdb_close(&db);
	buf_release(&c.out);
	free(p);
	free(sub);
	test_end();
}

static void test_bad_input(void)
{
	struct collect c = { BUF_INIT, 0 };
	struct buf b = BUF_INIT;
	const char *d;
	size_t dl;
	test_begin("flat: damaged files read and rewritten as Cyrus does");
	/* A line without TAB joins the next line's key (Cyrus's strchr). */
	spew("bad1", "a\tb\nnotab\nc\td\n", 14);
	struct cyrusdb *db = open_db("bad1", 0);
	test_assert_int(cyrusdb_foreach(db, "", 0, NULL, collect_cb, &c, NULL),
			0);
	test_assert_str(c.out.s, "a=b;notab\nc=d;");
	cyrusdb_close(&db);

	/* Truncated last line: records before it, then an I/O error. */
	spew("bad2", "a\tb\nc\td", 7);
	db = open_db("bad2", 0);
	buf_reset(&c.out);
	test_assert_int(cyrusdb_foreach(db, "", 0, NULL, collect_cb, &c, NULL),
			CYRUSDB_IOERROR);
	test_assert_str(c.out.s, "a=b;");
	test_assert(strstr(cyrusdb_errmsg(db), "offset 4") != NULL);
	test_assert_int(cyrusdb_fetch(db, "c", 1, &d, &dl, NULL),
			CYRUSDB_NOTFOUND);
	/* A store keeps the damaged tail at the end, like Cyrus. */
	test_assert_int(PUTS(db, "z", "1"), 0);
	slurp("bad2", &b);
	test_assert_mem(b.s, b.len, "a\tb\nz\t1\nc\td", 11);
	cyrusdb_close(&db);

	/* Garbage without any TAB. */
	spew("bad3", "\001\002garbage\377", 11);
	db = open_db("bad3", 0);
	buf_reset(&c.out);
	test_assert_int(cyrusdb_foreach(db, "", 0, NULL, collect_cb, &c, NULL),
			CYRUSDB_IOERROR);
	test_assert_int(c.out.len, 0);
	test_assert(strstr(cyrusdb_errmsg(db), "without TAB") != NULL);
	cyrusdb_close(&db);

	/* Missing file without CREATE. */
	struct cyrusdb *none = NULL;
	char *p = path_of("missing/none");
	test_assert_int(cyrusdb_open("flat", p, 0, &none, NULL),
			CYRUSDB_NOTFOUND);
	free(p);
	buf_release(&c.out);
	buf_release(&b);
	test_end();
}

static void test_replaced_file(void)
{
	const char *d;
	size_t dl;
	test_begin("flat: a reader follows a file replaced by rename");
	struct cyrusdb *db = open_db("ren", CYRUSDB_CREATE);
	PUTS(db, "k", "old");
	test_assert_int(cyrusdb_fetch(db, "k", 1, &d, &dl, NULL), 0);
	spew("ren.tmp", "k\tnew\n", 6);
	char *a = path_of("ren.tmp"), *b = path_of("ren");
	test_assert_int(rename(a, b), 0);
	test_assert_int(cyrusdb_fetch(db, "k", 1, &d, &dl, NULL), 0);
	test_assert_mem(d, dl, "new", 3);
	free(a);
	free(b);
	cyrusdb_close(&db);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_spec_examples, test_decode_rules, test_order_and_prefix,
		test_values, test_txn, test_foreach_modify, test_big_txn,
		test_spooled_txn,
		test_bad_input, test_replaced_file, NULL,
	};
	struct cyrusdb_env env = { .skiplist_always_checkpoint = true,
				   .nosync = true };
	cyrusdb_init(&env);
	dir = test_tmpdir();
	int r = test_run(tests);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# cleanup failed\n");
	free(cmd);
	free(dir);
	return r;
}
