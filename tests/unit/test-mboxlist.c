/* Unit tests of lib/mboxlist: record decode/encode byte for byte, the
 * dump JSON, the undump reader's refusals, and a real database. */
#include "harness.h"

#include "buf.h"
#include "config.h"
#include "cyrusdb.h"
#include "error.h"
#include "mboxlist.h"

static char *dir;
static struct config *cfg;
static struct mboxname_ns ns;

static const char nrec[] =
	"%(T e I v28ylkblohjpeapaqfkgo2nb P default V 1795607557 C 1 F 2 "
	"M 1795607556 A %(bob lrswipkxtecdan cyrus lrswipkxtecda))";
static const char irec[] =
	"%(T e N DELETED\x1fuser\x1f" "bob\x1fSub\x1f" "6B06CCA0 P default "
	"V 1795607557 C 1 F 3 M 1795607712 A %(bob lrswipkxtecdan) "
	"H (%(N user\x1f" "bob\x1fSub M 1795607712 V 1795607557 C 1 F 3 "
	"T ed)))";

static void test_records(void)
{
	struct mboxlist_entry *e = NULL;
	struct buf b = BUF_INIT;
	test_begin("mboxlist: N and I records decode and encode byte-exact");
	test_assert(mboxlist_decode(&ns, "user\x1f" "bob", 8, nrec,
				    strlen(nrec), &e, NULL) == 0);
	test_assert_str(e->name, "user.bob");
	test_assert_str(e->uniqueid, "v28ylkblohjpeapaqfkgo2nb");
	test_assert_str(e->acl, "bob\tlrswipkxtecdan\tcyrus\tlrswipkxtecda\t");
	test_assert_int(e->uidvalidity, 1795607557);
	test_assert_int(e->foldermodseq, 2);
	mboxlist_encode(&ns, e, false, 1795607556, &b);
	test_assert_str(b.s, nrec);
	mboxlist_dump_json(e, &b);
	mboxlist_entry_free(&e);

	buf_reset(&b);
	test_assert(mboxlist_decode(&ns, NULL, 0, irec, strlen(irec), &e,
				    NULL) == 0);
	test_assert_str(e->name, "DELETED.user.bob.Sub.6B06CCA0");
	test_assert_int(e->nhistory, 1);
	test_assert_str(e->history[0].name, "user.bob.Sub");
	test_assert_int(e->history[0].mbtype, MBTYPE_DELETED);
	mboxlist_encode(&ns, e, true, 1795607712, &b);
	test_assert_str(b.s, irec);
	buf_reset(&b);
	mboxlist_dump_json(e, &b);
	test_assert_str(b.s,
		"\"DELETED.user.bob.Sub.6B06CCA0\": {\"name\": "
		"\"DELETED.user.bob.Sub.6B06CCA0\", \"mtime\": \"1795607712\", "
		"\"uidvalidity\": \"1795607557\", \"createdmodseq\": \"1\", "
		"\"foldermodseq\": \"3\", \"mbtype\": \"e\", \"partition\": "
		"\"default\", \"acl\": {\"bob\": \"lrswipkxtecdan\"}, "
		"\"name_history\": [{\"name\": \"user.bob.Sub\", \"mtime\": "
		"\"1795607712\", \"uidvalidity\": \"1795607557\", "
		"\"createdmodseq\": \"1\", \"foldermodseq\": \"3\", \"mbtype\": "
		"\"ed\"}]}");
	mboxlist_entry_free(&e);

	/* The two older value forms. */
	static const char old[] = "(uniqueid abc specialuse \\Sent) 0 "
				  "srv!default bob\tlrs\t";
	test_assert(mboxlist_decode(&ns, "user.bob", 8, old, strlen(old), &e,
				    NULL) == 0);
	test_assert_str(e->uniqueid, "abc");
	test_assert_str(e->legacy_specialuse, "\\Sent");
	test_assert_str(e->server, "srv");
	test_assert_str(e->partition, "default");
	test_assert_str(e->acl, "bob\tlrs\t");
	mboxlist_entry_free(&e);

	/* Flags in their order, and back. */
	uint32_t t;
	buf_reset(&b);
	mboxlist_mbtype_to_string(MBTYPE_CALENDAR | MBTYPE_LEGACY_DIRS |
					  MBTYPE_DELETED | MBTYPE_REMOTE, &b);
	test_assert_str(b.s, "cdrl");
	test_assert(mboxlist_mbtype_from_string("cdrl", &t, NULL) == 0);
	test_assert_int(t, MBTYPE_CALENDAR | MBTYPE_LEGACY_DIRS |
				   MBTYPE_DELETED | MBTYPE_REMOTE);
	test_assert(mboxlist_mbtype_from_string("l", &t, NULL) == 0 &&
		    t == MBTYPE_LEGACY_DIRS);
	buf_release(&b);
	test_end();
}

