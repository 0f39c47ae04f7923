/* Unit tests of lib/mboxname and lib/mboxpath: the three name forms,
 * the policy check, modified UTF-7, hash letters and directories. */
#include "harness.h"

#include "buf.h"
#include "config.h"
#include "error.h"
#include "mboxname.h"
#include "mboxpath.h"

static char *dir;

static struct config *load(const char *extra)
{
	char *path = xasprintf("%s/imapd.conf", dir);
	FILE *f = fopen(path, "w");
	struct config *cfg = NULL;
	fprintf(f, "configdirectory: /conf\npartition-default: /part\n%s",
		extra);
	fclose(f);
	if (config_load(path, NULL, &cfg, NULL) < 0)
		exit(1);
	free(path);
	return cfg;
}

static void test_forms(void)
{
	struct config *cfg = load("unixhierarchysep: no\naltnamespace: no\n"
				  "virtdomains: userid\n");
	struct mboxname_ns ns;
	char *s;
	test_begin("mboxname: internal <-> dbname <-> external");
	mboxname_ns_init(&ns, cfg, true);
	s = mboxname_intname_to_dbname(&ns, "example.com!user.zed.Sub");
	test_assert_str(s, "example.com\x1duser\x1fzed\x1fSub");
	free(s);
	s = mboxname_dbname_to_intname(&ns, "user\x1fjohn.doe\x1f" "a.b", 17);
	test_assert_str(s, "user.john^doe.a^b");
	free(s);
	s = mboxname_intname_to_dbname(&ns, "DELETED.user.bob.Sent.6560A1B2");
	test_assert_str(s, "DELETED\x1fuser\x1f" "bob\x1fSent\x1f" "6560A1B2");
	free(s);
	/* Empty components vanish, as with Cyrus's strtok. */
	s = mboxname_dbname_to_intname(&ns, "user\x1f\x1f" "bob", 9);
	test_assert_str(s, "user.bob");
	free(s);

	struct mboxname mbn;
	struct buf b = BUF_INIT;
	mboxname_from_intname(&ns, &mbn, "example.com!user.zed.Sub");
	test_assert(mboxname_extname(&ns, &mbn, "cyrus", &b));
	test_assert_str(b.s, "user.zed.Sub@example.com");
	mboxname_release(&mbn);
	buf_reset(&b);
	test_assert(mboxname_from_extname(&ns, &mbn, "user.zed@example.com",
					  "cyrus", NULL) == 0);
	mboxname_intname(&ns, &mbn, &b);
	test_assert_str(b.s, "example.com!user.zed");
	mboxname_release(&mbn);
	buf_reset(&b);
	/* The default domain is no domain. */
	mboxname_from_intname(&ns, &mbn, "internal!user.a");
	mboxname_intname(&ns, &mbn, &b);
	test_assert_str(b.s, "user.a");
	mboxname_release(&mbn);
	buf_reset(&b);
	config_free(&cfg);

	/* A user's view, alternate namespace with '/'. */
	cfg = load("unixhierarchysep: yes\naltnamespace: yes\n");
	mboxname_ns_init(&ns, cfg, false);
	mboxname_from_intname(&ns, &mbn, "user.bob.a^b");
	test_assert(mboxname_extname(&ns, &mbn, "bob", &b));
	test_assert_str(b.s, "a.b");
	buf_reset(&b);
	test_assert(mboxname_extname(&ns, &mbn, "fred", &b));
	test_assert_str(b.s, "Other Users/bob/a.b");
	mboxname_release(&mbn);
	buf_reset(&b);
	test_assert(mboxname_from_extname(&ns, &mbn, "Shared Folders/x/y",
					  "bob", NULL) == 0);
	mboxname_intname(&ns, &mbn, &b);
	test_assert_str(b.s, "x.y");
	mboxname_release(&mbn);
	buf_reset(&b);
	test_assert(mboxname_from_extname(&ns, &mbn, "INBOX", "bob", NULL) ==
		    0);
	mboxname_intname(&ns, &mbn, &b);
	test_assert_str(b.s, "user.bob");
	mboxname_release(&mbn);
	/* '^' cannot be typed with the '/' separator. */
	test_assert(mboxname_from_extname(&ns, &mbn, "a^b", "bob", NULL) < 0);
	buf_release(&b);
	config_free(&cfg);
	test_end();
}

