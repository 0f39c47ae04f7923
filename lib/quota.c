/* quota.c: quota values, the quota database, usage (quota.h). */
#include "compat.h"
#include "quota.h"

#include <fcntl.h>
#include <stdio.h>
#include <strings.h>
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
#include "mboxpath.h"
#include "xmalloc.h"

const char *const quota_names[QUOTA_NUMRESOURCES] = {
	"STORAGE", "MESSAGE", "X-ANNOTATION-STORAGE", "X-NUM-FOLDERS",
};
const char *const quota_db_names[QUOTA_NUMRESOURCES] = {
	"S", "M", "AS", "NF",
};
const long long quota_units[QUOTA_NUMRESOURCES] = { 1024, 1, 1024, 1 };

int quota_name_to_resource(const char *name)
{
	for (int res = 0; res < QUOTA_NUMRESOURCES; res++)
		if (!strcasecmp(name, quota_names[res]))
			return res;
	return -1;
}

static void quota_reset(struct quota *q)
{
	for (int res = 0; res < QUOTA_NUMRESOURCES; res++) {
		q->useds[res] = 0;
		q->limits[res] = QUOTA_UNLIMITED;
		q->scanuseds[res] = 0;
	}
	free(q->scanmbox);
	q->scanmbox = NULL;
	q->modseq = 0;
}

void quota_init(struct quota *q, const char *root)
{
	memset(q, 0, sizeof(*q));
	quota_reset(q);
	q->root = root ? xstrdup(root) : NULL;
}

void quota_release(struct quota *q)
{
	free(q->root);
	free(q->scanmbox);
	memset(q, 0, sizeof(*q));
}

/* ---- values ---- */

/* Cyrus's dlist_num: a plain unsigned decimal (parsenum), else 0. */
static bool dl_num(const struct dlist *dl, unsigned long long *v_r)
{
	*v_r = 0;
	if (!dl || dl->type != DLIST_STRING || !dl->len)
		return false;
	unsigned long long v = 0;
	for (size_t i = 0; i < dl->len; i++) {
		unsigned char c = (unsigned char)dl->val[i];
		if (c < '0' || c > '9')
			return false;
		if (v > (~0ULL - (c - '0')) / 10)
			return false;
		v = v * 10 + (c - '0');
	}
	*v_r = v;
	return true;
}

static const struct dlist *dl_child(const struct dlist *dl, size_t n)
{
	if (!dl || (dl->type != DLIST_LIST && dl->type != DLIST_KVLIST))
		return NULL;
	const struct dlist *c = dl->head;
	while (c && n--)
		c = c->next;
	return c;
}

static int parse_dlist(const char *data, size_t len, bool withscan,
		       struct quota *q, struct error *err)
{
	struct dlist *dl = NULL;
	unsigned long long v;
	if (dlist_parse(data, len, &dl, err) < 0)
		return -1;
	if (dl->type != DLIST_KVLIST) {
		dlist_free(&dl);
		return error_set(err, ERR_DATA, "not a key-value list");
	}
	for (int res = 0; res < QUOTA_NUMRESOURCES; res++) {
		const struct dlist *item = dlist_get(dl, quota_db_names[res]);
		const struct dlist *val;
		if (!item)
			continue;
		if ((val = dl_child(item, 0))) {
			dl_num(val, &v);
			q->useds[res] = (long long)v;
		}
		if ((val = dl_child(item, 1))) {
			dl_num(val, &v);
			q->limits[res] = (long long)v;
		}
	}
	const struct dlist *scan = withscan ? dlist_get(dl, "SCAN") : NULL;
	const char *mbox = scan ? dlist_get_string(scan, "MBOX") : NULL;
	if (mbox) {
		q->scanmbox = xstrdup(mbox);
		for (int res = 0; res < QUOTA_NUMRESOURCES; res++) {
			dl_num(dlist_get(scan, quota_db_names[res]), &v);
			q->scanuseds[res] = (long long)v;
		}
	}
	if (dl_num(dlist_get(dl, "MODSEQ"), &v))
		q->modseq = v;
	dlist_free(&dl);
	return 0;
}

