/*
 * cyrusdb_flat.c: the "flat" backend, a sorted text file of
 * "ENCODED_KEY TAB ENCODED_VALUE LF" lines (docs/formats/cyrusdb.md 4).
 *
 * Compatible with Cyrus 3.6.1 on disk and in locking: writers take an
 * exclusive fcntl lock on the file (lock_reopen), write the whole new
 * content to the fixed name "<file>.NEW", fsync it and rename it over the
 * file; readers without a transaction take no lock and read the current
 * file, which rename keeps whole.
 *
 * Unlike Cyrus, which rewrites the file on every store, a transaction
 * keeps its changes in memory (a hash table for lookups plus an array
 * sorted on demand) and writes the merged file once at commit, so a
 * transaction of N stores costs O(N log N + file size).
 */
#include "compat.h"

#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "buf.h"
#include "cyrusdb-private.h"
#include "error.h"
#include "fsutil.h"
#include "lock.h"
#include "xmalloc.h"

#define ESCAPE 0xff

/* One parsed line of the file: offsets of the encoded key and value. */
struct rec {
	size_t koff, klen, vlen; /* the value starts at koff + klen + 1 */
};

/*
 * One version of the file, read into memory and indexed. Shared by the
 * handle and by a foreach running without a transaction (which must keep
 * its version while a callback replaces the file).
 */
struct snap {
	char *base;
	size_t size;
	struct rec *recs;
	size_t nrecs;
	size_t tail;       /* start of unparsable bytes; == size if none */
	const char *why;   /* what is wrong at tail */
	struct stat st;
	int refcount;
};

/* A pending change of a transaction; key and value are encoded. */
struct ovr {
	struct ovr *hnext;
	char *ekey, *eval;
	size_t eklen, evlen;
	bool deleted;
};

struct cyrusdb_txn {
	struct ovr **hash;
	size_t hsize;
	struct ovr **order; /* every ovr once; sorted when is_sorted */
	size_t n, alloc;
	bool is_sorted;
	bool shared;
	unsigned long gen;  /* bumped by every change */
};

struct flatdb {
	struct cyrusdb base;
	char *path;
	int fd;
	struct snap *snap;
	struct cyrusdb_txn *txn;
	unsigned long txn_serial;
	struct buf val;     /* returned by fetch */
	struct buf ekey;    /* scratch */
};

#define FDB(db) ((struct flatdb *)(db))

/* ---- escaping ---- */

static inline bool needs_escape(unsigned char c)
{
	return c == '\0' || c == '\t' || c == '\n' || c == '\r' ||
	       c == ESCAPE;
}

/* Copies runs of plain bytes whole: most keys and values have none to
 * escape. */
static void encode(const char *s, size_t len, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)s;
	buf_reset(out);
	buf_grow(out, len + 16);
	size_t i = 0;
	while (i < len) {
		size_t run = i;
		while (run < len && !needs_escape(p[run]))
			run++;
		buf_add(out, s + i, run - i);
		if (run == len)
			break;
		char esc[2] = { (char)ESCAPE, (char)(p[run] == ESCAPE
						     ? ESCAPE
						     : 0x80 | p[run]) };
		buf_add(out, esc, 2);
		i = run + 1;
	}
}

/* FF FF -> FF, FF x -> x & 0x7f, a lone FF at the end is dropped. */
static void decode(const char *s, size_t len, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)s;
	buf_reset(out);
	buf_grow(out, len);
	size_t i = 0;
	while (i < len) {
		const unsigned char *e = memchr(p + i, ESCAPE, len - i);
		size_t run = e ? (size_t)(e - p) : len;
		buf_add(out, s + i, run - i);
		if (run + 1 >= len)
			break;
		char c = (char)(p[run + 1] == ESCAPE ? ESCAPE
						     : (p[run + 1] & 0x7f));
		buf_add(out, &c, 1);
		i = run + 2;
	}
}

/* The on-disk order: mailbox map over the encoded keys, end of key first. */
static int ecmp(const char *a, size_t alen, const char *b, size_t blen)
{
	return cyrusdb_compar_mbox(a, alen, b, blen);
}

