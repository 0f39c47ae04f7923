/*
 * cyrus mailbox: mailboxes, by their external names as the admin sees
 * them. `list` reads mailboxes.db and prints what the real imapd's
 * LIST "" PATTERN gives the admin, in the same order: the users'
 * hierarchy first, then the shared mailboxes, each in mailboxes.db key
 * order, then the DELETED hierarchy; a pattern ending in '%' also lists the matching levels of
 * hierarchy that are no mailbox (IMAP's \Noselect).
 *
 * create, delete and rename change the store itself (lib/mboxops.c does
 * the work, as imapd would). They refuse to run while a Cyrus server uses
 * this configuration (lib/procscan.h): imapd caches nothing about
 * mailboxes.db, but a mailbox open in an imapd must not be renamed or
 * removed under it. They also take Cyrus's locks (user namespace, then
 * mailbox name locks, then mailboxes.db), so that two of our tools, or a
 * server started meanwhile, wait for each other. -n checks everything and
 * prints what would be done, changing nothing.
 */
#include "compat.h"

#include <getopt.h>
#include <sysexits.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "cyrusdb.h"
#include "commands.h"
#include "cyrus.h"
#include "error.h"
#include "log.h"
#include "mboxlist.h"
#include "mboxname.h"
#include "mboxops.h"
#include "procscan.h"
#include "xmalloc.h"
#include "json.h"

struct listed {
	char *extname;
	struct mboxlist_entry *e; /* NULL: a level of hierarchy only */
	int group;                /* LIST's order: users, shared, DELETED */
};

struct list_rock {
	struct mboxlist *ml;
	bool all;
	struct listed *items;
	size_t n;
};

/*
 * IMAP LIST matching (RFC 3501 6.3.8): '*' matches anything, '%' anything
 * but the hierarchy separator; everything else matches itself.
 */
static bool pattern_match(const char *pat, const char *name, char sep)
{
	for (; *pat; pat++, name++) {
		if (*pat == '*' || *pat == '%') {
			bool any = *pat == '*';
			const char *n = name;
			for (;;) {
				if (pattern_match(pat + 1, n, sep))
					return true;
				if (!*n || (!any && *n == sep))
					return false;
				n++;
			}
		}
		if (*pat != *name)
			return false;
	}
	return !*name;
}

static bool matches_any(char **pats, int npats, const char *name, char sep)
{
	for (int i = 0; i < npats; i++)
		if (pattern_match(pats[i], name, sep))
			return true;
	return false;
}

static int collect_cb(void *rock, const struct mboxlist_entry *e)
{
	struct list_rock *lr = rock;
	struct mboxname mbn;
	struct buf ext = BUF_INIT;

	if (!lr->all && (e->mbtype & (MBTYPE_DELETED | MBTYPE_INTERMEDIATE |
				      MBTYPE_RESERVE)))
		return 0;
	mboxname_from_intname(&lr->ml->ns, &mbn, e->name);
	if (mboxname_extname(&lr->ml->ns, &mbn, "cyrus", &ext)) {
		struct listed *l;
		lr->items = xrealloc(lr->items,
				     (lr->n + 1) * sizeof(*lr->items));
		l = &lr->items[lr->n++];
		l->extname = buf_detach(&ext, NULL);
		l->group = mbn.isdeleted ? 2 : mbn.localpart ? 0 : 1;
		l->e = mboxlist_entry_new();
		l->e->name = xstrdup(e->name);
		l->e->mbtype = e->mbtype;
		l->e->partition = e->partition ? xstrdup(e->partition) : NULL;
		l->e->uniqueid = e->uniqueid ? xstrdup(e->uniqueid) : NULL;
		l->e->acl = e->acl ? xstrdup(e->acl) : NULL;
		l->e->server = e->server ? xstrdup(e->server) : NULL;
	}
	buf_release(&ext);
	mboxname_release(&mbn);
	return 0;
}

/* The users' hierarchy first, then the shared one, then the DELETED one
 * (imapd lists those last); stable within each. */