/* "used limit [scan] [NAME used limit [scan]]...", sscanf's %lld rules. */
static int parse_legacy(const char *data, size_t len, struct quota *q,
			struct error *err)
{
	char *copy = xstrndup(data, len);
	char **f = NULL;
	size_t n = 0, alloc = 0, i = 0;
	int res = QUOTA_STORAGE, r = 0;
	long long tmp;

	for (char *p = copy; *p;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (!*p)
			break;
		if (n == alloc) {
			alloc = alloc ? alloc * 2 : 8;
			f = xrealloc(f, alloc * sizeof(*f));
		}
		f[n++] = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\r' &&
		       *p != '\n')
			p++;
		if (*p)
			*p++ = '\0';
	}
	for (;;) {
		if (i + 2 > n ||
		    sscanf(f[i], "%lld", &q->useds[res]) != 1 ||
		    sscanf(f[i + 1], "%lld", &q->limits[res]) != 1) {
			r = error_set(err, ERR_DATA, "bad quota value");
			break;
		}
		i += 2;
		/* A third number: scan data of an interrupted quota -f. */
		if (i < n && sscanf(f[i], "%lld", &tmp) == 1)
			i++;
		if (i == n)
			break;
		for (res = 0; res < QUOTA_NUMRESOURCES; res++)
			if (!strcasecmp(f[i], quota_db_names[res]))
				break;
		if (res == QUOTA_NUMRESOURCES) {
			r = error_set(err, ERR_DATA,
				      "unknown quota resource '%s'", f[i]);
			break;
		}
		i++;
	}
	free(f);
	free(copy);
	return r;
}

int quota_parse(const char *data, size_t len, bool withscan, struct quota *q,
		struct error *err)
{
	quota_reset(q);
	if (!len || !data[0])
		return error_set(err, ERR_DATA, "empty quota value");
	if (data[0] == '%')
		return parse_dlist(data, len, withscan, q, err);
	return parse_legacy(data, len, q, err);
}

void quota_format(const struct quota *q, struct buf *out)
{
	struct dlist *dl = dlist_new_kvlist(NULL);
	for (int res = 0; res < QUOTA_NUMRESOURCES; res++) {
		struct dlist *item = dlist_add_list(dl, quota_db_names[res]);
		dlist_add_num(item, NULL, (unsigned long long)q->useds[res]);
		if (q->limits[res] != QUOTA_UNLIMITED)
			dlist_add_num(item, NULL,
				      (unsigned long long)q->limits[res]);
	}
	if (q->scanmbox) {
		struct dlist *scan = dlist_add_kvlist(dl, "SCAN");
		dlist_add_atom(scan, "MBOX", q->scanmbox);
		for (int res = 0; res < QUOTA_NUMRESOURCES; res++)
			dlist_add_num(scan, quota_db_names[res],
				      (unsigned long long)q->scanuseds[res]);
	}
	dlist_add_num(dl, "MODSEQ", q->modseq);
	dlist_print(dl, out);
	dlist_free(&dl);
}

bool quota_is_over(const struct quota *q, enum quota_resource res)
{
	return q->limits[res] >= 0 &&
	       q->useds[res] >= q->limits[res] * quota_units[res];
}

bool quota_root_covers(const char *root, const char *mboxname)
{
	size_t rl = strlen(root);
	if (strncmp(mboxname, root, rl))
		return false;
	if (rl && root[rl - 1] == '!')
		return true; /* a whole-domain root */
	return mboxname[rl] == '\0' || mboxname[rl] == '.';
}

