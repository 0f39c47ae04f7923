#include "compat.h"
#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "buf.h"
#include "config.h"
#include "cyrusdb.h"
#include "error.h"
#include "lock.h"
#include "mailbox.h"
#include "mboxname.h"
#include "quota.h"

static char *tmpdir;

/* parse + format: what Cyrus 3.6.1 writes back for a value it read. */
static char *roundtrip(const char *in, bool withscan)
{
	struct quota q;
	struct buf out = BUF_INIT;
	quota_init(&q, "user.bob");
	if (quota_parse(in, strlen(in), withscan, &q, NULL) < 0) {
		quota_release(&q);
		return NULL;
	}
	quota_format(&q, &out);
	quota_release(&q);
	return buf_detach(&out, NULL);
}

static void test_values(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		/* Verified against 3.6.1's quota files. */
		{ "%(S (1897 10240) M (3) AS (0) NF (4) MODSEQ 8)",
		  "%(S (1897 10240) M (3) AS (0) NF (4) MODSEQ 8)" },
		{ "%(S (2288 3) M (4 0) AS (0) NF (4 7) MODSEQ 5)",
		  "%(S (2288 3) M (4 0) AS (0) NF (4 7) MODSEQ 5)" },
		/* Missing resources: unused and unlimited; no MODSEQ: 0. */
		{ "%(S (5))", "%(S (5) M (0) AS (0) NF (0) MODSEQ 0)" },
		{ "%()", "%(S (0) M (0) AS (0) NF (0) MODSEQ 0)" },
		/* Not a plain number: 0 (dlist_num). */
		{ "%(S (-1 x) M (3))", "%(S (0 0) M (3) AS (0) NF (0) "
				      "MODSEQ 0)" },
		/* The legacy forms, written back in the dlist form. */
		{ "12 500", "%(S (12 500) M (0) AS (0) NF (0) MODSEQ 0)" },
		{ "0 -1", "%(S (0) M (0) AS (0) NF (0) MODSEQ 0)" },
		{ "1 2 99 M 3 4 NF 5 6 7",
		  "%(S (1 2) M (3 4) AS (0) NF (5 6) MODSEQ 0)" },
		{ "1 2 m 3 4", "%(S (1 2) M (3 4) AS (0) NF (0) MODSEQ 0)" },
		{ "7\t100\n", "%(S (7 100) M (0) AS (0) NF (0) MODSEQ 0)" },
	};

	test_begin("quota: values parse and print as 3.6.1's quota_db");
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *got = roundtrip(cases[i].in, false);
		test_assert_idx(got && !strcmp(got, cases[i].out), i);
		if (got && strcmp(got, cases[i].out))
			printf("# %zu: %s\n", i, got);
		free(got);
	}
	test_end();
}

static void test_scan(void)
{
	static const char v[] = "%(S (1 2) M (3) AS (0) NF (1) SCAN "
				"%(MBOX \"user.bob.My Folder\" S 10 M 2 AS 0 "
				"NF 1) MODSEQ 9)";
	struct quota q;

	test_begin("quota: SCAN only under a write lock, printed back");
	char *got = roundtrip(v, true);
	test_assert_str(got, v);
	free(got);
	got = roundtrip(v, false);
	test_assert_str(got, "%(S (1 2) M (3) AS (0) NF (1) MODSEQ 9)");
	free(got);
	quota_init(&q, "user.bob");
	test_assert_int(quota_parse(v, strlen(v), true, &q, NULL), 0);
	test_assert_str(q.scanmbox, "user.bob.My Folder");
	test_assert(q.scanuseds[QUOTA_STORAGE] == 10);
	test_assert(q.scanuseds[QUOTA_MESSAGE] == 2);
	test_assert(q.modseq == 9);
	quota_release(&q);
	test_end();
}

static void test_bad(void)
{
	static const char *const bad[] = {
		"", "x", "12", "12 x", "1 2 Q 3 4", "1 2 M 3", "%(S (1 2)",
		"%(S (1 2) M", "%", "%(S {5+}\r\nab)", " ",
	};
	struct error err = ERROR_INIT;
	struct quota q;

	test_begin("quota: empty, garbage and truncated values are ERR_DATA");
	quota_init(&q, "r");
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		error_clear(&err);
		test_assert_idx(quota_parse(bad[i], strlen(bad[i]), true, &q,
					    &err) < 0, i);
		test_assert_idx(err.kind == ERR_DATA, i);
	}
	/* Every prefix of a good value fails or parses, never crashes. */
	static const char good[] = "%(S (1 2) SCAN %(MBOX a S 1) MODSEQ 3)";
	for (size_t n = 0; n < sizeof(good) - 1; n++)
		quota_parse(good, n, true, &q, NULL);
	/* Oversized numbers: the dlist form reads 0, as parsenum fails. */
	static const char big[] = "%(S (99999999999999999999 1))";
	test_assert_int(quota_parse(big, strlen(big), false, &q, NULL), 0);
	test_assert(q.useds[QUOTA_STORAGE] == 0 &&
		    q.limits[QUOTA_STORAGE] == 1);
	quota_release(&q);
	test_end();
}