static void sort_like_list(struct list_rock *lr)
{
	struct listed *sorted = xcalloc(lr->n ? lr->n : 1, sizeof(*sorted));
	size_t j = 0;

	for (int group = 0; group < 3; group++)
		for (size_t i = 0; i < lr->n; i++)
			if (lr->items[i].group == group)
				sorted[j++] = lr->items[i];
	free(lr->items);
	lr->items = sorted;
}

static void json_str_or_null(struct buf *out, const char *s)
{
	if (s)
		json_append_string(out, s);
	else
		buf_adds(out, "null");
}

static void json_flags(struct buf *out, uint32_t mbtype)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} flags[] = {
		{ MBTYPE_DELETED, "deleted" },
		{ MBTYPE_MOVING, "moving" },
		{ MBTYPE_REMOTE, "remote" },
		{ MBTYPE_RESERVE, "reserved" },
		{ MBTYPE_INTERMEDIATE, "intermediate" },
		{ MBTYPE_LEGACY_DIRS, "legacy_dirs" },
	};
	bool first = true;

	buf_addch(out, '[');
	for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
		if (!(mbtype & flags[i].bit))
			continue;
		if (!first)
			buf_adds(out, ", ");
		first = false;
		json_append_string(out, flags[i].name);
	}
	buf_addch(out, ']');
}

/* "id TAB rights TAB ..." as {"id": "rights", ...}. */
static void json_acl(struct buf *out, const char *acl)
{
	char *copy = xstrdup(acl ? acl : "");
	char *p = copy;
	bool first = true;

	buf_addch(out, '{');
	while (*p) {
		char *id = p, *rights = strchr(p, '\t'), *next;
		if (!rights)
			break;
		*rights++ = '\0';
		next = strchr(rights, '\t');
		if (next)
			*next++ = '\0';
		if (!first)
			buf_adds(out, ", ");
		first = false;
		json_append_string(out, id);
		buf_adds(out, ": ");
		json_append_string(out, rights);
		if (!next)
			break;
		p = next;
	}
	buf_addch(out, '}');
	free(copy);
}

static void print_item(const struct listed *l, bool json, bool *first)
{
	struct buf out = BUF_INIT;

	if (!json) {
		printf("%s\n", l->extname);
		return;
	}
	buf_adds(&out, *first ? "\n{" : ",\n{");
	*first = false;
	buf_adds(&out, "\"name\": ");
	json_append_string(&out, l->extname);
	if (l->e) {
		struct buf t = BUF_INIT;
		mboxlist_mbtype_to_string(l->e->mbtype, &t);
		buf_adds(&out, ", \"intname\": ");
		json_append_string(&out, l->e->name);
		buf_adds(&out, ", \"partition\": ");
		json_str_or_null(&out, l->e->partition);
		buf_adds(&out, ", \"uniqueid\": ");
		json_str_or_null(&out, l->e->uniqueid);
		buf_adds(&out, ", \"mbtype\": ");
		json_append_string(&out, t.s);
		buf_adds(&out, ", \"flags\": ");
		json_flags(&out, l->e->mbtype);
		if (l->e->server) {
			buf_adds(&out, ", \"server\": ");
			json_append_string(&out, l->e->server);
		}
		buf_adds(&out, ", \"acl\": ");
		json_acl(&out, l->e->acl);
		buf_release(&t);
	} else {
		buf_adds(&out, ", \"intname\": null, \"flags\": "
			       "[\"noselect\"]");
	}
	buf_addch(&out, '}');
	fputs(out.s, stdout);
	buf_release(&out);
}

/* Is name one of the listed mailboxes? */
static bool is_mailbox(const struct list_rock *lr, const char *name)
{
	for (size_t i = 0; i < lr->n; i++)
		if (!strcmp(lr->items[i].extname, name))
			return true;
	return false;
}

static bool ends_in_percent(char **pats, int npats)
{
	for (int i = 0; i < npats; i++) {
		size_t len = strlen(pats[i]);
		if (len && pats[i][len - 1] == '%')
			return true;
	}
	return false;
}