void quota_mailbox_usage(const struct mailbox_index_header *ih,
			 long long usage[QUOTA_NUMRESOURCES])
{
	for (int res = 0; res < QUOTA_NUMRESOURCES; res++)
		usage[res] = 0;
	if (ih->options & MAILBOX_OPT_DELETED)
		return; /* being deleted: its usage is already gone */
	usage[QUOTA_STORAGE] = (long long)ih->quota_mailbox_used;
	usage[QUOTA_MESSAGE] = ih->exists;
	usage[QUOTA_ANNOTSTORAGE] = ih->quota_annot_used;
	usage[QUOTA_NUMFOLDERS] = 1;
}

bool quota_root_is_user(const struct mboxname_ns *ns, const char *root)
{
	struct mboxname mbn;
	mboxname_init(&mbn);
	mboxname_from_intname(ns, &mbn, root);
	bool r = mbn.localpart && !mbn.isdeleted;
	mboxname_release(&mbn);
	return r;
}

/* ---- the database ---- */

static int db_error(struct quotadb *qdb, int r, struct error *err,
		    const char *what, const char *key)
{
	enum error_kind kind = ERR_IO;
	if (r == CYRUSDB_AGAIN || r == CYRUSDB_LOCKED)
		kind = ERR_TEMPFAIL;
	else if (r == CYRUSDB_NOTFOUND)
		kind = ERR_NOINPUT;
	else if (r == CYRUSDB_INTERNAL)
		kind = ERR_DATA;
	return error_set(err, kind, "cannot %s quota root '%s': %s", what,
			 key, cyrusdb_errmsg(qdb->db));
}

int quotadb_open(const struct config *cfg, const char *fname, bool create,
		 struct quotadb **qdb_r, struct error *err)
{
	const char *backend = config_db_backend(cfg, "quota");
	char *path = fname ? xstrdup(fname) : config_db_path(cfg, "quota");
	struct quotadb *qdb = xcalloc(1, sizeof(*qdb));
	struct stat st;
	int r = 0;

	qdb->cfg = cfg;
	qdb->virtdomains = strcmp(config_getenum(cfg, "virtdomains"), "off");
	if (!cyrusdb_backend_exists(backend)) {
		r = error_set(err, ERR_CONFIG, "quota_db: unknown backend '%s'",
			      backend);
		goto out;
	}
	/* quotalegacy has no file of its own: only its directory counts. */
	if (!create && strcmp(backend, "quotalegacy") && stat(path, &st) < 0 &&
	    errno == ENOENT)
		goto out;
	r = cyrusdb_open(backend, path, create ? CYRUSDB_CREATE : 0, &qdb->db,
			 err);
out:
	free(path);
	if (r < 0) {
		free(qdb);
		*qdb_r = NULL;
		return -1;
	}
	*qdb_r = qdb;
	return 0;
}

void quotadb_close(struct quotadb **qdb)
{
	if (!*qdb)
		return;
	if ((*qdb)->db)
		cyrusdb_close(&(*qdb)->db);
	free(*qdb);
	*qdb = NULL;
}

int quotadb_read(struct quotadb *qdb, struct quota *q,
		 struct cyrusdb_txn **tid, struct error *err)
{
	const char *data = NULL;
	size_t len = 0;
	int r;

	if (!q->root || !*q->root)
		return error_set(err, ERR_NOINPUT, "no quota root");
	if (!qdb->db)
		return error_set(err, ERR_NOINPUT, "quota root '%s' does not "
				 "exist", q->root);
	if (tid)
		r = cyrusdb_fetchlock(qdb->db, q->root, strlen(q->root),
				      &data, &len, tid);
	else
		r = cyrusdb_fetch(qdb->db, q->root, strlen(q->root), &data,
				  &len, NULL);
	if (r == CYRUSDB_NOTFOUND || (!r && (!len || !data[0])))
		return error_set(err, ERR_NOINPUT, "quota root '%s' does not "
				 "exist", q->root);
	if (r)
		return db_error(qdb, r, err, "read", q->root);
	struct error e2 = ERROR_INIT;
	if (quota_parse(data, len, tid != NULL, q, &e2) < 0)
		return error_set(err, ERR_DATA, "quota root '%s': %s", q->root,
				 e2.msg);
	return 0;
}

