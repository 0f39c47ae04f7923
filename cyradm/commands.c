/*
 * commands.c: the cyradm commands, one table (git's shape), with the
 * Perl cyradm's names, aliases, options, usage texts and output.
 *
 * Where the Perl one picks server responses apart with regular
 * expressions, the same expressions run here through perlre.c, so that
 * odd names and values come out the same.
 */
#include "compat.h"

#include <math.h>
#include <unistd.h>

#include "cyradm.h"
#include "perlre.h"
#include "xmalloc.h"

/* ---- small helpers ---------------------------------------------------- */

struct strlist {
	char **v;
	size_t n, alloc;
};

static void sl_push(struct strlist *l, const char *s)
{
	if (l->n + 2 > l->alloc) {
		l->alloc = l->alloc * 2 + 8;
		l->v = xrealloc(l->v, sizeof(char *) * l->alloc);
	}
	l->v[l->n++] = s ? xstrdup(s) : NULL;
	l->v[l->n] = NULL;
}

static void sl_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Tcl-style option match: a prefix of "-name" (even "-"), or "--name". */
static bool opt_is(const char *opt, const char *name)
{
	size_t n = strlen(opt);
	if (n && n <= strlen(name) + 1 && opt[0] == '-' &&
	    !strncmp(name, opt + 1, n - 1))
		return true;
	return opt[0] == '-' && opt[1] == '-' && !strcmp(opt + 2, name);
}

/* A compiled pattern per call site, kept for the life of the program. */
static const struct perlre *re(struct perlre **slot, const char *pattern)
{
	if (!*slot)
		*slot = perlre_compile(pattern);
	return *slot;
}

static bool has_wildcard(const char *s)
{
	return strchr(s, '*') || strchr(s, '%');
}

static bool noselect_flags(const char *flags)
{
	return strcasestr(flags, "\\noselect") ||
	       strcasestr(flags, "\\nonexistent") ||
	       strcasestr(flags, "\\placeholder");
}

static void set_error(struct cyradm_conn *c, const char *msg)
{
	free(c->error);
	c->error = msg ? xstrdup(msg) : NULL;
}

/*
 * Sends a command on the current connection. Returns IMAP_OK/NO/BAD with
 * the tagged text in c->error-to-be (text), or -1 when the connection was
 * lost (reported as the Perl one does, and the shell is unconnected).
 */
static int send_cmd(struct cyradm *cy, imapclient_untagged_fn *cb, void *rock,
		    struct buf *text, const char *fmt, ...)
{
	struct error err = ERROR_INIT;
	va_list ap;
	va_start(ap, fmt);
	int r = cyradm_vrun(cy, cb, rock, text, &err, fmt, ap);
	va_end(ap);
	if (r < 0) {
		fflush(cy->out);
		fprintf(stderr, "\nConnection to server lost.\n");
		fflush(stderr);
		buf_sets(text, err.msg);
		cyradm_disconnect(&cy->conn);
	}
	return r;
}

static int no_conn(struct cyradm *cy, const char *name)
{
	return cyradm_die(cy, "%s: no connection to server", name);
}

/*
 * The usual argument loop of Shell.pm: options first, "--" ends them, a
 * word starting with "-" is a usage error, the first other word ends the
 * options. Returns the arguments left, or -1 (usage printed).
 */
static int plain_args(struct cyradm *cy, int argc, char **argv,
		      struct strlist *out, const char *usage)
{
	int i = 1;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (argv[i][0] == '-')
			return cyradm_die(cy, "%s", usage);
		break;
	}
	for (; i < argc; i++)
		sl_push(out, argv[i]);
	return 0;
}

/* Perl's "%.15g" printing of a number. */
static void print_num(FILE *f, double d)
{
	char b[64];
	if (d == floor(d) && fabs(d) < 1e15)
		snprintf(b, sizeof(b), "%.0f", d);
	else
		snprintf(b, sizeof(b), "%.15g", d);
	if (!strcmp(b, "-0"))
		snprintf(b, sizeof(b), "0");
	fputs(b, f);
}

/* Perl's numeric value of a string (leading number, else 0). */
static double perl_num(const char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	return strtod(s, NULL);
}

/* Perl's truth of a string: not "" and not "0". */
static bool perl_true(const char *s)
{
	return s && *s && strcmp(s, "0");
}

/* Removes the first n bytes of b (s/^...// on a Perl string). */
static void drop_front(struct buf *b, size_t n)
{
	if (n > b->len)
		n = b->len;
	memmove(b->s, b->s + n, b->len - n);
	buf_setlen(b, b->len - n);
}

/* ---- LIST / LSUB as Admin.pm parses them ------------------------------- */

struct mbox {
	char *name, *attrs, *sep, *ext;   /* ext NULL: none */
};

struct mboxes {
	struct mbox *v;
	size_t n, alloc;
};

static void mboxes_free(struct mboxes *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->v[i].name);
		free(m->v[i].attrs);
		free(m->v[i].sep);
		free(m->v[i].ext);
	}
	free(m->v);
	memset(m, 0, sizeof(*m));
}

struct list_rock {
	struct mboxes *res;
	bool lsub;
	const char *keyword;
};

static void list_cb(const struct imap_reply *r, void *rock)
{
	static struct perlre *p_attrs, *p_sep, *p_lit, *p_quoted, *p_atom,
		*p_ext, *p_lsub_quoted, *p_lsub_atom;
	struct list_rock *lr = rock;
	struct perlre_match m;
	struct buf t = BUF_INIT;
	char *attrs = NULL, *sep = xstrdup(""), *name = NULL, *ext = NULL;

	if (strcasecmp(r->keyword, lr->keyword))
		goto out;
	buf_add(&t, r->text, r->textlen);

	if (!perlre_search(re(&p_attrs, "^\\(([^\\)]*)\\) "), t.s, t.len, 0, &m))
		goto out;
	attrs = perlre_cap(&m, t.s, 1);
	drop_front(&t, m.end);
	if (t.len && t.s[0] == 'N') {
		if (strncmp(t.s, "NIL", 3))
			goto out;
		drop_front(&t, 3);
	} else if (perlre_search(re(&p_sep, "\"\\\\?(.)\""), t.s, t.len, 0,
				 &m)) {
		free(sep);
		sep = perlre_cap(&m, t.s, 1);
		struct buf nb = BUF_INIT;
		buf_add(&nb, t.s, m.start);
		buf_add(&nb, t.s + m.end, t.len - m.end);
		buf_release(&t);
		t = nb;
	}
	if (!t.len || t.s[0] != ' ')
		goto out;
	drop_front(&t, 1);

	if (!lr->lsub) {
		if (perlre_search(re(&p_lit, "{\\d+}(.*)"), t.s, t.len, 0, &m)) {
			/* (undef, $mbox) = split(/\n/, $text) */
			const char *nl = memchr(t.s, '\n', t.len);
			if (nl) {
				const char *s = nl + 1;
				const char *e = memchr(s, '\n',
						       t.len - (size_t)(s - t.s));
				name = xstrndup(s, e ? (size_t)(e - s) :
						t.len - (size_t)(s - t.s));
			} else {
				name = xstrdup("");
			}
		} else if (perlre_search(re(&p_quoted,
				"^\"(([^\\\\\"]*\\\\)*[^\\\\\"]*)\""),
				t.s, t.len, 0, &m)) {
			char *q = perlre_cap(&m, t.s, 1);
			struct buf u = BUF_INIT;
			for (size_t i = 0; q[i]; i++) {
				if (q[i] == '\\' && q[i + 1] && q[i + 1] != '\n')
					i++;
				buf_addch(&u, q[i]);
			}
			free(q);
			name = buf_detach(&u, NULL);
		} else {
			if (perlre_search(re(&p_atom, "^([]!\\#-[^-~]+)"), t.s,
					  t.len, 0, &m)) {
				name = perlre_cap(&m, t.s, 1);
				drop_front(&t, m.end);
			} else {
				name = xstrdup("");
			}
		}
		if (perlre_search(re(&p_ext,
				"^ \\((\"{0,1}[^\" ]+\"{0,1} \\(\"[^\"]*\"\\))\\)"),
				t.s, t.len, 0, &m))
			ext = perlre_cap(&m, t.s, 1);
	} else {
		if (perlre_search(re(&p_lsub_quoted,
				"\"(([^\\\\\"]*\\\\.)*[^\\\\\"]*)\""),
				t.s, t.len, 0, &m)) {
			char *q = perlre_cap(&m, t.s, 1);
			struct buf u = BUF_INIT;
			for (size_t i = 0; q[i]; i++) {
				if (q[i] == '\\' && q[i + 1] && q[i + 1] != '\n')
					i++;
				buf_addch(&u, q[i]);
			}
			free(q);
			name = buf_detach(&u, NULL);
		} else if (perlre_search(re(&p_lsub_atom, "^([]!\\#-[^-~]+)"),
					 t.s, t.len, 0, &m)) {
			name = perlre_cap(&m, t.s, 1);
		} else {
			name = xstrdup("");
		}
	}
	struct mboxes *res = lr->res;
	if (res->n + 1 > res->alloc) {
		res->alloc = res->alloc * 2 + 16;
		res->v = xrealloc(res->v, sizeof(*res->v) * res->alloc);
	}
	res->v[res->n++] = (struct mbox){ name, attrs, sep, ext };
	name = attrs = sep = ext = NULL;
out:
	free(attrs);
	free(sep);
	free(name);
	free(ext);
	buf_release(&t);
}

enum { SEL_SPECIAL = 1, SEL_RECURSIVE = 2, SEL_SUBSCRIBED = 4 };

/*
 * The LIST command Admin.pm's listmailbox sends on c for sel, with "%s %s"
 * for the reference and the pattern, into cmd. Returns NULL, or why there
 * is none.
 */
static const char *list_fmt(const struct cyradm_conn *c, unsigned sel,
			    struct buf *cmd)
{
	struct strlist lsel = { 0 }, lret = { 0 };
	const char *list_cmd = "LIST", *why = NULL;