static void test_roots(void)
{
	test_begin("quota: which root covers a mailbox");
	test_assert(quota_root_covers("user.bob", "user.bob"));
	test_assert(quota_root_covers("user.bob", "user.bob.Sent"));
	test_assert(!quota_root_covers("user.bob", "user.bobby"));
	test_assert(!quota_root_covers("user.bob.Sent", "user.bob"));
	test_assert(quota_root_covers("example.com!", "example.com!user.z"));
	test_assert(!quota_root_covers("example.com!", "example.org!user.z"));
	test_assert(!quota_root_covers("user.bob", "DELETED.user.bob.X"));
	test_assert_int(quota_name_to_resource("x-num-folders"),
			QUOTA_NUMFOLDERS);
	test_assert_int(quota_name_to_resource("STORAGE"), QUOTA_STORAGE);
	test_assert_int(quota_name_to_resource("bogus"), -1);

	struct quota q;
	quota_init(&q, "r");
	q.useds[QUOTA_STORAGE] = 1024 * 3;
	q.limits[QUOTA_STORAGE] = 3;
	test_assert(quota_is_over(&q, QUOTA_STORAGE));
	q.useds[QUOTA_STORAGE] = 1024 * 3 - 1;
	test_assert(!quota_is_over(&q, QUOTA_STORAGE));
	test_assert(!quota_is_over(&q, QUOTA_MESSAGE)); /* unlimited */
	q.limits[QUOTA_MESSAGE] = 0;
	test_assert(quota_is_over(&q, QUOTA_MESSAGE));
	quota_release(&q);

	struct mailbox_index_header ih = { 0 };
	long long use[QUOTA_NUMRESOURCES];
	ih.quota_mailbox_used = 5000000000ULL;
	ih.exists = 7;
	ih.quota_annot_used = 12;
	quota_mailbox_usage(&ih, use);
	test_assert(use[QUOTA_STORAGE] == 5000000000LL);
	test_assert(use[QUOTA_MESSAGE] == 7 && use[QUOTA_ANNOTSTORAGE] == 12 &&
		    use[QUOTA_NUMFOLDERS] == 1);
	ih.options = MAILBOX_OPT_DELETED;
	quota_mailbox_usage(&ih, use);
	test_assert(use[QUOTA_STORAGE] == 0 && use[QUOTA_NUMFOLDERS] == 0);
	test_end();
}

static struct config *make_config(const char *sub, const char *extra)
{
	struct config *cfg = NULL;
	char *dir = xasprintf("%s/%s", tmpdir, sub);
	char *conf = xasprintf("%s/imapd.conf", dir);
	mkdir(dir, 0755);
	FILE *f = fopen(conf, "w");
	fprintf(f, "configdirectory: %s\npartition-default: %s\n%s", dir, dir,
		extra);
	fclose(f);
	if (config_load(conf, NULL, &cfg, NULL) < 0)
		printf("# cannot load %s\n", conf);
	struct cyrusdb_env env;
	config_cyrusdb_env(cfg, &env);
	env.nosync = true;
	cyrusdb_init(&env);
	free(conf);
	free(dir);
	return cfg;
}

static int collect(void *rock, const struct quota *q)
{
	struct buf *b = rock;
	buf_printf(b, "%s=%lld;", q->root, q->useds[QUOTA_STORAGE]);
	return 0;
}