int quotadb_write(struct quotadb *qdb, const struct quota *q,
		  struct cyrusdb_txn **tid, struct error *err)
{
	struct buf val = BUF_INIT;
	if (!q->root || !*q->root)
		return error_set(err, ERR_SOFTWARE, "no quota root");
	if (!qdb->db)
		return error_set(err, ERR_SOFTWARE, "quota database not open "
				 "for writing");
	quota_format(q, &val);
	int r = cyrusdb_store(qdb->db, q->root, strlen(q->root), val.s,
			      val.len, tid);
	buf_release(&val);
	return r ? db_error(qdb, r, err, "write", q->root) : 0;
}

static int exists(struct quotadb *qdb, const char *root, struct error *err);

int quotadb_delete(struct quotadb *qdb, const char *root,
		   struct cyrusdb_txn **tid, struct error *err)
{
	if (!qdb->db)
		return 0;
	/* Nothing to do for a missing root (and quotalegacy would commit an
	 * empty transaction). */
	if (!tid && exists(qdb, root, NULL) == 0)
		return 0;
	int r = cyrusdb_delete(qdb->db, root, strlen(root), tid, true);
	if (r == CYRUSDB_NOTFOUND)
		r = 0;
	return r ? db_error(qdb, r, err, "delete", root) : 0;
}

int quotadb_commit(struct quotadb *qdb, struct cyrusdb_txn **tid,
		   struct error *err)
{
	if (!*tid)
		return 0;
	int r = cyrusdb_commit(qdb->db, *tid);
	*tid = NULL;
	if (r)
		return error_set(err, r == CYRUSDB_AGAIN ? ERR_TEMPFAIL : ERR_IO,
				 "cannot commit to the quota database: %s",
				 cyrusdb_errmsg(qdb->db));
	return 0;
}

void quotadb_abort(struct quotadb *qdb, struct cyrusdb_txn **tid)
{
	if (*tid)
		cyrusdb_abort(qdb->db, *tid);
	*tid = NULL;
}

struct foreach_rock {
	quotadb_cb *cb;
	void *rock;
};

static int foreach_one(void *rock, const char *key, size_t keylen,
		       const char *data, size_t datalen)
{
	struct foreach_rock *fr = rock;
	struct quota q;
	char *root = xstrndup(key, keylen);
	int r = 0;
	quota_init(&q, root);
	if (datalen && quota_parse(data, datalen, false, &q, NULL) == 0)
		r = fr->cb(fr->rock, &q);
	quota_release(&q);
	free(root);
	return r;
}

int quotadb_foreach(struct quotadb *qdb, const char *prefix, quotadb_cb *cb,
		    void *rock, struct error *err)
{
	struct foreach_rock fr = { cb, rock };
	if (!prefix)
		prefix = "";
	if (!qdb->db)
		return 0;
	int r = cyrusdb_foreach(qdb->db, prefix, strlen(prefix), NULL,
				foreach_one, &fr, NULL);
	if (r < 0)
		return error_set(err, ERR_IO, "cannot list quota roots: %s",
				 cyrusdb_errmsg(qdb->db));
	return r;
}

static int exists(struct quotadb *qdb, const char *root, struct error *err)
{
	const char *data;
	size_t len;
	int r = cyrusdb_fetch(qdb->db, root, strlen(root), &data, &len, NULL);
	if (r == CYRUSDB_NOTFOUND)
		return 0;
	if (r)
		return db_error(qdb, r, err, "read", root);
	return 1;
}