	if (c->referrals) {
		if (c->list_extended)
			sl_push(&lsel, "REMOTE");
		else
			list_cmd = "RLIST";
	}
	if ((sel & SEL_SPECIAL) && !c->list_special_use) {
		why = "Remote does not support SPECIAL-USE.";
		goto out;
	}
	if (sel && !c->list_extended) {
		why = "Remote does not support LIST-EXTENDED.";
		goto out;
	}
	if (c->list_extended) {
		sl_push(&lret, "SUBSCRIBED");
		if (sel & SEL_RECURSIVE)
			sl_push(&lsel, "RECURSIVEMATCH");
		if (sel & SEL_SUBSCRIBED)
			sl_push(&lsel, "SUBSCRIBED");
		if (c->list_special_use) {
			sl_push(&lret, "SPECIAL-USE");
			if (sel & SEL_SPECIAL)
				sl_push(&lsel, "SPECIAL-USE");
		}
	}
	if (!strcmp(list_cmd, "RLIST") && (lsel.n || lret.n)) {
		why = "Invalid capabilities: MAILBOX-REFERRALS and "
		      "SPECIAL-USE but no LIST-EXTENDED.";
		goto out;
	}
	buf_adds(cmd, list_cmd);
	if (lsel.n) {
		buf_adds(cmd, " (");
		for (size_t i = 0; i < lsel.n; i++)
			buf_printf(cmd, "%s%s", i ? " " : "", lsel.v[i]);
		buf_adds(cmd, ")");
	}
	buf_adds(cmd, " %s %s");
	if (lret.n) {
		buf_adds(cmd, " RETURN (");
		for (size_t i = 0; i < lret.n; i++)
			buf_printf(cmd, "%s%s", i ? " " : "", lret.v[i]);
		buf_adds(cmd, ")");
	}
out:
	sl_free(&lsel);
	sl_free(&lret);
	return why;
}

/* Admin.pm listmailbox; returns 0 or -1 with conn->error set. */
static int admin_list(struct cyradm *cy, const char *pat, const char *ref,
		      unsigned sel, struct mboxes *res)
{
	struct cyradm_conn *c = cy->conn;
	struct buf cmd = BUF_INIT, text = BUF_INIT;
	int r = -1;

	if (!ref)
		ref = "";
	const char *why = list_fmt(c, sel, &cmd);
	if (why) {
		set_error(c, why);
		goto out;
	}
	struct list_rock lr = { res, false, "LIST" };
	int st = send_cmd(cy, list_cb, &lr, &text, cmd.s, ref, pat);
	if (st < 0) {
		goto out;
	}
	if (st != IMAP_OK) {
		set_error(c, text.s);
		mboxes_free(res);
		goto out;
	}
	set_error(c, NULL);
	r = 0;
out:
	buf_release(&cmd);
	buf_release(&text);
	return r;
}

static int admin_lsub(struct cyradm *cy, const char *pat, const char *ref,
		      struct mboxes *res)
{
	struct cyradm_conn *c = cy->conn;
	struct buf text = BUF_INIT;
	struct list_rock lr = { res, true, "LSUB" };
	if (!perl_true(ref))
		ref = pat;
	int st = send_cmd(cy, list_cb, &lr, &text,
			  c->referrals ? "RLSUB %s %s" : "LSUB %s %s", pat, ref);
	int r = -1;
	if (st >= 0) {
		if (st == IMAP_OK) {
			set_error(c, NULL);
			r = 0;
		} else {
			set_error(c, text.s);
			mboxes_free(res);
		}
	}
	buf_release(&text);
	return r;
}

/* ---- commands ---------------------------------------------------------- */

static int cmd_listmailbox(struct cyradm *cy, const char *name UNUSED,
			   int argc, char **argv)
{
	static const char usage[] =
		"usage: listmailbox [-subscribed] [-specialuse] [pattern [base]]";
	struct strlist args = { 0 };
	struct mboxes res = { 0 };
	unsigned sel = 0;
	bool subscribed = false;
	int i = 1, r = 0;

	for (; i < argc; i++) {
		const char *o = argv[i];
		if (!strcmp(o, "--")) {
			i++;
			break;
		}
		if (opt_is(o, "subscribed"))
			subscribed = true;
		else if (opt_is(o, "specialuse"))
			sel |= SEL_SPECIAL;
		else if (opt_is(o, "recursivematch"))
			sel |= SEL_RECURSIVE;
		else if (o[0] == '-')
			return cyradm_die(cy, usage);
		else
			break;
	}
	for (; i < argc; i++)
		sl_push(&args, argv[i]);
	if (args.n > 2) {
		r = cyradm_die(cy, usage);
		goto out;
	}
	if (!cy->conn) {
		r = no_conn(cy, "listmailbox");
		goto out;
	}
	bool lsub = false;
	if (subscribed) {
		if (sel)
			sel |= SEL_SUBSCRIBED;
		else
			lsub = true;
	}
	const char *pat = args.n ? args.v[0] : "*";
	const char *ref = args.n > 1 ? args.v[1] : NULL;
	int st = lsub ? admin_lsub(cy, pat, ref, &res) :
		admin_list(cy, pat, ref, sel, &res);
	if (!cy->conn) {
		r = -1;
		goto out;
	}
	if (st < 0) {
		fprintf(cy->err, "%s\n", cy->conn->error ? cy->conn->error : "");
		r = -1;
		goto out;
	}
	struct strlist lines = { 0 };
	size_t w = 0;
	for (size_t k = 0; k < res.n; k++) {
		struct buf l = BUF_INIT;
		buf_adds(&l, res.v[k].name);
		if (*res.v[k].attrs)
			buf_printf(&l, " (%s)", res.v[k].attrs);
		if (res.v[k].ext)
			buf_printf(&l, " (%s)", res.v[k].ext);
		if (l.len + 1 > w)
			w = l.len + 1;
		sl_push(&lines, l.s);
		buf_release(&l);
	}
	if (lines.n) {
		qsort(lines.v, lines.n, sizeof(char *), cmp_str);
		const char *cols = getenv("COLUMNS");
		size_t ll = cols && atoi(cols) > 0 ? (size_t)atoi(cols) : 79;
		if (w > ll)
			w = ll;
		size_t n = ll / w;
		size_t rows = (lines.n + n - 1) / n;
		for (size_t l = 0; l < rows; l++) {
			for (size_t c = 0; c < lines.n; c += rows) {
				if (l + c < lines.n) {
					const char *s = lines.v[l + c];
					size_t len = strlen(s);
					fputs(s, cy->out);
					for (size_t p = len; p < w + 1; p++)
						fputc(' ', cy->out);
				}
			}
			fputc('\n', cy->out);
		}
	}
	sl_free(&lines);
out:
	mboxes_free(&res);
	sl_free(&args);
	return r;
}

/* GETACL as Admin.pm's listaclmailbox: id/rights pairs in order. */
struct acl_rock {
	const char *mbox;
	struct strlist ids, rights;
};

static void acl_put(struct strlist *ids, struct strlist *rights,
		    const char *id, const char *r)
{
	for (size_t i = 0; i < ids->n; i++)
		if (!strcmp(ids->v[i], id)) {
			free(rights->v[i]);
			rights->v[i] = xstrdup(r);
			return;
		}
	sl_push(ids, id);
	sl_push(rights, r);
}

static void acl_cb(const struct imap_reply *r, void *rock)
{
	struct acl_rock *ar = rock;
	if (strcasecmp(r->keyword, "ACL"))
		return;
	/* s/^"*\Q$mbx\E"*\s+// */
	const char *p = r->text, *end = r->text + r->textlen;
	while (p < end && *p == '"')
		p++;
	size_t ml = strlen(ar->mbox);
	if ((size_t)(end - p) < ml || memcmp(p, ar->mbox, ml))
		return;
	p += ml;
	while (p < end && *p == '"')
		p++;
	if (p >= end || !strchr(" \t\r\n\f\v", *p))
		return;
	/* while (s/(\S+)\s+(\S+)\s*\/\/): words, two by two. */
	struct strlist words = { 0 };
	while (p < end) {
		while (p < end && strchr(" \t\r\n\f\v", *p))
			p++;
		const char *s = p;
		while (p < end && !strchr(" \t\r\n\f\v", *p))
			p++;
		if (p > s) {
			char *w = xstrndup(s, (size_t)(p - s));
			sl_push(&words, w);
			free(w);
		}
	}
	for (size_t i = 0; i + 1 < words.n; i += 2)
		acl_put(&ar->ids, &ar->rights, words.v[i], words.v[i + 1]);
	sl_free(&words);
}

static int admin_getacl(struct cyradm *cy, const char *mbox,
			struct acl_rock *ar)
{
	struct buf text = BUF_INIT;
	ar->mbox = mbox;
	int st = send_cmd(cy, acl_cb, ar, &text, "GETACL %s", mbox);
	int r = -1;
	if (st >= 0) {
		if (st == IMAP_OK) {
			set_error(cy->conn, NULL);
			r = 0;
		} else {
			set_error(cy->conn, text.s);
			sl_free(&ar->ids);
			sl_free(&ar->rights);
		}
	}
	buf_release(&text);
	return r;
}

