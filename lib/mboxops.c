/*
 * mboxops.c: create, delete and rename mailboxes on the store (see
 * mboxops.h for what is written and why).
 */
#include "compat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "cyrusdb.h"
#include "dlist.h"
#include "error.h"
#include "fsutil.h"
#include "lock.h"
#include "mailbox.h"
#include "mboxlist.h"
#include "mboxname.h"
#include "mboxops.h"
#include "mboxpath.h"
#include "xmalloc.h"

/* ---- small helpers ---- */

static time_t op_now(const struct mboxops *ops)
{
	return ops->now ? ops->now : time(NULL);
}

static void reportf(struct mboxops *ops, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void reportf(struct mboxops *ops, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	if (!ops->report)
		return;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	ops->report(ops->rock, b.s);
	buf_release(&b);
}

static const struct mboxname_ns *ns_of(const struct mboxops *ops)
{
	return &ops->ml->ns;
}

/* A new uniqueid as Debian's Cyrus makes them (built without libuuid):
 * 24 characters of [0-9a-z]. */
static void make_uniqueid(char out[25])
{
	unsigned char rnd[24];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, rnd, sizeof(rnd)) : -1;
	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof(rnd)) {
		/* No /dev/urandom: time and pid, still unique enough here. */
		unsigned long x = (unsigned long)time(NULL) ^
				  ((unsigned long)getpid() << 16);
		for (size_t i = 0; i < sizeof(rnd); i++) {
			x = x * 6364136223846793005UL + 1442695040888963407UL;
			rnd[i] = (unsigned char)(x >> 33);
		}
	}
	for (size_t i = 0; i < 24; i++) {
		unsigned v = rnd[i] % 36;
		out[i] = (char)(v < 10 ? '0' + v : 'a' + v - 10);
	}
	out[24] = '\0';
}

/* ---- ACLs (lib/acl.c cyrus_acl_strtomask/masktostr, deleteright c) ---- */

#define R_LOOKUP 0x000001L
#define R_READ 0x000002L
#define R_SETSEEN 0x000004L
#define R_WRITE 0x000008L
#define R_INSERT 0x000010L
#define R_POST 0x000020L
#define R_CREATE 0x000040L
#define R_DELETEMBOX 0x000080L
#define R_DELETEMSG 0x000100L
#define R_EXPUNGE 0x000200L
#define R_ADMIN 0x000400L
#define R_ANNOTATEMSG 0x000800L

int mboxops_canon_rights(const char *str, char out[40])
{
	static const char digits[] = "1234567890"; /* USER1..USER9, USER0 */
	long result = 0, legacy_create = 0, legacy_delete = 0;
	char *pos = out;
	int r = 0;

	for (const char *p = str; *p; p++) {
		switch (*p) {
		case 'l': result |= R_LOOKUP; break;
		case 'r': result |= R_READ; break;
		case 's': result |= R_SETSEEN; break;
		case 'w': result |= R_WRITE; break;
		case 'i': result |= R_INSERT; break;
		case 'p': result |= R_POST; break;
		/* 'c' is also the delete right (deleteright default "c") */
		case 'c': legacy_create = R_CREATE | R_DELETEMBOX; break;
		case 'k': result |= R_CREATE; break;
		case 'x': result |= R_DELETEMBOX; break;
		case 't': result |= R_DELETEMSG; break;
		case 'e': result |= R_EXPUNGE; break;
		case 'd': legacy_delete = R_DELETEMSG | R_EXPUNGE; break;
		case 'a': result |= R_ADMIN; break;
		case 'n': result |= R_ANNOTATEMSG; break;
		default:
			if (*p >= '0' && *p <= '9')
				result |= 0x1000L << (strchr(digits, *p) - digits);
			else
				r = -1;
		}
	}
	if (!(result & legacy_create))
		result |= legacy_create;
	if (!(result & legacy_delete))
		result |= legacy_delete;

	static const struct {
		long bit;
		char c;
	} order[] = {
		{ R_LOOKUP, 'l' },  { R_READ, 'r' },	  { R_SETSEEN, 's' },
		{ R_WRITE, 'w' },   { R_INSERT, 'i' },	  { R_POST, 'p' },
		{ R_CREATE, 'k' },  { R_DELETEMBOX, 'x' }, { R_DELETEMSG, 't' },
		{ R_EXPUNGE, 'e' },
	};
	for (size_t i = 0; i < ARRAY_SIZE(order); i++)
		if (result & order[i].bit)
			*pos++ = order[i].c;
	if (result & (R_CREATE | R_DELETEMBOX))
		*pos++ = 'c';
	if (result & (R_DELETEMSG | R_EXPUNGE))
		*pos++ = 'd';
	if (result & R_ADMIN)
		*pos++ = 'a';
	if (result & R_ANNOTATEMSG)
		*pos++ = 'n';
	for (int i = 0; i < 10; i++) /* 0..9 as masktostr prints them */
		if (result & (0x1000L << ((i + 9) % 10)))
			*pos++ = (char)('0' + i);
	*pos = '\0';
	return r;
}

/* The ACL of a new top-level mailbox (mboxlist_create_acl): the owner gets
 * everything, a shared mailbox gets defaultacl. Caller frees. */
static char *default_acl(struct mboxops *ops, const struct mboxname *mbn)
{
	struct buf acl = BUF_INIT, user = BUF_INIT;
	if (mboxname_userid(mbn, &user)) {
		buf_printf(&acl, "%s\tlrswipkxtecdan\t", user.s);
		buf_release(&user);
		return buf_detach(&acl, NULL);
	}
	const char *def = config_getstring(ops->cfg, "defaultacl");
	char *copy = xstrdup(def ? def : "");
	char *p = copy;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		char *id = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (!*p)
			break;
		*p++ = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		char *rights = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (*p)
			*p++ = '\0';
		if (!*rights)
			break;
		char canon[40];
		mboxops_canon_rights(rights, canon);
		if (*canon)
			buf_printf(&acl, "%s\t%s\t", id, canon);
	}
	free(copy);
	buf_release(&user);
	return buf_detach(&acl, NULL);
}

/* ---- locks ---- */

/*
 * The lock files and order of Cyrus (mailbox.h "Locks"): the user
 * namespace lock, taken once per user and held until mboxops_release (as
 * imapd holds it across a whole CREATE/DELETE/RENAME), then the mailbox
 * name locks of one step (one mailbox; two names for a rename), dropped
 * when the next step begins. So a run over 10,000 mailboxes holds a few
 * descriptors, not 10,000. fcntl locks belong to the process and vanish
 * with any descriptor of the file, so a path is never opened twice.
 */
struct held {
	char *path;
	int fd;
	bool step; /* a name lock of the current step */
};

static int lock_file(struct mboxops *ops, const char *path, bool step,
		     struct error *err)
{
	struct held *h = ops->locks;
	for (size_t i = 0; i < ops->nlocks; i++)
		if (!strcmp(h[i].path, path))
			return 0; /* held already */
	int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0666);
	if (fd < 0 && errno == ENOENT) {
		fsutil_mkdir_parents(path, 0755);
		fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0666);
	}
	if (fd < 0)
		return error_sys(err, error_kind_from_errno(errno), errno,
				 "cannot open lock file '%s'", path);
	if (lock_fd(fd, LOCK_EXCLUSIVE, true) < 0) {
		int e = errno;
		close(fd);
		return error_sys(err, ERR_TEMPFAIL, e, "cannot lock '%s'", path);
	}
	h = xrealloc(h, (ops->nlocks + 1) * sizeof(*h));
	h[ops->nlocks].path = xstrdup(path);
	h[ops->nlocks].fd = fd;
	h[ops->nlocks].step = step;
	ops->locks = h;
	ops->nlocks++;
	return 0;
}

/* Drops the name locks of the previous step. */
static void begin_step(struct mboxops *ops)
{
	struct held *h = ops->locks;
	size_t j = 0;
	for (size_t i = 0; i < ops->nlocks; i++) {
		if (h[i].step) {
			lock_unlock(h[i].fd);
			close(h[i].fd);
			free(h[i].path);
		} else {
			h[j++] = h[i];
		}
	}
	ops->nlocks = j;
}

