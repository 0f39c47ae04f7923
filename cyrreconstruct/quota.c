/*
 * cyrus quota (cyrquota): report quota roots and their usage, and with -f
 * recompute the usage from the mailboxes, as Cyrus 3.6.1's quota does
 * (imap/quota.c; docs/tools.md section 3).
 *
 * Output is the real tool's, byte for byte: the report on stdout, the fix
 * messages on stderr. Where the real tool loses data we do not follow it:
 *   - -n changes nothing (the real one still rewrites cyrus.header files
 *     and bumps each root's MODSEQ);
 *   - the roots are scanned as one sorted, duplicate-free list (the real
 *     one trusts the order of the arguments, so "quota -f user.dave
 *     user.alice" strips user.alice's mailboxes of their root and deletes
 *     it, and a prefix given twice deletes the roots it names);
 *   - a mailbox is counted once even if two prefixes match it;
 *   - a whole-domain root "domain!" covers its domain's mailboxes, as the
 *     server's quota_findroot has it (the real tool removes it);
 *   - mailboxes are scanned in the quota database's key order, the order
 *     the SCAN record of a running fix promises to a live server;
 *   - a root is done at once, with all its mailboxes locked (batch_root):
 *     no SCAN record per mailbox, one database write per root (with the
 *     MODSEQ the real one's writes add up to), none where the usage is
 *     right (the real one bumps MODSEQ there too). A root whose mailboxes
 *     are busy or need their quota root fixed goes the real tool's way.
 */
#include "compat.h"

#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

#include "buf.h"
#include "commands.h"
#include "config.h"
#include "cyrus.h"
#include "cyrusdb.h"
#include "error.h"
#include "log.h"
#include "mailbox.h"
#include "mboxlist.h"
#include "mboxname.h"
#include "quota.h"
#include "xmalloc.h"
#include "json.h"

struct root {
	char *name;
	unsigned refcount;
	bool deleted;
	long long scanuseds[QUOTA_NUMRESOURCES]; /* our own count */
	struct buf msg; /* what its fix prints, held for the real order */
};

struct mbox {
	struct mboxlist_entry *e;
	size_t prefixlen; /* of the shortest prefix that matched it */
	struct root *root; /* the root that covers it, NULL: none */
	char *msg;         /* its quota root change, held for the order */
};

struct qstate {
	struct cyrus_ctx *ctx;
	const struct config *cfg;
	struct mboxname_ns ns;
	struct quotadb *qdb;
	struct mboxlist *ml;
	bool dryrun, isuser;
	/* Roots in report order (the real tool's: argument order). */
	struct root **roots;
	size_t nroots, aroots;
	/* The same, sorted by name: the fix works on this. */
	struct root **sorted;
	struct mbox *mboxes;
	size_t nmboxes, amboxes;
	const char *userid; /* -u: the user the current prefix is for */
	size_t prefixlen;
	struct error err;
};

