/*
 * cyrus ctl_mboxlist: dump mailboxes.db as JSON (-d), load such a dump
 * (-u), cross-check mailboxes.db against the partitions (-v).
 *
 * Differences from the real tool, on purpose:
 * - -u writes the whole dump in one transaction, entry by entry as it
 *   reads (memory does not grow with the dump): a bad entry (which the
 *   real tool skips with a message), a JSON error (which it reports with
 *   exit 0) or a mailbox named twice (where jansson keeps the last value)
 *   stops with EX_DATAERR and leaves mailboxes.db as it was. It is also
 *   much faster than one commit per mailbox.
 * - -v understands the 3.6 uuid layout and skips tombstones and
 *   intermediates, which the real tool reports as missing directories.
 * - -m (MUPDATE populate) is not supported: EX_UNAVAILABLE.
 * - usage errors exit 64, not 1.
 */
#include "compat.h"

#include <dirent.h>
#include <getopt.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "buf.h"
#include "commands.h"
#include "config.h"
#include "cyrus.h"
#include "cyrusdb.h"
#include "error.h"
#include "log.h"
#include "mboxlist.h"
#include "mboxname.h"
#include "mboxpath.h"
#include "xmalloc.h"

enum op { OP_NONE, OP_DUMP, OP_UNDUMP, OP_POPULATE, OP_VERIFY };

static int fail(const struct error *err)
{
	log_error("%s", err->msg);
	return error_exitcode(err->kind);
}

struct dump_rock {
	const char *partition;
	bool purge;
	const char *sep;
	struct buf line;
	char **purged;
	size_t npurged;
};

/* The dump goes out in big unlocked writes; stdout is checked at exit. */
#define DUMP_CHUNK ((size_t)1 << 20)

static void dump_flush(struct dump_rock *d)
{
	fwrite_unlocked(d->line.s, 1, d->line.len, stdout);
	buf_reset(&d->line);
}

static int dump_cb(void *rock, const struct mboxlist_entry *e)
{
	struct dump_rock *d = rock;
	if (d->partition &&
	    (!e->partition || strcmp(d->partition, e->partition)))
		return 0;
	size_t mark = d->line.len;
	buf_adds(&d->line, d->sep);
	size_t start = d->line.len;
	mboxlist_dump_json(e, &d->line);
	if (d->line.len == start)
		buf_setlen(&d->line, mark); /* jansson drops it: no comma */
	else
		d->sep = ",\n";
	if (d->line.len >= DUMP_CHUNK)
		dump_flush(d);
	if (d->purge) {
		d->purged = xrealloc(d->purged,
				     (d->npurged + 1) * sizeof(char *));
		d->purged[d->npurged++] = xstrdup(e->name);
	}
	return 0;
}

/* -x: every dumped name goes, in one transaction after the dump. */
static int purge(struct mboxlist *ml, struct dump_rock *d, struct error *err)
{
	struct cyrusdb_txn *tid = NULL;
	int r = 0;
	for (size_t i = 0; i < d->npurged && r == 0; i++)
		r = mboxlist_delete(ml, d->purged[i], &tid, err);
	if (tid) {
		if (r < 0)
			cyrusdb_abort(ml->db, tid);
		else if ((r = cyrusdb_commit(ml->db, tid)) < 0)
			error_set(err, ERR_IO, "cannot commit mailboxes.db: %s",
				  cyrusdb_strerror(r));
	}
	if (r == 0 && d->npurged)
		log_notice("purged %zu entries from mailboxes.db", d->npurged);
	return r;
}

static int do_dump(struct mboxlist *ml, const char *partition, bool purgeit,
		   bool intermediates)
{
	struct error err = ERROR_INIT;
	struct dump_rock d = { partition, purgeit, "", BUF_INIT, NULL, 0 };
	unsigned flags = MBOXLIST_TOMBSTONES;
	int r;
	if (intermediates)
		flags |= MBOXLIST_INTERMEDIATES;
	buf_adds(&d.line, "{\n");
	r = mboxlist_foreach(ml, flags, dump_cb, &d, NULL, &err);
	buf_adds(&d.line, "\n}\n");
	dump_flush(&d);
	if (r == 0 && purgeit)
		r = purge(ml, &d, &err);
	for (size_t i = 0; i < d.npurged; i++)
		free(d.purged[i]);
	free(d.purged);
	buf_release(&d.line);
	return r < 0 ? fail(&err) : 0;
}

struct undump_rock {
	struct mboxlist *ml;
	struct cyrusdb_txn *tid;
	time_t now;
	size_t count;
	struct error *err;
	/* The names written so far (-u of a JSON dump): a scratch twoskip
	 * beside mailboxes.db, never committed, so that a name given twice
	 * is found in linear time without memory growing with the dump. */
	struct cyrusdb *seen;
	struct cyrusdb_txn *seentid;
	char *seenpath;
};