int quotadb_findroot(struct quotadb *qdb, const char *mboxname,
		     char **root_r, struct error *err)
{
	char *ret = xstrdup(mboxname);
	char *bang = qdb->virtdomains ? strchr(ret, '!') : NULL;
	char *mbox = bang ? bang + 1 : ret;
	int r = 0;

	*root_r = NULL;
	if (!qdb->db)
		goto out;
	for (;;) {
		if (*mbox && (r = exists(qdb, ret, err)) != 0)
			break;
		char *tail = strrchr(mbox, '.');
		if (!tail)
			break;
		*tail = '\0';
	}
	if (r == 0 && mbox != ret) {
		*mbox = '\0'; /* the whole-domain root "domain!" */
		r = exists(qdb, ret, err);
	}
out:
	if (r == 1)
		*root_r = ret;
	else
		free(ret);
	return r;
}

int quota_changelock(const struct config *cfg, const struct mboxname_ns *ns,
		     int *fd_r, struct error *err)
{
	struct buf path = BUF_INIT;
	int fd, r = 0;

	mboxpath_lock(cfg, ns, "$QUOTACHANGE", NULL, &path);
	fd = open(path.s, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0666);
	if (fd < 0 && errno == ENOENT) {
		fsutil_mkdir_parents(path.s, 0755);
		fd = open(path.s, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0666);
	}
	if (fd < 0) {
		r = error_sys(err, error_kind_from_errno(errno), errno,
			      "cannot open lock file '%s'", path.s);
	} else if (lock_fd(fd, LOCK_EXCLUSIVE, true) < 0) {
		r = error_sys(err, ERR_IO, errno, "cannot lock '%s'", path.s);
		close(fd);
		fd = -1;
	}
	*fd_r = fd;
	buf_release(&path);
	return r;
}

void quota_changelock_release(int *fd)
{
	if (*fd >= 0) {
		lock_unlock(*fd);
		close(*fd);
	}
	*fd = -1;
}

/* ---- a mailbox for the scan ---- */

/* mboxname_lock: open (creating the directories) and lock, blocking. */
static int lock_file(const char *path, enum lock_mode mode, bool wait,
		     int *fd_r, struct error *err)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0666);
	if (fd < 0 && errno == ENOENT) {
		fsutil_mkdir_parents(path, 0755);
		fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0666);
	}
	if (fd < 0)
		return error_sys(err, error_kind_from_errno(errno), errno,
				 "cannot open lock file '%s'", path);
	if (lock_fd(fd, mode, wait) < 0) {
		int e = errno;
		close(fd);
		return error_sys(err, e == EAGAIN || e == EACCES ? ERR_TEMPFAIL
								 : ERR_IO,
				 e, "cannot lock '%s'", path);
	}
	*fd_r = fd;
	return 0;
}

int quota_mbox_open(const struct config *cfg, const struct mboxname_ns *ns,
		    const struct mboxlist_entry *e, unsigned flags,
		    struct quota_mbox **qm_r, struct error *err)
{
	struct quota_mbox *qm = xcalloc(1, sizeof(*qm));
	bool writable = (flags & QUOTA_MBOX_WRITABLE) != 0;
	bool wait = !(flags & QUOTA_MBOX_NOWAIT);
	enum lock_mode mode = writable ? LOCK_EXCLUSIVE : LOCK_SHARED;
	struct mboxname mbn;
	struct buf userid = BUF_INIT, path = BUF_INIT;
	unsigned char hb[MAILBOX_INDEX_HEADER_SIZE];
	int r = -1;

	qm->name = xstrdup(e->name);
	qm->ns_fd = qm->name_fd = qm->index_fd = -1;
	qm->writable = writable;
	qm->h = xcalloc(1, sizeof(*qm->h));
	qm->i = xcalloc(1, sizeof(*qm->i));
	mailbox_header_init(qm->h);
	mboxname_init(&mbn);