static void test_bad_records(void)
{
	static const char *const bad[] = {
		"",			   /* empty */
		"%(T e I abc P def",	   /* truncated */
		"%(T eX)",		   /* unknown type letter */
		"%(T e) trailing",	   /* garbage after */
		"%(T e A %(bob))",	   /* ACL kvlist without value */
		"%{T e}",		   /* garbage */
	};
	test_begin("mboxlist: bad records are refused");
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct mboxlist_entry *e = NULL;
		struct error err = ERROR_INIT;
		test_assert_idx(mboxlist_decode(&ns, "x", 1, bad[i],
						strlen(bad[i]), &e, &err) < 0,
				i);
		test_assert_idx(e == NULL && err.kind == ERR_DATA, i);
	}
	test_end();
}

static int count_cb(void *rock, struct mboxlist_entry *e)
{
	(void)e;
	(*(int *)rock)++;
	return 0;
}

static void test_undump_bad(void)
{
	static const char *const bad[] = {
		"",
		"[",
		"{\"user.a\": {\"partition\": \"default\"",	  /* truncated */
		"{\"user.a\": {\"uniqueid\": \"x\"}}",		  /* no partition */
		"{\"user.a\": {\"partition\": \"default\"}}",	  /* no uniqueid */
		"{\"user.a\": {\"partition\": "
		"\"0123456789012345678901234567890123456789012345678901234567"
		"890123\", \"uniqueid\": \"x\"}}",		  /* long partition */
		"{\"user.a\": {\"partition\": \"p\", \"uniqueid\": \"x\", "
		"\"mbtype\": \"Q\"}}",				  /* bad mbtype */
		"{\"user.a\": {\"partition\": \"p\", \"uniqueid\": \"x\"}} x",
		"{\"a\xff\": {}}",				  /* bad UTF-8 */
		"{\"a\\u0000\": {}}",				  /* NUL */
		"{\"a\": tru}",
		"{\"a\" 1}",
		"\"just a string\"",
	};
	test_begin("mboxlist: undump refuses bad dumps before any entry");
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct error err = ERROR_INIT;
		int n = 0;
		test_assert_idx(mboxlist_undump_json(bad[i], strlen(bad[i]),
						     NULL, count_cb, &n,
						     &err) < 0,
				i);
		test_assert_idx(err.kind == ERR_DATA && err.msg[0], i);
	}
	/* Oversized name. */
	struct buf big = BUF_INIT;
	buf_adds(&big, "{\"");
	for (int i = 0; i < 600; i++)
		buf_addch(&big, 'a');
	buf_adds(&big, "\": {\"partition\": \"p\", \"uniqueid\": \"x\"}}");
	struct error err = ERROR_INIT;
	int n = 0;
	test_assert(mboxlist_undump_json(big.s, big.len, NULL, count_cb, &n,
					 &err) < 0);
	test_assert(strstr(err.msg, "too long") != NULL);
	buf_release(&big);
	/* A good one, with a tombstone without partition. */
	static const char good[] =
		"{\n\"user.a\": {\"partition\": \"p\", \"uniqueid\": \"x\", "
		"\"acl\": {\"a\": \"lrs\"}},\n\"user.b\": {\"mbtype\": \"ed\", "
		"\"uniqueid\": \"y\", \"acl\": {}}\n}\n";
	n = 0;
	test_assert(mboxlist_undump_json(good, strlen(good), NULL, count_cb, &n,
					 NULL) == 0);
	test_assert_int(n, 2);
	test_end();
}

static int collect_cb(void *rock, const struct mboxlist_entry *e)
{
	buf_printf(rock, "%s,", e->name);
	return 0;
}