static int take_locks(struct mboxops *ops, const char *intname,
		      const char *uniqueid, bool legacy, struct error *err)
{
	struct mboxname mbn;
	struct buf user = BUF_INIT, path = BUF_INIT;
	int r = 0;

	if (ops->dryrun)
		return 0;
	mboxname_from_intname(ns_of(ops), &mbn, intname);
	if (mboxname_userid(&mbn, &user)) {
		/* user_namespacelock: "*U*" + userid with '.' as '^' */
		struct buf nm = BUF_INIT;
		buf_adds(&nm, "*U*");
		for (const char *p = user.s; *p; p++)
			buf_addch(&nm, *p == '.' ? '^' : *p);
		mboxpath_lock(ops->cfg, ns_of(ops), nm.s, NULL, &path);
		buf_release(&nm);
		r = lock_file(ops, path.s, false, err);
	}
	if (r == 0) {
		buf_reset(&path);
		mboxpath_lock(ops->cfg, ns_of(ops), intname,
			      (legacy || !uniqueid) ? NULL : uniqueid, &path);
		r = lock_file(ops, path.s, true, err);
	}
	mboxname_release(&mbn);
	buf_release(&user);
	buf_release(&path);
	return r;
}

void mboxops_release(struct mboxops *ops)
{
	struct held *h = ops->locks;
	/* name locks first, then the namespace locks: reverse order */
	begin_step(ops);
	while (ops->nlocks) {
		ops->nlocks--;
		lock_unlock(h[ops->nlocks].fd);
		close(h[ops->nlocks].fd);
		free(h[ops->nlocks].path);
	}
	free(h);
	ops->locks = NULL;
}

/* ---- mailboxes.db queries ---- */

/* The live entry (not tombstone, intermediate or reserved), or NULL. */
static struct mboxlist_entry *lookup_live(struct mboxops *ops,
					  const char *intname)
{
	struct mboxlist_entry *e = NULL;
	if (mboxlist_lookup(ops->ml, intname, false, &e, NULL, NULL) < 0)
		return NULL;
	return e;
}

/* The nearest existing ancestor (Cyrus's _findparent), or NULL. */
static struct mboxlist_entry *find_parent(struct mboxops *ops,
					  const char *intname)
{
	struct mboxname mbn;
	struct buf name = BUF_INIT;
	struct mboxlist_entry *e = NULL;

	mboxname_from_intname(ns_of(ops), &mbn, intname);
	while (mbn.nboxes && !e) {
		free(mbn.boxes[--mbn.nboxes]);
		/* the parent of INBOX.INBOX.foo is INBOX */
		if (mbn.nboxes == 1 && !strcmp(mbn.boxes[0], "INBOX"))
			free(mbn.boxes[--mbn.nboxes]);
		buf_reset(&name);
		mboxname_intname(ns_of(ops), &mbn, &name);
		if (name.len)
			e = lookup_live(ops, name.s);
	}
	buf_release(&name);
	mboxname_release(&mbn);
	return e;
}

/* The INBOX entry of the user owning mbn (NULL for shared or missing). */
static struct mboxlist_entry *user_inbox(struct mboxops *ops,
					 const struct mboxname *mbn)
{
	struct mboxname inbox;
	struct buf name = BUF_INIT;
	struct mboxlist_entry *e;
	if (!mbn->localpart)
		return NULL;
	mboxname_init(&inbox);
	inbox.domain = mbn->domain;
	inbox.localpart = mbn->localpart;
	mboxname_intname(ns_of(ops), &inbox, &name);
	e = lookup_live(ops, name.s);
	buf_release(&name);
	return e;
}

static bool is_user_inbox(const struct mboxname *mbn)
{
	return mbn->localpart && !mbn->nboxes && !mbn->isdeleted;
}

/* Entries strictly below intname (no tombstones; intermediates with
 * MBOXLIST_INTERMEDIATES), in key order. Caller frees each and the
 * array. */
struct collect_rock {
	struct mboxops *ops;
	char *prefix; /* dbname + 0x1F */
	size_t prefixlen;
	struct mboxlist_entry **items;
	size_t n;
};

static int collect_cb(void *rock, const struct mboxlist_entry *e)
{
	struct collect_rock *cr = rock;
	char *dbname = mboxname_intname_to_dbname(ns_of(cr->ops), e->name);
	if (!strncmp(dbname, cr->prefix, cr->prefixlen)) {
		cr->items = xrealloc(cr->items, (cr->n + 1) * sizeof(*cr->items));
		struct mboxlist_entry *c = mboxlist_entry_new();
		c->name = xstrdup(e->name);
		c->mbtype = e->mbtype;
		c->uniqueid = e->uniqueid ? xstrdup(e->uniqueid) : NULL;
		c->partition = e->partition ? xstrdup(e->partition) : NULL;
		c->acl = e->acl ? xstrdup(e->acl) : NULL;
		c->uidvalidity = e->uidvalidity;
		c->createdmodseq = e->createdmodseq;
		c->foldermodseq = e->foldermodseq;
		c->mtime = e->mtime;
		cr->items[cr->n++] = c;
	}
	free(dbname);
	return 0;
}

static int children(struct mboxops *ops, const char *intname, unsigned flags,
		    struct mboxlist_entry ***items_r, size_t *n_r,
		    struct error *err)
{
	struct collect_rock cr = { ops, NULL, 0, NULL, 0 };
	char *dbname = mboxname_intname_to_dbname(ns_of(ops), intname);
	cr.prefix = xasprintf("%s%c", dbname, MBOXNAME_DB_HIERSEP);
	cr.prefixlen = strlen(cr.prefix);
	free(dbname);
	int r = mboxlist_foreach(ops->ml, flags, collect_cb, &cr, NULL, err);
	free(cr.prefix);
	*items_r = cr.items;
	*n_r = cr.n;
	return r < 0 ? -1 : 0;
}

static void free_items(struct mboxlist_entry **items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mboxlist_entry_free(&items[i]);
	free(items);
}

static bool has_children(struct mboxops *ops, const char *intname)
{
	struct mboxlist_entry **items = NULL;
	size_t n = 0;
	if (children(ops, intname, 0, &items, &n, NULL) < 0)
		return false;
	free_items(items, n);
	return n > 0;
}

/* ---- the quota database ---- */

static const char *const mq_keys[MBOXOPS_QUOTA_NUM] = { "S", "M", "AS",
							   "NF" };

struct mq_quota {
	long long used[MBOXOPS_QUOTA_NUM];
	long long limit[MBOXOPS_QUOTA_NUM]; /* -1: none */
	unsigned long long modseq;
};

static int mq_open(struct mboxops *ops, struct cyrusdb **db_r,
		      struct error *err)
{
	char *path = config_db_path(ops->cfg, "quota");
	int r = cyrusdb_open(config_db_backend(ops->cfg, "quota"), path,
			     CYRUSDB_CREATE, db_r, err);
	free(path);
	return r < 0 ? -1 : 0;
}

static void mq_parse(const char *data, size_t len, struct mq_quota *q)
{
	struct dlist *dl = NULL;
	memset(q, 0, sizeof(*q));
	for (int i = 0; i < MBOXOPS_QUOTA_NUM; i++)
		q->limit[i] = -1;
	if (len && data[0] == '%' && dlist_parse(data, len, &dl, NULL) == 0) {
		for (int i = 0; i < MBOXOPS_QUOTA_NUM; i++) {
			struct dlist *l = dlist_get(dl, mq_keys[i]);
			if (!l || l->type != DLIST_LIST || !l->head)
				continue;
			if (l->head->type == DLIST_STRING)
				q->used[i] = strtoll(l->head->val, NULL, 10);
			if (l->head->next && l->head->next->type == DLIST_STRING)
				q->limit[i] =
					strtoll(l->head->next->val, NULL, 10);
		}
		const char *m = dlist_get_string(dl, "MODSEQ");
		if (m)
			q->modseq = strtoull(m, NULL, 10);
		dlist_free(&dl);
		return;
	}
	/* the 2.x form: "used limit" (storage only) */
	char *copy = xstrndup(data, len);
	sscanf(copy, "%lld %lld", &q->used[0], &q->limit[0]);
	free(copy);
}