static int fail(struct qstate *st, struct error *err, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

/* Prints "fmt: err" once and keeps the error for the exit code. */
static int fail(struct qstate *st, struct error *err, const char *fmt, ...)
{
	char what[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	log_error("%s: %s", what, err->msg);
	if (st->err.kind == ERR_NONE)
		st->err = *err;
	return -1;
}

/* ---- the list of roots ---- */

static int add_root(void *rock, const struct quota *q)
{
	struct qstate *st = rock;
	if (st->userid) {
		struct mboxname mbn;
		struct buf uid = BUF_INIT;
		mboxname_init(&mbn);
		mboxname_from_intname(&st->ns, &mbn, q->root);
		bool own = mboxname_userid(&mbn, &uid) &&
			   !strcmp(uid.s, st->userid);
		mboxname_release(&mbn);
		buf_release(&uid);
		if (!own)
			return 0;
	}
	for (size_t i = 0; i < st->nroots; i++)
		if (!strcmp(st->roots[i]->name, q->root))
			return 0; /* a prefix given twice */
	if (st->nroots == st->aroots) {
		st->aroots = st->aroots ? st->aroots * 2 : 64;
		st->roots = xrealloc(st->roots,
				     st->aroots * sizeof(*st->roots));
	}
	struct root *r = xcalloc(1, sizeof(*r));
	r->name = xstrdup(q->root);
	buf_init(&r->msg);
	st->roots[st->nroots++] = r;
	return 0;
}

static int cmp_root(const void *a, const void *b)
{
	return strcmp((*(struct root *const *)a)->name,
		      (*(struct root *const *)b)->name);
}

/* The longest root that covers name (findroot), or NULL. */
static struct root *find_root(struct qstate *st, const char *name)
{
	struct root *best = NULL;
	for (size_t i = 0; i < st->nroots; i++) {
		struct root *r = st->sorted[i];
		if (strcmp(r->name, name) > 0)
			break; /* a covering root sorts before the name */
		if (quota_root_covers(r->name, name))
			best = r;
	}
	return best;
}

/* ---- the list of mailboxes ---- */

static int add_mbox(void *rock, const char *key, size_t keylen,
		    const char *data, size_t datalen)
{
	struct qstate *st = rock;
	struct mboxlist_entry *e = NULL;
	if (keylen < 1 || key[0] != 'N')
		return 0;
	if (mboxlist_decode(&st->ns, key + 1, keylen - 1, data, datalen, &e,
			    NULL) < 0)
		return 0; /* undecodable: skipped, as Cyrus does */
	if (e->mbtype & (MBTYPE_DELETED | MBTYPE_INTERMEDIATE |
			 MBTYPE_REMOTE)) {
		mboxlist_entry_free(&e);
		return 0;
	}
	if (st->nmboxes == st->amboxes) {
		st->amboxes = st->amboxes ? st->amboxes * 2 : 256;
		st->mboxes = xrealloc(st->mboxes,
				      st->amboxes * sizeof(*st->mboxes));
	}
	st->mboxes[st->nmboxes].e = e;
	st->mboxes[st->nmboxes].prefixlen = st->prefixlen;
	st->mboxes[st->nmboxes].root = NULL;
	st->mboxes[st->nmboxes].msg = NULL;
	st->nmboxes++;
	return 0;
}

/* Mailboxes whose mailboxes.db name starts with that of prefix (an
 * internal name; "" for all), as mboxlist_allmbox selects them. */
static int collect_prefix(struct qstate *st, const char *prefix)
{
	struct buf key = BUF_INIT;
	struct error err = ERROR_INIT;
	buf_addch(&key, 'N');
	if (*prefix) {
		struct mboxname mbn;
		mboxname_init(&mbn);
		mboxname_from_intname(&st->ns, &mbn, prefix);
		if (prefix[strlen(prefix) - 1] == '.') {
			/* A pattern ending in the separator: an empty box. */
			mbn.boxes = xrealloc(mbn.boxes, (mbn.nboxes + 1) *
						       sizeof(*mbn.boxes));
			mbn.boxes[mbn.nboxes++] = xstrdup("");
		}
		mboxname_dbname(&st->ns, &mbn, &key);
		mboxname_release(&mbn);
	}
	st->prefixlen = strlen(prefix);
	int r = cyrusdb_foreach(st->ml->db, key.s, key.len, NULL, add_mbox, st,
				NULL);
	buf_release(&key);
	if (r < 0) {
		error_set(&err, ERR_IO, "%s", cyrusdb_errmsg(st->ml->db));
		return fail(st, &err, "processing mbox list for '%s'", prefix);
	}
	return 0;
}

/* -u: the user's INBOX and the mailboxes below it (usermboxtree). */
static int collect_user(struct qstate *st, const char *inbox)
{
	char *dbname = mboxname_intname_to_dbname(&st->ns, inbox);
	struct error err = ERROR_INIT;
	struct buf key = BUF_INIT;
	int r;

	st->prefixlen = strlen(inbox);
	buf_printf(&key, "N%s", dbname);
	const char *data;
	size_t len;
	r = cyrusdb_fetch(st->ml->db, key.s, key.len, &data, &len, NULL);
	if (r == 0)
		r = add_mbox(st, key.s, key.len, data, len);
	else if (r == CYRUSDB_NOTFOUND)
		r = 0;
	if (r == 0) {
		buf_addch(&key, MBOXNAME_DB_HIERSEP);
		r = cyrusdb_foreach(st->ml->db, key.s, key.len, NULL, add_mbox,
				    st, NULL);
	}
	free(dbname);
	buf_release(&key);
	if (r < 0) {
		error_set(&err, ERR_IO, "%s", cyrusdb_errmsg(st->ml->db));
		return fail(st, &err, "processing user '%s'", inbox);
	}
	return 0;
}

static int cmp_mbox(const void *a, const void *b)
{
	const char *x = ((const struct mbox *)a)->e->name;
	const char *y = ((const struct mbox *)b)->e->name;
	return cyrusdb_compar_raw(x, strlen(x), y, strlen(y));
}

/* Sorted in the quota database's key order, each mailbox once. */
static void sort_mboxes(struct qstate *st)
{
	size_t n = 0;
	if (!st->nmboxes)
		return;
	if (st->nmboxes)
		qsort(st->mboxes, st->nmboxes, sizeof(*st->mboxes),
		      cmp_mbox);
	for (size_t i = 0; i < st->nmboxes; i++) {
		if (n && !strcmp(st->mboxes[n - 1].e->name,
				 st->mboxes[i].e->name)) {
			if (st->mboxes[i].prefixlen < st->mboxes[n - 1].prefixlen)
				st->mboxes[n - 1].prefixlen =
					st->mboxes[i].prefixlen;
			mboxlist_entry_free(&st->mboxes[i].e);
			continue;
		}
		st->mboxes[n++] = st->mboxes[i];
	}
	st->nmboxes = n;
}

/* ---- the fix ---- */

static void bump_modseq(struct qstate *st, struct quota *q, unsigned by)
{
	/* quota_write: the next quota modseq of a user root (with
	 * conversations off, last + 1), once per write. */
	if (quota_root_is_user(&st->ns, q->root))
		q->modseq += by;
}

/* Drops a SCAN left by an interrupted run (fixquota_addroot). */
static int clear_scan(struct qstate *st, struct root *rt)
{
	struct cyrusdb_txn *tid = NULL;
	struct error err = ERROR_INIT;
	struct quota q;
	int r;

	quota_init(&q, rt->name);
	r = quotadb_read(st->qdb, &q, &tid, &err);
	if (r == 0 && q.scanmbox) {
		free(q.scanmbox);
		q.scanmbox = NULL;
		bump_modseq(st, &q, 1);
		r = quotadb_write(st->qdb, &q, &tid, &err);
	}
	if (r == 0)
		r = quotadb_commit(st->qdb, &tid, &err);
	else
		quotadb_abort(st->qdb, &tid);
	quota_release(&q);
	if (r < 0)
		return fail(st, &err, "failed reading quota record for '%s'",
			    rt->name);
	return 0;
}

static int fix_root_of(struct qstate *st, struct mbox *m,
		       struct quota_mbox *qm, const char *root)
{
	struct error err = ERROR_INIT;
	const char *old = quota_mbox_quotaroot(qm);
	free(m->msg);
	m->msg = xasprintf("%s: quota root %s --> %s\n", qm->name,
			   old ? old : "(none)", root ? root : "(none)");
	if (st->dryrun)
		return 0;
	log_notice("quota root of %s: %s --> %s", qm->name,
		   old ? old : "(none)", root ? root : "(none)");
	if (quota_mbox_set_quotaroot(qm, root, &err) < 0)
		return fail(st, &err, "failed setting the quota root of '%s'",
			    qm->name);
	return 0;
}

/* Adds one mailbox's usage to the scan of its root (fixquota_dombox). */
static int scan_mbox(struct qstate *st, struct mbox *m)
{
	struct error err = ERROR_INIT;
	struct quota_mbox *qm = NULL;
	struct root *rt = m->root;
	long long use[QUOTA_NUMRESOURCES];
	int r = 0;

	if (rt)
		rt->refcount++;
	if (quota_mbox_open(st->cfg, &st->ns, m->e,
			    st->dryrun ? 0 : QUOTA_MBOX_WRITABLE, &qm,
			    &err) < 0) {
		/* Deleted since we listed it: nothing to count. */
		struct mboxlist_entry *now = NULL;
		if (err.kind == ERR_NOINPUT &&
		    mboxlist_lookup(st->ml, m->e->name, false, &now, NULL,
				    NULL) < 0)
			return 0;
		mboxlist_entry_free(&now);
		return fail(st, &err, "failed opening header for mailbox '%s'",
			    m->e->name);
	}
	const char *cur = quota_mbox_quotaroot(qm);
	if (!rt) {
		/* A root outside the prefixes we scan is not ours to drop. */
		if (cur && strlen(cur) >= m->prefixlen)
			r = fix_root_of(st, m, qm, NULL);
		goto out;
	}
	if (!cur || strcmp(cur, rt->name))
		r = fix_root_of(st, m, qm, rt->name);
	if (r < 0)
		goto out;

	quota_mailbox_usage(qm->i, use);
	for (int res = 0; res < QUOTA_NUMRESOURCES; res++)
		rt->scanuseds[res] += use[res];
	if (st->dryrun)
		goto out;

	/* Record the scan in the database, under its lock, so that a live
	 * server adds its changes to mailboxes we have passed. */
	struct cyrusdb_txn *tid = NULL;
	struct quota q;
	quota_init(&q, rt->name);
	r = quotadb_read(st->qdb, &q, &tid, &err);
	if (r == 0) {
		for (int res = 0; res < QUOTA_NUMRESOURCES; res++)
			q.scanuseds[res] += use[res];
		free(q.scanmbox);
		q.scanmbox = xstrdup(m->e->name);
		bump_modseq(st, &q, 1);
		r = quotadb_write(st->qdb, &q, &tid, &err);
	}
	if (r == 0)
		r = quotadb_commit(st->qdb, &tid, &err);
	else
		quotadb_abort(st->qdb, &tid);
	quota_release(&q);
	if (r < 0)
		fail(st, &err, "failed updating quota root '%s' for mailbox "
		     "'%s'", rt->name, m->e->name);
out:
	quota_mbox_close(&qm);
	return r;
}

/*
 * Stores the scanned usage of one root (fixquota_finish). batch: the
 * usage is our own count, taken with every mailbox of the root locked
 * (still held), and a root whose usage is right is left unwritten.
 */
static int finish_root(struct qstate *st, struct root *rt, bool batch)
{
	struct cyrusdb_txn *tid = NULL;
	struct error err = ERROR_INIT;
	struct quota q;
	int r;

	if (!rt->refcount) {
		rt->deleted = true;
		buf_printf(&rt->msg, "%s: removed\n", rt->name);
		if (st->dryrun)
			return 0;
		log_notice("quota root %s removed: no mailbox uses it",
			   rt->name);
		if (quotadb_delete(st->qdb, rt->name, NULL, &err) < 0)
			return fail(st, &err, "failed deleting quotaroot '%s'",
				    rt->name);
		return 0;
	}
	quota_init(&q, rt->name);
	r = quotadb_read(st->qdb, &q, st->dryrun ? NULL : &tid, &err);
	if (r < 0) {
		quotadb_abort(st->qdb, &tid);
		quota_release(&q);
		return fail(st, &err, "failed reading quotaroot '%s'",
			    rt->name);
	}
	bool changed = false;
	for (int res = 0; res < QUOTA_NUMRESOURCES; res++) {
		/* The database's scan includes what a live server added. */
		long long now = st->dryrun || batch ? rt->scanuseds[res]
						    : q.scanuseds[res];
		if (now == q.useds[res])
			continue;
		buf_printf(&rt->msg, "%s: %s usage was %lld, now %lld\n",
			   rt->name, quota_names[res], q.useds[res], now);
		q.useds[res] = now;
		changed = true;
	}
	if (st->dryrun || (batch && !changed && !q.scanmbox)) {
		quotadb_abort(st->qdb, &tid);
		quota_release(&q);
		return 0;
	}
	if (changed)
		log_notice("quota root %s: usage fixed", rt->name);
	free(q.scanmbox);
	q.scanmbox = NULL;
	/* As many as the real tool's writes: one per mailbox, one here. */
	bump_modseq(st, &q, batch ? rt->refcount + 1 : 1);
	r = quotadb_write(st->qdb, &q, &tid, &err);
	if (r == 0)
		r = quotadb_commit(st->qdb, &tid, &err);
	else
		quotadb_abort(st->qdb, &tid);
	quota_release(&q);
	if (r < 0)
		return fail(st, &err, "failed writing quotaroot: '%s'",
			    rt->name);
	return 0;
}

/*
 * One root at once: every mailbox of rt opened read-only and locked (the
 * first blocking, the others never, so that we cannot deadlock with a
 * server that holds one of them and waits for another), the usage summed
 * and stored while the locks are held. Nothing can change the usage
 * meanwhile, so no SCAN record is needed, and a root already right is not
 * written. Returns 1 if done, 0 if the root needs the per-mailbox way
 * (a lock held elsewhere, a mailbox that names another root, one that
 * cannot be opened), -1 on a database error.
 */
static int batch_root(struct qstate *st, struct root *rt, struct mbox **ms,
		      size_t n)
{
	struct quota_mbox **qms = xcalloc(n ? n : 1, sizeof(*qms));
	long long sum[QUOTA_NUMRESOURCES] = { 0 };
	size_t k;
	int r = 0;

	for (k = 0; k < n; k++) {
		struct error err = ERROR_INIT;
		long long use[QUOTA_NUMRESOURCES];
		if (quota_mbox_open(st->cfg, &st->ns, ms[k]->e,
				    k ? QUOTA_MBOX_NOWAIT : 0, &qms[k],
				    &err) < 0)
			goto out;
		const char *cur = quota_mbox_quotaroot(qms[k]);
		if (!cur || strcmp(cur, rt->name)) {
			k++;
			goto out;
		}
		quota_mailbox_usage(qms[k]->i, use);
		for (int res = 0; res < QUOTA_NUMRESOURCES; res++)
			sum[res] += use[res];
	}
	rt->refcount = (unsigned)n;
	memcpy(rt->scanuseds, sum, sizeof(sum));
	r = finish_root(st, rt, true) < 0 ? -1 : 1;
out:
	while (k > 0)
		quota_mbox_close(&qms[--k]);
	free(qms);
	return r;
}

static int fix(struct qstate *st)
{
	struct mbox ***per = xcalloc(st->nroots + 1, sizeof(*per));
	size_t *nper = xcalloc(st->nroots + 1, sizeof(*nper));
	int r = -1;

	for (size_t i = 0; i < st->nroots; i++)
		if (!st->dryrun && clear_scan(st, st->sorted[i]) < 0)
			goto out;
	/* The mailboxes of each root, in scan order. */
	for (size_t i = 0; i < st->nmboxes; i++) {
		struct mbox *m = &st->mboxes[i];
		size_t j = 0;
		m->root = find_root(st, m->e->name);
		if (!m->root) {
			if (scan_mbox(st, m) < 0)
				goto out;
			continue;
		}
		while (st->sorted[j] != m->root)
			j++;
		per[j] = xrealloc(per[j], (nper[j] + 1) * sizeof(**per));
		per[j][nper[j]++] = m;
	}
	for (size_t j = 0; j < st->nroots; j++) {
		struct root *rt = st->sorted[j];
		int b = batch_root(st, rt, per[j], nper[j]);
		if (b < 0)
			goto out;
		if (b > 0)
			continue;
		/* The real tool's way, one mailbox after the other. */
		for (size_t k = 0; k < nper[j]; k++)
			if (scan_mbox(st, per[j][k]) < 0)
				goto out;
		if (finish_root(st, rt, false) < 0)
			goto out;
	}
	r = 0;
out:
	/* What was fixed, in the real tool's order. */
	for (size_t i = 0; i < st->nmboxes; i++)
		if (st->mboxes[i].msg)
			fputs(st->mboxes[i].msg, stderr);
	for (size_t j = 0; j < st->nroots; j++) {
		fputs(st->sorted[j]->msg.s, stderr);
		free(per[j]);
	}
	free(per);
	free(nper);
	return r;
}

/* ---- the report ---- */

static void extname(struct qstate *st, const char *intname, struct buf *out)
{
	struct mboxname mbn;
	mboxname_init(&mbn);
	mboxname_from_intname(&st->ns, &mbn, intname);
	if (!mboxname_extname(&st->ns, &mbn, NULL, out))
		buf_adds(out, intname);
	mboxname_release(&mbn);
}

/* One root, as reportquota_resource prints it (text or jansson's
 * JSON_INDENT(2) member). */
static void report_root(const struct quota *q, const char *ext, bool json,
			bool first, struct buf *out)
{
	if (json) {
		buf_adds(out, first ? "\n  " : ",\n  ");
		json_append_string(out, ext);
		buf_adds(out, ": {");
		for (int res = 0; res < QUOTA_NUMRESOURCES; res++) {
			buf_adds(out, res ? ",\n    " : "\n    ");
			json_append_string(out, quota_names[res]);
			buf_printf(out, ": {\n      \"used\": %lld",
				   q->useds[res]);
			if (q->limits[res] > 0)
				buf_printf(out, ",\n      \"limit\": %lld",
					   q->limits[res] * quota_units[res]);
			buf_adds(out, "\n    }");
		}
		buf_adds(out, "\n  }");
		return;
	}
	for (int res = 0; res < QUOTA_NUMRESOURCES; res++) {
		long long lim = q->limits[res];
		long long used = q->useds[res] / quota_units[res];
		if (lim > 0)
			buf_printf(out, " %7lld %8lld", lim,
				   (used * 100) / lim);
		else if (lim == 0)
			buf_adds(out, "       0         ");
		else
			buf_adds(out, "                 ");
		buf_printf(out, " %8lld %20s %s\n", used, quota_names[res],
			   ext);
	}
}

static void report(struct qstate *st, bool json)
{
	struct buf out = BUF_INIT, ext = BUF_INIT;
	bool first = true;

	if (json)
		buf_addch(&out, '{');
	else
		buf_adds(&out, "   Quota   % Used     Used             "
			       "Resource Root\n");
	for (size_t i = 0; i < st->nroots; i++) {
		struct quota q;
		struct error err = ERROR_INIT;
		if (st->roots[i]->deleted)
			continue;
		quota_init(&q, st->roots[i]->name);
		if (quotadb_read(st->qdb, &q, NULL, &err) < 0) {
			/* Removed meanwhile: nothing to report. */
			if (err.kind != ERR_NOINPUT)
				fail(st, &err, "failed reading quotaroot '%s'",
				     st->roots[i]->name);
			quota_release(&q);
			continue;
		}
		buf_reset(&ext);
		extname(st, q.root, &ext);
		report_root(&q, ext.s, json, first, &out);
		first = false;
		quota_release(&q);
	}
	if (json)
		buf_adds(&out, first ? "}\n" : "\n}\n");
	fwrite(out.s, 1, out.len, stdout);
	buf_release(&out);
	buf_release(&ext);
}

/* ---- main ---- */

static void free_state(struct qstate *st)
{
	for (size_t i = 0; i < st->nroots; i++) {
		free(st->roots[i]->name);
		buf_release(&st->roots[i]->msg);
		free(st->roots[i]);
	}
	free(st->roots);
	free(st->sorted);
	for (size_t i = 0; i < st->nmboxes; i++) {
		mboxlist_entry_free(&st->mboxes[i].e);
		free(st->mboxes[i].msg);
	}
	free(st->mboxes);
	mboxlist_close(&st->ml);
	quotadb_close(&st->qdb);
}

/* The internal-name prefix of one argument (domain prepended). */
static char *arg_prefix(struct qstate *st, const char *domain,
			const char *arg)
{
	struct mboxname mbn;
	struct buf in = BUF_INIT;
	struct error err = ERROR_INIT;
	mboxname_init(&mbn);
	if (mboxname_from_extname(&st->ns, &mbn, arg, NULL, &err) < 0)
		buf_adds(&in, arg); /* no mailbox has it: it matches nothing */
	else
		mboxname_intname(&st->ns, &mbn, &in);
	mboxname_release(&mbn);
	char *p = xasprintf("%s%s%s", domain ? domain : "", domain ? "!" : "",
			    in.s);
	buf_release(&in);
	return p;
}

static char *user_inbox(struct qstate *st, const char *userid)
{
	struct mboxname mbn;
	struct buf in = BUF_INIT;
	mboxname_init(&mbn);
	mboxname_from_userid(&st->ns, &mbn, userid);
	mboxname_intname(&st->ns, &mbn, &in);
	mboxname_release(&mbn);
	return buf_detach(&in, NULL);
}

int cmd_quota(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'J' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf = NULL, *domain = NULL;
	bool fflag = false, report_after = true, json = false;
	struct qstate st = { 0 };
	struct error err = ERROR_INIT;
	int c, lockfd = -1, code = 0;

	st.ctx = ctx;
	while ((c = getopt_long(argc, argv, "C:d:fqJnZu", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'C':
			conf = optarg;
			break;
		case 'd':
			domain = optarg;
			break;
		case 'f':
			fflag = true;
			break;
		case 'q':
			report_after = false;
			break;
		case 'J':
			json = true;
			break;
		case 'n':
			st.dryrun = true;
			break;
		case 'Z':
			/* The real tool's test hook (it waits for files under
			 * configdirectory/quota-sync): not for production. */
			log_error("-Z (test synchronisation mode) is not "
				  "supported");
			cyrus_usage(ctx, false);
		case 'u':
			st.isuser = true;
			break;
		default:
			cyrus_usage(ctx, false);
		}
	}
	argc -= optind;
	argv += optind;
	if (!fflag) {
		report_after = true; /* without -f there is only the report */
		st.dryrun = true;
	}

	cyrus_setup(ctx, conf);
	st.cfg = ctx->cfg;
	mboxname_ns_init(&st.ns, st.cfg, true);

	if (!st.dryrun && config_getswitch(st.cfg, "conversations")) {
		/* Quota modseqs then live in each user's counters file. */
		log_error("-f with conversations: yes is not supported yet "
			  "(use -n to see what would change)");
		return EX_CONFIG;
	}
	if (quotadb_open(st.cfg, NULL, !st.dryrun, &st.qdb, &err) < 0 ||
	    mboxlist_open(st.cfg, NULL, 0, &st.ml, &err) < 0) {
		log_error("%s", err.msg);
		code = error_exitcode(err.kind);
		goto out;
	}

	/* Quota root changes by others wait until we are done. */
	if (fflag && !st.dryrun &&
	    quota_changelock(st.cfg, &st.ns, &lockfd, &err) < 0) {
		log_error("%s", err.msg);
		code = error_exitcode(err.kind);
		goto out;
	}

	/* The roots (buildquotalist). */
	if (!argc) {
		char *p = domain ? xasprintf("%s!", domain) : xstrdup("");
		if (quotadb_foreach(st.qdb, p, add_root, &st, &err) < 0)
			fail(&st, &err, "failed building quota list for '%s'",
			     p);
		if (fflag && !st.err.kind)
			collect_prefix(&st, p);
		free(p);
	}
	for (int i = 0; i < argc && !st.err.kind; i++) {
		char *p = st.isuser ? user_inbox(&st, argv[i])
				    : arg_prefix(&st, domain, argv[i]);
		st.userid = st.isuser ? argv[i] : NULL;
		if (quotadb_foreach(st.qdb, p, add_root, &st, &err) < 0)
			fail(&st, &err, "failed building quota list for '%s'",
			     p);
		st.userid = NULL;
		if (fflag && !st.err.kind)
			(st.isuser ? collect_user : collect_prefix)(&st, p);
		free(p);
	}
	st.sorted = xmalloc((st.nroots + 1) * sizeof(*st.sorted));
	if (st.nroots) {
		memcpy(st.sorted, st.roots, st.nroots * sizeof(*st.sorted));
		qsort(st.sorted, st.nroots, sizeof(*st.sorted), cmp_root);
	}
	sort_mboxes(&st);

	if (fflag && !st.err.kind)
		fix(&st);
	quota_changelock_release(&lockfd);

	if (st.err.kind)
		code = error_exitcode(st.err.kind);
	else if (report_after)
		report(&st, json);
	if (!code && st.err.kind)
		code = error_exitcode(st.err.kind);
out:
	quota_changelock_release(&lockfd);
	free_state(&st);
	return code;
}