static int seen_open(struct undump_rock *u)
{
	u->seenpath = xasprintf("%s.undump.%d", cyrusdb_fname(u->ml->db),
				(int)getpid());
	unlink(u->seenpath);
	atomicfile_cleanup_register(u->seenpath);
	if (cyrusdb_open("twoskip", u->seenpath, CYRUSDB_CREATE, &u->seen,
			 u->err) < 0)
		return -1;
	return 0;
}

static void seen_close(struct undump_rock *u)
{
	if (u->seentid)
		cyrusdb_abort(u->seen, u->seentid);
	cyrusdb_close(&u->seen);
	if (u->seenpath) {
		unlink(u->seenpath);
		atomicfile_cleanup_unregister(u->seenpath);
		free(u->seenpath);
	}
}

/* -1 with ERR_DATA if name was in the dump before. */
static int seen_add(struct undump_rock *u, const char *name)
{
	int r = cyrusdb_create(u->seen, name, strlen(name), "", 0,
			       &u->seentid);
	if (r == CYRUSDB_EXISTS)
		return error_set(u->err, ERR_DATA, "mailbox %s is in the dump "
				 "twice", name);
	if (r < 0)
		return error_set(u->err, ERR_IO, "cannot write '%s': %s",
				 u->seenpath, cyrusdb_errmsg(u->seen));
	return 0;
}

static void undump_warn(void *rock, const char *msg)
{
	(void)rock;
	log_warn("%s", msg);
}

static int undump_cb(void *rock, struct mboxlist_entry *e)
{
	struct undump_rock *u = rock;
	if (e->partition && !config_partitiondir(u->ml->cfg, e->partition))
		log_warn("partition '%s' of %s is not configured",
			 e->partition, e->name);
	if (mboxname_policycheck(&u->ml->ns, e->name, u->err) < 0)
		return -1;
	if (u->seen && seen_add(u, e->name) < 0)
		return -1;
	/* A tombstone must not take its uniqueid's I record away. */
	if (e->mbtype & MBTYPE_DELETED) {
		if (mboxlist_update_name(u->ml, e, u->now, &u->tid, u->err) < 0)
			return -1;
	} else if (mboxlist_update(u->ml, e, u->now, &u->tid, u->err) < 0) {
		return -1;
	}
	u->count++;
	return 0;
}

/* "NAME\tMBTYPE PART ACL>UNIQUEID MTIME UIDV FMODSEQ CMODSEQ [SU]" */
static int undump_legacy_line(struct undump_rock *u, const char *line,
			      int lineno)
{
	struct mboxlist_entry *e = mboxlist_entry_new();
	long long mtime = 0;
	unsigned long long fms = 0, cms = 0;
	unsigned uidv = 0;
	int mbtype = 0, r = -1;
	char *acl = NULL;

	sscanf(line, "%m[^\t]\t%d %ms %m[^>]>%ms %lld %u %llu %llu %m[^\n]\n",
	       &e->name, &mbtype, &e->partition, &acl, &e->uniqueid, &mtime,
	       &uidv, &fms, &cms, &e->legacy_specialuse);
	if (!acl) {
		/* No ACL: "PART >UNIQUEID ..." */
		mboxlist_entry_free(&e);
		e = mboxlist_entry_new();
		sscanf(line, "%m[^\t]\t%d %ms >%ms %lld %u %llu %llu %m[^\n]\n",
		       &e->name, &mbtype, &e->partition, &e->uniqueid, &mtime,
		       &uidv, &fms, &cms, &e->legacy_specialuse);
	}
	e->acl = acl;
	e->mbtype = (uint32_t)mbtype;
	e->uidvalidity = uidv;
	e->foldermodseq = fms;
	e->createdmodseq = cms;
	if (!e->name || !e->partition) {
		error_set(u->err, ERR_DATA, "line %d: no partition found",
			  lineno);
		goto out;
	}
	char *bang = strchr(e->partition, '!');
	if (bang) {
		e->server = e->partition;
		e->partition = xstrdup(bang + 1);
		*bang = '\0';
	}
	if (strlen(e->name) >= MBOXNAME_MAX) {
		error_set(u->err, ERR_DATA, "line %d: mailbox name too long",
			  lineno);
		goto out;
	}
	if (strlen(e->partition) >= MBOXLIST_MAX_PARTITION) {
		error_set(u->err, ERR_DATA, "line %d: partition name too long",
			  lineno);
		goto out;
	}
	r = undump_cb(u, e);
	if (r < 0) {
		char msg[sizeof(u->err->msg)];
		snprintf(msg, sizeof(msg), "%s", u->err->msg);
		error_set(u->err, u->err->kind, "line %d: %s", lineno, msg);
	}
out:
	mboxlist_entry_free(&e);
	return r;
}

