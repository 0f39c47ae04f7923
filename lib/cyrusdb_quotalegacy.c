/*
 * cyrusdb_quotalegacy.c: the "quotalegacy" backend, one small text file per
 * quota root under <dir>/quota/<H>/ (docs/formats/cyrusdb.md 5). The
 * database file name given to open only names the directory <dir>.
 *
 * Compatible with Cyrus 3.6.1: a transaction holds an exclusive fcntl lock
 * on every quota file it touched (taken with lock_reopen; a missing file is
 * created empty first so that it can be locked, as Cyrus does), and commit
 * writes each changed file to "<path>.NEW", fsyncs and renames it over the
 * file, or unlinks a deleted one. Unlike Cyrus, reads inside a transaction
 * see its own pending changes, and an aborted transaction removes the empty
 * files it created.
 */
#include "compat.h"

#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "buf.h"
#include "cyrusdb-private.h"
#include "error.h"
#include "fsutil.h"
#include "lock.h"
#include "xmalloc.h"

enum pending { P_NONE, P_STORE, P_DELETE };

/* A quota file touched by a transaction. */
struct qent {
	struct qent *hnext;
	char *path;
	int fd;            /* locked target; -1 if it did not exist */
	bool existed;      /* the file was there before we touched it */
	enum pending pending;
	char *content;     /* P_STORE: the new file content, LF included */
	size_t clen;
};

struct cyrusdb_txn {
	struct qent **hash;
	size_t hsize;
	struct qent **list;
	size_t n, alloc;
	bool shared;
};

struct qldb {
	struct cyrusdb base;
	char *dir;
	bool mboxsort;
	struct cyrusdb_txn *txn;
	unsigned long txn_serial;
	struct buf data;   /* returned by fetch */
};

#define QDB(db) ((struct qldb *)(db))

/* ---- key -> path ---- */

/* Cyrus's dir_hash_c (lib/util.c). */
static char hash_char(const char *name, bool full)
{
	if (full) {
		uint32_t n = 0;
		for (const unsigned char *p = (const unsigned char *)name;
		     *p && *p != '.'; p++)
			n = ((n << 3) ^ (n >> 5)) ^ *p;
		return (char)('A' + n % 23);
	}
	unsigned char c = (unsigned char)*name;
	if (c >= 'A' && c <= 'Z')
		c = (unsigned char)(c - 'A' + 'a');
	return c >= 'a' && c <= 'z' ? (char)c : 'q';
}

/* The hash of a quota root: of the part after the first '.'. */
static char root_hash(const char *root, bool full)
{
	const char *dot = strchr(root, '.');
	return hash_char(dot ? dot + 1 : root, full);
}

static bool bad_component(const char *s, size_t len)
{
	return !len || (len == 1 && s[0] == '.') ||
	       (len == 2 && s[0] == '.' && s[1] == '.');
}

/* Fills out with the file of key; CYRUSDB_INTERNAL for unusable keys. */
static int key_path(struct qldb *db, const char *key, size_t keylen,
		    struct buf *out)
{
	const struct cyrusdb_env *env = cyrusdb_getenv();
	if (!keylen || memchr(key, '/', keylen) || memchr(key, '\0', keylen))
		return cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
				      "quota root '%.*s' cannot be a file "
				      "name", (int)keylen, key);
	char *k = xstrndup(key, keylen);
	const char *root = k;
	buf_reset(out);
	buf_adds(out, db->dir);
	char *bang = env->virtdomains ? strchr(k, '!') : NULL;
	if (bang) {
		*bang = '\0';
		root = bang + 1;
		if (bad_component(k, strlen(k))) {
			free(k);
			return cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
					      "quota root '%.*s': bad domain",
					      (int)keylen, key);
		}
		buf_printf(out, "/domain/%c/%s", hash_char(k, env->fulldirhash),
			   k);
		if (!*root) {
			buf_adds(out, "/quota/root");
			free(k);
			return 0;
		}
	}
	if (bad_component(root, strlen(root))) {
		free(k);
		return cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
				      "quota root '%.*s' cannot be a file "
				      "name", (int)keylen, key);
	}
	buf_printf(out, "/quota/%c/%s", root_hash(root, env->fulldirhash),
		   root);
	free(k);
	return 0;
}