	if (mailbox_paths(cfg, ns, e, &qm->header_path, &qm->index_path, NULL,
			  NULL, NULL, err) < 0)
		goto out;
	/* 1. The user namespace lock, in the index lock's mode. */
	mboxname_from_intname(ns, &mbn, e->name);
	if (mboxname_userid(&mbn, &userid)) {
		struct buf nm = BUF_INIT;
		buf_adds(&nm, "*U*");
		for (const char *p = userid.s; *p; p++)
			buf_addch(&nm, *p == '.' ? '^' : *p);
		mboxpath_lock(cfg, ns, nm.s, NULL, &path);
		buf_release(&nm);
		if (lock_file(path.s, mode, wait, &qm->ns_fd, err) < 0)
			goto out;
	}
	/* 2. The mailbox name lock, shared. */
	buf_reset(&path);
	mboxpath_lock(cfg, ns, e->name,
		      (e->mbtype & MBTYPE_LEGACY_DIRS) ? NULL : e->uniqueid,
		      &path);
	if (lock_file(path.s, LOCK_SHARED, wait, &qm->name_fd, err) < 0)
		goto out;
	/* 3. cyrus.index, then what it vouches for. */
	qm->index_fd = open(qm->index_path,
			    (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (qm->index_fd < 0) {
		error_sys(err, errno == ENOENT ? ERR_NOINPUT : ERR_IO, errno,
			  "cannot open '%s'", qm->index_path);
		goto out;
	}
	if ((wait ? lock_reopen(&qm->index_fd, qm->index_path, mode, NULL,
				err)
		  : lock_reopen_nonblock(&qm->index_fd, qm->index_path, mode,
					 NULL, err)) < 0)
		goto out;
	if (mailbox_header_read(qm->header_path, qm->h, NULL, NULL, err) < 0)
		goto out;
	ssize_t n = pread(qm->index_fd, hb, sizeof(hb), 0);
	if (n < 0) {
		error_sys(err, ERR_IO, errno, "cannot read '%s'",
			  qm->index_path);
		goto out;
	}
	struct error e2 = ERROR_INIT;
	if (mailbox_index_header_decode(hb, (size_t)n, qm->i, NULL, &e2) < 0) {
		error_set(err, ERR_DATA, "%s: %s", qm->index_path, e2.msg);
		goto out;
	}
	r = 0;
out:
	mboxname_release(&mbn);
	buf_release(&userid);
	buf_release(&path);
	if (r < 0)
		quota_mbox_close(&qm);
	*qm_r = qm;
	return r;
}

const char *quota_mbox_quotaroot(const struct quota_mbox *qm)
{
	return qm->h->quotaroot;
}

int quota_mbox_set_quotaroot(struct quota_mbox *qm, const char *root,
			     struct error *err)
{
	unsigned char hb[MAILBOX_INDEX_HEADER_SIZE];
	uint32_t crc;

	if (!qm->writable)
		BUG("quota_mbox_set_quotaroot on a read-only open");
	free(qm->h->quotaroot);
	qm->h->quotaroot = root ? xstrdup(root) : NULL;
	if (mailbox_header_write(qm->header_path, qm->h, &crc, err) < 0)
		return -1;
	qm->i->header_file_crc = crc;
	size_t len = mailbox_index_header_encode(qm->i, hb);
	ssize_t n = pwrite(qm->index_fd, hb, len, 0);
	if (n < 0 || (size_t)n != len || fsync(qm->index_fd) < 0)
		return error_sys(err, ERR_IO, n < 0 ? errno : EIO,
				 "cannot write the header of '%s'",
				 qm->index_path);
	return 0;
}

static void close_lock(int fd)
{
	if (fd >= 0) {
		lock_unlock(fd);
		close(fd);
	}
}

void quota_mbox_close(struct quota_mbox **qmp)
{
	struct quota_mbox *qm = *qmp;
	if (!qm)
		return;
	/* Reverse order: index, name, namespace. */
	close_lock(qm->index_fd);
	close_lock(qm->name_fd);
	close_lock(qm->ns_fd);
	mailbox_header_release(qm->h);
	free(qm->h);
	free(qm->i);
	free(qm->name);
	free(qm->header_path);
	free(qm->index_path);
	free(qm);
	*qmp = NULL;
}