static void mq_format(const struct mq_quota *q, struct buf *out)
{
	struct dlist *dl = dlist_new_kvlist(NULL);
	for (int i = 0; i < MBOXOPS_QUOTA_NUM; i++) {
		struct dlist *l = dlist_add_list(dl, mq_keys[i]);
		dlist_add_num(l, NULL, (unsigned long long)q->used[i]);
		if (q->limit[i] >= 0)
			dlist_add_num(l, NULL, (unsigned long long)q->limit[i]);
	}
	dlist_add_num(dl, "MODSEQ", q->modseq);
	dlist_print(dl, out);
	dlist_free(&dl);
}

/* mq_findroot: the longest quota root that intname is in (the name
 * itself, then each parent, then the domain's "root"). Caller frees. */
static char *mq_findroot(struct mboxops *ops, const char *intname)
{
	struct cyrusdb *db = NULL;
	char *name = xstrdup(intname), *found = NULL;
	char *mbox = strchr(name, '!');
	const char *data;
	size_t len;

	mbox = mbox ? mbox + 1 : name;
	if (mq_open(ops, &db, NULL) < 0)
		goto out;
	for (;;) {
		if (cyrusdb_fetch(db, name, strlen(name), &data, &len, NULL) ==
		    0) {
			found = xstrdup(name);
			break;
		}
		char *tail = strrchr(mbox, '.');
		if (!tail)
			break;
		*tail = '\0';
	}
	if (!found && mbox != name) {
		char *root = xasprintf("%.*sroot", (int)(mbox - name), name);
		if (cyrusdb_fetch(db, root, strlen(root), &data, &len, NULL) ==
		    0)
			found = root;
		else
			free(root);
	}
out:
	if (db)
		cyrusdb_close(&db);
	free(name);
	return found;
}

/*
 * Adds delta (per resource) to the usage of root, bumping its modseq, as
 * quota_update_useds/quota_write do; with newroot the record is made
 * (limits from limits) if missing.
 */
static int mq_change(struct mboxops *ops, const char *root,
			const long long delta[MBOXOPS_QUOTA_NUM],
			const long long *limits, struct error *err)
{
	struct cyrusdb *db = NULL;
	struct cyrusdb_txn *tid = NULL;
	struct mq_quota q;
	struct buf val = BUF_INIT;
	const char *data;
	size_t len;
	int r;

	if (mq_open(ops, &db, err) < 0)
		return -1;
	r = cyrusdb_fetchlock(db, root, strlen(root), &data, &len, &tid);
	if (r == CYRUSDB_NOTFOUND && limits) {
		mq_parse("", 0, &q);
		for (int i = 0; i < MBOXOPS_QUOTA_NUM; i++)
			q.limit[i] = limits[i];
		/* mboxlist_setquotas writes the new root, then each mailbox
		 * in it adds its usage: one modseq each */
		q.modseq = 1;
	} else if (r == CYRUSDB_NOTFOUND) {
		r = 0; /* the root went away: nothing to account */
		goto out;
	} else if (r < 0) {
		error_set(err, ERR_IO, "cannot read quota root '%s': %s", root,
			  cyrusdb_errmsg(db));
		goto out;
	} else {
		mq_parse(data, len, &q);
	}
	for (int i = 0; i < MBOXOPS_QUOTA_NUM; i++) {
		q.used[i] += delta[i];
		if (q.used[i] < 0)
			q.used[i] = 0;
	}
	q.modseq++;
	mq_format(&q, &val);
	r = cyrusdb_store(db, root, strlen(root), val.s, val.len, &tid);
	if (r == 0)
		r = cyrusdb_commit(db, tid);
	else
		cyrusdb_abort(db, tid);
	tid = NULL;
	if (r < 0)
		error_set(err, ERR_IO, "cannot write quota root '%s': %s", root,
			  cyrusdb_errmsg(db));
out:
	if (tid)
		cyrusdb_abort(db, tid);
	cyrusdb_close(&db);
	buf_release(&val);
	return r < 0 ? -1 : 0;
}

/* Removes every quota root of the user (user_deletequotaroots). */
struct qdel_rock {
	char *inbox;
	size_t len;
	char **roots;
	size_t n;
};

static int qdel_cb(void *rock, const char *key, size_t keylen,
		   const char *data, size_t datalen)
{
	struct qdel_rock *qr = rock;
	(void)data;
	(void)datalen;
	if (keylen == qr->len ||
	    (keylen > qr->len && key[qr->len] == '.')) {
		qr->roots = xrealloc(qr->roots, (qr->n + 1) * sizeof(char *));
		qr->roots[qr->n++] = xstrndup(key, keylen);
	}
	return 0;
}

static int mq_delete_user(struct mboxops *ops, const char *inbox,
			     struct error *err)
{
	struct cyrusdb *db = NULL;
	struct qdel_rock qr = { xstrdup(inbox), strlen(inbox), NULL, 0 };
	int r;
	if (mq_open(ops, &db, err) < 0) {
		free(qr.inbox);
		return -1;
	}
	r = cyrusdb_foreach(db, inbox, strlen(inbox), NULL, qdel_cb, &qr,
			    NULL);
	for (size_t i = 0; r >= 0 && i < qr.n; i++)
		r = cyrusdb_delete(db, qr.roots[i], strlen(qr.roots[i]), NULL,
				   true);
	if (r < 0 && r != CYRUSDB_NOTFOUND)
		error_set(err, ERR_IO, "cannot delete the quota roots of '%s': "
				       "%s",
			  inbox, cyrusdb_errmsg(db));
	else
		r = 0;
	for (size_t i = 0; i < qr.n; i++)
		free(qr.roots[i]);
	free(qr.roots);
	free(qr.inbox);
	cyrusdb_close(&db);
	return r < 0 ? -1 : 0;
}

/* The usage one mailbox adds to its quota root (mailbox_get_usage). */
static void mailbox_usage(const struct mailbox_index_header *ih,
			  long long use[MBOXOPS_QUOTA_NUM])
{
	bool deleted = ih->options & MAILBOX_OPT_DELETED;
	use[MBOXOPS_QUOTA_STORAGE] =
		deleted ? 0 : (long long)ih->quota_mailbox_used;
	use[MBOXOPS_QUOTA_MESSAGE] = deleted ? 0 : ih->exists;
	use[MBOXOPS_QUOTA_ANNOTSTORAGE] = deleted ? 0 : ih->quota_annot_used;
	use[MBOXOPS_QUOTA_NUMFOLDERS] = deleted ? 0 : 1;
}

/* ---- files ---- */

static int mkdir_p(const char *dir, struct error *err)
{
	if (fsutil_mkdir_parents(dir, 0755) < 0 ||
	    (mkdir(dir, 0755) < 0 && errno != EEXIST))
		return error_sys(err, ERR_CANTCREAT, errno,
				 "cannot create directory '%s'", dir);
	return 0;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
}

/* Unlinks every non-directory in dir, then tries rmdir (children of a
 * by-name mailbox live in subdirectories and keep it): the
 * mailbox_delete_files + rmdir of mailbox_delete_cleanup. */
static void remove_dir_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct buf p = BUF_INIT;
	if (!d)
		return;
	while ((de = readdir(d))) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		buf_reset(&p);
		buf_printf(&p, "%s/%s", dir, de->d_name);
		if (lstat(p.s, &st) == 0 && !S_ISDIR(st.st_mode))
			unlink(p.s);
	}
	closedir(d);
	rmdir(dir);
	buf_release(&p);
}

/* Copies (message files: hard-links) every non-directory of from into
 * to, as mailbox_copy_files does. */
