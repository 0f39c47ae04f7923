#include "harness.h"

#include "config.h"
#include "cyrusdb.h"
#include "error.h"

static char *dir;

static char *write_conf(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

static int load(const char *text, const char *ident, struct config **cfg,
		struct error *err)
{
	char *path = write_conf("imapd.conf", text);
	int r = config_load(path, ident, cfg, err);
	free(path);
	return r;
}

static void test_basic(void)
{
	struct config *cfg = NULL;
	struct error err = ERROR_INIT;
	test_begin("config: keys, comments, whitespace, defaults");
	int r = load("# comment\n\n  configdirectory:   /var/lib/cyrus  \n"
		     "Partition-Default: /var/spool/cyrus/mail\n"
		     "partition-p2: /srv/p2\n"
		     "hashimapspool: yes\nunixhierarchysep: off\n"
		     "virtdomains: 1\ndelete_mode: immediate\n"
		     "quotawarn: 0x10\nx-unknown_key: kept value\n",
		     NULL, &cfg, &err);
	test_assert_int(r, 0);
	test_assert_str(config_getstring(cfg, "configdirectory"),
			"/var/lib/cyrus");
	test_assert_str(config_partitiondir(cfg, "default"),
			"/var/spool/cyrus/mail");
	test_assert_str(config_partitiondir(cfg, "p2"), "/srv/p2");
	test_assert(config_partitiondir(cfg, "nope") == NULL);
	test_assert_str(config_defpartition(cfg), "default");
	test_assert(config_getswitch(cfg, "hashimapspool"));
	test_assert(!config_getswitch(cfg, "unixhierarchysep"));
	test_assert(config_getswitch(cfg, "altnamespace"));
	test_assert_str(config_getenum(cfg, "virtdomains"), "on");
	test_assert_str(config_getenum(cfg, "delete_mode"), "immediate");
	test_assert_str(config_getenum(cfg, "expunge_mode"), "delayed");
	test_assert_int(config_getint(cfg, "quotawarn"), 16);
	test_assert_str(config_getraw(cfg, "x-unknown_key"), "kept value");
	test_assert_str(config_getstring(cfg, "lmtpsocket"),
			"/var/lib/cyrus/socket/lmtp");
	test_assert_str(config_getenum(cfg, "mboxlist_db"), "twoskip");
	test_assert_str(config_db_backend(cfg, "quota"), "quotalegacy");
	char *p = config_db_path(cfg, "mboxlist");
	test_assert_str(p, "/var/lib/cyrus/mailboxes.db");
	free(p);
	p = config_db_path(cfg, "ptscache");
	test_assert_str(p, "/var/lib/cyrus/ptclient/ptscache.db");
	free(p);
	config_free(&cfg);
	test_assert(cfg == NULL);
	test_end();
}

static void test_continuation_and_ident(void)
{
	struct config *cfg = NULL;
	struct error err = ERROR_INIT;
	test_begin("config: backslash continuation and service-specific keys");
	int r = load("configdirectory: /var/\\\nlib/cyrus\n"
		     "partition-default: /p\n"
		     "reconstruct_quotawarn: 50\nquotawarn: 70\n"
		     "ctl_cyrusdb_quotawarn: 20\n",
		     "reconstruct", &cfg, &err);
	test_assert_int(r, 0);
	test_assert_str(config_getstring(cfg, "configdirectory"),
			"/var/lib/cyrus");
	test_assert_int(config_getint(cfg, "quotawarn"), 50);
	config_free(&cfg);
	test_end();
}

static void test_include(void)
{
	struct config *cfg = NULL;
	struct error err = ERROR_INIT;
	test_begin("config: @include reads another file, twice is an error");
	char *inc = write_conf("inc.conf", "fulldirhash: true\n");
	char *text = xasprintf("configdirectory: /c\n@include: %s\n", inc);
	test_assert_int(load(text, NULL, &cfg, &err), 0);
	test_assert(config_getswitch(cfg, "fulldirhash"));
	config_free(&cfg);
	free(text);
	text = xasprintf("configdirectory: /c\n@include: %s\n@include: %s\n",
			 inc, inc);
	test_assert_int(load(text, NULL, &cfg, &err), -1);
	test_assert(strstr(err.msg, "included twice") != NULL);
	free(text);
	free(inc);
	test_end();
}

static void test_errors(void)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "configdirectory /x\n", "imapd.conf:1: invalid option name" },
		{ "configdirectory: /x\nhashimapspool: maybe\n",
		  "imapd.conf:2: non-switch value for hashimapspool" },
		{ "configdirectory: /x\nquotawarn: ten\n",
		  "imapd.conf:2: non-integer value for quotawarn" },
		{ "configdirectory: /x\nvirtdomains: sometimes\n",
		  "imapd.conf:2: invalid value 'sometimes' for virtdomains" },
		{ "configdirectory: /x\nmboxlist_db: berkeley\n",
		  "invalid value 'berkeley' for mboxlist_db" },
		{ "configdirectory: /x\nadmins:   \n",
		  "imapd.conf:2: empty value for 'admins'" },
		{ "configdirectory: /x\n\nconfigdirectory: /y\n",
		  "imapd.conf:3: option 'configdirectory' was specified twice" },
		{ "partition-default: /x\n", "configdirectory option not" },
		{ "configdirectory: /x\ndefaultpartition: a/b\n",
		  "non-alphanumeric" },
		{ "configdirectory: /x\n@exec: /bin/sh\n",
		  "invalid directive '@exec'" },
		{ "configdirectory: /x\ntls_session_timeout: 5y\n",
		  "invalid duration" },
	};
	test_begin("config: bad input names file:line and is EX_CONFIG");
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct config *cfg = NULL;
		struct error err = ERROR_INIT;
		int r = load(cases[i].text, NULL, &cfg, &err);
		test_assert_idx(r == -1 && cfg == NULL, i);
		test_assert_idx(err.kind == ERR_CONFIG, i);
		test_assert_idx(strstr(err.msg, cases[i].want) != NULL, i);
		if (!strstr(err.msg, cases[i].want))
			printf("# got: %s\n", err.msg);
	}
	struct config *cfg = NULL;
	struct error err = ERROR_INIT;
	char *missing = xasprintf("%s/does-not-exist.conf", dir);
	test_assert_int(config_load(missing, NULL, &cfg, &err), -1);
	test_assert(strstr(err.msg, "No such file") != NULL);
	test_assert_int(error_exitcode(err.kind), EX_CONFIG);
	free(missing);
	test_end();
}