static void print_matches(const struct list_rock *lr, char **pats,
			  int npats, bool json)
{
	char sep = lr->ml->ns.hier_sep;
	bool levels = ends_in_percent(pats, npats), first = true;
	char **shown = NULL;
	size_t nshown = 0;

	if (json)
		fputs("[", stdout);
	for (size_t i = 0; i < lr->n; i++) {
		const struct listed *l = &lr->items[i];
		/* The levels above it that match and are no mailbox. */
		for (const char *s = levels ? strchr(l->extname, sep) : NULL;
		     s; s = strchr(s + 1, sep)) {
			char *level = xstrndup(l->extname,
					       (size_t)(s - l->extname));
			bool seen = false;
			for (size_t k = 0; k < nshown && !seen; k++)
				seen = !strcmp(shown[k], level);
			if (!seen && matches_any(pats, npats, level, sep) &&
			    !is_mailbox(lr, level)) {
				struct listed lv = { level, NULL, l->group };
				print_item(&lv, json, &first);
				shown = xrealloc(shown, (nshown + 1) *
							       sizeof(*shown));
				shown[nshown++] = level;
			} else {
				free(level);
			}
		}
		if (matches_any(pats, npats, l->extname, sep))
			print_item(l, json, &first);
	}
	if (json)
		fputs(first ? "]\n" : "\n]\n", stdout);
	for (size_t k = 0; k < nshown; k++)
		free(shown[k]);
	free(shown);
}

static int mailbox_list(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "all", no_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	static char *star[] = { (char *)"*" };
	struct list_rock lr = { 0 };
	struct error err = ERROR_INIT;
	const char *alt_config = NULL;
	bool json = false;
	int c, r = 0;

	optind = 0;
	while ((c = getopt_long(argc, argv, "C:aj", longopts, NULL)) != -1) {
		switch (c) {
		case 'C': alt_config = optarg; break;
		case 'a': lr.all = true; break;
		case 'j': json = true; break;
		default: cyrus_usage(ctx, false);
		}
	}
	argc -= optind;
	argv += optind;

	cyrus_setup(ctx, alt_config);
	if (mboxlist_open(ctx->cfg, NULL, 0, &lr.ml, &err) < 0) {
		log_error("%s", err.msg);
		return error_exitcode(err.kind);
	}
	unsigned flags = lr.all ? MBOXLIST_TOMBSTONES | MBOXLIST_INTERMEDIATES
				: 0;
	if (mboxlist_foreach(lr.ml, flags, collect_cb, &lr, NULL, &err) < 0) {
		log_error("cannot read mailboxes.db: %s", err.msg);
		r = error_exitcode(err.kind);
		goto out;
	}
	sort_like_list(&lr);
	if (argc)
		print_matches(&lr, argv, argc, json);
	else
		print_matches(&lr, star, 1, json);
out:
	for (size_t i = 0; i < lr.n; i++) {
		free(lr.items[i].extname);
		mboxlist_entry_free(&lr.items[i].e);
	}
	free(lr.items);
	mboxlist_close(&lr.ml);
	return r;
}

/* ---- create, delete, rename ---- */

static const char writer_usage[] =
	"usage: cyrus mailbox create [-C altconfig] [-n] [-v] [-p partition] "
	"[--quota LIMITS] NAME...\n"
	"       cyrus mailbox delete [-C altconfig] [-n] [-v] NAME...\n"
	"       cyrus mailbox rename [-C altconfig] [-n] [-v] [-p partition] "
	"OLD NEW\n"
	"\n"
	"NAMEs are external names as the admin sees them (as `list` prints "
	"them).\n"
	"  -n           dry run: check everything, print what would be done, "
	"change nothing\n"
	"  -v           print each step done\n"
	"  -p PART      create: the partition (default: the parent's, else "
	"defaultpartition);\n"
	"               rename: move the mailboxes' files to PART (OLD may "
	"equal NEW)\n"
	"  --quota L    create: make NAME a quota root; L is a STORAGE limit "
	"in KiB, or\n"
	"               RESOURCE=N[,RESOURCE=N...] with STORAGE, MESSAGE,\n"
	"               X-ANNOTATION-STORAGE, X-NUM-FOLDERS\n"
	"delete follows delete_mode: delayed moves to DELETED.NAME.HEXTIME, "
	"immediate\n"
	"removes the files; a user's INBOX takes all the user's mailboxes "
	"and data.\n"
	"Refuses to run while a Cyrus server uses this imapd.conf (stop it "
	"first).\n";