static void test_policy(void)
{
	struct config *cfg = load("");
	struct mboxname_ns ns;
	static const char *const good[] = {
		"user.bob", "user.bob.Sent Items", "user.bob.&AMk-t&AOk-",
		"shared", "user.bob.a&-b", "DELETED.user.bob.%%.6560A1B2",
		"user.bob.$x",
	};
	static const char *const bad[] = {
		"", "$RACL", ".x", "~x", "x.", "a..b", "a\tb", "user",
		"user.anyone", "user.anonymous", "user.%x", "a%b", "a\"b",
		"a/b", "a;b", "a\\b", "x!y", "a\x80", "a&AGE-",  /* ASCII */
		"a&AM-",          /* trailing bits */
		"a&AMk-&AOk-",    /* adjacent runs */
		"a&AMk",          /* unterminated */
		"a&*-",           /* not base64 */
	};
	test_begin("mboxname: policy check and modified UTF-7");
	mboxname_ns_init(&ns, cfg, true);
	for (size_t i = 0; i < ARRAY_SIZE(good); i++)
		test_assert_idx(mboxname_policycheck(&ns, good[i], NULL) == 0,
				i);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct error err = ERROR_INIT;
		test_assert_idx(mboxname_policycheck(&ns, bad[i], &err) < 0, i);
		test_assert_idx(err.kind == ERR_DATA, i);
	}
	char big[600];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	test_assert(mboxname_policycheck(&ns, big, NULL) < 0);
	test_assert(mboxname_utf7_valid("Entw&APw-rfe", 12));
	test_assert(!mboxname_utf7_valid("Entw&APw", 8));
	test_assert(!mboxname_utf7_valid("\xc3\xa9", 2));
	config_free(&cfg);
	test_end();
}

static void test_paths(void)
{
	struct config *cfg = load("hashimapspool: yes\nvirtdomains: on\n"
				  "partition-p2: /p2\nmetapartition-p2: /meta2\n"
				  "metapartition_files: header index\n"
				  "archivepartition-default: /arch\n");
	struct mboxname_ns ns;
	struct buf b = BUF_INIT;
	test_begin("mboxpath: hash letters, legacy and uuid directories");
	mboxname_ns_init(&ns, cfg, true);
	test_assert(mboxpath_hashchar("bob", false) == 'b');
	test_assert(mboxpath_hashchar("Bob", false) == 'b');
	test_assert(mboxpath_hashchar("1abc", false) == 'q');
	test_assert(mboxpath_hashchar("", false) == 'q');
	test_assert(mboxpath_hashchar("user.bob", true) ==
		    mboxpath_hashchar("user", true));
	char c = mboxpath_hashchar("bob", true);
	test_assert(c >= 'A' && c <= 'W');
	mboxpath_hash(cfg, &ns, "/P", "user.alice.Sent", &b);
	test_assert_str(b.s, "/P/a/user/alice/Sent");
	buf_reset(&b);
	mboxpath_hash(cfg, &ns, "/P", "example.com!user.zed.Sub", &b);
	test_assert_str(b.s, "/P/domain/e/example.com/z/user/zed/Sub");
	buf_reset(&b);
	mboxpath_hash(cfg, &ns, "/P", "DELETED.user.carol.6B06CDD2", &b);
	test_assert_str(b.s, "/P/u/DELETED/user/carol/6B06CDD2");
	buf_reset(&b);
	mboxpath_hash(cfg, &ns, "/P", "user.john^doe", &b);
	test_assert_str(b.s, "/P/j/user/john^doe");
	buf_reset(&b);
	test_assert(mboxpath_data(cfg, &ns, "default", "user.bob", "v28ylk",
				  7, &b, NULL) == 0);
	test_assert_str(b.s, "/part/uuid/v/2/v28ylk/7.");
	buf_reset(&b);
	test_assert(mboxpath_archive(cfg, &ns, "default", "user.bob", NULL,
				     0, &b, NULL) == 0);
	test_assert_str(b.s, "/arch/b/user/bob");
	buf_reset(&b);
	test_assert(mboxpath_meta(cfg, &ns, "p2", "user.bob", "ab1",
				  MBOXPATH_HEADER, false, &b, NULL) == 0);
	test_assert_str(b.s, "/meta2/uuid/a/b/ab1/cyrus.header");
	buf_reset(&b);
	test_assert(mboxpath_meta(cfg, &ns, "p2", "user.bob", "ab1",
				  MBOXPATH_CACHE, true, &b, NULL) == 0);
	test_assert_str(b.s, "/p2/uuid/a/b/ab1/cyrus.cache.NEW");
	buf_reset(&b);
	struct error err = ERROR_INIT;
	test_assert(mboxpath_data(cfg, &ns, "nosuch", "user.bob", NULL, 0,
				  &b, &err) < 0);
	test_assert(err.kind == ERR_CONFIG);
	mboxpath_lock(cfg, &ns, "user.bob", "xyz", &b);
	test_assert_str(b.s, "/conf/lock/x/xyz.lock");
	buf_release(&b);
	config_free(&cfg);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = { test_forms, test_policy,
					       test_paths, NULL };
	dir = test_tmpdir();
	int r = test_run(tests);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd)) {
	}
	free(cmd);
	free(dir);
	return r;
}