/* ---- small file helpers ---- */

/* open(2) that raises the soft descriptor limit once if it runs out: a
 * transaction keeps one locked descriptor per quota root it touched. */
static int open_file(const char *path, int flags, mode_t mode)
{
	int fd = open(path, flags | O_CLOEXEC, mode);
	if (fd < 0 && errno == EMFILE) {
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
		    rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
				fd = open(path, flags | O_CLOEXEC, mode);
		}
		if (fd < 0)
			errno = EMFILE;
	}
	return fd;
}

static int read_fd(int fd, struct buf *out)
{
	char chunk[4096];
	buf_reset(out);
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(fd, chunk, sizeof(chunk), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		buf_add(out, chunk, (size_t)n);
		off += n;
	}
}

/*
 * Turns file content into the value: strips the final LF (a file without
 * it is damaged) and shows the legacy "used LF limit" as "used limit".
 */
static int content_to_value(struct qldb *db, const char *path,
			    struct buf *b)
{
	if (!b->len)
		return 0;
	if (b->s[b->len - 1] != '\n')
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
				      "quota file '%s' does not end with LF",
				      path);
	buf_setlen(b, b->len - 1);
	if (b->s[0] != '%') {
		char *eol = strchr(b->s, '\n');
		if (eol)
			*eol = ' ';
	}
	return 0;
}

/* ---- transactions ---- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 14695981039346656037ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static struct qent *txn_find(const struct cyrusdb_txn *t, const char *path)
{
	if (!t || !t->hsize)
		return NULL;
	struct qent *e = t->hash[hash_str(path) & (t->hsize - 1)];
	for (; e; e = e->hnext)
		if (!strcmp(e->path, path))
			return e;
	return NULL;
}

static void txn_add(struct cyrusdb_txn *t, struct qent *e)
{
	if (t->n + 1 > t->hsize / 4 * 3) {
		size_t nsize = t->hsize ? 2 * t->hsize : 256;
		struct qent **nh = xcalloc(nsize, sizeof(*nh));
		for (size_t i = 0; i < t->n; i++) {
			struct qent *x = t->list[i];
			size_t b = hash_str(x->path) & (nsize - 1);
			x->hnext = nh[b];
			nh[b] = x;
		}
		free(t->hash);
		t->hash = nh;
		t->hsize = nsize;
	}
	size_t b = hash_str(e->path) & (t->hsize - 1);
	e->hnext = t->hash[b];
	t->hash[b] = e;
	if (t->n == t->alloc) {
		t->alloc = t->alloc ? 2 * t->alloc : 64;
		t->list = xrealloc(t->list, t->alloc * sizeof(*t->list));
	}
	t->list[t->n++] = e;
}

/*
 * Opens and locks path for transaction t. With create, a missing file is
 * created empty (and its directories) so that it can be locked. Returns
 * the entry, or NULL with the error in *r (CYRUSDB_NOTFOUND if missing).
 */
static struct qent *txn_lock(struct qldb *db, struct cyrusdb_txn *t,
			     const char *path, bool create, int *r)
{
	struct qent *e = txn_find(t, path);
	*r = 0;
	if (e)
		return e;
	bool existed = true;
	int fd = open_file(path, O_RDWR, 0);
	if (fd < 0 && errno == ENOENT && create) {
		existed = false;
		if (fsutil_mkdir_parents(path, 0755) < 0) {
			*r = cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
					    "cannot create the directory of "
					    "'%s': %s", path, strerror(errno));
			return NULL;
		}
		fd = open_file(path, O_RDWR | O_CREAT, 0644);
	}
	if (fd < 0 && errno == ENOENT && !create) {
		*r = CYRUSDB_NOTFOUND;
		return NULL;
	}
	if (fd < 0) {
		*r = cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
				    "cannot open '%s': %s", path,
				    strerror(errno));
		return NULL;
	}
	struct error err = ERROR_INIT;
	if (lock_reopen(&fd, path, LOCK_EXCLUSIVE, NULL, &err) < 0) {
		close(fd);
		*r = cyrusdb_seterr(&db->base, err.kind == ERR_NOINPUT
				    ? CYRUSDB_NOTFOUND : CYRUSDB_IOERROR,
				    "%s", err.msg);
		return NULL;
	}
	e = xzmalloc(sizeof(*e));
	e->path = xstrdup(path);
	e->fd = fd;
	e->existed = existed;
	txn_add(t, e);
	return e;
}