static void writer_usage_exit(bool ok) __attribute__((noreturn));
static void writer_usage_exit(bool ok)
{
	fputs(writer_usage, ok ? stdout : stderr);
	if (ok) {
		fflush(stdout);
		exit(ferror(stdout) ? EX_IOERR : EX_OK);
	}
	exit(EX_USAGE);
}

struct report_rock {
	bool dryrun, verbose;
};

static void report_step(void *rock, const char *line)
{
	struct report_rock *rr = rock;
	if (rr->dryrun)
		printf("would %s\n", line);
	else {
		if (rr->verbose)
			printf("%s\n", line);
		log_notice("%s", line);
	}
}

/* "1024" (STORAGE KiB) or "STORAGE=1024,MESSAGE=100". */
static int parse_quota(const char *arg, long long limits[MBOXOPS_QUOTA_NUM])
{
	static const char *const names[MBOXOPS_QUOTA_NUM] = {
		"STORAGE", "MESSAGE", "X-ANNOTATION-STORAGE", "X-NUM-FOLDERS"
	};
	char *copy = xstrdup(arg), *save = NULL, *p = copy;
	int r = 0;
	for (char *tok; r == 0 && (tok = strtok_r(p, ",", &save)); p = NULL) {
		char *eq = strchr(tok, '='), *end;
		int res = MBOXOPS_QUOTA_STORAGE;
		if (eq) {
			*eq = '\0';
			for (res = 0; res < MBOXOPS_QUOTA_NUM; res++)
				if (!strcasecmp(tok, names[res]))
					break;
			if (res == MBOXOPS_QUOTA_NUM) {
				r = -1;
				break;
			}
			tok = eq + 1;
		}
		errno = 0;
		long long v = strtoll(tok, &end, 10);
		if (!*tok || *end || errno || v < 0)
			r = -1;
		else
			limits[res] = v;
	}
	free(copy);
	return r;
}

/*
 * An argument (external name, admin namespace) as an internal name. The
 * name must come back unchanged from the internal form (less one trailing
 * separator, which imapd's CREATE ignores too): "user..x" is not quietly
 * "user.x".
 */
static char *to_intname(const struct mboxname_ns *ns, const char *ext,
			struct error *err)
{
	struct mboxname mbn;
	struct buf out = BUF_INIT, back = BUF_INIT;
	char *arg = xstrdup(ext), *r = NULL;
	size_t len = strlen(arg);

	if (len > 1 && arg[len - 1] == ns->hier_sep)
		arg[len - 1] = '\0';
	mboxname_init(&mbn);
	if (!*arg) {
		error_set(err, ERR_DATA, "empty mailbox name");
	} else if (mboxname_from_extname(ns, &mbn, arg, "cyrus", err) == 0) {
		if (!mboxname_extname(ns, &mbn, "cyrus", &back) ||
		    strcmp(back.s, arg)) {
			error_set(err, ERR_DATA,
				  "invalid mailbox name (an empty level, or "
				  "not a name the admin can use)");
		} else {
			mboxname_intname(ns, &mbn, &out);
			r = buf_detach(&out, NULL);
		}
	} else if (!err || err->kind == ERR_NONE) {
		error_set(err, ERR_DATA, "invalid mailbox name");
	}
	mboxname_release(&mbn);
	buf_release(&out);
	buf_release(&back);
	free(arg);
	return r;
}

/* Is a Cyrus server using this configuration? Then say who and refuse. */
static int refuse_if_server_runs(struct cyrus_ctx *ctx)
{
	struct procscan_hit hit;
	char *db = config_db_path(ctx->cfg, "mboxlist");
	const char *files[] = { db };
	int found = procscan_find_server(config_filename(ctx->cfg), files, 1,
					 &hit);
	free(db);
	if (!found)
		return 0;
	log_error("refusing to change the store while Cyrus runs: %s[%ld] %s; "
		  "stop the server first (or use cyradm against it)",
		  hit.comm, (long)hit.pid, hit.why);
	return EX_TEMPFAIL;
}

