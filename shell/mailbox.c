/*
 * cyrus mailbox: mailboxes, by their external names as the admin sees
 * them. `list` reads mailboxes.db and prints what the real imapd's
 * LIST "" PATTERN gives the admin, in the same order: the users'
 * hierarchy first, then the shared mailboxes, each in mailboxes.db key
 * order, then the DELETED hierarchy; a pattern ending in '%' also lists the matching levels of
 * hierarchy that are no mailbox (IMAP's \Noselect). create, delete and
 * rename are not implemented yet.
 */
#include "compat.h"

#include <getopt.h>
#include <unistd.h>

#include "buf.h"
#include "commands.h"
#include "cyrus.h"
#include "error.h"
#include "log.h"
#include "mboxlist.h"
#include "mboxname.h"
#include "xmalloc.h"

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

static void json_str(struct buf *out, const char *s)
{
	buf_addch(out, '"');
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			buf_printf(out, "\\%c", c);
		else if (c < 0x20)
			buf_printf(out, "\\u%04x", c);
		else
			buf_addch(out, (char)c);
	}
	buf_addch(out, '"');
}

static void json_str_or_null(struct buf *out, const char *s)
{
	if (s)
		json_str(out, s);
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
		json_str(out, flags[i].name);
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
		json_str(out, id);
		buf_adds(out, ": ");
		json_str(out, rights);
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
	json_str(&out, l->extname);
	if (l->e) {
		struct buf t = BUF_INIT;
		mboxlist_mbtype_to_string(l->e->mbtype, &t);
		buf_adds(&out, ", \"intname\": ");
		json_str(&out, l->e->name);
		buf_adds(&out, ", \"partition\": ");
		json_str_or_null(&out, l->e->partition);
		buf_adds(&out, ", \"uniqueid\": ");
		json_str_or_null(&out, l->e->uniqueid);
		buf_adds(&out, ", \"mbtype\": ");
		json_str(&out, t.s);
		buf_adds(&out, ", \"flags\": ");
		json_flags(&out, l->e->mbtype);
		if (l->e->server) {
			buf_adds(&out, ", \"server\": ");
			json_str(&out, l->e->server);
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

int cmd_mailbox(int argc, char **argv, struct cyrus_ctx *ctx)
{
	if (argc < 2)
		cyrus_usage(ctx, false);
	if (!strcmp(argv[1], "list"))
		return mailbox_list(argc - 1, argv + 1, ctx);
	if (!strcmp(argv[1], "create") || !strcmp(argv[1], "delete") ||
	    !strcmp(argv[1], "rename")) {
		log_error("mailbox %s: not implemented yet", argv[1]);
		return EX_UNAVAILABLE;
	}
	log_error("unknown subcommand '%s'", argv[1]);
	cyrus_usage(ctx, false);
}