static int copy_dir_files(const char *from, const char *to,
			  struct error *err)
{
	DIR *d = opendir(from);
	struct dirent *de;
	struct buf src = BUF_INIT, dst = BUF_INIT;
	int r = 0;
	if (!d)
		return error_sys(err, ERR_IO, errno, "cannot read '%s'", from);
	if (mkdir_p(to, err) < 0) {
		closedir(d);
		return -1;
	}
	while (r == 0 && (de = readdir(d))) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		buf_reset(&src);
		buf_printf(&src, "%s/%s", from, de->d_name);
		buf_reset(&dst);
		buf_printf(&dst, "%s/%s", to, de->d_name);
		if (lstat(src.s, &st) < 0 || S_ISDIR(st.st_mode))
			continue;
		size_t nl = strlen(de->d_name);
		bool message = nl > 1 && de->d_name[nl - 1] == '.';
		unlink(dst.s);
		if (message && link(src.s, dst.s) == 0)
			continue;
		int in = open(src.s, O_RDONLY | O_CLOEXEC);
		int out = in < 0 ? -1
				 : open(dst.s, O_WRONLY | O_CREAT | O_EXCL |
						       O_CLOEXEC,
					st.st_mode & 07777);
		char buf[65536];
		ssize_t n = 0;
		while (out >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, (size_t)n) != n) {
				n = -1;
				break;
			}
		if (in < 0 || out < 0 || n < 0 || fsync(out) < 0)
			r = error_sys(err, ERR_IO, errno,
				      "cannot copy '%s' to '%s'", src.s, dst.s);
		if (in >= 0)
			close(in);
		if (out >= 0 && close(out) < 0 && r == 0)
			r = error_sys(err, ERR_IO, errno, "cannot write '%s'",
				      dst.s);
	}
	closedir(d);
	buf_release(&src);
	buf_release(&dst);
	return r;
}

/* The distinct directories holding a mailbox's files (data, header,
 * index, cache, archive). */
struct dirs {
	char *d[5];
	size_t n;
};

static int mailbox_dirs(struct mboxops *ops, const struct mboxlist_entry *e,
			struct dirs *dirs, struct error *err)
{
	char *p[5] = { NULL };
	memset(dirs, 0, sizeof(*dirs));
	if (mailbox_paths(ops->cfg, ns_of(ops), e, &p[1], &p[2], &p[3], &p[0],
			  &p[4], err) < 0)
		return -1;
	for (int i = 0; i < 5; i++) {
		char *d = i == 0 || i == 4 ? p[i] : dir_of(p[i]);
		if (d != p[i])
			free(p[i]);
		bool dup = false;
		for (size_t j = 0; j < dirs->n; j++)
			dup = dup || !strcmp(dirs->d[j], d);
		if (dup)
			free(d);
		else
			dirs->d[dirs->n++] = d;
	}
	return 0;
}

static void dirs_release(struct dirs *dirs)
{
	for (size_t i = 0; i < dirs->n; i++)
		free(dirs->d[i]);
	dirs->n = 0;
}

/* With conversations on, Cyrus takes uidvalidities and modseqs from the
 * user's counters file and keeps conversations.db in step with every
 * mailbox change; we do neither, so we refuse. */
static int check_supported(struct mboxops *ops, struct error *err)
{
	if (config_getswitch(ops->cfg, "conversations"))
		return error_set(err, ERR_UNAVAILABLE,
				 "not supported with 'conversations: yes' in "
				 "%s (the counters and conversations.db "
				 "would have to change too); use cyradm "
				 "against the running server",
				 config_filename(ops->cfg));
	return 0;
}

/* ---- create ---- */

static uint32_t default_options(const struct config *cfg)
{
	const char *v = config_getraw(cfg, "mailbox_default_options");
	return v ? (uint32_t)strtoul(v, NULL, 0) & MAILBOX_OPT_VALID : 0;
}

static int check_partition(struct mboxops *ops, const char *partition,
			   struct error *err)
{
	if (strlen(partition) >= MBOXLIST_MAX_PARTITION ||
	    !config_partitiondir(ops->cfg, partition))
		return error_set(err, ERR_CONFIG,
				 "unknown partition '%s' (no partition-%s in "
				 "%s)",
				 partition, partition,
				 config_filename(ops->cfg));
	return 0;
}

/* mboxlist_create_namecheck for an admin: policy, not existing, and
 * user.X.Y needs user.X. */
static int create_namecheck(struct mboxops *ops, const char *intname,
			    bool forceuser, struct error *err)
{
	struct mboxname mbn;
	struct mboxlist_entry *e, *parent;
	int r = 0;

	if (mboxname_policycheck(ns_of(ops), intname, err) < 0)
		return -1;
	if ((e = lookup_live(ops, intname))) {
		mboxlist_entry_free(&e);
		return error_set(err, ERR_CANTCREAT,
				 "mailbox '%s' already exists", intname);
	}
	parent = find_parent(ops, intname);
	mboxname_from_intname(ns_of(ops), &mbn, intname);
	if (!parent && !forceuser && !mbn.isdeleted && mbn.localpart &&
	    mbn.nboxes) {
		struct buf user = BUF_INIT;
		mboxname_userid(&mbn, &user);
		r = error_set(err, ERR_NOINPUT,
			      "user '%s' has no INBOX (create it first)",
			      user.s);
		buf_release(&user);
	}
	mboxname_release(&mbn);
	mboxlist_entry_free(&parent);
	return r;
}

/* The partition a new mailbox gets (mboxlist_create_partition). */
static int create_partition(struct mboxops *ops, const char *intname,
			    const char *given, char **part_r,
			    struct error *err)
{
	struct mboxlist_entry *parent = NULL;
	const char *part = given;
	if (!part && (parent = find_parent(ops, intname)))
		part = parent->partition;
	if (!part)
		part = config_defpartition(ops->cfg);
	if (!part) {
		mboxlist_entry_free(&parent);
		return error_set(err, ERR_CONFIG,
				 "no partition for '%s': %s has no "
				 "partition-NAME",
				 intname, config_filename(ops->cfg));
	}
	int r = check_partition(ops, part, err);
	if (r == 0)
		*part_r = xstrdup(part);
	mboxlist_entry_free(&parent);
	return r;
}

/* The legacy-dirs flag of a new mailbox: its user's INBOX's (for a shared
 * name, its parent's), else mailbox_legacy_dirs. */
static uint32_t create_legacy_flag(struct mboxops *ops, const char *intname)
{
	struct mboxname mbn;
	struct mboxlist_entry *owner;
	uint32_t flag;
	mboxname_from_intname(ns_of(ops), &mbn, intname);
	owner = mbn.localpart && !mbn.isdeleted ? user_inbox(ops, &mbn)
						: find_parent(ops, intname);
	if (owner)
		flag = owner->mbtype & MBTYPE_LEGACY_DIRS;
	else
		flag = config_getswitch(ops->cfg, "mailbox_legacy_dirs")
			       ? MBTYPE_LEGACY_DIRS
			       : 0;
	mboxlist_entry_free(&owner);
	mboxname_release(&mbn);
	return flag;
}

/* Writes cyrus.header and an empty cyrus.index for e (mailbox_create). */
static int write_new_files(struct mboxops *ops,
			   const struct mboxlist_entry *e,
			   const char *quotaroot, uint32_t options,
			   struct error *err)
{
	char *hpath = NULL, *ipath = NULL, *data = NULL;
	struct mailbox_header h;
	struct mailbox_index_header ih;
	uint32_t crc = 0;
	int r = -1;

	mailbox_header_init(&h);
	if (mailbox_paths(ops->cfg, ns_of(ops), e, &hpath, &ipath, NULL, &data,
			  NULL, err) < 0)
		goto out;
	char *hdir = dir_of(hpath), *idir = dir_of(ipath);
	r = mkdir_p(hdir, err);
	if (r == 0)
		r = mkdir_p(idir, err);
	if (r == 0)
		r = mkdir_p(data, err);
	free(hdir);
	free(idir);
	if (r < 0)
		goto out;

