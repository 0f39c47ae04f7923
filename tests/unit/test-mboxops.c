/* Unit tests of lib/mboxops: ACL rights order, and create/rename/delete
 * on a scratch store (the records and files they leave; the comparison
 * with the real imapd is tests/t/2300-mailbox-write.sh). */
#include "harness.h"

#include <sys/stat.h>

#include "buf.h"
#include "config.h"
#include "cyrusdb.h"
#include "error.h"
#include "mailbox.h"
#include "mboxlist.h"
#include "mboxops.h"

static char *dir;
static struct config *cfg;

static void test_rights(void)
{
	char out[40];
	test_begin("mboxops: ACL rights in Cyrus's order, legacy macros");
	test_assert(mboxops_canon_rights("lrs", out) == 0);
	test_assert_str(out, "lrs");
	test_assert(mboxops_canon_rights("anlkxtecdswipr", out) == 0);
	test_assert_str(out, "lrswipkxtecdan");
	/* 'c' alone: create and delete-mailbox; 'd': delete and expunge */
	test_assert(mboxops_canon_rights("lrc", out) == 0);
	test_assert_str(out, "lrkxc");
	test_assert(mboxops_canon_rights("d", out) == 0);
	test_assert_str(out, "ted");
	test_assert(mboxops_canon_rights("l0", out) == 0);
	test_assert_str(out, "l0");
	test_assert(mboxops_canon_rights("lZ", out) < 0);
	test_end();
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static int nreports;
static void count_report(void *rock, const char *line)
{
	(void)rock;
	(void)line;
	nreports++;
}

static void test_store(void)
{
	struct mboxops ops = { 0 };
	struct mboxlist_entry *e = NULL, *i = NULL;
	struct error err = ERROR_INIT;
	struct mailbox_header h;
	char *id = NULL, *hp = NULL;
	struct stat before, after;

	test_begin("mboxops: create, rename, delete on a scratch store");
	mailbox_header_init(&h);
	test_assert(mboxlist_open(cfg, NULL, CYRUSDB_CREATE, &ops.ml, &err) ==
		    0);
	ops.cfg = cfg;
	ops.now = 1795607556;

	/* create: N and I records, files, the owner's ACL */
	test_assert(mboxops_create(&ops, "user.bob", NULL, &id, &err) == 0);
	test_assert(mboxops_create(&ops, "user.bob.Sent", NULL, NULL, &err) ==
		    0);
	test_assert(mboxlist_lookup(ops.ml, "user.bob", false, &e, NULL,
				    &err) == 0);
	test_assert_str(e->uniqueid, id);
	test_assert_str(e->acl, "bob\tlrswipkxtecdan\t");
	test_assert_int(e->uidvalidity, 1795607557);
	test_assert_int(e->foldermodseq, 1);
	test_assert(mailbox_paths(cfg, &ops.ml->ns, e, &hp, NULL, NULL, NULL,
				  NULL, &err) == 0);
	test_assert(mailbox_header_read(hp, &h, NULL, NULL, &err) == 0);
	test_assert_str(h.name, "user.bob");
	test_assert_str(h.uniqueid, id);
	mboxlist_entry_free(&e);
	free(hp);
	hp = NULL;

	/* refusals leave the database alone */
	test_assert(stat(cyrusdb_fname(ops.ml->db), &before) == 0);
	test_assert(mboxops_create(&ops, "user.bob", NULL, NULL, &err) < 0);
	test_assert_int(err.kind, ERR_CANTCREAT);
	test_assert(mboxops_create(&ops, "user.alice.x", NULL, NULL, &err) < 0);
	test_assert_int(err.kind, ERR_NOINPUT);
	struct mboxops_create p = { "nosuch", false, { -1, -1, -1, -1 } };
	test_assert(mboxops_create(&ops, "user.carol", &p, NULL, &err) < 0);
	test_assert_int(err.kind, ERR_CONFIG);
	test_assert(mboxops_delete(&ops, "user.nobody", &err) < 0);
	test_assert_int(err.kind, ERR_NOINPUT);
	test_assert(mboxops_rename(&ops, "user.bob.Sent", "user.bob", NULL,
				   &err) < 0);
	test_assert_int(err.kind, ERR_CANTCREAT);

	/* a dry run reports and changes nothing */
	ops.dryrun = true;
	ops.report = count_report;
	test_assert(mboxops_create(&ops, "shared.a.b", NULL, NULL, &err) == 0);
	test_assert_int(nreports, 3); /* shared, shared.a, shared.a.b */
	test_assert(mboxops_delete(&ops, "user.bob", &err) == 0);
	test_assert(mboxops_rename(&ops, "user.bob.Sent", "user.bob.Out",
				   NULL, &err) == 0);
	ops.dryrun = false;
	ops.report = NULL;
	test_assert(stat(cyrusdb_fname(ops.ml->db), &after) == 0);
	test_assert(before.st_size == after.st_size &&
		    before.st_mtime == after.st_mtime);
	test_assert(mboxlist_lookup(ops.ml, "shared", true, &e, NULL, NULL) <
		    0);

	/* rename: tombstone, new name, history, header */
	ops.now++;
	test_assert(mboxops_rename(&ops, "user.bob.Sent", "user.bob.Out", NULL,
				   &err) == 0);
	test_assert(mboxlist_lookup(ops.ml, "user.bob.Sent", true, &e, NULL,
				    NULL) == 0);
	test_assert_int(e->mbtype, MBTYPE_DELETED);
	test_assert(e->partition == NULL && (!e->acl || !*e->acl));
	test_assert(mboxlist_lookup_by_uniqueid(ops.ml, e->uniqueid, &i, NULL,
						NULL) == 0);
	test_assert_str(i->name, "user.bob.Out");
	test_assert_int(i->foldermodseq, 2);
	test_assert_int(i->nhistory, 1);
	test_assert_str(i->history[0].name, "user.bob.Sent");
	test_assert_int(i->history[0].mbtype, MBTYPE_DELETED);
	test_assert(i->history[0].partition == NULL);
	mboxlist_entry_free(&i);
	mboxlist_entry_free(&e);
	test_assert(mboxlist_lookup(ops.ml, "user.bob.Out", false, &e, NULL,
				    NULL) == 0);
	test_assert(mailbox_paths(cfg, &ops.ml->ns, e, &hp, NULL, NULL, NULL,
				  NULL, &err) == 0);
	test_assert(mailbox_header_read(hp, &h, NULL, NULL, &err) == 0);
	test_assert_str(h.name, "user.bob.Out");
	mboxlist_entry_free(&e);
	free(hp);
	hp = NULL;

	/* delete (delayed by default): DELETED.<name>.<HEX> */
	test_assert(mboxops_delete(&ops, "user.bob.Out", &err) == 0);
	test_assert(mboxlist_lookup(ops.ml, "DELETED.user.bob.Out.6B06CC05",
				    false, &e, NULL, NULL) == 0);
	mboxlist_entry_free(&e);
	/* a DELETED. name goes at once, files and N record */
	test_assert(mboxlist_lookup(ops.ml, "DELETED.user.bob.Out.6B06CC05",
				    false, &e, NULL, NULL) == 0);
	test_assert(mailbox_paths(cfg, &ops.ml->ns, e, &hp, NULL, NULL, NULL,
				  NULL, &err) == 0);
	mboxlist_entry_free(&e);
	test_assert(exists(hp));
	test_assert(mboxops_delete(&ops, "DELETED.user.bob.Out.6B06CC05",
				   &err) == 0);
	test_assert(!exists(hp));
	test_assert(mboxlist_lookup(ops.ml, "DELETED.user.bob.Out.6B06CC05",
				    true, &e, NULL, NULL) < 0);
	free(hp);

	mboxops_release(&ops);
	mboxlist_close(&ops.ml);
	mailbox_header_release(&h);
	free(id);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = { test_rights, test_store, NULL };
	dir = test_tmpdir();
	char *path = xasprintf("%s/imapd.conf", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "configdirectory: %s\npartition-default: %s/part\n", dir,
		dir);
	fclose(f);
	if (config_load(path, NULL, &cfg, NULL) < 0)
		return 1;
	struct cyrusdb_env env;
	config_cyrusdb_env(cfg, &env);
	env.nosync = true;
	cyrusdb_init(&env);
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