static int cmd_listacl(struct cyradm *cy, const char *name UNUSED, int argc,
		       char **argv)
{
	static const char usage[] = "usage: listaclmailbox mailbox";
	struct strlist args = { 0 };
	int r = 0;
	if (plain_args(cy, argc, argv, &args, usage) < 0)
		return -1;
	if (args.n != 1) {
		r = cyradm_die(cy, usage);
		goto out;
	}
	if (!cy->conn) {
		r = no_conn(cy, "listaclmailbox");
		goto out;
	}
	if (has_wildcard(args.v[0])) {
		struct mboxes res = { 0 };
		admin_list(cy, args.v[0], NULL, 0, &res);
		for (size_t i = 0; i < res.n && cy->conn; i++) {
			if (noselect_flags(res.v[i].attrs))
				continue;
			fprintf(cy->out, "%s:\n", res.v[i].name);
			struct acl_rock ar = { 0 };
			if (admin_getacl(cy, res.v[i].name, &ar) < 0) {
				if (cy->conn)
					fprintf(cy->err, "%s\n", cy->conn->error);
				continue;
			}
			for (size_t k = 0; k < ar.ids.n; k++)
				fprintf(cy->out, "  %s %s\n", ar.ids.v[k],
					ar.rights.v[k]);
			sl_free(&ar.ids);
			sl_free(&ar.rights);
		}
		mboxes_free(&res);
	} else {
		struct acl_rock ar = { 0 };
		if (admin_getacl(cy, args.v[0], &ar) < 0) {
			if (cy->conn)
				fprintf(cy->err, "%s\n", cy->conn->error);
			r = -1;
			goto out;
		}
		for (size_t k = 0; k < ar.ids.n; k++)
			fprintf(cy->out, "%s %s\n", ar.ids.v[k], ar.rights.v[k]);
		sl_free(&ar.ids);
		sl_free(&ar.rights);
	}
out:
	sl_free(&args);
	return r;
}