	h.mbtype = e->mbtype;
	h.name = xstrdup(e->name);
	h.uniqueid = xstrdup(e->uniqueid);
	h.quotaroot = quotaroot ? xstrdup(quotaroot) : NULL;
	h.acl = e->acl ? xstrdup(e->acl) : NULL;
	r = mailbox_header_write(hpath, &h, &crc, err);
	if (r < 0)
		goto out;
	mailbox_index_header_new(&ih, e->uidvalidity, e->foldermodseq,
				 e->createdmodseq, options,
				 (uint32_t)op_now(ops));
	ih.header_file_crc = crc;
	r = mailbox_index_write(ipath, &ih, NULL, 0, err);
out:
	mailbox_header_release(&h);
	free(hpath);
	free(ipath);
	free(data);
	return r;
}

/* Creates one mailbox whose name was checked (mboxlist_createmailbox). */
static int create_one(struct mboxops *ops, const char *intname,
		      const char *given_part, const struct mboxops_create *o,
		      bool newroot, char **uniqueid_r, struct error *err)
{
	struct mboxlist_entry *old = NULL, *e = mboxlist_entry_new();
	struct mboxlist_entry *parent = NULL;
	struct mboxname mbn;
	struct cyrusdb_txn *tid = NULL;
	char uid[25], *quotaroot = NULL;
	time_t now = op_now(ops);
	bool files = false;
	int r;

	mboxname_from_intname(ns_of(ops), &mbn, intname);
	e->name = xstrdup(intname);
	e->mbtype = MBTYPE_EMAIL | create_legacy_flag(ops, intname);
	r = create_partition(ops, intname, given_part, &e->partition, err);
	if (r < 0)
		goto out;
	parent = find_parent(ops, intname);
	e->acl = parent && parent->acl ? xstrdup(parent->acl)
				       : default_acl(ops, &mbn);

	/* uidvalidity: time + 1 (mboxname_nextuidvalidity without
	 * conversations), above a tombstone's; an intermediate entry lends
	 * its uniqueid and createdmodseq. */
	e->uidvalidity = (uint32_t)now + 1;
	e->createdmodseq = 1;
	mboxlist_lookup(ops->ml, intname, true, &old, NULL, NULL);
	if (old && (old->mbtype & MBTYPE_DELETED) &&
	    e->uidvalidity <= old->uidvalidity)
		e->uidvalidity = old->uidvalidity + 1;
	if (old && (old->mbtype & MBTYPE_INTERMEDIATE) && old->uniqueid) {
		e->uniqueid = xstrdup(old->uniqueid);
		if (old->createdmodseq)
			e->createdmodseq = old->createdmodseq;
	} else {
		make_uniqueid(uid);
		e->uniqueid = xstrdup(uid);
	}
	e->foldermodseq = 1; /* highestmodseq of the fresh index */
	if (e->createdmodseq > e->foldermodseq)
		e->createdmodseq = e->foldermodseq;

	quotaroot = newroot ? xstrdup(intname) : mq_findroot(ops, intname);

	{
		char *data = NULL;
		struct error perr = ERROR_INIT;
		mailbox_paths(ops->cfg, ns_of(ops), e, NULL, NULL, NULL, &data,
			      NULL, &perr);
		reportf(ops,
			"create mailbox '%s': uniqueid %s, partition %s, "
			"directory %s, acl '%s'%s%s",
			intname, e->uniqueid, e->partition,
			data ? data : "?", e->acl,
			quotaroot ? (newroot ? ", new quota root" :
					       ", quota root ")
				  : "",
			quotaroot && !newroot ? quotaroot : "");
		free(data);
	}
	if (ops->dryrun) {
		r = 0;
		goto done;
	}

	begin_step(ops);
	r = take_locks(ops, intname, e->uniqueid,
		       e->mbtype & MBTYPE_LEGACY_DIRS, err);
	if (r < 0)
		goto out;
	r = write_new_files(ops, e, quotaroot,
			    default_options(ops->cfg) |
				    MAILBOX_OPT_POP3_NEW_UIDL,
			    err);
	files = true;
	if (r < 0)
		goto out;
	if (quotaroot) {
		long long delta[MBOXOPS_QUOTA_NUM] = { 0, 0, 0, 1 };
		r = mq_change(ops, quotaroot, delta,
				 newroot ? o->limits : NULL, err);
		if (r < 0)
			goto out;
	}
	r = mboxlist_update(ops->ml, e, now, &tid, err);
	if (r == 0 && cyrusdb_commit(ops->ml->db, tid) < 0)
		r = error_set(err, ERR_IO, "cannot commit mailboxes.db: %s",
			      cyrusdb_errmsg(ops->ml->db));
	else if (r < 0)
		cyrusdb_abort(ops->ml->db, tid);
	tid = NULL;
done:
	if (r == 0 && uniqueid_r)
		*uniqueid_r = xstrdup(e->uniqueid);
out:
	if (r < 0 && files) {
		struct dirs dirs;
		if (mailbox_dirs(ops, e, &dirs, NULL) == 0) {
			for (size_t i = 0; i < dirs.n; i++)
				remove_dir_files(dirs.d[i]);
			dirs_release(&dirs);
		}
	}
	mboxname_release(&mbn);
	mboxlist_entry_free(&old);
	mboxlist_entry_free(&parent);
	mboxlist_entry_free(&e);
	free(quotaroot);
	return r;
}

int mboxops_create(struct mboxops *ops, const char *intname,
		   const struct mboxops_create *opts, char **uniqueid_r,
		   struct error *err)
{
	struct mboxops_create none = { NULL, false, { -1, -1, -1, -1 } };
	struct mboxname mbn;
	struct mboxlist_entry *parent = NULL;
	struct buf name = BUF_INIT;
	int r;

	if (check_supported(ops, err) < 0)
		return -1;

	if (!opts)
		opts = &none;
	if (uniqueid_r)
		*uniqueid_r = NULL;
	if (create_namecheck(ops, intname, false, err) < 0)
		return -1;
	if (opts->partition && check_partition(ops, opts->partition, err) < 0)
		return -1;
	if (mboxname_isdeleted(ns_of(ops), intname, NULL))
		return error_set(err, ERR_DATA,
				 "cannot create '%s': a name in the deleted "
				 "hierarchy",
				 intname);

	/* imapd's CREATE makes the missing ancestors first (below the
	 * nearest existing one, or from the top for a shared name). */
	mboxname_from_intname(ns_of(ops), &mbn, intname);
	parent = find_parent(ops, intname);
	if (parent || !mbn.localpart) {
		struct mboxname anc;
		size_t oldest = 0;
		if (parent) {
			mboxname_from_intname(ns_of(ops), &anc, parent->name);
			oldest = anc.nboxes;
			mboxname_release(&anc);
		}
		for (size_t i = oldest; i + 1 < mbn.nboxes; i++) {
			struct mboxname a = mbn;
			a.nboxes = i + 1;
			a.isdeleted = 0;
			if (mbn.localpart && i == 0 &&
			    !strcmp(mbn.boxes[0], "INBOX"))
				continue;
			buf_reset(&name);
			mboxname_intname(ns_of(ops), &a, &name);
			if (mboxname_policycheck(ns_of(ops), name.s, err) < 0) {
				r = -1;
				goto out;
			}
			if (ops->dryrun) {
				struct mboxlist_entry *e =
					lookup_live(ops, name.s);
				bool exists = e != NULL;
				mboxlist_entry_free(&e);
				if (exists)
					continue;
			}
			r = create_one(ops, name.s, opts->partition, opts,
				       false, NULL, err);
			if (r < 0)
				goto out;
		}
	}
	r = create_one(ops, intname, opts->partition, opts, opts->quota,
		       uniqueid_r, err);
out:
	mboxname_release(&mbn);
	mboxlist_entry_free(&parent);
	buf_release(&name);
	return r;
}

/* ---- rename ---- */