static int mailbox_write(const char *what, int argc, char **argv,
			 struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ "quota", required_argument, NULL, 'Q' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct mboxops_create copts = { NULL, false, { -1, -1, -1, -1 } };
	struct report_rock rr = { false, false };
	struct mboxops ops = { 0 };
	struct error err = ERROR_INIT;
	const char *alt_config = NULL, *partition = NULL;
	bool create = !strcmp(what, "create"), rename = !strcmp(what, "rename");
	enum error_kind worst = ERR_NONE;
	int c, r = 0;

	optind = 0;
	while ((c = getopt_long(argc, argv, "C:np:v", longopts, NULL)) != -1) {
		switch (c) {
		case 'C': alt_config = optarg; break;
		case 'n': rr.dryrun = true; break;
		case 'v': rr.verbose = true; break;
		case 'p':
			if (!create && !rename)
				writer_usage_exit(false);
			partition = optarg;
			break;
		case 'Q':
			if (!create || parse_quota(optarg, copts.limits) < 0) {
				log_error("bad --quota '%s' (only for create: "
					  "KiB, or RESOURCE=N,...)",
					  optarg);
				writer_usage_exit(false);
			}
			copts.quota = true;
			break;
		case 'h': writer_usage_exit(true);
		default: writer_usage_exit(false);
		}
	}
	argc -= optind;
	argv += optind;
	if (rename ? argc != 2 : argc < 1)
		writer_usage_exit(false);
	copts.partition = partition;

	cyrus_setup(ctx, alt_config);
	if (!rr.dryrun && (r = refuse_if_server_runs(ctx)) != 0)
		return r;
	/* a fresh store has no mailboxes.db yet: create makes it, as the
	 * server would */
	if (mboxlist_open(ctx->cfg, NULL, create && !rr.dryrun ? CYRUSDB_CREATE
							       : 0,
			  &ops.ml, &err) < 0) {
		log_error("%s", err.msg);
		return error_exitcode(err.kind);
	}
	ops.cfg = ctx->cfg;
	ops.dryrun = rr.dryrun;
	ops.report = report_step;
	ops.rock = &rr;

	if (rename) {
		char *from = to_intname(&ops.ml->ns, argv[0], &err);
		char *to = from ? to_intname(&ops.ml->ns, argv[1], &err) : NULL;
		if (!from || !to ||
		    mboxops_rename(&ops, from, to, partition, &err) < 0) {
			log_error("cannot rename '%s' to '%s': %s", argv[0],
				  argv[1], err.msg);
			r = error_exitcode(err.kind);
		}
		free(from);
		free(to);
		goto out;
	}
	for (int i = 0; i < argc; i++) {
		int rc = -1;
		error_clear(&err);
		char *name = to_intname(&ops.ml->ns, argv[i], &err);
		if (name && create)
			rc = mboxops_create(&ops, name, &copts, NULL, &err);
		else if (name)
			rc = mboxops_delete(&ops, name, &err);
		if (rc < 0) {
			log_error("cannot %s '%s': %s", what, argv[i], err.msg);
			worst = error_worst(worst,
					    err.kind ? err.kind : ERR_SOFTWARE);
			r = error_exitcode(worst);
		}
		free(name);
	}
out:
	mboxops_release(&ops);
	mboxlist_close(&ops.ml);
	return r;
}

int cmd_mailbox(int argc, char **argv, struct cyrus_ctx *ctx)
{
	if (argc < 2)
		cyrus_usage(ctx, false);
	if (!strcmp(argv[1], "list"))
		return mailbox_list(argc - 1, argv + 1, ctx);
	if (!strcmp(argv[1], "create") || !strcmp(argv[1], "delete") ||
	    !strcmp(argv[1], "rename"))
		return mailbox_write(argv[1], argc - 1, argv + 1, ctx);
	log_error("unknown subcommand '%s'", argv[1]);
	cyrus_usage(ctx, false);
}