static const char *acl_alias(const char *rights)
{
	static const char *const map[][2] = {
		{ "none", "" }, { "read", "lrs" }, { "post", "lrsp" },
		{ "append", "lrsip" }, { "write", "lrswipkxte" },
		{ "delete", "lrxte" }, { "all", "lrswipkxtea" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (!strcmp(rights, map[i][0]))
			return map[i][1];
	return rights;
}

/* Admin.pm setaclmailbox: returns 0, or -1 with conn->error. */
static int admin_setacl(struct cyradm *cy, const char *mbox,
			struct strlist *ids, struct strlist *rights)
{
	struct buf res = BUF_INIT, text = BUF_INIT;
	int last = IMAP_OK, r;
	for (size_t i = 0; i < ids->n; i++) {
		const char *rt = acl_alias(rights->v[i]);
		last = send_cmd(cy, NULL, NULL, &text, "SETACL %s %s %s", mbox,
				ids->v[i], rt);
		if (last < 0)
			break;
		if (last != IMAP_OK) {
			if (res.len)
				buf_addch(&res, '\n');
			buf_printf(&res, "%s: %s: %s", ids->v[i], rt, text.s);
		}
	}
	if (last < 0)
		r = -1;
	else if (last == IMAP_OK) {
		set_error(cy->conn, NULL);
		r = 0;
	} else {
		set_error(cy->conn, res.s);
		r = -1;
	}
	buf_release(&res);
	buf_release(&text);
	return r;
}

static int cmd_setacl(struct cyradm *cy, const char *name UNUSED, int argc,
		      char **argv)
{
	static const char usage[] =
		"usage: setaclmailbox mailbox id rights [id rights ...]";
	struct strlist args = { 0 }, ids = { 0 }, rights = { 0 };
	int r = 0;
	if (plain_args(cy, argc, argv, &args, usage) < 0)
		return -1;
	if (args.n < 3 || (args.n - 1) % 2) {
		r = cyradm_die(cy, usage);
		goto out;
	}
	if (!cy->conn) {
		r = no_conn(cy, "setaclmailbox");
		goto out;
	}
	for (size_t i = 1; i + 1 < args.n; i += 2)
		acl_put(&ids, &rights, args.v[i], args.v[i + 1]);
	if (has_wildcard(args.v[0])) {
		struct mboxes res = { 0 };
		admin_list(cy, args.v[0], NULL, 0, &res);
		for (size_t i = 0; i < res.n && cy->conn; i++) {
			if (noselect_flags(res.v[i].attrs))
				continue;
			fprintf(cy->out, "Setting ACL on %s...", res.v[i].name);
			if (admin_setacl(cy, res.v[i].name, &ids, &rights) < 0) {
				if (cy->conn)
					fprintf(cy->out, "%s\n", cy->conn->error);
				break;
			}
			fprintf(cy->out, "OK.\n");
		}
		mboxes_free(&res);
	} else if (admin_setacl(cy, args.v[0], &ids, &rights) < 0) {
		if (cy->conn)
			r = cyradm_die(cy, "setaclmailbox: %s", cy->conn->error);
		else
			r = -1;
	}
out:
	sl_free(&args);
	sl_free(&ids);
	sl_free(&rights);
	return r;
}

/* Admin.pm deleteaclmailbox: returns how many went through. */
static int admin_deleteacl(struct cyradm *cy, const char *mbox,
			   char **ids, size_t n)
{
	struct buf res = BUF_INIT, text = BUF_INIT;
	int cnt = 0;
	for (size_t i = 0; i < n; i++) {
		int st = send_cmd(cy, NULL, NULL, &text, "DELETEACL %s %s",
				  mbox, ids[i] ? ids[i] : "");
		if (st < 0)
			break;
		if (st == IMAP_OK) {
			cnt++;
		} else {
			if (res.len)
				buf_addch(&res, '\n');
			buf_printf(&res, "%s: %s", ids[i] ? ids[i] : "", text.s);
		}
	}
	if (cy->conn)
		set_error(cy->conn, res.len ? res.s : NULL);
	buf_release(&res);
	buf_release(&text);
	return cnt;
}

/* "dam MBOX *": the ids become the ACL's ids and rights, as Shell.pm does. */
static bool expand_star(struct cyradm *cy, const char *mbox,
			struct strlist *ids)
{
	struct acl_rock ar = { 0 };
	if (admin_getacl(cy, mbox, &ar) < 0) {
		if (cy->conn)
			fprintf(cy->out, "%s\n", cy->conn->error);
		return false;
	}
	free(ids->v[--ids->n]);
	ids->v[ids->n] = NULL;
	for (size_t k = 0; k < ar.ids.n; k++) {
		sl_push(ids, ar.ids.v[k]);
		sl_push(ids, ar.rights.v[k]);
	}
	sl_free(&ar.ids);
	sl_free(&ar.rights);
	return true;
}

static int cmd_deleteacl(struct cyradm *cy, const char *name UNUSED,
			 int argc, char **argv)
{
	static const char usage[] =
		"usage: deleteaclmailbox mailbox id [id ...]";
	struct strlist args = { 0 };
	int r = 0;
	if (plain_args(cy, argc, argv, &args, usage) < 0)
		return -1;
	if (args.n < 2) {
		r = cyradm_die(cy, usage);
		goto out;
	}
	if (!cy->conn) {
		r = no_conn(cy, "deleteaclmailbox");
		goto out;
	}
	if (has_wildcard(args.v[0])) {
		struct mboxes res = { 0 };
		admin_list(cy, args.v[0], NULL, 0, &res);
		for (size_t i = 0; i < res.n && cy->conn; i++) {
			if (noselect_flags(res.v[i].attrs))
				continue;
			struct strlist ids = { 0 };
			for (size_t k = 1; k < args.n; k++)
				sl_push(&ids, args.v[k]);
			if (!strcmp(args.v[1], "*") &&
			    !expand_star(cy, res.v[i].name, &ids)) {
				sl_free(&ids);
				continue;
			}
			fprintf(cy->out, "Deleting acl on %s...", res.v[i].name);
			admin_deleteacl(cy, res.v[i].name, ids.v, ids.n);
			sl_free(&ids);
			/* Admin.pm returns a count, never undef: always OK. */
			fprintf(cy->out, "OK.\n");
		}
		mboxes_free(&res);
	} else {
		struct strlist ids = { 0 };
		for (size_t k = 1; k < args.n; k++)
			sl_push(&ids, args.v[k]);
		if (!strcmp(args.v[1], "*") &&
		    !expand_star(cy, args.v[0], &ids)) {
			sl_free(&ids);
			goto out;
		}
		int cnt = admin_deleteacl(cy, args.v[0], ids.v, ids.n);
		sl_free(&ids);
		if (!cnt && cy->conn)
			r = cyradm_die(cy, "deleteaclmailbox: %s",
				       cy->conn->error ? cy->conn->error : "");
	}
out:
	sl_free(&args);
	return r;
}

/* A simple command: send, and die "NAME: error" on failure. */
static int simple(struct cyradm *cy, const char *name, const char *fmt, ...)
{
	struct buf text = BUF_INIT;
	struct error err = ERROR_INIT;
	va_list ap;
	va_start(ap, fmt);
	int st = cyradm_vrun(cy, NULL, NULL, &text, &err, fmt, ap);
	va_end(ap);
	int r = 0;
	if (st < 0) {
		fflush(cy->out);
		fprintf(stderr, "\nConnection to server lost.\n");
		cyradm_disconnect(&cy->conn);
		r = cyradm_die(cy, "%s: %s", name, err.msg);
	} else if (st != IMAP_OK) {
		set_error(cy->conn, text.s);
		r = cyradm_die(cy, "%s: %s", name, text.s);
	} else {
		set_error(cy->conn, NULL);
	}
	buf_release(&text);
	return r;
}

static int cmd_create(struct cyradm *cy, const char *name UNUSED, int argc,
		      char **argv)
{
	struct strlist args = { 0 };
	const char *part = NULL, *specialuse = NULL, **want = NULL;
	int i = 1, r = 0;
	for (; i < argc; i++) {
		const char *o = argv[i];
		if (want) {
			*want = o;
			want = NULL;
			continue;
		}
		if (opt_is(o, "partition")) {
			want = &part;
			continue;
		}
		if (opt_is(o, "specialuse")) {
			want = &specialuse;
			continue;
		}
		if (!strcmp(o, "--")) {
			i++;
			break;
		}
		if (o[0] == '-')
			return cyradm_die(cy, "usage: createmailbox [--partition "
					  "partition] [--specialuse specialuse] "
					  "mailbox [partition]");
		break;
	}
	for (; i < argc; i++)
		sl_push(&args, argv[i]);
	if (!args.n || args.n > 2) {
		r = cyradm_die(cy, "usage: createmailbox [--partition partition] "
			       "mailbox [partition]");
		goto out;
	}
	if (!cy->conn) {
		r = no_conn(cy, "createmailbox");
		goto out;
	}
	const char *partition = args.n > 1 ? args.v[1] : part;
	if (specialuse) {
		if (!cy->conn->create_special_use) {
			r = cyradm_die(cy, "createmailbox: Remote does not "
				       "support CREATE-SPECIAL-USE.");
			goto out;
		}
		if (partition)
			r = simple(cy, "createmailbox",
				   "CREATE %s (PARTITION %a USE (%a))",
				   args.v[0], partition, specialuse);
		else
			r = simple(cy, "createmailbox", "CREATE %s (USE (%a))",
				   args.v[0], specialuse);
	} else if (partition) {
		r = simple(cy, "createmailbox", "CREATE %s %a", args.v[0],
			   partition);
	} else {
		r = simple(cy, "createmailbox", "CREATE %s", args.v[0]);
	}
out:
	sl_free(&args);
	return r;
}

static int cmd_delete(struct cyradm *cy, const char *name UNUSED, int argc,
		      char **argv)
{
	struct strlist args = { 0 };
	int r = 0;
	if (plain_args(cy, argc, argv, &args,
		       "usage: deletemailbox mailbox [host]") < 0)
		return -1;
	if (args.n != 1) {
		r = cyradm_die(cy, "usage: deletemailbox mailbox");
		goto out;
	}
	if (!cy->conn) {
		r = no_conn(cy, "deletemailbox");
		goto out;
	}
	if (has_wildcard(args.v[0])) {
		struct mboxes res = { 0 };
		struct buf text = BUF_INIT;
		admin_list(cy, args.v[0], NULL, 0, &res);
		for (size_t i = 0; i < res.n && cy->conn; i++) {
			if (noselect_flags(res.v[i].attrs))
				continue;
			fprintf(cy->out, "Deleting mailbox %s...", res.v[i].name);
			int st = send_cmd(cy, NULL, NULL, &text, "DELETE %s",
					  res.v[i].name);
			if (st != IMAP_OK) {
				fprintf(cy->out, "%s\n", text.s);
				break;
			}
			fprintf(cy->out, "OK.\n");
		}
		buf_release(&text);
		mboxes_free(&res);
	} else {
		r = simple(cy, "deletemailbox", "DELETE %s", args.v[0]);
	}
out:
	sl_free(&args);
	return r;
}

/* --partition for rename and xfer; the last extra word is one too. */
static int part_args(struct cyradm *cy, int argc, char **argv,
		     struct strlist *args, const char **part,
		     const char *usage)
{
	bool want = false;
	int i = 1;
	*part = NULL;
	for (; i < argc; i++) {
		const char *o = argv[i];
		if (want) {
			*part = o;
			want = false;
			continue;
		}
		if (opt_is(o, "partition")) {
			want = true;
			continue;
		}
		if (!strcmp(o, "--")) {
			i++;
			break;
		}
		if (o[0] == '-')
			return cyradm_die(cy, "%s", usage);
		break;
	}
	for (; i < argc; i++)
		sl_push(args, argv[i]);
	if (args->n > 2 && !*part) {
		*part = argv[argc - 1];
		free(args->v[--args->n]);
		args->v[args->n] = NULL;
	}
	if (args->n != 2)
		return cyradm_die(cy, "%s", usage);
	return 0;
}

/* renamemailbox and xfermailbox: NAME ARG [partition], one IMAP verb. */
static int two_names_part(struct cyradm *cy, int argc, char **argv,
			  const char *cmd, const char *verb, const char *usage)
{
	struct strlist args = { 0 };
	const char *part;
	int r;
	if (part_args(cy, argc, argv, &args, &part, usage) < 0)
		r = -1;
	else if (!cy->conn)
		r = no_conn(cy, cmd);
	else if (perl_true(part))
		r = simple(cy, cmd, "%s %s %s %a", verb, args.v[0], args.v[1],
			   part);
	else
		r = simple(cy, cmd, "%s %s %s", verb, args.v[0], args.v[1]);
	sl_free(&args);
	return r;
}

static int cmd_rename(struct cyradm *cy, const char *name UNUSED, int argc,
		      char **argv)
{
	return two_names_part(cy, argc, argv, "renamemailbox", "RENAME",
			      "usage: renamemailbox [--partition name] "
			      "oldname newname [partition]");
}

static int cmd_xfer(struct cyradm *cy, const char *name UNUSED, int argc,
		    char **argv)
{
	return two_names_part(cy, argc, argv, "xfermailbox", "XFER",
			      "usage: xfermailbox [--partition name] mailbox "
			      "server [partition]");
}

static int cmd_reconstruct(struct cyradm *cy, const char *name UNUSED,
			   int argc, char **argv)
{
	static const char usage[] = "usage: reconstruct [-r] mailbox";
	struct strlist args = { 0 };
	bool recurse = false;
	int i = 1, r;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (argv[i][0] == '-') {
			if (strcmp(argv[i], "-r"))
				return cyradm_die(cy, usage);
			recurse = true;
			continue;
		}
		break;
	}
	for (; i < argc; i++)
		sl_push(&args, argv[i]);
	if (args.n != 1)
		r = cyradm_die(cy, usage);
	else if (!cy->conn)
		r = no_conn(cy, "reconstruct");
	else
		r = simple(cy, "reconstruct", recurse ?
			   "RECONSTRUCT %s RECURSIVE" : "RECONSTRUCT %s",
			   args.v[0]);
	sl_free(&args);
	return r;
}

/* ---- quotas ------------------------------------------------------------ */

struct quota_item {
	struct strlist res, used, limit;
};

static void quota_put(struct quota_item *q, char *res, char *used, char *lim)
{
	for (size_t i = 0; i < q->res.n; i++)
		if (!strcmp(q->res.v[i], res)) {
			free(q->used.v[i]);
			free(q->limit.v[i]);
			q->used.v[i] = xstrdup(used);
			q->limit.v[i] = xstrdup(lim);
			goto out;
		}
	sl_push(&q->res, res);
	sl_push(&q->used, used);
	sl_push(&q->limit, lim);
out:
	free(res);
	free(used);
	free(lim);
}

static void quota_free(struct quota_item *q)
{
	sl_free(&q->res);
	sl_free(&q->used);
	sl_free(&q->limit);
}

static void print_quota(FILE *f, const struct quota_item *q)
{
	for (size_t i = 0; i < q->res.n; i++) {
		fprintf(f, " %s %s/%s", q->res.v[i], q->used.v[i], q->limit.v[i]);
		if (perl_true(q->limit.v[i])) {
			fputs(" (", f);
			print_num(f, perl_num(q->used.v[i]) * 100 /
				  perl_num(q->limit.v[i]));
			fputs("%)", f);
		}
	}
}

static void quota_cb(const struct imap_reply *r, void *rock)
{
	static struct perlre *p;
	struct perlre_match m;
	if (strcasecmp(r->keyword, "QUOTA"))
		return;
	if (perlre_search(re(&p, "^\\S+.* \\((\\S*) *?(\\S*) *?(\\S*)\\)"),
			  r->text, r->textlen, 0, &m))
		quota_put(rock, perlre_cap(&m, r->text, 1),
			  perlre_cap(&m, r->text, 2), perlre_cap(&m, r->text, 3));
}

static int cmd_listquota(struct cyradm *cy, const char *name UNUSED,
			 int argc, char **argv)
{
	static const char usage[] = "usage: listquota root";
	struct strlist args = { 0 };
	struct quota_item q = { 0 };
	struct buf text = BUF_INIT;
	int r = 0;
	if (plain_args(cy, argc, argv, &args, usage) < 0)
		return -1;
	if (args.n != 1) {
		r = cyradm_die(cy, usage);
		goto out;
	}
	if (!cy->conn) {
		r = no_conn(cy, "listquota");
		goto out;
	}
	int st = send_cmd(cy, quota_cb, &q, &text, "GETQUOTA %s", args.v[0]);
	if (st == IMAP_OK)
		print_quota(cy->out, &q);
	fputc('\n', cy->out);
out:
	quota_free(&q);
	buf_release(&text);
	sl_free(&args);
	return r;
}

struct quotaroot_rock {
	char *root;
	struct quota_item q;
};

static void quotaroot_cb(const struct imap_reply *r, void *rock)
{
	static struct perlre *p1, *p2, *p3, *p4, *pq;
	struct quotaroot_rock *qr = rock;
	struct perlre_match m;
	if (!strcasecmp(r->keyword, "QUOTAROOT")) {
		if (perlre_search(re(&p1, "^\"[^\"]+\" \"([^\"]+)\""),
				  r->text, r->textlen, 0, &m) ||
		    perlre_search(re(&p2, "^\"[^\"]+\" (\\S+)"),
				  r->text, r->textlen, 0, &m) ||
		    perlre_search(re(&p3, "[^\"]\\S+ \"([^\"]+)\""),
				  r->text, r->textlen, 0, &m) ||
		    perlre_search(re(&p4, "^[^\"]\\S+ (\\S+)"),
				  r->text, r->textlen, 0, &m)) {
			free(qr->root);
			qr->root = perlre_cap(&m, r->text, 1);
		}
	} else if (!strcasecmp(r->keyword, "QUOTA")) {
		if (perlre_search(re(&pq, "\\((\\S+) (\\S+) (\\S+)\\)$"),
				  r->text, r->textlen, 0, &m))
			quota_put(&qr->q, perlre_cap(&m, r->text, 1),
				  perlre_cap(&m, r->text, 2),
				  perlre_cap(&m, r->text, 3));
	}
}

static int cmd_listquotaroot(struct cyradm *cy, const char *name UNUSED,
			     int argc, char **argv)
{
	static const char usage[] = "usage: listquotaroot mailbox";
	struct strlist args = { 0 };
	struct quotaroot_rock qr = { 0 };
	struct buf text = BUF_INIT;
	int r = 0;
	if (plain_args(cy, argc, argv, &args, usage) < 0)
		return -1;
	if (args.n != 1) {
		r = cyradm_die(cy, usage);
		goto out;
	}
	if (!cy->conn) {
		r = no_conn(cy, "listquotaroot");
		goto out;
	}
	int st = send_cmd(cy, quotaroot_cb, &qr, &text, "GETQUOTAROOT %s",
			  args.v[0]);
	if (st == IMAP_OK) {
		fputs(qr.root ? qr.root : "", cy->out);
		print_quota(cy->out, &qr.q);
	}
	fputc('\n', cy->out);
out:
	free(qr.root);
	quota_free(&qr.q);
	buf_release(&text);
	sl_free(&args);
	return r;
}

static bool is_quota_atom(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (!(c == ']' || c == '!' || (c >= '#' && c <= '[') ||
		      (c >= '^' && c <= '~')))
			return false;
	}
	return true;
}