/*
 * Moves one mailbox (its entry e) to newname on newpart (NULL: its own),
 * as mboxlist_renamemailbox does for a local mailbox.
 */
static int rename_one(struct mboxops *ops, const struct mboxlist_entry *e,
		      const char *newname, const char *newpart,
		      struct error *err)
{
	struct mboxlist_entry *ne = mboxlist_entry_new(), *tomb = NULL;
	struct mailbox *mb = NULL;
	struct mailbox_record *recs = NULL;
	struct dirs olddirs = { { NULL }, 0 }, newdirs = { { NULL }, 0 };
	struct cyrusdb_txn *tid = NULL;
	char *hpath = NULL, *ipath = NULL, *newroot = NULL;
	size_t nrecs = 0;
	time_t now = op_now(ops);
	bool legacy = e->mbtype & MBTYPE_LEGACY_DIRS;
	bool samename = !strcmp(e->name, newname);
	bool partmove = newpart && strcmp(newpart, e->partition);
	bool move = partmove || (legacy && !samename);
	int r = -1;

	if (samename && !partmove) {
		r = 0; /* already there (a child of a partition move) */
		goto out;
	}
	ne->name = xstrdup(newname);
	ne->mbtype = e->mbtype;
	ne->partition = xstrdup(partmove ? newpart : e->partition);
	ne->acl = e->acl ? xstrdup(e->acl) : NULL;
	ne->uniqueid = e->uniqueid ? xstrdup(e->uniqueid) : NULL;
	ne->uidvalidity = e->uidvalidity;
	ne->createdmodseq = e->createdmodseq;

	if (ops->dryrun) {
		if (samename)
			reportf(ops, "move mailbox '%s' to partition %s",
				e->name, ne->partition);
		else
			reportf(ops, "rename mailbox '%s' to '%s'%s%s%s",
				e->name, newname, move ? " (moving its files" : "",
				partmove ? " to partition " : "",
				move ? (partmove ? ne->partition : ")") : "");
		r = 0;
		goto out;
	}

	/* the old name's locks, and the new name's for a by-name mailbox
	 * (its namespace lock too when it is another user's) */
	begin_step(ops);
	if (take_locks(ops, e->name, e->uniqueid, legacy, err) < 0)
		goto out;
	if (!samename && take_locks(ops, newname, e->uniqueid, legacy, err) <
				 0)
		goto out;
	if (mailbox_open(ops->cfg, ns_of(ops), e, LOCK_EXCLUSIVE,
			 MAILBOX_OPEN_NOLOCK, &mb, err) < 0)
		goto out;
	if (mailbox_read_records(mb, &recs, &nrecs, err) < 0)
		goto out;

	if (samename) {
		/* a partition move: the files are copied as they are, the
		 * entry gets the next foldermodseq */
		ne->foldermodseq = e->foldermodseq + 1;
	} else {
		/* mailbox_rename_nocopy/_copy: new name (and quota root) in
		 * cyrus.header, modseq bumped */
		long long use[MBOXOPS_QUOTA_NUM], neg[MBOXOPS_QUOTA_NUM];
		newroot = mq_findroot(ops, newname);
		mailbox_usage(&mb->i, use);
		for (int i = 0; i < MBOXOPS_QUOTA_NUM; i++)
			neg[i] = -use[i];
		if (mb->h.quotaroot &&
		    (!newroot || strcmp(newroot, mb->h.quotaroot)) &&
		    mq_change(ops, mb->h.quotaroot, neg, NULL, err) < 0)
			goto out;
		if (newroot &&
		    (!mb->h.quotaroot || strcmp(newroot, mb->h.quotaroot)) &&
		    mq_change(ops, newroot, use, NULL, err) < 0)
			goto out;
		free(mb->h.name);
		mb->h.name = xstrdup(newname);
		free(mb->h.quotaroot);
		mb->h.quotaroot = newroot ? xstrdup(newroot) : NULL;
		mb->i.highestmodseq++;
		ne->foldermodseq = mb->i.highestmodseq;
	}

	if (move) {
		if (mailbox_dirs(ops, e, &olddirs, err) < 0 ||
		    mailbox_dirs(ops, ne, &newdirs, err) < 0)
			goto out;
		/* data first, then the meta directories */
		char *od = NULL, *nd = NULL;
		if (mailbox_paths(ops->cfg, ns_of(ops), e, NULL, NULL, NULL,
				  &od, NULL, err) < 0 ||
		    mailbox_paths(ops->cfg, ns_of(ops), ne, NULL, NULL, NULL,
				  &nd, NULL, err) < 0) {
			free(od);
			free(nd);
			goto out;
		}
		r = copy_dir_files(od, nd, err);
		free(od);
		free(nd);
		if (r < 0)
			goto out;
		r = -1;
		for (int f = 0; f < 3; f++) {
			char *op[3] = { NULL }, *np[3] = { NULL };
			mailbox_paths(ops->cfg, ns_of(ops), e, &op[0], &op[1],
				      &op[2], NULL, NULL, NULL);
			mailbox_paths(ops->cfg, ns_of(ops), ne, &np[0], &np[1],
				      &np[2], NULL, NULL, NULL);
			char *odir = dir_of(op[f]), *ndir = dir_of(np[f]);
			int c = strcmp(odir, ndir) ? copy_dir_files(odir, ndir,
								    err)
						   : 0;
			free(odir);
			free(ndir);
			for (int k = 0; k < 3; k++) {
				free(op[k]);
				free(np[k]);
			}
			if (c < 0)
				goto out;
		}
	}
	if (!samename) {
		uint32_t crc;
		if (mailbox_paths(ops->cfg, ns_of(ops), ne, &hpath, &ipath, NULL,
				  NULL, NULL, err) < 0)
			goto out;
		if (mailbox_header_write(hpath, &mb->h, &crc, err) < 0)
			goto out;
		mb->i.header_file_crc = crc;
		if (mailbox_index_write(ipath, &mb->i, recs, nrecs, err) < 0)
			goto out;
	}

	/* mailboxes.db: a tombstone for the old name, then the new entry
	 * (whose I record takes the tombstone into its history) */
	if (!samename) {
		tomb = mboxlist_entry_new();
		tomb->name = xstrdup(e->name);
		tomb->mbtype = e->mbtype | MBTYPE_DELETED;
		tomb->uidvalidity = e->uidvalidity;
		tomb->uniqueid = e->uniqueid ? xstrdup(e->uniqueid) : NULL;
		tomb->createdmodseq = e->createdmodseq;
		tomb->foldermodseq = ne->foldermodseq;
		if (mboxlist_update(ops->ml, tomb, now, &tid, err) < 0)
			goto abort;
	}
	if (mboxlist_update(ops->ml, ne, now, &tid, err) < 0)
		goto abort;
	if (cyrusdb_commit(ops->ml->db, tid) < 0) {
		tid = NULL;
		error_set(err, ERR_IO, "cannot commit mailboxes.db: %s",
			  cyrusdb_errmsg(ops->ml->db));
		goto undo;
	}
	tid = NULL;

	/* the old files go once the database points at the new ones */
	if (move) {
		mailbox_close(&mb);
		for (size_t i = 0; i < olddirs.n; i++) {
			bool shared = false;
			for (size_t j = 0; j < newdirs.n; j++)
				shared = shared ||
					 !strcmp(olddirs.d[i], newdirs.d[j]);
			if (!shared)
				remove_dir_files(olddirs.d[i]);
		}
	}
	r = 0;
	goto out;
abort:
	cyrusdb_abort(ops->ml->db, tid);
	tid = NULL;
undo:
	/* put the old name back into cyrus.header; drop copied files */
	if (!samename && !move && mb) {
		uint32_t crc;
		free(mb->h.name);
		mb->h.name = xstrdup(e->name);
		if (mailbox_header_write(mb->header_path, &mb->h, &crc, NULL) ==
		    0) {
			mb->i.header_file_crc = crc;
			mailbox_index_write(mb->index_path, &mb->i, recs, nrecs,
					    NULL);
		}
	}
	if (move)
		for (size_t i = 0; i < newdirs.n; i++)
			remove_dir_files(newdirs.d[i]);
out:
	mailbox_close(&mb);
	free(recs);
	dirs_release(&olddirs);
	dirs_release(&newdirs);
	mboxlist_entry_free(&ne);
	mboxlist_entry_free(&tomb);
	free(hpath);
	free(ipath);
	free(newroot);
	return r;
}