/* ---- snapshots ---- */

static void snap_unref(struct snap *s)
{
	if (!s || --s->refcount > 0)
		return;
	free(s->base);
	free(s->recs);
	free(s);
}

/*
 * Splits the content into records the way Cyrus's foreach does: the key
 * runs to the first TAB (an LF before it belongs to the key), the value to
 * the next LF. Parsing stops at the first record without TAB or LF; the
 * rest is kept as an unparsable tail.
 */
static void snap_parse(struct snap *s)
{
	size_t off = 0, alloc = 0;
	while (off < s->size) {
		const char *p = s->base + off;
		size_t left = s->size - off;
		const char *tab = memchr(p, '\t', left);
		if (!tab) {
			s->why = "line without TAB";
			break;
		}
		const char *lf = memchr(tab + 1, '\n', p + left - (tab + 1));
		if (!lf) {
			s->why = "last line not terminated by LF";
			break;
		}
		if (s->nrecs == alloc) {
			alloc = alloc ? 2 * alloc : 64;
			s->recs = xrealloc(s->recs, alloc * sizeof(*s->recs));
		}
		s->recs[s->nrecs].koff = off;
		s->recs[s->nrecs].klen = (size_t)(tab - p);
		s->recs[s->nrecs].vlen = (size_t)(lf - (tab + 1));
		s->nrecs++;
		off = (size_t)(lf - s->base) + 1;
	}
	s->tail = off;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Reads db->fd (described by st) into a new snapshot. */
static int snap_load(struct flatdb *db, const struct stat *st)
{
	struct snap *s = xzmalloc(sizeof(*s));
	s->refcount = 1;
	s->st = *st;
	s->size = (size_t)st->st_size;
	s->base = xmalloc(s->size + 1);
	size_t got = 0;
	while (got < s->size) {
		ssize_t n = pread(db->fd, s->base + got, s->size - got,
				  (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : 0;
			snap_unref(s);
			return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
					      "cannot read '%s': %s", db->path,
					      e ? strerror(e) : "file shrank");
		}
		got += (size_t)n;
	}
	s->base[s->size] = '\0';
	snap_parse(s);
	snap_unref(db->snap);
	db->snap = s;
	return 0;
}

/* Brings db->fd and db->snap up to date with the file (no lock held). */
static int refresh(struct flatdb *db)
{
	struct stat st;
	if (db->txn)
		return 0; /* we hold the lock: the file cannot change */
	if (stat(db->path, &st) < 0)
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
				      "cannot stat '%s': %s", db->path,
				      strerror(errno));
	if (db->snap && same_file(&db->snap->st, &st))
		return 0;
	struct stat fst;
	if (fstat(db->fd, &fst) < 0 || fst.st_ino != st.st_ino ||
	    fst.st_dev != st.st_dev) {
		int fd = open(db->path, O_RDWR | O_CLOEXEC);
		if (fd < 0 && (errno == EACCES || errno == EROFS))
			fd = open(db->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
					      "cannot reopen '%s': %s",
					      db->path, strerror(errno));
		close(db->fd);
		db->fd = fd;
	}
	if (fstat(db->fd, &st) < 0)
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
				      "cannot fstat '%s': %s", db->path,
				      strerror(errno));
	return snap_load(db, &st);
}