static int undump_legacy(struct undump_rock *u, FILE *in)
{
	char *line = NULL;
	size_t alloc = 0;
	ssize_t n;
	int lineno = 0, r = 0;
	while (r == 0 && (n = getline(&line, &alloc, in)) > 0) {
		lineno++;
		r = memchr(line, '\0', (size_t)n)
			    ? error_set(u->err, ERR_DATA, "line %d: NUL byte",
					lineno)
			    : undump_legacy_line(u, line, lineno);
	}
	if (r == 0 && ferror(in))
		r = error_sys(u->err, ERR_IO, errno, "cannot read the dump");
	free(line);
	return r < 0 ? -1 : 0;
}

static int do_undump(struct mboxlist *ml, bool legacy)
{
	struct error err = ERROR_INIT;
	struct undump_rock u = { ml, NULL, time(NULL), 0, &err, NULL, NULL,
				 NULL };
	int r;

	if (config_getswitch(ml->cfg, "reverseacls")) {
		log_error("cannot undump with reverseacls: yes (the reverse "
			  "ACL index is not maintained)");
		return EX_UNAVAILABLE;
	}
	/*
	 * Each entry goes into the open transaction as it is read; a bad
	 * entry or a syntax error later on aborts it: nothing is written.
	 */
	if (legacy)
		r = undump_legacy(&u, stdin);
	else if ((r = seen_open(&u)) == 0)
		r = mboxlist_undump_json_file(stdin, undump_warn, undump_cb,
					      &u, &err);
	seen_close(&u);
	if (r < 0) {
		if (u.tid)
			cyrusdb_abort(ml->db, u.tid);
		log_error("nothing written: %s", err.msg);
		return error_exitcode(err.kind);
	}
	if (u.tid && (r = cyrusdb_commit(ml->db, u.tid)) < 0) {
		error_set(&err, ERR_IO, "cannot commit mailboxes.db: %s",
			  cyrusdb_strerror(r));
		return fail(&err);
	}
	log_notice("undumped %zu mailboxes into mailboxes.db", u.count);
	log_info("%zu mailboxes written", u.count);
	return 0;
}

/* ---- verify ---- */

struct strset {
	char **s;
	size_t n;
};

static void strset_add(struct strset *set, const char *s)
{
	set->s = xrealloc(set->s, (set->n + 1) * sizeof(char *));
	set->s[set->n++] = xstrdup(s);
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool strset_has(const struct strset *set, const char *s)
{
	return bsearch(&s, set->s, set->n, sizeof(char *), cmpstr) != NULL;
}

static void strset_free(struct strset *set)
{
	for (size_t i = 0; i < set->n; i++)
		free(set->s[i]);
	free(set->s);
}

struct verify_rock {
	struct mboxlist *ml;
	struct strset expected; /* header directories of DB entries */
};

static bool is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int verify_cb(void *rock, const struct mboxlist_entry *e)
{
	struct verify_rock *v = rock;
	struct buf path = BUF_INIT;
	struct error err = ERROR_INIT;
	/* Tombstones, intermediates and remote entries have no files. */
	if (e->mbtype & (MBTYPE_DELETED | MBTYPE_INTERMEDIATE |
			 MBTYPE_REMOTE | MBTYPE_RESERVE))
		return 0;
	const char *id = e->mbtype & MBTYPE_LEGACY_DIRS ? NULL : e->uniqueid;
	if (!id && !(e->mbtype & MBTYPE_LEGACY_DIRS)) {
		printf("'%s' has a DB entry but no uniqueid (needs "
		       "reconstruct)\n",
		       e->name);
		return 0;
	}
	if (mboxpath_meta(v->ml->cfg, &v->ml->ns, e->partition, e->name, id,
			  MBOXPATH_DIR, false, &path, &err) < 0 ||
	    (buf_adds(&path, "/cyrus.header"), !is_file(path.s))) {
		printf("'%s' has a DB entry but no directory on partition "
		       "'%s'\n",
		       e->name, e->partition ? e->partition : "(null)");
	} else {
		buf_setlen(&path, path.len - strlen("/cyrus.header"));
		strset_add(&v->expected, path.s);
	}
	buf_release(&path);
	return 0;
}

/* Every directory under dir holding a cyrus.header, depth first. */
static void find_headers(const char *dir, int depth, struct strset *found)
{
	DIR *d;
	struct dirent *de;
	struct buf path = BUF_INIT;
	if (depth > 64 || !(d = opendir(dir)))
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		buf_reset(&path);
		buf_printf(&path, "%s/%s", dir, de->d_name);
		if (!strcmp(de->d_name, "cyrus.header")) {
			strset_add(found, dir);
			continue;
		}
		struct stat st;
		if (lstat(path.s, &st) == 0 && S_ISDIR(st.st_mode))
			find_headers(path.s, depth + 1, found);
	}
	closedir(d);
	buf_release(&path);
}