static bool is_below(const char *name, const char *root)
{
	size_t n = strlen(root);
	return !strncmp(name, root, n) && name[n] == '.';
}

int mboxops_rename(struct mboxops *ops, const char *oldname,
		   const char *newname, const char *partition,
		   struct error *err)
{
	struct mboxlist_entry *root = NULL, **kids = NULL;
	struct mboxname om, nm;
	struct buf nn = BUF_INIT;
	size_t nkids = 0;
	bool samename = !strcmp(oldname, newname);
	int r = -1;

	if (check_supported(ops, err) < 0)
		return -1;

	mboxname_from_intname(ns_of(ops), &om, oldname);
	mboxname_from_intname(ns_of(ops), &nm, newname);
	root = lookup_live(ops, oldname);
	if (!root) {
		error_set(err, ERR_NOINPUT, "mailbox '%s' does not exist",
			  oldname);
		goto out;
	}
	if (root->mbtype & MBTYPE_REMOTE) {
		error_set(err, ERR_UNAVAILABLE,
			  "mailbox '%s' is on another server (%s)", oldname,
			  root->server ? root->server : "remote");
		goto out;
	}
	if (partition && check_partition(ops, partition, err) < 0)
		goto out;
	if (samename && partition && root->partition &&
	    !strcmp(partition, root->partition)) {
		error_set(err, ERR_CANTCREAT,
			  "mailbox '%s' is on partition '%s' already", oldname,
			  partition);
		goto out;
	}
	if (samename && !partition) {
		error_set(err, ERR_CANTCREAT,
			  "mailbox '%s' already exists (give -p PARTITION to "
			  "move it to another partition)",
			  oldname);
		goto out;
	}
	if (!samename) {
		if (is_below(newname, oldname)) {
			error_set(err, ERR_DATA,
				  "cannot rename '%s' into itself ('%s')",
				  oldname, newname);
			goto out;
		}
		struct mboxlist_entry *target = lookup_live(ops, newname);
		if (target) {
			mboxlist_entry_free(&target);
			error_set(err, ERR_CANTCREAT,
				  "mailbox '%s' already exists", newname);
			goto out;
		}
		if (is_user_inbox(&om)) {
			/* imapd's user rename (allowusermoves) also moves the
			 * user's subscriptions, seen state and sieve scripts
			 * (user_renamedata); we do not do that yet */
			error_set(err, ERR_UNAVAILABLE,
				  "renaming a user ('%s' to '%s') is not "
				  "supported: the user's subscriptions, seen "
				  "state and sieve scripts would have to move "
				  "too",
				  oldname, newname);
			goto out;
		} else if (is_user_inbox(&nm)) {
			error_set(err, ERR_UNAVAILABLE,
				  "cannot rename '%s' to a user's INBOX '%s'",
				  oldname, newname);
			goto out;
		}
		if (create_namecheck(ops, newname, false, err) < 0)
			goto out;
	}

	/* every mailbox below moves along (mboxlist_renametree) */
	if (children(ops, oldname, 0, &kids, &nkids, err) < 0)
		goto out;
	for (size_t i = 0; i < nkids; i++) {
		if (kids[i]->mbtype & MBTYPE_REMOTE) {
			error_set(err, ERR_UNAVAILABLE,
				  "mailbox '%s' is on another server",
				  kids[i]->name);
			goto out;
		}
		if (samename)
			continue;
		buf_reset(&nn);
		buf_printf(&nn, "%s%s", newname,
			   kids[i]->name + strlen(oldname));
		if (nn.len >= MBOXNAME_MAX) {
			error_set(err, ERR_DATA,
				  "cannot rename '%s': '%s' would be too long",
				  kids[i]->name, nn.s);
			goto out;
		}
		if (create_namecheck(ops, nn.s, true, err) < 0)
			goto out;
	}

	r = rename_one(ops, root, newname, partition, err);
	for (size_t i = 0; r == 0 && i < nkids; i++) {
		buf_reset(&nn);
		buf_printf(&nn, "%s%s", newname,
			   kids[i]->name + strlen(oldname));
		/* re-read: the entry is the one to rename */
		struct mboxlist_entry *k = lookup_live(ops, kids[i]->name);
		if (!k)
			continue;
		r = rename_one(ops, k, nn.s, partition, err);
		mboxlist_entry_free(&k);
	}
out:
	mboxname_release(&om);
	mboxname_release(&nm);
	mboxlist_entry_free(&root);
	free_items(kids, nkids);
	buf_release(&nn);
	return r;
}

/* ---- delete ---- */

/* Immediate delete of one mailbox (mboxlist_deletemailbox). */
static int delete_one(struct mboxops *ops, const struct mboxlist_entry *e,
		      struct error *err)
{
	struct mailbox *mb = NULL;
	struct mboxlist_entry *tomb = NULL;
	struct cyrusdb_txn *tid = NULL;
	struct dirs dirs = { { NULL }, 0 };
	time_t now = op_now(ops);
	bool isdeleted = mboxname_isdeleted(ns_of(ops), e->name, NULL);
	bool legacy = e->mbtype & MBTYPE_LEGACY_DIRS;
	int r = -1;

	if (e->mbtype & MBTYPE_INTERMEDIATE) {
		reportf(ops, "delete intermediate entry '%s'", e->name);
		if (ops->dryrun)
			return 0;
		begin_step(ops);
		if (take_locks(ops, e->name, e->uniqueid, legacy, err) < 0)
			return -1;
		if (isdeleted)
			return mboxlist_delete(ops->ml, e->name, NULL, err);
		tomb = mboxlist_entry_new();
		tomb->name = xstrdup(e->name);
		tomb->mbtype = e->mbtype | MBTYPE_DELETED;
		tomb->uniqueid = e->uniqueid ? xstrdup(e->uniqueid) : NULL;
		tomb->partition = e->partition ? xstrdup(e->partition) : NULL;
		/* Cyrus reads a missing ACL as "" and writes it back: A %() */
		tomb->acl = xstrdup(e->acl ? e->acl : "");
		tomb->uidvalidity = e->uidvalidity;
		tomb->createdmodseq = e->createdmodseq;
		tomb->foldermodseq = e->foldermodseq + 1;
		r = mboxlist_update(ops->ml, tomb, now, NULL, err);
		mboxlist_entry_free(&tomb);
		return r;
	}

	{
		char *data = NULL;
		mailbox_paths(ops->cfg, ns_of(ops), e, NULL, NULL, NULL, &data,
			      NULL, NULL);
		reportf(ops, "delete mailbox '%s' and its files in %s",
			e->name, data ? data : "?");
		free(data);
	}
	if (ops->dryrun)
		return 0;

	begin_step(ops);
	if (take_locks(ops, e->name, e->uniqueid, legacy, err) < 0)
		goto out;
	struct error oerr = ERROR_INIT;
	if (mailbox_open(ops->cfg, ns_of(ops), e, LOCK_EXCLUSIVE,
			 MAILBOX_OPEN_NOLOCK, &mb, &oerr) < 0 &&
	    oerr.kind != ERR_NOINPUT) {
		/* a damaged mailbox: imapd would refuse too (no force) */
		*err = oerr;
		goto out;
	}
	if (mailbox_dirs(ops, e, &dirs, err) < 0)
		goto out;