static bool is_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static int cmd_setquota(struct cyradm *cy, const char *name UNUSED,
			int argc, char **argv)
{
	static const char usage[] =
		"usage: setquota mailbox limit num [limit num ...]\n"
		"       setquota mailbox num";
	struct strlist args = { 0 }, res = { 0 }, val = { 0 };
	struct buf list = BUF_INIT;
	int r = 0;
	if (plain_args(cy, argc, argv, &args, usage) < 0)
		return -1;
	if (args.n == 2) {
		char *mbox = xstrdup(args.v[0]), *limit = xstrdup(args.v[1]);
		sl_free(&args);
		sl_push(&args, mbox);
		if (!strcmp(limit, "none")) {
			fprintf(cy->out, "remove quota\n");
		} else {
			sl_push(&args, "STORAGE");
			sl_push(&args, limit);
			fprintf(cy->out, "quota:%s\n", limit);
		}
		free(mbox);
		free(limit);
	}
	if (!args.n || (args.n - 1) % 2) {
		r = cyradm_die(cy, "%s", usage);
		goto out;
	}
	if (!cy->conn) {
		r = no_conn(cy, "setquota");
		goto out;
	}
	/* A hash in the Perl one: a repeated resource keeps its last value. */
	for (size_t i = 1; i + 1 < args.n; i += 2)
		acl_put(&res, &val, args.v[i], args.v[i + 1]);
	for (size_t i = 0; i < res.n; i++) {
		if (!is_quota_atom(res.v[i])) {
			r = cyradm_die(cy, "setquota: %s: not an atom", res.v[i]);
			goto out;
		}
		if (!is_digits(val.v[i])) {
			r = cyradm_die(cy, "setquota: %s: %s: not a number",
				       res.v[i], val.v[i]);
			goto out;
		}
		if (i)
			buf_addch(&list, ' ');
		imapclient_add_astring(cy->conn->ic, &list, res.v[i],
				       strlen(res.v[i]));
		buf_addch(&list, ' ');
		imapclient_add_astring(cy->conn->ic, &list, val.v[i],
				       strlen(val.v[i]));
	}
	r = simple(cy, "setquota", "SETQUOTA %s (%a)", args.v[0], list.s);
out:
	buf_release(&list);
	sl_free(&res);
	sl_free(&val);
	sl_free(&args);
	return r;
}

/* ---- metadata ---------------------------------------------------------- */

struct md_entry {
	char *mbox, *access, *key, *value;
};

struct md_rock {
	struct md_entry *v;
	size_t n, alloc;
};

static void md_put(struct md_rock *md, const char *mbox, const char *key,
		   const char *value, size_t valuelen)
{
	char *full = xasprintf("%s%s", *mbox ? "/mailbox/" : "/server/", key);
	const char *access = strstr(full, "private") ? "private" :
		strstr(full, "shared") ? "shared" : NULL;
	if (!access) {
		free(full);
		return;
	}
	for (size_t i = 0; i < md->n; i++)
		if (!strcmp(md->v[i].mbox, mbox) &&
		    !strcmp(md->v[i].access, access) &&
		    !strcmp(md->v[i].key, full)) {
			free(md->v[i].value);
			md->v[i].value = xstrndup(value, valuelen);
			free(full);
			return;
		}
	if (md->n + 1 > md->alloc) {
		md->alloc = md->alloc * 2 + 16;
		md->v = xrealloc(md->v, sizeof(*md->v) * md->alloc);
	}
	md->v[md->n++] = (struct md_entry){ xstrdup(mbox), xstrdup(access),
					    full, xstrndup(value, valuelen) };
}

static void md_free(struct md_rock *md)
{
	for (size_t i = 0; i < md->n; i++) {
		free(md->v[i].mbox);
		free(md->v[i].access);
		free(md->v[i].key);
		free(md->v[i].value);
	}
	free(md->v);
	memset(md, 0, sizeof(*md));
}

static void metadata_cb(const struct imap_reply *r, void *rock)
{
	static struct perlre *p1, *ppair, *p2, *p3, *p3s;
	struct md_rock *md = rock;
	struct perlre_match m, pm;
	const char *t = r->text;
	size_t tl = r->textlen;

	if (strcasecmp(r->keyword, "METADATA"))
		return;
	if (perlre_search(re(&p1, "^\\s*\"?([^\\(]*?)\"?\\s+\\(((\"?[^\"\\{]+\"?"
			     "\\s+\"?[^\"\\)\\{]+\"?\\s*)+)\\)"), t, tl, 0, &m)) {
		char *mbox = perlre_cap(&m, t, 1);
		char *pairs = perlre_cap(&m, t, 2);
		size_t pl = strlen(pairs), pos = 0;
		while (pos <= pl &&
		       perlre_search(re(&ppair, "\"?([^\"\\{]+)\"?\\s+\"?"
					"([^\"\\)\\{]+)\"?"), pairs, pl, pos, &pm)) {
			char *k = perlre_cap(&pm, pairs, 1);
			char *v = perlre_cap(&pm, pairs, 2);
			md_put(md, mbox, k, v, strlen(v));
			free(k);
			free(v);
			pos = pm.end > pm.start ? pm.end : pm.end + 1;
		}
		free(mbox);
		free(pairs);
	} else if (perlre_search(re(&p2, "^\\s*\"?([^\\(]*?)\"?\\s+\\(\"?"
				    "([^\"\\{]*)\"?\\s+\"?([^\"\\)\\{]*)\"?\\)"),
				 t, tl, 0, &m)) {
		char *mbox = perlre_cap(&m, t, 1);
		char *k = perlre_cap(&m, t, 2);
		char *v = perlre_cap(&m, t, 3);
		md_put(md, mbox, k, v, strlen(v));
		free(mbox);
		free(k);
		free(v);
	} else if (perlre_search(re(&p3, "^\\s*\"?([^\\(]*?)\"?\\s+\\(\"?"
				    "([^\"\\{]*?)\"?\\s+\\{(.*)\\}\\r\\n"),
				 t, tl, 0, &m)) {
		char *mbox = perlre_cap(&m, t, 1);
		char *k = perlre_cap(&m, t, 2);
		char *lens = perlre_cap(&m, t, 3);
		long len = (long)perl_num(lens);
		if (perlre_search(re(&p3s, "^\\s*\"?([^\\(]*?)\"?\\s+\\(\"?"
				     "([^\"]*)\"?\\s+\\{([\\s\\S]*)\\}\\r\\n"),
				  t, tl, 0, &pm)) {
			size_t rest = tl - pm.end;
			size_t n = len < 0 ? 0 : (size_t)len;
			md_put(md, mbox, k, t + pm.end, n < rest ? n : rest);
		}
		free(mbox);
		free(k);
		free(lens);
	}
}

static int cmp_md(const void *a, const void *b)
{
	const struct md_entry *x = a, *y = b;
	int c = strcmp(x->mbox, y->mbox);
	if (!c)
		c = strcmp(x->access, y->access);
	if (!c)
		c = strcmp(x->key, y->key);
	return c;
}

/* Admin.pm getmetadata(box, entries...); 0 or -1 with conn->error. */
static int admin_getmetadata(struct cyradm *cy, const char *box,
			     char **entries, size_t n, struct md_rock *md)
{
	struct cyradm_conn *c = cy->conn;
	struct buf text = BUF_INIT;
	int st = IMAP_OK, r = -1;
	if (!box)
		box = "";
	if (!c->metadata) {
		set_error(c, "Remote does not support METADATA.");
		return -1;
	}
	if (n) {
		for (size_t i = 0; i < n; i++) {
			st = send_cmd(cy, metadata_cb, md, &text,
				      "GETMETADATA %q (%q)", box, entries[i]);
			if (st != IMAP_OK)
				break;
		}
	} else {
		st = send_cmd(cy, metadata_cb, md, &text,
			      "GETMETADATA %q (\"/private/*\")", box);
		if (st >= 0)
			st = send_cmd(cy, metadata_cb, md, &text,
				      "GETMETADATA %q (\"/shared/*\")", box);
	}
	if (st >= 0) {
		if (st == IMAP_OK) {
			set_error(c, NULL);
			r = 0;
		} else {
			set_error(c, text.s);
		}
	}
	buf_release(&text);
	return r;
}

static void print_metadata(struct cyradm *cy, struct md_rock *md)
{
	qsort(md->v, md->n, sizeof(*md->v), cmp_md);
	for (size_t i = 0; i < md->n; i++) {
		const struct md_entry *e = &md->v[i];
		if (!i || strcmp(e->mbox, md->v[i - 1].mbox)) {
			if (!*e->mbox)
				fprintf(cy->out, "{Server Wide}\n");
			else
				fprintf(cy->out, "{%s}:\n", e->mbox);
		}
		if (!i || strcmp(e->mbox, md->v[i - 1].mbox) ||
		    strcmp(e->access, md->v[i - 1].access))
			fprintf(cy->out, "  %s:\n", e->access);
		const char *leaf = strrchr(e->key, '/');
		fprintf(cy->out, "    %s: %s\n", leaf ? leaf + 1 : e->key,
			e->value);
	}
}