static void test_duration_switch(void)
{
	long s = 0;
	test_begin("config: durations and switches as Cyrus parses them");
	test_assert_int(config_parse_duration("90", 's', &s), 0);
	test_assert_int(s, 90);
	test_assert_int(config_parse_duration("2", 'd', &s), 0);
	test_assert_int(s, 172800);
	test_assert_int(config_parse_duration("1d2h3m4s", 's', &s), 0);
	test_assert_int(s, 93784);
	test_assert_int(config_parse_duration("1h30", 'm', &s), 0);
	test_assert_int(s, 5400);
	test_assert_int(config_parse_duration("-5m", 's', &s), 0);
	test_assert_int(s, -300);
	test_assert_int(config_parse_duration("h", 's', &s), -1);
	test_assert_int(config_parse_duration("5x", 's', &s), -1);
	test_assert_int(config_parse_duration("", 's', &s), -1);
	test_assert_int(config_parse_switch("yes"), 1);
	test_assert_int(config_parse_switch("on"), 1);
	test_assert_int(config_parse_switch("true"), 1);
	test_assert_int(config_parse_switch("1"), 1);
	test_assert_int(config_parse_switch("off"), 0);
	test_assert_int(config_parse_switch("no"), 0);
	test_assert_int(config_parse_switch("false"), 0);
	test_assert_int(config_parse_switch("0"), 0);
	test_assert_int(config_parse_switch("maybe"), -1);
	test_end();
}

static void test_env(void)
{
	struct config *cfg = NULL;
	struct error err = ERROR_INIT;
	struct cyrusdb_env env;
	test_begin("config: cyrusdb settings follow imapd.conf");
	test_assert_int(load("configdirectory: /c\nvirtdomains: userid\n"
			     "skiplist_always_checkpoint: no\n",
			     NULL, &cfg, &err), 0);
	config_cyrusdb_env(cfg, &env);
	test_assert_str(env.configdir, "/c");
	test_assert(env.virtdomains);
	test_assert(!env.fulldirhash);
	test_assert(!env.skiplist_always_checkpoint);
	config_free(&cfg);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_basic, test_continuation_and_ident, test_include,
		test_errors, test_duration_switch, test_env, NULL,
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