	if (!isdeleted) {
		/* store a DELETED marker (or an intermediate one when
		 * mailboxes below remain) */
		tomb = mboxlist_entry_new();
		tomb->name = xstrdup(e->name);
		tomb->mbtype = has_children(ops, e->name) ? MBTYPE_INTERMEDIATE
							  : MBTYPE_DELETED;
		tomb->uniqueid = e->uniqueid ? xstrdup(e->uniqueid) : NULL;
		if (mb) {
			tomb->uidvalidity = mb->i.uidvalidity;
			tomb->createdmodseq = mb->i.createdmodseq;
			tomb->foldermodseq = mb->i.highestmodseq + 1;
		} else { /* no files left: what the entry knew */
			tomb->uidvalidity = e->uidvalidity;
			tomb->createdmodseq = e->createdmodseq;
			tomb->foldermodseq = e->foldermodseq + 1;
		}
		r = mboxlist_update(ops->ml, tomb, now, &tid, err);
		if (r == 0 && cyrusdb_commit(ops->ml->db, tid) < 0)
			r = error_set(err, ERR_IO,
				      "cannot commit mailboxes.db: %s",
				      cyrusdb_errmsg(ops->ml->db));
		else if (r < 0)
			cyrusdb_abort(ops->ml->db, tid);
		tid = NULL;
	} else {
		/* a DELETED. name just goes (Cyrus leaves its I record) */
		r = mboxlist_delete(ops->ml, e->name, NULL, err);
	}
	if (r < 0)
		goto out;

	/* quota usage leaves the root, then the files go */
	if (mb && mb->h.quotaroot) {
		long long use[MBOXOPS_QUOTA_NUM];
		mailbox_usage(&mb->i, use);
		for (int i = 0; i < MBOXOPS_QUOTA_NUM; i++)
			use[i] = -use[i];
		struct error qerr = ERROR_INIT;
		mq_change(ops, mb->h.quotaroot, use, NULL, &qerr);
	}
	mailbox_close(&mb);
	for (size_t i = 0; i < dirs.n; i++)
		remove_dir_files(dirs.d[i]);
	r = 0;
out:
	mailbox_close(&mb);
	mboxlist_entry_free(&tomb);
	dirs_release(&dirs);
	return r;
}

/* Delayed delete: a rename to DELETED.<name>.<HEX now>. */
static int delete_delayed(struct mboxops *ops,
			  const struct mboxlist_entry *e, struct error *err)
{
	struct mboxname mbn;
	struct buf nn = BUF_INIT;
	int r;

	mboxname_from_intname(ns_of(ops), &mbn, e->name);
	mbn.isdeleted = op_now(ops);
	mboxname_intname(ns_of(ops), &mbn, &nn);
	if (e->mbtype & MBTYPE_INTERMEDIATE) {
		/* no files: the entry moves in the database only */
		r = delete_one(ops, e, err);
	} else {
		r = rename_one(ops, e, nn.s, NULL, err);
	}
	buf_release(&nn);
	mboxname_release(&mbn);
	return r;
}

/* user_deletedata: the user's files, sieve scripts and quota roots. */
static int delete_userdata(struct mboxops *ops, const char *inbox,
			   char **paths, size_t npaths, const char *sievedir,
			   struct error *err)
{
	for (size_t i = 0; i < npaths; i++)
		reportf(ops, "remove user file %s", paths[i]);
	if (sievedir && *sievedir)
		reportf(ops, "remove sieve scripts in %s", sievedir);
	reportf(ops, "remove the quota roots of '%s'", inbox);
	if (ops->dryrun)
		return 0;
	if (sievedir && *sievedir)
		remove_dir_files(sievedir);
	if (mq_delete_user(ops, inbox, err) < 0)
		return -1;
	for (size_t i = 0; i < npaths; i++)
		remove(paths[i]);
	return 0;
}

int mboxops_delete(struct mboxops *ops, const char *intname,
		   struct error *err)
{
	struct mboxlist_entry *e = NULL, **kids = NULL;
	struct mboxname mbn;
	size_t nkids = 0;
	char **upaths = NULL, *sievedir = NULL;
	size_t nupaths = 0;
	bool delayed;
	int r = -1;

	if (check_supported(ops, err) < 0)
		return -1;

	mboxname_from_intname(ns_of(ops), &mbn, intname);
	if (mboxlist_lookup(ops->ml, intname, true, &e, NULL, NULL) < 0 ||
	    (e->mbtype & (MBTYPE_DELETED | MBTYPE_RESERVE))) {
		error_set(err, ERR_NOINPUT, "mailbox '%s' does not exist",
			  intname);
		goto out;
	}
	if (e->mbtype & MBTYPE_REMOTE) {
		error_set(err, ERR_UNAVAILABLE,
			  "mailbox '%s' is on another server", intname);
		goto out;
	}
	delayed = !strcmp(config_getenum(ops->cfg, "delete_mode"), "delayed") &&
		  !mbn.isdeleted;

	if (is_user_inbox(&mbn)) {
		/* all the user's mailboxes go, then the user's data */
		static const char *const suffixes[] = {
			"dav", "sub", "counters", "conversations",
			"seen", "mboxkey", NULL
		};
		struct buf p = BUF_INIT;
		for (size_t i = 0; suffixes[i]; i++) {
			buf_reset(&p);
			mboxlist_user_path(ops->ml, &mbn, suffixes[i], &p, NULL);
			upaths = xrealloc(upaths,
					  (nupaths + 2) * sizeof(char *));
			upaths[nupaths++] = xstrdup(p.s);
		}
		if (e->uniqueid && !(e->mbtype & MBTYPE_LEGACY_DIRS)) {
			buf_reset(&p);
			mboxlist_user_path(ops->ml, &mbn, NULL, &p, NULL);
			upaths[nupaths++] = xstrdup(p.s);
		}
		if (!config_getswitch(ops->cfg, "sieveusehomedir")) {
			buf_reset(&p);
			mboxlist_sieve_path(ops->ml, &mbn, &p, NULL);
			sievedir = xstrdup(p.s);
		}
		buf_release(&p);
		if (children(ops, intname, MBOXLIST_INTERMEDIATES, &kids, &nkids,
			     err) < 0)
			goto out;
	} else if (!mbn.isdeleted && has_children(ops, intname)) {
		error_set(err, ERR_CANTCREAT,
			  "cannot delete '%s': it has mailboxes below it "
			  "(delete those first)",
			  intname);
		goto out;
	}

	r = delayed ? delete_delayed(ops, e, err) : delete_one(ops, e, err);
	/* imapd then walks the user's whole tree, intermediates included,
	 * from the INBOX on: an INBOX that became an intermediate entry
	 * (it had children) is marked deleted there ("edi"). */
	if (r == 0 && is_user_inbox(&mbn) && !ops->dryrun) {
		struct mboxlist_entry *again = NULL;
		if (mboxlist_lookup(ops->ml, intname, true, &again, NULL,
				    NULL) == 0 &&
		    (again->mbtype & MBTYPE_INTERMEDIATE) &&
		    !(again->mbtype & MBTYPE_DELETED))
			r = delete_one(ops, again, err);
		mboxlist_entry_free(&again);
	}
	for (size_t i = 0; r == 0 && i < nkids; i++) {
		struct mboxlist_entry *k = NULL;
		if (mboxlist_lookup(ops->ml, kids[i]->name, true, &k, NULL,
				    NULL) < 0 ||
		    (k->mbtype & MBTYPE_DELETED)) {
			if (!ops->dryrun) {
				mboxlist_entry_free(&k);
				continue;
			}
			mboxlist_entry_free(&k);
			k = kids[i];
			kids[i] = NULL;
		}
		bool kdeleted = mboxname_isdeleted(ns_of(ops), k->name, NULL);
		r = delayed && !kdeleted ? delete_delayed(ops, k, err)
					 : delete_one(ops, k, err);
		mboxlist_entry_free(&k);
	}
	if (r == 0 && is_user_inbox(&mbn))
		r = delete_userdata(ops, intname, upaths, nupaths, sievedir,
				    err);
out:
	for (size_t i = 0; i < nupaths; i++)
		free(upaths[i]);
	free(upaths);
	free(sievedir);
	mboxname_release(&mbn);
	mboxlist_entry_free(&e);
	free_items(kids, nkids);
	return r;
}