static int cmd_info(struct cyradm *cy, const char *name UNUSED, int argc,
		    char **argv)
{
	struct strlist args = { 0 }, entries = { 0 };
	struct md_rock md = { 0 };
	int r = 0;
	if (plain_args(cy, argc, argv, &args, "usage: info [mailbox]") < 0)
		return -1;
	if (!cy->conn) {
		r = no_conn(cy, "info");
		goto out;
	}
	for (size_t i = 1; i < args.n; i++) {
		char *e = xasprintf("/private%s", args.v[i]);
		sl_push(&entries, e);
		free(e);
		e = xasprintf("/shared%s", args.v[i]);
		sl_push(&entries, e);
		free(e);
	}
	if (admin_getmetadata(cy, args.n ? args.v[0] : NULL, entries.v,
			      entries.n, &md) < 0) {
		if (cy->conn)
			fprintf(cy->err, "%s\n", cy->conn->error);
		r = -1;
		goto out;
	}
	print_metadata(cy, &md);
out:
	md_free(&md);
	sl_free(&entries);
	sl_free(&args);
	return r;
}

static const char *getmd_entry(const char *word)
{
	static const char *const map[][2] = {
		{ "comment", "/private/comment" },
		{ "expire", "/shared/vendor/cmu/cyrus-imapd/expire" },
		{ "news2mail", "/shared/vendor/cmu/cyrus-imapd/news2mail" },
		{ "pop3showafter", "/shared/vendor/cmu/cyrus-imapd/pop3showafter" },
		{ "sharedseen", "/shared/vendor/cmu/cyrus-imapd/sharedseen" },
		{ "sieve", "/shared/vendor/cmu/cyrus-imapd/sieve" },
		{ "specialuse", "/private/specialuse" },
		{ "squat", "/shared/vendor/cmu/cyrus-imapd/squat" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (!strcmp(word, map[i][0]))
			return map[i][1];
	return NULL;
}

static int cmd_getmetadata(struct cyradm *cy, const char *name UNUSED,
			   int argc, char **argv)
{
	struct strlist args = { 0 };
	struct md_rock md = { 0 };
	int r = 0;
	if (plain_args(cy, argc, argv, &args, "usage: getmetadata [mailbox]") < 0)
		return -1;
	if (!cy->conn) {
		/* Sic: the Perl one names "info" here. */
		r = no_conn(cy, "info");
		goto out;
	}
	for (size_t i = 1; i < args.n; i++) {
		const char *e = getmd_entry(args.v[i]);
		if (e) {
			free(args.v[i]);
			args.v[i] = xstrdup(e);
		}
	}
	if (admin_getmetadata(cy, args.n ? args.v[0] : NULL,
			      args.n ? args.v + 1 : NULL,
			      args.n ? args.n - 1 : 0, &md) < 0) {
		if (cy->conn)
			fprintf(cy->err, "%s\n", cy->conn->error);
		r = -1;
		goto out;
	}
	print_metadata(cy, &md);
out:
	md_free(&md);
	sl_free(&args);
	return r;
}

/* mboxconfig, setmetadata: [--private] mailbox entry value */
static int md_args(struct cyradm *cy, int argc, char **argv,
		   struct strlist *args, const char *usage)
{
	bool private = false;
	int i = 1;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (opt_is(argv[i], "private"))
			private = true;
		else if (argv[i][0] == '-')
			return cyradm_die(cy, "%s", usage);
		else
			break;
	}
	for (; i < argc; i++)
		sl_push(args, argv[i]);
	if (args->n < 2)
		return cyradm_die(cy, "%s", usage);
	if (private)
		sl_push(args, "1");
	return 0;
}

static int set_md(struct cyradm *cy, const char *name, const char *mbox,
		  const char *entry, const char *value)
{
	if (value && !strcmp(value, "none"))
		value = NULL;
	if (value)
		return simple(cy, name, "SETMETADATA %q (%q %q)", mbox, entry,
			      value);
	return simple(cy, name, "SETMETADATA %q (%q NIL)", mbox, entry);
}

static int cmd_mboxconfig(struct cyradm *cy, const char *name UNUSED,
			  int argc, char **argv)
{
	static const char *const map[][2] = {
		{ "comment", "/comment" },
		{ "expire", "/vendor/cmu/cyrus-imapd/expire" },
		{ "news2mail", "/vendor/cmu/cyrus-imapd/news2mail" },
		{ "sharedseen", "/vendor/cmu/cyrus-imapd/sharedseen" },
		{ "sieve", "/vendor/cmu/cyrus-imapd/sieve" },
		{ "squat", "/vendor/cmu/cyrus-imapd/squat" },
		{ "pop3showafter", "/vendor/cmu/cyrus-imapd/pop3showafter" },
	};
	struct strlist args = { 0 };
	int r;
	if (md_args(cy, argc, argv, &args, "usage: mboxconfig [--private] "
		    "mailbox [comment|expire|news2mail|pop3showafter|"
		    "sharedseen|sieve|squat|/<explicit annotation>] value") < 0)
		return -1;
	if (!cy->conn) {
		r = no_conn(cy, "mboxconfig");
		goto out;
	}
	if (!cy->conn->metadata) {
		r = cyradm_die(cy, "mboxconfig: Remote does not support "
			       "METADATA.");
		goto out;
	}
	const char *entry = args.v[1];
	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (!strcmp(entry, map[i][0]))
			entry = map[i][1];
	/* An unknown name is sent anyway, as the Perl one does. */
	char *full = xasprintf("%s%s", args.n > 3 ? "/private" : "/shared",
			       entry);
	r = set_md(cy, "mboxconfig", args.v[0], full,
		   args.n > 2 ? args.v[2] : NULL);
	free(full);
out:
	sl_free(&args);
	return r;
}

static int cmd_setmetadata(struct cyradm *cy, const char *name UNUSED,
			   int argc, char **argv)
{
	struct strlist args = { 0 };
	int r;
	if (md_args(cy, argc, argv, &args, "usage: setmetadata [--private] "
		    "mailbox [comment|expire|news2mail|pop3showafter|"
		    "sharedseen|sieve|specialuse|squat|/<explicit metadata>] "
		    "value") < 0)
		return -1;
	if (!cy->conn) {
		r = no_conn(cy, "setmetadata");
		goto out;
	}
	if (!cy->conn->metadata) {
		r = cyradm_die(cy, "setmetadata: Remote does not support "
			       "METADATA.");
		goto out;
	}
	const char *e = args.v[1];
	if (!strcmp(e, "comment"))
		e = "/private/comment";
	else if (getmd_entry(e))
		e = getmd_entry(e);
	struct buf entry = BUF_INIT;
	if (args.n > 3 && !strncasecmp(e, "/shared/", 8)) {
		buf_adds(&entry, "/private/");
		buf_adds(&entry, e + 8);
	} else {
		buf_adds(&entry, e);
	}
	r = set_md(cy, "setmetadata", args.v[0], entry.s,
		   args.n > 2 ? args.v[2] : NULL);
	buf_release(&entry);
out:
	sl_free(&args);
	return r;
}

static int cmd_setinfo(struct cyradm *cy, const char *name UNUSED, int argc,
		       char **argv)
{
	static const char *const map[][2] = {
		{ "comment", "/comment" }, { "motd", "/motd" },
		{ "admin", "/admin" },
		{ "shutdown", "/vendor/cmu/cyrus-imapd/shutdown" },
		{ "expire", "/vendor/cmu/cyrus-imapd/expire" },
		{ "squat", "/vendor/cmu/cyrus-imapd/squat" },
	};
	static const char usage[] =
		"usage: setinfo [motd|comment|admin|shutdown|expire|squat] text";
	struct strlist args = { 0 };
	int r;
	if (plain_args(cy, argc, argv, &args, usage) < 0)
		return -1;
	if (args.n < 2) {
		r = cyradm_die(cy, usage);
		goto out;
	}
	if (!cy->conn) {
		r = no_conn(cy, "setinfo");
		goto out;
	}
	if (!cy->conn->metadata) {
		r = cyradm_die(cy, "setinfo: Remote does not support METADATA.");
		goto out;
	}
	const char *e = args.v[0];
	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (!strcmp(e, map[i][0]))
			e = map[i][1];
	char *full = xasprintf("/shared%s", e);
	r = set_md(cy, "setinfo", "", full, args.v[1]);
	free(full);
out:
	sl_free(&args);
	return r;
}

/* ---- subscriptions, version -------------------------------------------- */

static int subscription(struct cyradm *cy, int argc, char **argv,
			const char *cmdname, const char *verb)
{
	struct strlist args = { 0 };
	struct buf text = BUF_INIT, usage = BUF_INIT;
	int r = 0;
	buf_printf(&usage, "usage: %s [mailbox]", cmdname);
	if (plain_args(cy, argc, argv, &args, usage.s) < 0) {
		r = -1;
		goto out;
	}
	if (!cy->conn) {
		r = no_conn(cy, cmdname);
		goto out;
	}
	int st = send_cmd(cy, NULL, NULL, &text, "%a %s", verb,
			  args.n ? args.v[0] : "");
	if (st > 0) {
		set_error(cy->conn, text.s);
		fprintf(cy->err, "%s\n", text.s);
		r = -1;
	} else if (st < 0) {
		r = -1;
	}
out:
	buf_release(&usage);
	buf_release(&text);
	sl_free(&args);
	return r;
}

static int cmd_subscribe(struct cyradm *cy, const char *name UNUSED,
			 int argc, char **argv)
{
	return subscription(cy, argc, argv, "subscribe", "SUBSCRIBE");
}

static int cmd_unsubscribe(struct cyradm *cy, const char *name UNUSED,
			   int argc, char **argv)
{
	return subscription(cy, argc, argv, "unsubscribe", "UNSUBSCRIBE");
}

static void id_cb(const struct imap_reply *r, void *rock)
{
	char **info = rock;
	if (strcasecmp(r->keyword, "ID"))
		return;
	free(*info);
	*info = xstrndup(r->text, r->textlen);
}

static int cmd_version(struct cyradm *cy, const char *name UNUSED, int argc,
		       char **argv)
{
	static struct perlre *p;
	struct strlist args = { 0 };
	struct buf text = BUF_INIT;
	char *info = NULL;
	int r = 0;
	if (plain_args(cy, argc, argv, &args, "usage: version") < 0)
		return -1;
	if (args.n) {
		r = cyradm_die(cy, "usage: version");
		goto out;
	}
	if (!cy->conn) {
		r = no_conn(cy, "version");
		goto out;
	}
	int st = send_cmd(cy, id_cb, &info, &text, "ID NIL");
	if (st != IMAP_OK) {
		if (st > 0)
			fprintf(cy->err, "%s\n", text.s);
		r = -1;
		goto out;
	}
	if (info && !strcmp(info, "NIL")) {
		fprintf(cy->out, "no version info returned by server\n");
		goto out;
	}
	struct buf t = BUF_INIT;
	struct perlre_match m;
	buf_sets(&t, info ? info : "");
	/* Perl: while (s/"([^"]+)"\s+("[^"]+"|NIL)\s*\/\/). */
	while (perlre_search(re(&p, "\"([^\"]+)\"\\s+(\"[^\"]+\"|NIL)\\s*"),
			     t.s, t.len, 0, &m)) {
		char *field = perlre_cap(&m, t.s, 1);
		char *value = perlre_cap(&m, t.s, 2);
		struct buf v = BUF_INIT;
		for (char *c = value; *c; c++) {
			if (*c == '"')
				continue;
			if (*c == ';' && !strcmp(field, "environment"))
				buf_adds(&v, "\n            ");
			else
				buf_addch(&v, *c);
		}
		if (!strcmp(v.s, "NIL"))
			buf_reset(&v);
		fprintf(cy->out, "%-11s: %s\n", field, v.s);
		buf_release(&v);
		free(field);
		free(value);
		struct buf nb = BUF_INIT;
		buf_add(&nb, t.s, m.start);
		buf_add(&nb, t.s + m.end, t.len - m.end);
		buf_release(&t);
		t = nb;
	}
	buf_release(&t);
out:
	free(info);
	buf_release(&text);
	sl_free(&args);
	return r;
}

/* ---- the session ------------------------------------------------------- */

static int cmd_server(struct cyradm *cy, const char *name UNUSED, int argc,
		      char **argv)
{
	static const char usage[] = "usage: server [-noauthenticate] [server]";
	struct strlist args = { 0 };
	bool auth = true;
	int i = 1, r = 0;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (opt_is(argv[i], "noauthenticate")) {
			auth = false;
			continue;
		}
		if (argv[i][0] == '-')
			return cyradm_die(cy, usage);
		break;
	}
	for (; i < argc; i++)
		sl_push(&args, argv[i]);
	if (!args.n) {
		if (!cy->conn)
			r = no_conn(cy, "server");
		else
			fprintf(cy->out, "%s\n",
				cyradm_server_shown(cy->conn));
	} else if (args.n == 1) {
		struct error err = ERROR_INIT;
		cyradm_disconnect(&cy->conn);
		fflush(cy->out);
		cy->conn = cyradm_connect(args.v[0], NULL, &cy->defauth, &err);
		if (!cy->conn) {
			if (errno == 0 && err.kind != ERR_NOUSER && err.msg[0])
				cyradm_print_failure(cy->err, &err,
						     &cy->defauth);
			r = cyradm_die(cy, "server: %s: cannot connect to server",
				       args.v[0]);
		} else if (auth) {
			/* As the Perl one: the defaults, not the command line's. */
			struct cyradm_auth a = { 0 };
			if (!cyradm_authenticate(cy->conn, &a, cy->err))
				r = cyradm_die(cy, "server: %s: cannot "
					       "authenticate", args.v[0]);
		}
	} else {
		r = cyradm_die(cy, usage);
	}
	sl_free(&args);
	return r;
}