struct roots {
	const struct config *cfg;
	struct strset dirs;
};

static int add_root(void *rock, const char *name, const char *dir)
{
	struct roots *r = rock;
	const char *meta = config_metapartitiondir(r->cfg, name);
	const char *files = config_getraw(r->cfg, "metapartition_files");
	/* cyrus.header lives in the metapartition if it is listed there. */
	if (meta && files && strstr(files, "header"))
		dir = meta;
	strset_add(&r->dirs, dir);
	return 0;
}

static int do_verify(struct mboxlist *ml)
{
	struct error err = ERROR_INIT;
	struct verify_rock v = { ml, { NULL, 0 } };
	struct roots roots = { ml->cfg, { NULL, 0 } };
	struct strset found = { NULL, 0 };
	int r = mboxlist_foreach(ml, MBOXLIST_TOMBSTONES, verify_cb, &v, NULL,
				 &err);
	if (r < 0)
		return fail(&err);
	qsort(v.expected.s, v.expected.n, sizeof(char *), cmpstr);
	config_foreach_partition(ml->cfg, add_root, &roots);
	for (size_t i = 0; i < roots.dirs.n; i++)
		find_headers(roots.dirs.s[i], 0, &found);
	qsort(found.s, found.n, sizeof(char *), cmpstr);
	for (size_t i = 0; i < found.n; i++) {
		if (i && !strcmp(found.s[i], found.s[i - 1]))
			continue;
		if (strset_has(&v.expected, found.s[i]))
			continue;
		/* A uuid directory is named by its uniqueid. */
		const char *slash = strrchr(found.s[i], '/');
		const char *name = slash ? slash + 1 : found.s[i];
		printf("'%s' has a directory '%s' but no DB entry\n", name,
		       found.s[i]);
	}
	strset_free(&v.expected);
	strset_free(&roots.dirs);
	strset_free(&found);
	return 0;
}

int cmd_ctl_mboxlist(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ NULL, 0, NULL, 0 },
	};
	const char *alt_config = NULL, *fname = NULL, *partition = NULL;
	bool purge_opt = false, authoritative = false, warn_only = false;
	bool intermediates = false, legacy = false;
	enum op op = OP_NONE;
	int c;

	while ((c = getopt_long(argc, argv, "C:Lawmdurcxf:p:viy", longopts,
				NULL)) != -1) {
		enum op want = OP_NONE;
		switch (c) {
		case 'C': alt_config = optarg; break;
		case 'L': legacy = true; break;
		case 'f':
			if (fname)
				cyrus_usage(ctx, false);
			fname = optarg;
			break;
		case 'd': want = OP_DUMP; break;
		case 'u': want = OP_UNDUMP; break;
		case 'm': want = OP_POPULATE; break;
		case 'v': want = OP_VERIFY; break;
		case 'p': partition = optarg; break;
		case 'x': purge_opt = true; break;
		case 'a': authoritative = true; break;
		case 'w': warn_only = true; break;
		case 'i': break; /* -m interactive */
		case 'y': intermediates = true; break;
		default: cyrus_usage(ctx, false);
		}
		if (want != OP_NONE) {
			if (op != OP_NONE)
				cyrus_usage(ctx, false);
			op = want;
		}
	}
	argc -= optind;
	if (argc != 0 || op == OP_NONE)
		cyrus_usage(ctx, false);
	if (op != OP_POPULATE && (authoritative || warn_only))
		cyrus_usage(ctx, false);
	if (op != OP_DUMP && (partition || purge_opt || intermediates))
		cyrus_usage(ctx, false);
	if (op != OP_UNDUMP && legacy)
		cyrus_usage(ctx, false);

	if (op == OP_POPULATE) {
		log_error("-m (populate the MUPDATE server) is not supported: "
			  "this toolkit has no Cyrus Murder support");
		return EX_UNAVAILABLE;
	}

	cyrus_setup(ctx, alt_config);

	struct error err = ERROR_INIT;
	struct mboxlist *ml = NULL;
	int flags = op == OP_UNDUMP ? CYRUSDB_CREATE : 0;
	if (mboxlist_open(ctx->cfg, fname, flags, &ml, &err) < 0)
		return fail(&err);
	int r;
	switch (op) {
	case OP_DUMP:
		r = do_dump(ml, partition, purge_opt, intermediates);
		break;
	case OP_UNDUMP:
		r = do_undump(ml, legacy);
		break;
	default:
		r = do_verify(ml);
		break;
	}
	mboxlist_close(&ml);
	return r;
}