/* Index of the first record whose key is >= ekey. */
static size_t snap_lower(const struct snap *s, const char *ekey, size_t eklen)
{
	size_t lo = 0, hi = s->nrecs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct rec *r = &s->recs[mid];
		if (ecmp(s->base + r->koff, r->klen, ekey, eklen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static const struct rec *snap_find(const struct snap *s, const char *ekey,
				   size_t eklen)
{
	size_t i = snap_lower(s, ekey, eklen);
	if (i < s->nrecs && !ecmp(s->base + s->recs[i].koff, s->recs[i].klen,
				  ekey, eklen))
		return &s->recs[i];
	return NULL;
}

/* ---- pending changes ---- */

static uint64_t hash_bytes(const char *s, size_t len)
{
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static struct ovr *ovr_find(const struct cyrusdb_txn *t, const char *ekey,
			    size_t eklen)
{
	if (!t->hsize)
		return NULL;
	struct ovr *o = t->hash[hash_bytes(ekey, eklen) & (t->hsize - 1)];
	for (; o; o = o->hnext)
		if (o->eklen == eklen && !memcmp(o->ekey, ekey, eklen))
			return o;
	return NULL;
}

static void hash_grow(struct cyrusdb_txn *t)
{
	size_t nsize = t->hsize ? 2 * t->hsize : 1024;
	struct ovr **nh = xcalloc(nsize, sizeof(*nh));
	for (size_t i = 0; i < t->n; i++) {
		struct ovr *o = t->order[i];
		size_t b = hash_bytes(o->ekey, o->eklen) & (nsize - 1);
		o->hnext = nh[b];
		nh[b] = o;
	}
	free(t->hash);
	t->hash = nh;
	t->hsize = nsize;
}

/* Records a store (eval != NULL) or a delete of an encoded key. */
static void ovr_set(struct cyrusdb_txn *t, const char *ekey, size_t eklen,
		    const char *eval, size_t evlen)
{
	struct ovr *o = ovr_find(t, ekey, eklen);
	t->gen++;
	if (o) {
		free(o->eval);
		o->eval = eval ? xmemdup(eval, evlen + 1) : NULL;
		o->evlen = eval ? evlen : 0;
		o->deleted = !eval;
		return;
	}
	if (t->n + 1 > t->hsize / 4 * 3)
		hash_grow(t);
	o = xzmalloc(sizeof(*o));
	o->ekey = xmemdup(ekey, eklen + 1);
	o->eklen = eklen;
	o->eval = eval ? xmemdup(eval, evlen + 1) : NULL;
	o->evlen = eval ? evlen : 0;
	o->deleted = !eval;
	size_t b = hash_bytes(ekey, eklen) & (t->hsize - 1);
	o->hnext = t->hash[b];
	t->hash[b] = o;
	if (t->n == t->alloc) {
		t->alloc = t->alloc ? 2 * t->alloc : 256;
		t->order = xrealloc(t->order, t->alloc * sizeof(*t->order));
	}
	/* In-order appends (conversions) keep the array sorted for free. */
	if (t->n && ecmp(t->order[t->n - 1]->ekey, t->order[t->n - 1]->eklen,
			 ekey, eklen) > 0)
		t->is_sorted = false;
	t->order[t->n++] = o;
}

static int ovr_qcmp(const void *a, const void *b)
{
	const struct ovr *x = *(struct ovr *const *)a;
	const struct ovr *y = *(struct ovr *const *)b;
	return ecmp(x->ekey, x->eklen, y->ekey, y->eklen);
}

static void ovr_sort(struct cyrusdb_txn *t)
{
	if (!t->is_sorted) {
		qsort(t->order, t->n, sizeof(*t->order), ovr_qcmp);
		t->is_sorted = true;
	}
}

/* Index of the first pending change whose key is > ekey (or >= if eq). */
static size_t ovr_bound(const struct cyrusdb_txn *t, const char *ekey,
			size_t eklen, bool strictly_after)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = ecmp(t->order[mid]->ekey, t->order[mid]->eklen, ekey,
			     eklen);
		if (c < 0 || (strictly_after && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void txn_free(struct cyrusdb_txn *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->order[i]->ekey);
		free(t->order[i]->eval);
		free(t->order[i]);
	}
	free(t->order);
	free(t->hash);
	free(t);
}

/* ---- transactions ---- */

static int txn_begin(struct flatdb *db, struct cyrusdb_txn **tid_r)
{
	struct error err = ERROR_INIT;
	struct stat st;
	bool shared = db->base.flags & CYRUSDB_SHARED;
	if (db->txn)
		return cyrusdb_seterr(&db->base, CYRUSDB_LOCKED,
				      "cannot start a transaction on '%s': "
				      "one is already active", db->path);
	if (lock_reopen(&db->fd, db->path,
			shared ? LOCK_SHARED : LOCK_EXCLUSIVE, &st, &err) < 0)
		return cyrusdb_seterr(&db->base, err.kind == ERR_TEMPFAIL
				      ? CYRUSDB_AGAIN : CYRUSDB_IOERROR,
				      "%s", err.msg);
	if (!db->snap || !same_file(&db->snap->st, &st)) {
		int r = snap_load(db, &st);
		if (r) {
			lock_unlock(db->fd);
			return r;
		}
	}
	struct cyrusdb_txn *t = xzmalloc(sizeof(*t));
	t->is_sorted = true;
	t->shared = shared;
	db->txn = t;
	db->txn_serial++;
	*tid_r = t;
	return 0;
}

/* Resolves the tid argument of a read: the transaction to use, or NULL. */
static int use_tid(struct flatdb *db, struct cyrusdb_txn **tid,
		   struct cyrusdb_txn **t_r)
{
	*t_r = NULL;
	if (tid && *tid) {
		if (*tid != db->txn)
			return cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
					      "'%s': transaction does not "
					      "belong to this database",
					      db->path);
		*t_r = *tid;
		return 0;
	}
	if (tid) {
		int r = txn_begin(db, tid);
		*t_r = *tid;
		return r;
	}
	/* A read without tid while a transaction is open sees its changes. */
	*t_r = db->txn;
	return refresh(db);
}

static void txn_end(struct flatdb *db, struct cyrusdb_txn *t)
{
	lock_unlock(db->fd);
	txn_free(t);
	db->txn = NULL;
}

static int flat_abort(struct cyrusdb *base, struct cyrusdb_txn *t)
{
	struct flatdb *db = FDB(base);
	if (!t || t != db->txn)
		return cyrusdb_seterr(base, CYRUSDB_INTERNAL, "'%s': abort of "
				      "an unknown transaction", db->path);
	txn_end(db, t);
	return 0;
}

struct writer {
	int fd;
	struct buf out;
	int err;
};

static void w_add(struct writer *w, const char *p, size_t n)
{
	if (w->err)
		return;
	if (w->out.len + n > (1 << 20) && w->out.len) {
		size_t off = 0;
		while (off < w->out.len) {
			ssize_t k = write(w->fd, w->out.s + off,
					  w->out.len - off);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				w->err = k < 0 ? errno : EIO;
				return;
			}
			off += (size_t)k;
		}
		buf_reset(&w->out);
	}
	buf_add(&w->out, p, n);
}

static void w_line(struct writer *w, const char *k, size_t kl, const char *v,
		   size_t vl)
{
	w_add(w, k, kl);
	w_add(w, "\t", 1);
	w_add(w, v, vl);
	w_add(w, "\n", 1);
}

/* Writes the snapshot merged with the pending changes to fd. */
static int write_merged(struct flatdb *db, struct cyrusdb_txn *t, int fd)
{
	struct snap *s = db->snap;
	struct writer w = { fd, BUF_INIT, 0 };
	size_t i = 0, j = 0;
	ovr_sort(t);
	while (i < s->nrecs || j < t->n) {
		const struct rec *r = i < s->nrecs ? &s->recs[i] : NULL;
		const struct ovr *o = j < t->n ? t->order[j] : NULL;
		int c = !o ? -1 : !r ? 1 : ecmp(s->base + r->koff, r->klen,
						 o->ekey, o->eklen);
		if (c < 0) {
			/* Unchanged line: copied byte for byte. */
			w_add(&w, s->base + r->koff, r->klen + r->vlen + 2);
			i++;
			continue;
		}
		if (c == 0)
			i++;
		if (!o->deleted)
			w_line(&w, o->ekey, o->eklen, o->eval, o->evlen);
		j++;
	}
	/* Like Cyrus, keep bytes we cannot parse at the end of the file. */
	w_add(&w, s->base + s->tail, s->size - s->tail);
	size_t off = 0;
	while (!w.err && off < w.out.len) {
		ssize_t k = write(fd, w.out.s + off, w.out.len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			w.err = k < 0 ? errno : EIO;
		else
			off += (size_t)k;
	}
	buf_release(&w.out);
	errno = w.err;
	return w.err ? -1 : 0;
}

static int flat_commit(struct cyrusdb *base, struct cyrusdb_txn *t)
{
	struct flatdb *db = FDB(base);
	bool nosync = cyrusdb_getenv()->nosync;
	char *newpath = NULL;
	int r = 0, nfd = -1;
	if (!t || t != db->txn)
		return cyrusdb_seterr(base, CYRUSDB_INTERNAL, "'%s': commit of "
				      "an unknown transaction", db->path);
	if (!t->n) {
		txn_end(db, t);
		return 0;
	}
	/* Cyrus's fixed name: safe because we hold the file lock. */
	newpath = xasprintf("%s.NEW", db->path);
	unlink(newpath);
	nfd = open(newpath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (nfd < 0) {
		r = cyrusdb_seterr(base, CYRUSDB_IOERROR, "cannot create "
				   "'%s': %s", newpath, strerror(errno));
		goto out;
	}
	atomicfile_cleanup_register(newpath);
	if (fchown(nfd, db->snap->st.st_uid, db->snap->st.st_gid) < 0) {
		/* not fatal: an unprivileged user keeps their own */
	}
	fchmod(nfd, db->snap->st.st_mode & 07777);
	if (write_merged(db, t, nfd) < 0 || (!nosync && fsync(nfd) < 0)) {
		r = cyrusdb_seterr(base, CYRUSDB_IOERROR, "cannot write "
				   "'%s': %s", newpath, strerror(errno));
		goto out;
	}
	if (rename(newpath, db->path) < 0) {
		r = cyrusdb_seterr(base, CYRUSDB_IOERROR, "cannot rename '%s' "
				   "to '%s': %s", newpath, db->path,
				   strerror(errno));
		goto out;
	}
	atomicfile_cleanup_unregister(newpath);
	if (!nosync)
		fsync_parent_dir(db->path);
	/* Closing the old descriptor drops the lock; waiters re-open. */
	txn_free(t);
	db->txn = NULL;
	close(db->fd);
	db->fd = nfd;
	nfd = -1;
	snap_unref(db->snap);
	db->snap = NULL;
out:
	if (nfd >= 0) {
		close(nfd);
		unlink(newpath);
		atomicfile_cleanup_unregister(newpath);
	}
	if (r)
		txn_end(db, t);
	free(newpath);
	return r;
}

/* ---- operations ---- */

static int flat_fetch(struct cyrusdb *base, const char *key, size_t keylen,
		      const char **data, size_t *datalen,
		      struct cyrusdb_txn **tid)
{
	struct flatdb *db = FDB(base);
	struct cyrusdb_txn *t;
	if (data)
		*data = NULL;
	if (datalen)
		*datalen = 0;
	int r = use_tid(db, tid, &t);
	if (r)
		return r;
	encode(key, keylen, &db->ekey);
	const struct ovr *o = t ? ovr_find(t, db->ekey.s, db->ekey.len) : NULL;
	if (o) {
		if (o->deleted)
			return CYRUSDB_NOTFOUND;
		decode(o->eval, o->evlen, &db->val);
	} else {
		const struct rec *rec = snap_find(db->snap, db->ekey.s,
						  db->ekey.len);
		if (!rec)
			return CYRUSDB_NOTFOUND;
		decode(db->snap->base + rec->koff + rec->klen + 1, rec->vlen,
		       &db->val);
	}
	if (data)
		*data = db->val.s;
	if (datalen)
		*datalen = db->val.len;
	return 0;
}

static int flat_foreach(struct cyrusdb *base, const char *prefix,
			size_t prefixlen, cyrusdb_filter_fn *p,
			cyrusdb_cb_fn *cb, void *rock,
			struct cyrusdb_txn **tid)
{
	struct flatdb *db = FDB(base);
	struct cyrusdb_txn *t;
	struct buf epfx = BUF_INIT, last = BUF_INIT;
	struct buf k = BUF_INIT, v = BUF_INIT;
	int r = use_tid(db, tid, &t);
	if (r)
		return r;
	unsigned long serial = db->txn_serial;
	struct snap *s = db->snap;
	s->refcount++;
	encode(prefix ? prefix : "", prefix ? prefixlen : 0, &epfx);
	size_t i = snap_lower(s, epfx.s, epfx.len), j = 0;
	unsigned long gen = 0;
	if (t) {
		ovr_sort(t);
		j = ovr_bound(t, epfx.s, epfx.len, false);
		gen = t->gen;
	}
	for (;;) {
		const struct rec *rec = i < s->nrecs ? &s->recs[i] : NULL;
		const struct ovr *o = t && j < t->n ? t->order[j] : NULL;
		const char *ek, *ev;
		size_t eklen, evlen;
		int c = !o ? -1 : !rec ? 1 : ecmp(s->base + rec->koff,
						   rec->klen, o->ekey,
						   o->eklen);
		if (o && o->deleted && (!rec || c > 0)) {
			j++; /* a delete of a key that is not in the file */
			continue;
		}
		if (!rec && !o) {
			if (s->tail < s->size)
				r = cyrusdb_seterr(base, CYRUSDB_IOERROR,
						   "'%s': offset %zu: %s",
						   db->path, s->tail, s->why);
			break;
		}
		if (c < 0) {
			ek = s->base + rec->koff;
			eklen = rec->klen;
			ev = ek + eklen + 1;
			evlen = rec->vlen;
			i++;
		} else {
			if (c == 0)
				i++;
			j++;
			if (o->deleted)
				continue;
			ek = o->ekey;
			eklen = o->eklen;
			ev = o->eval;
			evlen = o->evlen;
		}
		if (eklen < epfx.len || memcmp(ek, epfx.s, epfx.len))
			break;
		decode(ek, eklen, &k);
		decode(ev, evlen, &v);
		if (p && !p(rock, k.s, k.len, v.s, v.len))
			continue;
		buf_set(&last, ek, eklen);
		r = cb(rock, k.s, k.len, v.s, v.len);
		if (r)
			break;
		if (!t)
			continue;
		if (!db->txn || db->txn_serial != serial) {
			r = cyrusdb_seterr(base, CYRUSDB_INTERNAL, "'%s': "
					   "transaction ended inside foreach",
					   db->path);
			break;
		}
		if (t->gen != gen) {
			/* The callback changed the db: find our place again. */
			ovr_sort(t);
			j = ovr_bound(t, last.s, last.len, true);
			gen = t->gen;
		}
	}
	snap_unref(s);
	buf_release(&epfx);
	buf_release(&last);
	buf_release(&k);
	buf_release(&v);
	return r;
}

/*
 * store (data != NULL, overwrite), create (data != NULL, !overwrite) and
 * delete (data == NULL).
 */
static int flat_write(struct flatdb *db, const char *key, size_t keylen,
		      const char *data, size_t datalen,
		      struct cyrusdb_txn **tid, bool overwrite, bool force)
{
	struct cyrusdb_txn *t = NULL;
	struct buf eval = BUF_INIT;
	int r = 0;
	if (!keylen)
		return cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
				      "'%s': empty key", db->path);
	if (tid && *tid) {
		if (*tid != db->txn)
			return cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
					      "'%s': transaction does not "
					      "belong to this database",
					      db->path);
		t = *tid;
	} else {
		r = txn_begin(db, &t);
		if (r)
			return r;
		if (tid)
			*tid = t;
	}
	if (t->shared) {
		r = cyrusdb_seterr(&db->base, CYRUSDB_READONLY, "'%s': opened "
				   "shared, cannot write", db->path);
		goto out;
	}
	encode(key, keylen, &db->ekey);
	if (!overwrite || !data) {
		const struct ovr *o = ovr_find(t, db->ekey.s, db->ekey.len);
		bool exists = o ? !o->deleted
				: snap_find(db->snap, db->ekey.s,
					    db->ekey.len) != NULL;
		if (data && exists) {
			r = cyrusdb_seterr(&db->base, CYRUSDB_EXISTS,
					   "'%s': key exists", db->path);
			goto out;
		}
		if (!data && !exists) {
			if (!force)
				r = cyrusdb_seterr(&db->base,
						   CYRUSDB_NOTFOUND,
						   "'%s': key not found",
						   db->path);
			goto out;
		}
	}
	if (data)
		encode(data, datalen, &eval);
	ovr_set(t, db->ekey.s, db->ekey.len, data ? eval.s : NULL, eval.len);
out:
	buf_release(&eval);
	if (!tid) {
		/* Atomic on its own: write now, or drop the lock. */
		if (r)
			txn_end(db, t);
		else
			r = flat_commit(&db->base, t);
	}
	return r;
}

static int flat_create(struct cyrusdb *base, const char *key, size_t keylen,
		       const char *data, size_t datalen,
		       struct cyrusdb_txn **tid)
{
	return flat_write(FDB(base), key, keylen, data ? data : "",
			  data ? datalen : 0, tid, false, false);
}

static int flat_store(struct cyrusdb *base, const char *key, size_t keylen,
		      const char *data, size_t datalen,
		      struct cyrusdb_txn **tid)
{
	return flat_write(FDB(base), key, keylen, data ? data : "",
			  data ? datalen : 0, tid, true, false);
}

static int flat_delete(struct cyrusdb *base, const char *key, size_t keylen,
		       struct cyrusdb_txn **tid, bool force)
{
	return flat_write(FDB(base), key, keylen, NULL, 0, tid, true, force);
}

static int flat_consistent(struct cyrusdb *base UNUSED)
{
	return 0; /* Cyrus has no check for flat files. */
}

static int flat_compar(struct cyrusdb *base UNUSED, const char *a,
		       size_t alen, const char *b, size_t blen)
{
	return cyrusdb_compar_mbox(a, alen, b, blen);
}

/* ---- open/close ---- */

static int flat_open(const char *fname, int flags, struct cyrusdb **db_r,
		     char *errmsg_r)
{
	int fd = open(fname, O_RDWR | O_CLOEXEC);
	if (fd < 0 && (errno == EACCES || errno == EROFS))
		fd = open(fname, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (!(flags & CYRUSDB_CREATE)) {
			snprintf(errmsg_r, 512, "no such database");
			return CYRUSDB_NOTFOUND;
		}
		if (fsutil_mkdir_parents(fname, 0755) < 0) {
			snprintf(errmsg_r, 512, "cannot create the directory "
				 "of '%s': %s", fname, strerror(errno));
			return CYRUSDB_IOERROR;
		}
		fd = open(fname, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	}
	if (fd < 0) {
		snprintf(errmsg_r, 512, "cannot open '%s': %s", fname,
			 strerror(errno));
		return CYRUSDB_IOERROR;
	}
	struct flatdb *db = xzmalloc(sizeof(*db));
	db->path = xstrdup(fname);
	db->fd = fd;
	buf_init(&db->val);
	buf_init(&db->ekey);
	*db_r = &db->base;
	return 0;
}

static int flat_close(struct cyrusdb *base)
{
	struct flatdb *db = FDB(base);
	if (db->txn)
		txn_end(db, db->txn);
	close(db->fd);
	snap_unref(db->snap);
	buf_release(&db->val);
	buf_release(&db->ekey);
	free(db->path);
	free(db);
	return 0;
}

const struct cyrusdb_backend cyrusdb_flat = {
	.name = "flat",
	.open = flat_open,
	.close = flat_close,
	.fetch = flat_fetch,
	.fetchlock = flat_fetch,
	.fetchnext = NULL,
	.foreach = flat_foreach,
	.create = flat_create,
	.store = flat_store,
	.delete = flat_delete,
	.commit = flat_commit,
	.abort = flat_abort,
	.consistent = flat_consistent,
	.repack = NULL,
	.dump = NULL,
	.compar = flat_compar,
};