static void qent_free(struct qent *e)
{
	if (e->fd >= 0) {
		lock_unlock(e->fd);
		close(e->fd);
	}
	free(e->content);
	free(e->path);
	free(e);
}

/* Removes a file we created only to lock it, if nobody wrote to it. */
static void drop_created(struct qent *e)
{
	struct stat st;
	if (!e->existed && e->fd >= 0 && fstat(e->fd, &st) == 0 &&
	    st.st_size == 0 && st.st_nlink > 0)
		unlink(e->path);
}

static void txn_free(struct qldb *db, struct cyrusdb_txn *t)
{
	for (size_t i = 0; i < t->n; i++)
		qent_free(t->list[i]);
	free(t->list);
	free(t->hash);
	free(t);
	if (db->txn == t)
		db->txn = NULL;
}

static int ql_abort(struct cyrusdb *base, struct cyrusdb_txn *t)
{
	struct qldb *db = QDB(base);
	if (!t || t != db->txn)
		return cyrusdb_seterr(base, CYRUSDB_INTERNAL,
				      "'%s': abort of an unknown transaction",
				      db->dir);
	for (size_t i = 0; i < t->n; i++)
		drop_created(t->list[i]);
	txn_free(db, t);
	return 0;
}

static int write_new(struct qldb *db, struct qent *e, bool nosync)
{
	char *newpath = xasprintf("%s.NEW", e->path);
	struct stat st;
	int r = 0;
	unlink(newpath);
	int fd = open_file(newpath, O_RDWR | O_CREAT | O_EXCL, 0666);
	if (fd < 0) {
		r = cyrusdb_seterr(&db->base, CYRUSDB_IOERROR, "cannot create "
				   "'%s': %s", newpath, strerror(errno));
		goto out;
	}
	atomicfile_cleanup_register(newpath);
	/* Cyrus locks the new file too: it becomes the target at rename. */
	lock_fd(fd, LOCK_EXCLUSIVE, true);
	if (e->existed && fstat(e->fd, &st) == 0) {
		if (fchown(fd, st.st_uid, st.st_gid) < 0) {
			/* not fatal: an unprivileged user keeps their own */
		}
		fchmod(fd, st.st_mode & 07777);
	}
	size_t off = 0;
	while (off < e->clen) {
		ssize_t n = write(fd, e->content + off, e->clen - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (!n)
				errno = EIO;
			break;
		}
		off += (size_t)n;
	}
	if (off < e->clen || (!nosync && fsync(fd) < 0)) {
		r = cyrusdb_seterr(&db->base, CYRUSDB_IOERROR, "cannot write "
				   "'%s': %s", newpath, strerror(errno));
		unlink(newpath);
	} else if (rename(newpath, e->path) < 0) {
		r = cyrusdb_seterr(&db->base, CYRUSDB_IOERROR, "cannot rename "
				   "'%s': %s", newpath, strerror(errno));
		unlink(newpath);
	}
	atomicfile_cleanup_unregister(newpath);
	close(fd);
out:
	free(newpath);
	return r;
}

static int path_cmp(const void *a, const void *b)
{
	return strcmp((*(struct qent *const *)a)->path,
		      (*(struct qent *const *)b)->path);
}