static void test_db(void)
{
	struct mboxlist *ml = NULL;
	struct error err = ERROR_INIT;
	struct mboxlist_entry *e = mboxlist_entry_new(), *got = NULL;
	struct buf b = BUF_INIT;
	char *fname = xasprintf("%s/mailboxes.db", dir);
	test_begin("mboxlist: update, rename history, lookup, foreach, v1");
	test_assert(mboxlist_open(cfg, fname, CYRUSDB_CREATE, &ml, &err) == 0);
	e->name = xstrdup("user.bob");
	e->partition = xstrdup("default");
	e->uniqueid = xstrdup("id1");
	e->acl = xstrdup("bob\tlrs\t");
	e->uidvalidity = 5;
	test_assert(mboxlist_update(ml, e, 100, NULL, &err) == 0);
	/* The same uniqueid under a new name: history grows. */
	free(e->name);
	e->name = xstrdup("user.bob2");
	test_assert(mboxlist_update(ml, e, 200, NULL, &err) == 0);
	test_assert(mboxlist_lookup_by_uniqueid(ml, "id1", &got, NULL,
						&err) == 0);
	test_assert_str(got->name, "user.bob2");
	test_assert_int(got->nhistory, 1);
	test_assert_str(got->history[0].name, "user.bob");
	test_assert_int(got->history[0].mtime, 100);
	mboxlist_entry_free(&got);
	test_assert(mboxlist_lookup(ml, "user.bob", false, &got, NULL,
				    &err) == 0);
	mboxlist_entry_free(&got);
	test_assert(mboxlist_lookup(ml, "user.nobody", false, &got, NULL,
				    &err) < 0);
	test_assert(err.kind == ERR_NOINPUT);
	test_assert(mboxlist_delete(ml, "user.bob", NULL, &err) == 0);
	test_assert(mboxlist_foreach(ml, MBOXLIST_TOMBSTONES, collect_cb, &b,
				     NULL, &err) == 0);
	test_assert_str(b.s, "user.bob2,");
	mboxlist_close(&ml);
	mboxlist_entry_free(&e);

	/* A version 1 database is refused. */
	char *v1 = xasprintf("%s/v1.db", dir);
	struct cyrusdb *db = NULL;
	test_assert(cyrusdb_open("twoskip", v1, CYRUSDB_CREATE, &db, NULL) ==
		    0);
	cyrusdb_store(db, "$RACL$user", 10, "", 0, NULL);
	cyrusdb_store(db, "user.bob", 8, "%(T e)", 6, NULL);
	cyrusdb_close(&db);
	error_clear(&err);
	test_assert(mboxlist_open(cfg, v1, 0, &ml, &err) < 0);
	test_assert(err.kind == ERR_DATA && strstr(err.msg, "version 1"));
	/* A missing file is ERR_NOINPUT. */
	char *none = xasprintf("%s/none.db", dir);
	test_assert(mboxlist_open(cfg, none, 0, &ml, &err) < 0);
	test_assert(err.kind == ERR_NOINPUT);
	free(none);
	free(v1);
	free(fname);
	buf_release(&b);
	test_end();
}

struct dump_rock {
	struct mboxlist *ml;
	int n, diff;
};

/* foreach (fast decoder) and lookup (mboxlist_decode) agree. */
static int compare_cb(void *rock, const struct mboxlist_entry *e)
{
	struct dump_rock *d = rock;
	struct mboxlist_entry *slow = NULL;
	struct buf a = BUF_INIT, b = BUF_INIT;
	d->n++;
	if (mboxlist_lookup(d->ml, e->name, true, &slow, NULL, NULL) == 0) {
		mboxlist_dump_json(e, &a);
		mboxlist_dump_json(slow, &b);
		if (a.len != b.len || memcmp(a.s, b.s, a.len)) {
			d->diff++;
			printf("# %s\n# %s\n", a.s, b.s);
		}
	}
	mboxlist_entry_free(&slow);
	buf_release(&a);
	buf_release(&b);
	return 0;
}