static int cmd_authenticate(struct cyradm *cy, const char *name UNUSED,
			    int argc, char **argv)
{
	static const char usage[] =
		"usage: authenticate [-minssf N] [-maxssf N] [-mechanisms STR]\n"
		"                    [-service name] [-tlskey keyfile] [-notls]\n"
		"                    [-cafile cacertfile] [-capath cacertdir]\n"
		"                    [user]";
	struct strlist args = { 0 };
	struct cyradm_auth a = { 0 };
	char **want = NULL;
	char *minssf = NULL, *maxssf = NULL, *notls = NULL;
	int i = 1, r = 0;
	for (; i < argc; i++) {
		const char *o = argv[i];
		if (want) {
			free(*want);
			*want = xstrdup(o);
			want = NULL;
			continue;
		}
		if (!strcmp(o, "--")) {
			i++;
			break;
		}
		if (opt_is(o, "mechanisms"))
			want = &a.mech;
		else if (opt_is(o, "minssf"))
			want = &minssf;
		else if (opt_is(o, "maxssf"))
			want = &maxssf;
		else if (opt_is(o, "service"))
			want = &a.service;
		else if (opt_is(o, "tlskey")) {
			want = &a.tlskey;
			a.tlskey_set = true;
		} else if (opt_is(o, "notls"))
			want = &notls;   /* sic: takes a value in the Perl one */
		else if (opt_is(o, "cafile"))
			want = &a.cafile;
		else if (opt_is(o, "cadir") || opt_is(o, "capath"))
			want = &a.capath;
		else if (o[0] == '-') {
			r = cyradm_die(cy, "%s", usage);
			goto out;
		} else
			break;
	}
	for (; i < argc; i++)
		sl_push(&args, argv[i]);
	if (args.n > 1) {
		r = cyradm_die(cy, "%s", usage);
		goto out;
	}
	if (args.n)
		a.user = xstrdup(args.v[0]);
	a.minssf = minssf ? (unsigned)atoi(minssf) : 0;
	a.maxssf = maxssf ? (unsigned)atoi(maxssf) : 0;
	a.notls = perl_true(notls);
	if (!cy->conn) {
		r = no_conn(cy, "authenticate");
		goto out;
	}
	cy->conn->caps_fresh = false;  /* other commands may have run */
	cyradm_close_lanes(cy->conn);  /* they were someone else */
	if (!cyradm_authenticate(cy->conn, &a, cy->err) && cy->conn)
		r = cyradm_die(cy, "authenticate: authentication to server %s "
			       "failed",
			       cyradm_server_shown(cy->conn));
out:
	free(minssf);
	free(maxssf);
	free(notls);
	cyradm_auth_release(&a);
	sl_free(&args);
	return r;
}

static int cmd_disconnect(struct cyradm *cy, const char *name UNUSED,
			  int argc, char **argv)
{
	struct strlist args = { 0 };
	int r = 0;
	if (plain_args(cy, argc, argv, &args, "usage: disconnect") < 0)
		return -1;
	if (args.n)
		r = cyradm_die(cy, "usage: disconnect");
	else if (!cy->conn)
		r = no_conn(cy, "disconnect");
	else
		cyradm_disconnect(&cy->conn);
	sl_free(&args);
	return r;
}

static int cmd_chdir(struct cyradm *cy, const char *name UNUSED, int argc,
		     char **argv)
{
	struct strlist args = { 0 };
	int r = 0;
	if (plain_args(cy, argc, argv, &args, "usage: chdir directory") < 0)
		return -1;
	if (args.n != 1)
		r = cyradm_die(cy, "usage: chdir directory");
	else if (chdir(args.v[0]) < 0)
		r = cyradm_die(cy, "chdir: %s: %s", args.v[0], strerror(errno));
	sl_free(&args);
	return r;
}

static int cmd_exit(struct cyradm *cy, const char *name UNUSED, int argc,
		    char **argv)
{
	struct strlist args = { 0 };
	if (plain_args(cy, argc, argv, &args, "usage: exit [number]") < 0)
		return -1;
	if (args.n > 1) {
		sl_free(&args);
		return cyradm_die(cy, "usage: exit [number]");
	}
	int code = args.n ? (int)perl_num(args.v[0]) : 0;
	sl_free(&args);
	fflush(stdout);
	cyradm_disconnect(&cy->conn);
	exit(code & 0xff);
}

static int do_help(struct cyradm *cy, const char *cmd)
{
	const struct repl_command *c = repl_find(cmd);
	if (!c) {
		fprintf(cy->out, "unknown command: %s\n", cmd);
		return 0;
	}
	if (strcmp(c->name, cmd))
		fprintf(cy->out, "%s, alias for ", cmd);
	fprintf(cy->out, "%s %s\n\t%s\n", c->name, c->usage, c->help);
	return 1;
}

static int cmd_help(struct cyradm *cy, const char *name UNUSED, int argc,
		    char **argv)
{
	struct strlist args = { 0 };
	int r = 0;
	if (plain_args(cy, argc, argv, &args, "usage: help [command]") < 0)
		return -1;
	if (args.n) {
		qsort(args.v, args.n, sizeof(char *), cmp_str);
		for (size_t i = 0; i < args.n; i++)
			if (!do_help(cy, args.v[i]))
				r = 1;
	} else {
		struct strlist lines = { 0 };
		size_t w = 0;
		for (size_t i = 0; i < repl_ncommands; i++) {
			struct buf b = BUF_INIT;
			buf_adds(&b, repl_commands[i].name);
			for (const char *const *a = repl_commands[i].aliases;
			     a && *a; a++)
				buf_printf(&b, ", %s", *a);
			if (b.len > w)
				w = b.len;
			sl_push(&lines, b.s);
			buf_release(&b);
		}
		for (size_t i = 0; i < repl_ncommands; i++)
			fprintf(cy->out, "%-*s  %s\n", (int)w, lines.v[i],
				repl_commands[i].help);
		sl_free(&lines);
	}
	sl_free(&args);
	return r ? -1 : 0;
}