static int ql_commit(struct cyrusdb *base, struct cyrusdb_txn *t)
{
	struct qldb *db = QDB(base);
	bool nosync = cyrusdb_getenv()->nosync;
	int r = 0;
	if (!t || t != db->txn)
		return cyrusdb_seterr(base, CYRUSDB_INTERNAL,
				      "'%s': commit of an unknown transaction",
				      db->dir);
	/* In path order, so each directory is fsynced once. */
	if (t->n)
		qsort(t->list, t->n, sizeof(*t->list), path_cmp);
	const char *synced = NULL;
	size_t synced_len = 0;
	for (size_t i = 0; i < t->n; i++) {
		struct qent *e = t->list[i];
		int r1 = 0;
		bool changed = true;
		if (e->pending == P_STORE) {
			r1 = write_new(db, e, nosync);
		} else if (e->pending == P_DELETE ||
			   (!e->existed && e->fd >= 0)) {
			/* Deleted, or created only to be locked. */
			if (e->pending == P_DELETE)
				r1 = unlink(e->path) < 0 && errno != ENOENT;
			else
				drop_created(e);
			if (r1)
				r1 = cyrusdb_seterr(base, CYRUSDB_IOERROR,
						    "cannot unlink '%s': %s",
						    e->path, strerror(errno));
		} else {
			changed = false;
		}
		if (r1 && !r)
			r = r1;
		const char *slash = strrchr(e->path, '/');
		size_t dlen = (size_t)(slash - e->path);
		if (changed && !r1 && !nosync &&
		    (!synced || synced_len != dlen ||
		     memcmp(synced, e->path, dlen))) {
			fsync_parent_dir(e->path);
			synced = e->path;
			synced_len = dlen;
		}
	}
	txn_free(db, t);
	return r;
}

static int txn_begin(struct qldb *db, struct cyrusdb_txn **tid_r)
{
	if (db->txn)
		return cyrusdb_seterr(&db->base, CYRUSDB_LOCKED,
				      "cannot start a transaction on '%s': "
				      "one is already active", db->dir);
	struct cyrusdb_txn *t = xzmalloc(sizeof(*t));
	t->shared = db->base.flags & CYRUSDB_SHARED;
	db->txn = t;
	db->txn_serial++;
	*tid_r = t;
	return 0;
}

static int check_tid(struct qldb *db, struct cyrusdb_txn **tid,
		     struct cyrusdb_txn **t_r)
{
	*t_r = NULL;
	if (tid && *tid) {
		if (*tid != db->txn)
			return cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
					      "'%s': transaction does not "
					      "belong to this database",
					      db->dir);
		*t_r = *tid;
		return 0;
	}
	if (tid) {
		int r = txn_begin(db, t_r);
		if (r)
			return r;
		*tid = *t_r;
	}
	return 0;
}

/* ---- reading ---- */

/*
 * Reads the value stored in path into out. In a transaction (t) the file is
 * locked and kept; otherwise (no t) it is read without a lock, as Cyrus
 * does. Pending changes of the active transaction win.
 */
static int read_value(struct qldb *db, struct cyrusdb_txn *t,
		      const char *path, struct buf *out)
{
	struct qent *e = txn_find(t ? t : db->txn, path);
	int r = 0, fd;
	if (e && e->pending == P_DELETE)
		return CYRUSDB_NOTFOUND;
	if (e && e->pending == P_STORE) {
		buf_set(out, e->content, e->clen);
		return content_to_value(db, path, out);
	}
	if (e && !e->existed)
		return CYRUSDB_NOTFOUND; /* created only to be locked */
	if (!e && t) {
		e = txn_lock(db, t, path, false, &r);
		if (!e)
			return r;
	}
	if (e) {
		fd = e->fd;
	} else {
		fd = open_file(path, O_RDONLY, 0);
		if (fd < 0)
			return errno == ENOENT || errno == ENOTDIR
			       ? CYRUSDB_NOTFOUND
			       : cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
						"cannot open '%s': %s", path,
						strerror(errno));
	}
	if (read_fd(fd, out) < 0)
		r = cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
				   "cannot read '%s': %s", path,
				   strerror(errno));
	if (!e)
		close(fd);
	return r ? r : content_to_value(db, path, out);
}

static int ql_fetch(struct cyrusdb *base, const char *key, size_t keylen,
		    const char **data, size_t *datalen,
		    struct cyrusdb_txn **tid)
{
	struct qldb *db = QDB(base);
	struct cyrusdb_txn *t;
	struct buf path = BUF_INIT;
	if (data)
		*data = NULL;
	if (datalen)
		*datalen = 0;
	int r = key_path(db, key, keylen, &path);
	if (!r)
		r = check_tid(db, tid, &t);
	if (!r)
		r = read_value(db, t, path.s, &db->data);
	if (!r) {
		if (data)
			*data = db->data.s;
		if (datalen)
			*datalen = db->data.len;
	}
	buf_release(&path);
	return r;
}