static void test_fast_decode(void)
{
	static const char *const recs[][2] = {
		{ "Nuser\x1f" "a", "%(T e I u1 P default V 7 C 1 F 2 M 3 "
				   "A %(a lrs b \"x y\" a NIL))" },
		{ "Nuser\x1f" "b.c", "%(T ed I \"q\\\"\" P NIL M -5 H "
				     "(%(N user\x1f" "z M 9 T e P p) %()))" },
		{ "Nuser\x1f" "c", "%(T e A %(\"\" r))" },
		{ "Nuser\x1f" "d", "%(T e I {2+}\r\nab P x)" },   /* literal */
		{ "Nuser\x1f" "e", "%(T e A a I x)" },            /* A scalar */
		{ "Nuser\x1f" "f", "%(T e A %(a r) A %(b s))" },  /* two A */
		{ "Nuser\x1f\x1f" "g", "%(T e)" },                /* empty level */
		{ "NDELETED\x1fuser\x1fh\x1f" "5F", "%(T ed)" },
		{ "Ndom\x1duser\x1fi", "%(T e S srv)" },
		{ "Nuser\x1fj", "%(T e \xff\xfe" "x))" },         /* bad key */
		{ "Nuser\x1fk", "%()" },
		{ "Nuser\x1fl", "%(T e I x) junk" },              /* skipped */
		{ "Nuser\x1fm", "0 default bob\tlrs\t" },         /* text form */
		{ "Nuser\x1fn", "%(T e P \xff I \"\x01\" A %(\xc3\xa9 lr z \xff))" },
	};
	struct mboxlist *ml = NULL;
	struct error err = ERROR_INIT;
	char *fname = xasprintf("%s/fast.db", dir);
	test_begin("mboxlist: foreach's fast decoder agrees with the general one");
	test_assert(mboxlist_open(cfg, fname, CYRUSDB_CREATE, &ml, &err) == 0);
	for (size_t i = 0; i < ARRAY_SIZE(recs); i++)
		cyrusdb_store(ml->db, recs[i][0], strlen(recs[i][0]),
			      recs[i][1], strlen(recs[i][1]), NULL);
	struct dump_rock d = { ml, 0, 0 };
	test_assert(mboxlist_foreach(ml, MBOXLIST_TOMBSTONES |
					     MBOXLIST_INTERMEDIATES,
				     compare_cb, &d, NULL, &err) == 0);
	/* Both skip the bad UTF-8 key and the trailing junk. */
	test_assert_int(d.n, (int)ARRAY_SIZE(recs) - 2);
	test_assert_int(d.diff, 0);
	mboxlist_close(&ml);
	free(fname);
	test_end();
}

static void test_undump_file(void)
{
	struct buf dump = BUF_INIT;
	struct error err = ERROR_INIT;
	int n = 0;
	test_begin("mboxlist: undump read on from a file, in windows");
	/* 3 MB: members cut by the read window many times. */
	buf_adds(&dump, "{\n");
	for (int i = 0; i < 20000; i++)
		buf_printf(&dump, "%s\"user.u%06d\": {\"partition\": \"p\", "
			   "\"uniqueid\": \"id%d\", \"acl\": {\"u\": \"lr\"}, "
			   "\"name_history\": [], \"pad\": \"%0100d\"}",
			   i ? ",\n" : "", i, i, 0);
	buf_adds(&dump, "\n}\n");
	FILE *f = tmpfile();
	fwrite(dump.s, 1, dump.len, f);
	rewind(f);
	test_assert(mboxlist_undump_json_file(f, NULL, count_cb, &n, &err) ==
		    0);
	test_assert_int(n, 20000);
	/* Cut short: an error at the end, after the whole members. */
	test_assert(ftruncate(fileno(f), (off_t)(dump.len - 20)) == 0);
	rewind(f);
	n = 0;
	test_assert(mboxlist_undump_json_file(f, NULL, count_cb, &n, &err) <
		    0);
	test_assert(err.kind == ERR_DATA && strstr(err.msg, "line 20001"));
	test_assert_int(n, 19999);
	fclose(f);
	buf_release(&dump);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = { test_records, test_bad_records,
					       test_undump_bad, test_db,
					       test_fast_decode, test_undump_file,
					       NULL };
	dir = test_tmpdir();
	char *path = xasprintf("%s/imapd.conf", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "configdirectory: %s\npartition-default: %s\n", dir, dir);
	fclose(f);
	if (config_load(path, NULL, &cfg, NULL) < 0)
		return 1;
	struct cyrusdb_env env;
	config_cyrusdb_env(cfg, &env);
	env.nosync = true;
	cyrusdb_init(&env);
	mboxname_ns_init(&ns, cfg, true);
	int r = test_run(tests);
	config_free(&cfg);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd)) {
	}
	free(cmd);
	free(path);
	free(dir);
	return r;
}