/* ---- pipelining --------------------------------------------------------- */

/*
 * Each plan_NAME below sends ahead what cmd_NAME sends for the simplest
 * shape of its arguments (no options, no wildcard), and nothing for any
 * other; keep the two in step: a command sent ahead that cmd_NAME does not
 * then send is lost (imapclient drains it).
 */

/* Sends one command ahead; counts into *sent. */
static bool ahead(struct cyradm *cy, size_t *sent, const char *fmt, ...)
{
	struct error err = ERROR_INIT;
	va_list ap;
	va_start(ap, fmt);
	int r = imapclient_vsend_ahead(cy->conn->ic, &err, fmt, ap);
	va_end(ap);
	if (r == 0)
		(*sent)++;
	return r == 0;
}

static int plan_result(size_t sent, size_t want)
{
	return sent == want ? PLAN_ALL : sent ? PLAN_SOME : PLAN_NONE;
}

/* A connection, and the one word after the command that is no option. */
static bool plan_one_word(struct cyradm *cy, int argc, char **argv)
{
	return argc == 2 && argv[1][0] != '-' && cy->conn &&
	       imapclient_alive(cy->conn->ic);
}

/* cmd_listmailbox without options: admin_list's command. */
static int plan_listmailbox(struct cyradm *cy, int argc, char **argv)
{
	struct buf cmd = BUF_INIT;
	size_t n = 0;
	if (argc > 3 || !cy->conn || !imapclient_alive(cy->conn->ic))
		return PLAN_NONE;
	for (int i = 1; i < argc; i++)
		if (argv[i][0] == '-')
			return PLAN_NONE;
	if (!list_fmt(cy->conn, 0, &cmd))
		ahead(cy, &n, cmd.s, argc > 2 ? argv[2] : "",
		      argc > 1 ? argv[1] : "*");
	buf_release(&cmd);
	return plan_result(n, 1);
}

/* One command on the one word (fmt's %s), if any; not for a wildcard
 * where cmd_NAME expands one. */
static int plan_word(struct cyradm *cy, int argc, char **argv,
		     const char *fmt, bool expands_wildcards)
{
	size_t n = 0;
	if (!plan_one_word(cy, argc, argv) ||
	    (expands_wildcards && has_wildcard(argv[1])))
		return PLAN_NONE;
	ahead(cy, &n, fmt, argv[1]);
	return plan_result(n, 1);
}

static int plan_create(struct cyradm *cy, int argc, char **argv)
{
	return plan_word(cy, argc, argv, "CREATE %s", false);
}

static int plan_delete(struct cyradm *cy, int argc, char **argv)
{
	return plan_word(cy, argc, argv, "DELETE %s", true);
}

static int plan_listquota(struct cyradm *cy, int argc, char **argv)
{
	return plan_word(cy, argc, argv, "GETQUOTA %s", false);
}

static int plan_listquotaroot(struct cyradm *cy, int argc, char **argv)
{
	return plan_word(cy, argc, argv, "GETQUOTAROOT %s", false);
}

static int plan_subscribe(struct cyradm *cy, int argc, char **argv)
{
	return plan_word(cy, argc, argv, "SUBSCRIBE %s", false);
}

static int plan_unsubscribe(struct cyradm *cy, int argc, char **argv)
{
	return plan_word(cy, argc, argv, "UNSUBSCRIBE %s", false);
}

/* cmd_setacl without a wildcard: admin_setacl's commands. */
static int plan_setacl(struct cyradm *cy, int argc, char **argv)
{
	struct strlist ids = { 0 }, rights = { 0 };
	size_t n = 0;
	if (argc < 4 || argc % 2 || argv[1][0] == '-' ||
	    has_wildcard(argv[1]) || !cy->conn ||
	    !imapclient_alive(cy->conn->ic))
		return PLAN_NONE;
	for (int i = 2; i + 1 < argc; i += 2)
		acl_put(&ids, &rights, argv[i], argv[i + 1]);
	for (size_t i = 0; i < ids.n; i++)
		if (!ahead(cy, &n, "SETACL %s %s %s", argv[1], ids.v[i],
			   acl_alias(rights.v[i])))
			break;
	int r = plan_result(n, ids.n);
	sl_free(&ids);
	sl_free(&rights);
	return r;
}

/* cmd_deleteacl without a wildcard nor "*": admin_deleteacl's commands. */
static int plan_deleteacl(struct cyradm *cy, int argc, char **argv)
{
	size_t n = 0;
	if (argc < 3 || argv[1][0] == '-' || has_wildcard(argv[1]) ||
	    !strcmp(argv[2], "*") || !cy->conn ||
	    !imapclient_alive(cy->conn->ic))
		return PLAN_NONE;
	for (int i = 2; i < argc; i++)
		if (!ahead(cy, &n, "DELETEACL %s %s", argv[1], argv[i]))
			break;
	return plan_result(n, (size_t)argc - 2);
}

/* ---- the table --------------------------------------------------------- */

#define ALIASES(...) (const char *const[]){ __VA_ARGS__, NULL }

/* Sorted by name, as help lists them; aliases in the Perl table's order. */
const struct repl_command repl_commands[] = {
	{ "authenticate", ALIASES("auth", "login"), cmd_authenticate,
	  "[-minssf N] [-maxssf N] [-mechanisms list] [-service name] "
	  "[-tlskey keyfile] [-notls] [-cafile cacertfile] "
	  "[-capath cacertdir] [user]", "authenticate to server", NULL, false },
	{ "chdir", ALIASES("cd"), cmd_chdir, "directory",
	  "change current directory", NULL, false },
	{ "createmailbox", ALIASES("create", "cm"), cmd_create,
	  "[--partition partition] [--specialuse specialuse] mailbox "
	  "[partition]", "create mailbox", plan_create, true },
	{ "deleteaclmailbox", ALIASES("deleteacl", "dam"), cmd_deleteacl,
	  "mailbox id [id ...]", "remove ACLs from mailbox", plan_deleteacl, true },
	{ "deletemailbox", ALIASES("delete", "dm"), cmd_delete,
	  "mailbox [host]", "delete mailbox", plan_delete, true },
	{ "disconnect", ALIASES("disc"), cmd_disconnect, "",
	  "disconnect from current server", NULL, false },
	{ "exit", ALIASES("quit"), cmd_exit, "[number]", "exit cyradm", NULL, false },
	{ "getmetadata", ALIASES("getmd"), cmd_getmetadata, "[mailbox]",
	  "display mailbox/server metadata", NULL, false },
	{ "help", ALIASES("?"), cmd_help, "[command]", "show commands", NULL, false },
	{ "info", NULL, cmd_info, "[mailbox]",
	  "display mailbox/server annotations", NULL, false },
	{ "listacl", ALIASES("listaclmailbox", "lam"), cmd_listacl, "mailbox",
	  "list ACLs on mailbox", NULL, false },
	{ "listmailbox", ALIASES("lm"), cmd_listmailbox,
	  "[-subscribed] [-specialuse] [pattern [base]]", "list mailboxes",
	  plan_listmailbox, false },
	{ "listquota", ALIASES("lq"), cmd_listquota, "root",
	  "list quotas on specified root", plan_listquota, true },
	{ "listquotaroot", ALIASES("lqr", "lqm"), cmd_listquotaroot, "mailbox",
	  "show quota roots and quotas for mailbox", plan_listquotaroot, true },
	{ "mboxcfg", ALIASES("mboxconfig"), cmd_mboxconfig,
	  "[--private] mailbox [comment|expire|news2mail|sieve|squat|"
	  "/<explicit annotation>] value", "configure mailbox", NULL, false },
	{ "reconstruct", NULL, cmd_reconstruct, "mailbox",
	  "reconstruct mailbox (if supported)", NULL, false },
	{ "renamemailbox", ALIASES("rename", "renm"), cmd_rename,
	  "[--partition partition] oldname newname [partition]",
	  "rename (and optionally relocate) mailbox", NULL, false },
	{ "server", ALIASES("connect", "servername"), cmd_server,
	  "[-noauthenticate] [server]",
	  "show current server or connect to server", NULL, false },
	{ "setaclmailbox", ALIASES("setacl", "sam"), cmd_setacl,
	  "mailbox id rights [id rights ...]", "set ACLs on mailbox",
	  plan_setacl, true },
	{ "setinfo", NULL, cmd_setinfo,
	  "[motd|comment|admin|shutdown|expire|squat] text",
	  "set server metadata", NULL, false },
	{ "setmetadata", ALIASES("setmd"), cmd_setmetadata,
	  "[--private] mailbox [comment|expire|news2mail|pop3showafter|"
	  "sharedseen|sieve|specialuse|squat|/<explicit annotation>] value",
	  "set metadata to mailbox", NULL, false },
	{ "setquota", ALIASES("sq"), cmd_setquota,
	  "mailbox resource value [resource value ...]",
	  "set quota on mailbox or resource", NULL, false },
	{ "subscribe", ALIASES("sub"), cmd_subscribe, "[mailbox]",
	  "subscribe to a mailbox", plan_subscribe, true },
	{ "unsubscribe", ALIASES("unsub"), cmd_unsubscribe, "[mailbox]",
	  "unsubscribe from a mailbox", plan_unsubscribe, true },
	{ "version", ALIASES("ver"), cmd_version, "",
	  "display version info of current server", NULL, false },
	{ "xfermailbox", ALIASES("xfer"), cmd_xfer,
	  "[--partition partition] mailbox server [partition]",
	  "transfer (relocate) a mailbox to a different server", NULL, false },
};

const size_t repl_ncommands = ARRAY_SIZE(repl_commands);

const struct repl_command *repl_find(const char *name)
{
	for (size_t i = 0; i < repl_ncommands; i++) {
		if (!strcmp(repl_commands[i].name, name))
			return &repl_commands[i];
		for (const char *const *a = repl_commands[i].aliases; a && *a; a++)
			if (!strcmp(*a, name))
				return &repl_commands[i];
	}
	return NULL;
}