/* ---- foreach ---- */

struct found {
	char *key;
	char *path;
};

struct scan {
	struct found *v;
	size_t n, alloc;
};

static void scan_add(struct scan *sc, char *key, char *path)
{
	if (sc->n == sc->alloc) {
		sc->alloc = sc->alloc ? 2 * sc->alloc : 64;
		sc->v = xrealloc(sc->v, sc->alloc * sizeof(*sc->v));
	}
	sc->v[sc->n].key = key;
	sc->v[sc->n].path = path;
	sc->n++;
}

/*
 * The one hash directory all roots starting with prefix live in, or 0 if
 * the prefix does not decide it (then all 26 are scanned, as Cyrus does
 * for every prefix it cannot hash; Cyrus hashes "user" to 'u' and misses
 * the others, we do not).
 */
static char prefix_hash(const char *prefix, bool full)
{
	const char *dot = strchr(prefix, '.');
	if (!dot || !dot[1])
		return 0;
	if (full && !strchr(dot + 1, '.'))
		return 0;
	return hash_char(dot + 1, full);
}

/* Adds the roots in qdir/?/ starting with prefix; keys get kprefix. */
static void scan_quota_dir(const char *qdir, const char *kprefix,
			   const char *prefix, struct scan *sc)
{
	bool full = cyrusdb_getenv()->fulldirhash;
	char only = prefix_hash(prefix, full);
	size_t plen = strlen(prefix);
	for (int i = 0; i < 26; i++) {
		char c = (char)((full ? 'A' : 'a') + i);
		if (only && c != only)
			continue;
		char *d = xasprintf("%s/%c", qdir, c);
		DIR *dir = opendir(d);
		struct dirent *de;
		while (dir && (de = readdir(dir))) {
			if (!strcmp(de->d_name, ".") ||
			    !strcmp(de->d_name, "..") ||
			    strncmp(de->d_name, prefix, plen))
				continue;
			scan_add(sc, xasprintf("%s%s", kprefix, de->d_name),
				 xasprintf("%s/%s", d, de->d_name));
		}
		if (dir)
			closedir(dir);
		free(d);
	}
}

/* Adds the roots of one virtual domain (all of them if prefix is ""). */
static void scan_domain(const char *ddir, const char *domain,
			const char *prefix, struct scan *sc)
{
	char *qdir = xasprintf("%s/quota", ddir);
	char *kprefix = xasprintf("%s!", domain);
	struct stat st;
	if (!*prefix) {
		char *root = xasprintf("%s/root", qdir);
		if (stat(root, &st) == 0)
			scan_add(sc, xstrdup(kprefix), root);
		else
			free(root);
	}
	scan_quota_dir(qdir, kprefix, prefix, sc);
	free(kprefix);
	free(qdir);
}

/* Every domain directory whose name starts with dprefix. */
static void scan_domains(const char *dir, const char *dprefix,
			 struct scan *sc)
{
	bool full = cyrusdb_getenv()->fulldirhash;
	size_t plen = strlen(dprefix);
	for (int i = 0; i < 26; i++) {
		char *d = xasprintf("%s/domain/%c", dir,
				    (full ? 'A' : 'a') + i);
		DIR *dd = opendir(d);
		struct dirent *de;
		while (dd && (de = readdir(dd))) {
			if (!strcmp(de->d_name, ".") ||
			    !strcmp(de->d_name, "..") ||
			    strncmp(de->d_name, dprefix, plen))
				continue;
			char *ddir = xasprintf("%s/%s", d, de->d_name);
			scan_domain(ddir, de->d_name, "", sc);
			free(ddir);
		}
		if (dd)
			closedir(dd);
		free(d);
	}
}

/* Cyrus sorts by strcmp, or in mailbox order with CYRUSDB_MBOXSORT. */
static int found_cmp(const void *a, const void *b, void *mbox)
{
	const char *x = ((const struct found *)a)->key;
	const char *y = ((const struct found *)b)->key;
	return *(bool *)mbox ? cyrusdb_compar_mbox(x, strlen(x), y, strlen(y))
			     : strcmp(x, y);
}