static void db_roundtrip(const char *backend)
{
	char *extra = xasprintf("quota_db: %s\nvirtdomains: userid\n",
				backend);
	struct config *cfg = make_config(backend, extra);
	struct quotadb *qdb = NULL;
	struct error err = ERROR_INIT;
	struct cyrusdb_txn *tid = NULL;
	struct quota q;
	struct buf b = BUF_INIT;
	char *root = NULL;

	/* Reading a database that is not there creates nothing. */
	test_assert_int(quotadb_open(cfg, NULL, false, &qdb, &err), 0);
	quota_init(&q, "user.bob");
	test_assert(quotadb_read(qdb, &q, NULL, &err) < 0 &&
		    err.kind == ERR_NOINPUT);
	test_assert_int(quotadb_findroot(qdb, "user.bob.x", &root, &err), 0);
	quotadb_close(&qdb);

	test_assert_int(quotadb_open(cfg, NULL, true, &qdb, &err), 0);
	static const char *const roots[] = { "user.bob", "user.bob.Sub",
					     "shared", "example.com!user.z",
					     "example.com!" };
	for (size_t i = 0; i < ARRAY_SIZE(roots); i++) {
		struct quota w;
		quota_init(&w, roots[i]);
		w.useds[QUOTA_STORAGE] = (long long)i;
		w.limits[QUOTA_STORAGE] = 100;
		test_assert_idx(quotadb_write(qdb, &w, NULL, &err) == 0, i);
		quota_release(&w);
	}
	/* A locked read sees SCAN; the write goes through the txn. */
	test_assert_int(quotadb_read(qdb, &q, &tid, &err), 0);
	q.scanmbox = xstrdup("user.bob.A");
	q.scanuseds[QUOTA_MESSAGE] = 4;
	test_assert_int(quotadb_write(qdb, &q, &tid, &err), 0);
	test_assert_int(quotadb_commit(qdb, &tid, &err), 0);
	quota_release(&q);
	quota_init(&q, "user.bob");
	test_assert_int(quotadb_read(qdb, &q, &tid, &err), 0);
	test_assert_str(q.scanmbox, "user.bob.A");
	quotadb_abort(qdb, &tid);
	quota_release(&q);

	test_assert_int(quotadb_foreach(qdb, "user.", collect, &b, &err), 0);
	test_assert_str(b.s, "user.bob=0;user.bob.Sub=1;");
	buf_reset(&b);
	test_assert_int(quotadb_foreach(qdb, NULL, collect, &b, &err), 0);
	test_assert_str(b.s, "example.com!=4;example.com!user.z=3;shared=2;"
			     "user.bob=0;user.bob.Sub=1;");

	test_assert_int(quotadb_findroot(qdb, "user.bob.Sub.x", &root, &err),
			1);
	test_assert_str(root, "user.bob.Sub");
	free(root);
	test_assert_int(quotadb_findroot(qdb, "user.bob.Subx", &root, &err),
			1);
	test_assert_str(root, "user.bob");
	free(root);
	test_assert_int(quotadb_findroot(qdb, "example.com!user.q.x", &root,
					 &err), 1);
	test_assert_str(root, "example.com!");
	free(root);
	test_assert_int(quotadb_findroot(qdb, "user.carol", &root, &err), 0);

	test_assert_int(quotadb_delete(qdb, "user.bob.Sub", NULL, &err), 0);
	test_assert_int(quotadb_delete(qdb, "user.bob.Sub", NULL, &err), 0);
	buf_reset(&b);
	test_assert_int(quotadb_foreach(qdb, "user.", collect, &b, &err), 0);
	test_assert_str(b.s, "user.bob=0;");
	quotadb_close(&qdb);
	buf_release(&b);
	config_free(&cfg);
	free(extra);
}

static void test_db(void)
{
	test_begin("quota: the quota db with each backend");
	db_roundtrip("quotalegacy");
	db_roundtrip("twoskip");
	db_roundtrip("skiplist");
	db_roundtrip("flat");
	test_end();
}

static void test_changelock(void)
{
	struct config *cfg = make_config("lock", "hashimapspool: true\n");
	struct mboxname_ns ns;
	struct error err = ERROR_INIT;
	int fd = -1;

	test_begin("quota: $QUOTACHANGE lock where 3.6.1 takes it");
	mboxname_ns_init(&ns, cfg, true);
	test_assert_int(quota_changelock(cfg, &ns, &fd, &err), 0);
	char *p = xasprintf("%s/lock/lock/q/$QUOTACHANGE.lock", tmpdir);
	test_assert(access(p, F_OK) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		int fd2 = open(p, O_RDWR);
		_exit(lock_fd(fd2, LOCK_EXCLUSIVE, false) < 0 ? 0 : 1);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	test_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	quota_changelock_release(&fd);
	test_assert_int(fd, -1);
	free(p);
	config_free(&cfg);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = { test_values, test_scan,
					       test_bad,    test_roots,
					       test_db,     test_changelock,
					       NULL };
	tmpdir = test_tmpdir();
	int r = test_run(tests);
	char *cmd = xasprintf("rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		r = 1;
	free(cmd);
	free(tmpdir);
	return r;
}