static int ql_foreach(struct cyrusdb *base, const char *prefix,
		      size_t prefixlen, cyrusdb_filter_fn *p,
		      cyrusdb_cb_fn *cb, void *rock,
		      struct cyrusdb_txn **tid)
{
	struct qldb *db = QDB(base);
	const struct cyrusdb_env *env = cyrusdb_getenv();
	struct cyrusdb_txn *t;
	struct scan sc = { 0 };
	struct buf val = BUF_INIT;
	char *pfx = xstrndup(prefix ? prefix : "", prefix ? prefixlen : 0);
	int r = check_tid(db, tid, &t);
	if (r)
		goto out;
	if (strlen(pfx) != (prefix ? prefixlen : 0) || strchr(pfx, '/'))
		goto out; /* no file name can match */
	char *bang = env->virtdomains ? strchr(pfx, '!') : NULL;
	if (bang) {
		*bang = '\0';
		if (!bad_component(pfx, strlen(pfx))) {
			char *ddir = xasprintf("%s/domain/%c/%s", db->dir,
					       hash_char(pfx,
							 env->fulldirhash),
					       pfx);
			scan_domain(ddir, pfx, bang + 1, &sc);
			free(ddir);
		}
	} else {
		char *qdir = xasprintf("%s/quota", db->dir);
		scan_quota_dir(qdir, "", pfx, &sc);
		free(qdir);
		if (env->virtdomains)
			scan_domains(db->dir, pfx, &sc);
	}
	if (sc.n)
		qsort_r(sc.v, sc.n, sizeof(*sc.v), found_cmp, &db->mboxsort);
	unsigned long serial = db->txn_serial;
	for (size_t i = 0; i < sc.n; i++) {
		if (t && (!db->txn || db->txn_serial != serial)) {
			r = cyrusdb_seterr(base, CYRUSDB_INTERNAL, "'%s': "
					   "transaction ended inside foreach",
					   db->dir);
			break;
		}
		r = read_value(db, t, sc.v[i].path, &val);
		if (r == CYRUSDB_NOTFOUND) {
			r = 0; /* removed since we listed it */
			continue;
		}
		if (r)
			break;
		const char *k = sc.v[i].key;
		if (p && !p(rock, k, strlen(k), val.s, val.len))
			continue;
		r = cb(rock, k, strlen(k), val.s, val.len);
		if (r)
			break;
	}
out:
	for (size_t i = 0; i < sc.n; i++) {
		free(sc.v[i].key);
		free(sc.v[i].path);
	}
	free(sc.v);
	buf_release(&val);
	free(pfx);
	return r;
}

/* ---- writing ---- */

static int ql_write(struct qldb *db, const char *key, size_t keylen,
		    const char *data, size_t datalen,
		    struct cyrusdb_txn **tid, bool overwrite, bool force)
{
	struct buf path = BUF_INIT;
	struct cyrusdb_txn *t = NULL;
	int r = key_path(db, key, keylen, &path);
	if (r)
		goto out;
	if (tid && *tid) {
		if (*tid != db->txn) {
			r = cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
					   "'%s': transaction does not belong "
					   "to this database", db->dir);
			goto out;
		}
		t = *tid;
	} else {
		r = txn_begin(db, &t);
		if (r)
			goto out;
		if (tid)
			*tid = t;
	}
	if (t->shared) {
		r = cyrusdb_seterr(&db->base, CYRUSDB_READONLY, "'%s': opened "
				   "shared, cannot write", db->dir);
		goto done;
	}
	struct qent *e = txn_lock(db, t, path.s, data != NULL, &r);
	if (!e && (data || r != CYRUSDB_NOTFOUND))
		goto done;
	bool exists = e && (e->pending == P_NONE ? e->existed
						  : e->pending == P_STORE);
	if (!data) {
		if (!exists) {
			r = force ? 0 : cyrusdb_seterr(&db->base,
						       CYRUSDB_NOTFOUND,
						       "quota root '%.*s' not "
						       "found", (int)keylen,
						       key);
			goto done;
		}
		r = 0;
		e->pending = P_DELETE;
		free(e->content);
		e->content = NULL;
		goto done;
	}
	if (exists && !overwrite) {
		r = cyrusdb_seterr(&db->base, CYRUSDB_EXISTS, "quota root "
				   "'%.*s' exists", (int)keylen, key);
		goto done;
	}
	/* Legacy values "used limit" are stored on two lines. */
	free(e->content);
	e->content = xmalloc(datalen + 1);
	if (datalen)
		memcpy(e->content, data, datalen);
	e->content[datalen] = '\n';
	e->clen = datalen + 1;
	if (!datalen || data[0] != '%') {
		char *sp = memchr(e->content, ' ', datalen);
		if (sp)
			*sp = '\n';
	}
	e->pending = P_STORE;
done:
	if (!tid) {
		if (r)
			ql_abort(&db->base, t);
		else
			r = ql_commit(&db->base, t);
	}
out:
	buf_release(&path);
	return r;
}

static int ql_create(struct cyrusdb *base, const char *key, size_t keylen,
		     const char *data, size_t datalen,
		     struct cyrusdb_txn **tid)
{
	return ql_write(QDB(base), key, keylen, data ? data : "",
			data ? datalen : 0, tid, false, false);
}

static int ql_store(struct cyrusdb *base, const char *key, size_t keylen,
		    const char *data, size_t datalen,
		    struct cyrusdb_txn **tid)
{
	return ql_write(QDB(base), key, keylen, data ? data : "",
			data ? datalen : 0, tid, true, false);
}

static int ql_delete(struct cyrusdb *base, const char *key, size_t keylen,
		     struct cyrusdb_txn **tid, bool force)
{
	return ql_write(QDB(base), key, keylen, NULL, 0, tid, true, force);
}

static int ql_consistent(struct cyrusdb *base UNUSED)
{
	return 0; /* Cyrus has no check for quota files. */
}

static int ql_compar(struct cyrusdb *base, const char *a, size_t alen,
		     const char *b, size_t blen)
{
	return QDB(base)->mboxsort ? cyrusdb_compar_mbox(a, alen, b, blen)
				   : cyrusdb_compar_raw(a, alen, b, blen);
}

/* ---- open/close ---- */

static int ql_open(const char *fname, int flags, struct cyrusdb **db_r,
		   char *errmsg_r)
{
	char *dir = strchr(fname, '/') ? xstrdup(fname) : xstrdup("./x");
	char *slash = strrchr(dir, '/');
	struct stat st;
	*(slash == dir ? slash + 1 : slash) = '\0';
	int r = stat(dir, &st);
	if (r < 0 && errno == ENOENT && (flags & CYRUSDB_CREATE) &&
	    fsutil_mkdir_parents(fname, 0755) == 0)
		r = stat(dir, &st);
	if (r < 0 || !S_ISDIR(st.st_mode)) {
		int e = r < 0 ? errno : ENOTDIR;
		snprintf(errmsg_r, 512, "cannot use quota directory '%s': %s",
			 dir, strerror(e));
		free(dir);
		return e == ENOENT ? CYRUSDB_NOTFOUND : CYRUSDB_IOERROR;
	}
	struct qldb *db = xzmalloc(sizeof(*db));
	db->dir = dir;
	db->mboxsort = flags & CYRUSDB_MBOXSORT;
	buf_init(&db->data);
	*db_r = &db->base;
	return 0;
}

static int ql_close(struct cyrusdb *base)
{
	struct qldb *db = QDB(base);
	if (db->txn)
		ql_abort(base, db->txn);
	buf_release(&db->data);
	free(db->dir);
	free(db);
	return 0;
}

const struct cyrusdb_backend cyrusdb_quotalegacy = {
	.name = "quotalegacy",
	.open = ql_open,
	.close = ql_close,
	.fetch = ql_fetch,
	.fetchlock = ql_fetch,
	.fetchnext = NULL,
	.foreach = ql_foreach,
	.create = ql_create,
	.store = ql_store,
	.delete = ql_delete,
	.commit = ql_commit,
	.abort = ql_abort,
	.consistent = ql_consistent,
	.repack = NULL,
	.dump = NULL,
	.compar = ql_compar,
};
