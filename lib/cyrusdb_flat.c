/*
 * cyrusdb_flat.c: the "flat" backend, a sorted text file of
 * "ENCODED_KEY TAB ENCODED_VALUE LF" lines (docs/formats/cyrusdb.md 4).
 *
 * Compatible with Cyrus 3.6.1 on disk and in locking: writers take an
 * exclusive fcntl lock on the file (lock_reopen), write the whole new
 * content to the fixed name "<file>.NEW", fsync it and rename it over the
 * file; readers without a transaction take no lock and read the current
 * file, which rename keeps whole (so a mapping of it never changes).
 *
 * Unlike Cyrus, which rewrites the file on every store, a transaction
 * collects its changes and writes the merged file once at commit, so a
 * transaction of N stores costs O(N log N + file size) (O(N + file size)
 * when the keys come in order, as in a conversion).
 *
 * Memory stays flat in the number of records: the file is mapped, not
 * read, and indexed by one offset per line; a transaction's changes go to
 * an unlinked spool file beside the database, and only 16 bytes per change
 * (plus a hash slot and a sort rank once the keys come out of order) stay
 * on the heap. Long forward scans give the pages behind them back.
 */
#include "compat.h"

#include <fcntl.h>
#include <libgen.h>
#include <sys/mman.h>
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

/* A forward scan gives back the pages of a mapping behind it this often. */
#define DROP_WINDOW ((size_t)32 << 20)
/* Spool bytes buffered in memory before they are written out. */
#define SPOOL_BUF ((size_t)1 << 20)

/*
 * One version of the file, mapped and indexed. Shared by the handle and
 * by a foreach running without a transaction (which must keep its version
 * while a callback replaces the file).
 */
struct snap {
	const char *base;  /* the mapping; NULL for an empty file */
	size_t size;
	uint64_t *off;     /* start of each line; off[nrecs] == tail */
	size_t nrecs;
	size_t tail;       /* start of unparsable bytes; == size if none */
	const char *why;   /* what is wrong at tail */
	struct stat st;
	int refcount;
};

/*
 * A pending change of a transaction: the encoded key, then the encoded
 * value, at off in the spool.
 */
#define PEND_DELETED UINT32_MAX
struct pend {
	uint64_t off;
	uint32_t klen;
	uint32_t vlen; /* PEND_DELETED for a delete */
};

struct cyrusdb_txn {
	bool shared;
	unsigned long gen;  /* bumped by every change */
	/* The spool: an unlinked file, [0, flushed) written and mapped
	 * (map covers at least that much), the rest in wbuf. */
	int sfd;
	char *map;
	size_t maplen;
	uint64_t flushed;
	struct buf wbuf;
	/* The index of the changes, one per key. */
	struct pend *pend;
	size_t n, alloc;
	/* While every new key came after the one before (a conversion),
	 * pend[] is in key order and searched by bisection; after that, a
	 * hash table (slot: hash << 32 | index + 1) finds keys, and
	 * order[0..nsorted) lists indices in key order. */
	bool in_order;
	struct buf lastkey;
	uint64_t *hash;
	size_t hsize;
	uint32_t *order;
	size_t nsorted;
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

/*
 * A forward scan of the mapping base is at pos: once it is DROP_WINDOW
 * past *done, the pages in between go back to the page cache (they fault
 * in again if read later), so that peak RSS does not grow with the file.
 */
static void drop_behind(const char *base, size_t *done, size_t pos)
{
	if (!base || pos < *done + DROP_WINDOW)
		return;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t from = *done & ~(page - 1), to = pos & ~(page - 1);
	if (to > from)
		madvise((void *)(base + from), to - from, MADV_DONTNEED);
	*done = to;
}

/* ---- snapshots ---- */

static void snap_unref(struct snap *s)
{
	if (!s || --s->refcount > 0)
		return;
	if (s->base)
		munmap((void *)s->base, s->size);
	free(s->off);
	free(s);
}

/* The encoded key of record i. */
static inline const char *rec_key(const struct snap *s, size_t i,
				  size_t *klen)
{
	const char *p = s->base + s->off[i];
	const char *tab = memchr(p, '\t', s->off[i + 1] - s->off[i]);
	*klen = (size_t)(tab - p);
	return p;
}

/* The encoded value of record i, whose key is klen long. */
static inline const char *rec_val(const struct snap *s, size_t i,
				  size_t klen, size_t *vlen)
{
	*vlen = s->off[i + 1] - s->off[i] - klen - 2;
	return s->base + s->off[i] + klen + 1;
}

/*
 * Splits the content into records the way Cyrus's foreach does: the key
 * runs to the first TAB (an LF before it belongs to the key), the value to
 * the next LF. Parsing stops at the first record without TAB or LF; the
 * rest is kept as an unparsable tail.
 */
static void snap_parse(struct snap *s)
{
	size_t off = 0, alloc = 0, done = 0;
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
		if (s->nrecs + 1 >= alloc) {
			alloc = alloc ? 2 * alloc : 64;
			s->off = xrealloc(s->off, alloc * sizeof(*s->off));
		}
		s->off[s->nrecs++] = off;
		off = (size_t)(lf - s->base) + 1;
		drop_behind(s->base, &done, off);
	}
	if (!s->off)
		s->off = xmalloc(sizeof(*s->off));
	s->off[s->nrecs] = off;
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

/* Maps db->fd (described by st) into a new snapshot. */
static int snap_load(struct flatdb *db, const struct stat *st)
{
	struct snap *s = xzmalloc(sizeof(*s));
	s->refcount = 1;
	s->st = *st;
	s->size = (size_t)st->st_size;
	if (s->size) {
		void *m = mmap(NULL, s->size, PROT_READ, MAP_SHARED, db->fd, 0);
		if (m == MAP_FAILED) {
			int e = errno;
			free(s);
			return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
					      "cannot map '%s': %s", db->path,
					      strerror(e));
		}
		s->base = m;
	}
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
		size_t mid = lo + (hi - lo) / 2, klen;
		const char *k = rec_key(s, mid, &klen);
		if (ecmp(k, klen, ekey, eklen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Index of the record of ekey, or SIZE_MAX. */
static size_t snap_find(const struct snap *s, const char *ekey, size_t eklen)
{
	size_t i = snap_lower(s, ekey, eklen), klen;
	if (i < s->nrecs) {
		const char *k = rec_key(s, i, &klen);
		if (!ecmp(k, klen, ekey, eklen))
			return i;
	}
	return SIZE_MAX;
}

/* ---- the spool of a transaction ---- */

/* Valid until the next spool_append. */
static inline const char *spool_ptr(const struct cyrusdb_txn *t,
				    uint64_t off)
{
	return off >= t->flushed ? t->wbuf.s + (off - t->flushed)
				 : t->map + off;
}

static inline const char *pend_key(const struct cyrusdb_txn *t,
				   const struct pend *p)
{
	return spool_ptr(t, p->off);
}

static inline const char *pend_val(const struct cyrusdb_txn *t,
				   const struct pend *p)
{
	return spool_ptr(t, p->off + p->klen);
}

/* An unlinked file in the database's directory (its filesystem, its
 * owner): never seen by anyone, gone when closed, also after a crash. */
static int spool_open(struct flatdb *db, struct cyrusdb_txn *t)
{
	char *copy = xstrdup(db->path);
	int fd = open(dirname(copy), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	free(copy);
	if (fd < 0) {
		/* No O_TMPFILE here: a named file, unlinked at once. */
		char *name = xasprintf("%s.TXN.XXXXXX", db->path);
		fd = mkostemp(name, O_CLOEXEC);
		if (fd >= 0)
			unlink(name);
		free(name);
	}
	if (fd < 0)
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR, "cannot "
				      "create a transaction file beside '%s': "
				      "%s", db->path, strerror(errno));
	t->sfd = fd;
	return 0;
}

/* Writes wbuf out and keeps the mapping covering all that is written. */
static int spool_flush(struct cyrusdb_txn *t)
{
	size_t off = 0;
	while (off < t->wbuf.len) {
		ssize_t k = pwrite(t->sfd, t->wbuf.s + off, t->wbuf.len - off,
				   (off_t)(t->flushed + off));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			if (!k)
				errno = EIO;
			return -1;
		}
		off += (size_t)k;
	}
	t->flushed += off;
	buf_reset(&t->wbuf);
	if (t->flushed <= t->maplen)
		return 0;
	/* The mapping may reach past the end of the file: only the
	 * written part is ever read. */
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t want = t->maplen ? 2 * t->maplen : 8 * SPOOL_BUF;
	while (want < t->flushed)
		want *= 2;
	want = (want + page - 1) & ~(page - 1);
	void *m = t->map ? mremap(t->map, t->maplen, want, MREMAP_MAYMOVE)
			 : mmap(NULL, want, PROT_READ, MAP_SHARED, t->sfd, 0);
	if (m == MAP_FAILED) {
		int e = errno;
		if (t->map)
			munmap(t->map, t->maplen);
		t->map = NULL;
		t->maplen = 0;
		errno = e;
		return -1;
	}
	t->map = m;
	t->maplen = want;
	return 0;
}

/* Appends key and value (NULL: a delete) to the spool; off_r gets
 * where. Invalidates pointers into the spool. */
static int spool_append(struct flatdb *db, struct cyrusdb_txn *t,
			const char *ekey, size_t eklen, const char *eval,
			size_t evlen, uint64_t *off_r)
{
	if (t->sfd < 0 && spool_open(db, t))
		return CYRUSDB_IOERROR;
	if (t->wbuf.len && t->wbuf.len + eklen + evlen > SPOOL_BUF &&
	    spool_flush(t) < 0)
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR, "cannot "
				      "write the transaction file of '%s': %s",
				      db->path, strerror(errno));
	*off_r = t->flushed + t->wbuf.len;
	buf_add(&t->wbuf, ekey, eklen);
	if (eval)
		buf_add(&t->wbuf, eval, evlen);
	return 0;
}

/* ---- pending changes ---- */

static uint32_t hash_bytes(const char *s, size_t len)
{
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return (uint32_t)(h ^ (h >> 32));
}

static bool pend_is(const struct cyrusdb_txn *t, const struct pend *p,
		    const char *ekey, size_t eklen)
{
	return p->klen == eklen && !memcmp(pend_key(t, p), ekey, eklen);
}

/* The slot position and tag are both the 32-bit hash: growing the table
 * needs no key. */
static void hash_put(uint64_t *tab, size_t size, uint32_t h, size_t idx)
{
	size_t b = h & (size - 1);
	while (tab[b])
		b = (b + 1) & (size - 1);
	tab[b] = (uint64_t)h << 32 | (uint64_t)(idx + 1);
}

static void hash_grow(struct cyrusdb_txn *t)
{
	size_t nsize = t->hsize ? 2 * t->hsize : 1024;
	while (nsize / 2 < t->n + 1)
		nsize *= 2;
	uint64_t *nh = xcalloc(nsize, sizeof(*nh));
	if (t->hsize) {
		for (size_t i = 0; i < t->hsize; i++)
			if (t->hash[i])
				hash_put(nh, nsize, (uint32_t)(t->hash[i] >> 32),
					 (size_t)(uint32_t)t->hash[i] - 1);
	} else {
		for (size_t i = 0; i < t->n; i++) {
			const struct pend *p = &t->pend[i];
			hash_put(nh, nsize,
				 hash_bytes(pend_key(t, p), p->klen), i);
		}
	}
	free(t->hash);
	t->hash = nh;
	t->hsize = nsize;
}

/* Index of the pending change of ekey, or SIZE_MAX. */
static size_t ovr_find(const struct cyrusdb_txn *t, const char *ekey,
		       size_t eklen)
{
	if (!t->n)
		return SIZE_MAX;
	if (t->in_order) {
		size_t lo = 0, hi = t->n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			const struct pend *p = &t->pend[mid];
			int c = ecmp(pend_key(t, p), p->klen, ekey, eklen);
			if (!c)
				return mid;
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		return SIZE_MAX;
	}
	uint32_t h = hash_bytes(ekey, eklen);
	for (size_t b = h & (t->hsize - 1);; b = (b + 1) & (t->hsize - 1)) {
		uint64_t slot = t->hash[b];
		if (!slot)
			return SIZE_MAX;
		size_t idx = (size_t)(uint32_t)slot - 1;
		if ((uint32_t)(slot >> 32) == h &&
		    pend_is(t, &t->pend[idx], ekey, eklen))
			return idx;
	}
}

/* Records a store (eval != NULL) or a delete of an encoded key. */
static int ovr_set(struct flatdb *db, struct cyrusdb_txn *t,
		   const char *ekey, size_t eklen, const char *eval,
		   size_t evlen)
{
	if (eklen >= UINT32_MAX || evlen >= UINT32_MAX)
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR, "'%s': "
				      "record too large", db->path);
	/* In order (a conversion): a key after the last one is new. */
	bool after = t->in_order && (!t->n || ecmp(t->lastkey.s,
						    t->lastkey.len, ekey,
						    eklen) < 0);
	size_t idx = after ? SIZE_MAX : ovr_find(t, ekey, eklen);
	uint64_t off = 0;
	int r = spool_append(db, t, ekey, eklen, eval, evlen, &off);
	if (r)
		return r;
	t->gen++;
	if (idx != SIZE_MAX) {
		t->pend[idx].off = off;
		t->pend[idx].vlen = eval ? (uint32_t)evlen : PEND_DELETED;
		return 0;
	}
	if (t->n >= UINT32_MAX - 1)
		return cyrusdb_seterr(&db->base, CYRUSDB_FULL, "'%s': too "
				      "many changes in one transaction",
				      db->path);
	if (t->n == t->alloc) {
		t->alloc = t->alloc ? 2 * t->alloc : 256;
		t->pend = xrealloc(t->pend, t->alloc * sizeof(*t->pend));
	}
	if (t->in_order && !after) {
		/* Out of order from here: what came so far is sorted. */
		t->in_order = false;
		t->order = xmalloc((t->n + 1) * sizeof(*t->order));
		for (size_t i = 0; i < t->n; i++)
			t->order[i] = (uint32_t)i;
		t->nsorted = t->n;
		buf_release(&t->lastkey);
		hash_grow(t);
	}
	t->pend[t->n].off = off;
	t->pend[t->n].klen = (uint32_t)eklen;
	t->pend[t->n].vlen = eval ? (uint32_t)evlen : PEND_DELETED;
	if (t->in_order) {
		buf_set(&t->lastkey, ekey, eklen);
	} else {
		if (t->n + 1 > t->hsize / 2)
			hash_grow(t);
		hash_put(t->hash, t->hsize, hash_bytes(ekey, eklen), t->n);
	}
	t->n++;
	return 0;
}

static int ovr_qcmp(const void *a, const void *b, void *rock)
{
	const struct cyrusdb_txn *t = rock;
	const struct pend *x = &t->pend[*(const uint32_t *)a];
	const struct pend *y = &t->pend[*(const uint32_t *)b];
	return ecmp(pend_key(t, x), x->klen, pend_key(t, y), y->klen);
}

/* Makes order[] cover every change: sorts the new ones, merges. */
static void ovr_sort(struct cyrusdb_txn *t)
{
	if (t->in_order || t->nsorted == t->n)
		return;
	size_t old = t->nsorted, n = t->n;
	uint32_t *o = xmalloc(n * sizeof(*o));
	uint32_t *fresh = o + old; /* sorted here, then merged */
	for (size_t i = old; i < n; i++)
		fresh[i - old] = (uint32_t)i;
	qsort_r(fresh, n - old, sizeof(*fresh), ovr_qcmp, t);
	if (old) {
		/* Merge order[0..old) and fresh[] from the back into o. */
		uint32_t *tmp = xmalloc((n - old) * sizeof(*tmp));
		memcpy(tmp, fresh, (n - old) * sizeof(*tmp));
		size_t i = old, j = n - old, k = n;
		while (j) {
			if (i && ovr_qcmp(&t->order[i - 1], &tmp[j - 1], t) > 0)
				o[--k] = t->order[--i];
			else
				o[--k] = tmp[--j];
		}
		while (i) {
			--i;
			o[--k] = t->order[i];
		}
		free(tmp);
	}
	free(t->order);
	t->order = o;
	t->nsorted = n;
}

/* The rank-th change in key order (after ovr_sort). */
static inline const struct pend *ovr_rank(const struct cyrusdb_txn *t,
					  size_t rank)
{
	return &t->pend[t->in_order ? rank : t->order[rank]];
}

/* Rank of the first pending change whose key is > ekey (or >= if eq). */
static size_t ovr_bound(const struct cyrusdb_txn *t, const char *ekey,
			size_t eklen, bool strictly_after)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pend *p = ovr_rank(t, mid);
		int c = ecmp(pend_key(t, p), p->klen, ekey, eklen);
		if (c < 0 || (strictly_after && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void txn_free(struct cyrusdb_txn *t)
{
	if (t->map)
		munmap(t->map, t->maplen);
	if (t->sfd >= 0)
		close(t->sfd);
	buf_release(&t->wbuf);
	buf_release(&t->lastkey);
	free(t->pend);
	free(t->hash);
	free(t->order);
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
	t->in_order = true;
	t->shared = shared;
	t->sfd = -1;
	buf_init(&t->wbuf);
	buf_init(&t->lastkey);
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
	size_t i = 0, j = 0, sdone = 0, tdone = 0;
	ovr_sort(t);
	while (i < s->nrecs || j < t->n) {
		const struct pend *o = j < t->n ? ovr_rank(t, j) : NULL;
		size_t klen = 0;
		const char *k = i < s->nrecs ? rec_key(s, i, &klen) : NULL;
		int c = !o ? -1 : !k ? 1 : ecmp(k, klen, pend_key(t, o),
						 o->klen);
		if (c < 0) {
			/* Unchanged line: copied byte for byte. */
			w_add(&w, k, s->off[i + 1] - s->off[i]);
			i++;
			drop_behind(s->base, &sdone, s->off[i]);
			continue;
		}
		if (c == 0)
			i++;
		if (o->vlen != PEND_DELETED)
			w_line(&w, pend_key(t, o), o->klen, pend_val(t, o),
			       o->vlen);
		if (t->in_order && o->off < t->flushed)
			drop_behind(t->map, &tdone, o->off);
		j++;
	}
	/* Like Cyrus, keep bytes we cannot parse at the end of the file. */
	if (s->tail < s->size)
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
	size_t oi = t ? ovr_find(t, db->ekey.s, db->ekey.len) : SIZE_MAX;
	if (oi != SIZE_MAX) {
		const struct pend *o = &t->pend[oi];
		if (o->vlen == PEND_DELETED)
			return CYRUSDB_NOTFOUND;
		decode(pend_val(t, o), o->vlen, &db->val);
	} else {
		const struct snap *s = db->snap;
		size_t i = snap_find(s, db->ekey.s, db->ekey.len), vlen;
		if (i == SIZE_MAX)
			return CYRUSDB_NOTFOUND;
		const char *v = rec_val(s, i, db->ekey.len, &vlen);
		decode(v, vlen, &db->val);
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
	size_t sdone = s->off[i];
	unsigned long gen = 0;
	if (t) {
		ovr_sort(t);
		j = ovr_bound(t, epfx.s, epfx.len, false);
		gen = t->gen;
	}
	for (;;) {
		const struct pend *o = t && j < t->n ? ovr_rank(t, j) : NULL;
		const char *ek = NULL, *ev;
		size_t eklen = 0, evlen;
		if (i < s->nrecs)
			ek = rec_key(s, i, &eklen);
		int c = !o ? -1 : !ek ? 1 : ecmp(ek, eklen, pend_key(t, o),
						  o->klen);
		if (o && o->vlen == PEND_DELETED && (!ek || c > 0)) {
			j++; /* a delete of a key that is not in the file */
			continue;
		}
		if (!ek && !o) {
			if (s->tail < s->size)
				r = cyrusdb_seterr(base, CYRUSDB_IOERROR,
						   "'%s': offset %zu: %s",
						   db->path, s->tail, s->why);
			break;
		}
		if (c < 0) {
			ev = rec_val(s, i, eklen, &evlen);
			i++;
			drop_behind(s->base, &sdone, s->off[i]);
		} else {
			if (c == 0)
				i++;
			j++;
			if (o->vlen == PEND_DELETED)
				continue;
			ek = pend_key(t, o);
			eklen = o->klen;
			ev = pend_val(t, o);
			evlen = o->vlen;
		}
		if (eklen < epfx.len || memcmp(ek, epfx.s, epfx.len))
			break;
		decode(ek, eklen, &k);
		decode(ev, evlen, &v);
		if (p && !p(rock, k.s, k.len, v.s, v.len))
			continue;
		if (t)
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
		size_t oi = ovr_find(t, db->ekey.s, db->ekey.len);
		bool exists = oi != SIZE_MAX
				      ? t->pend[oi].vlen != PEND_DELETED
				      : snap_find(db->snap, db->ekey.s,
						  db->ekey.len) != SIZE_MAX;
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
	r = ovr_set(db, t, db->ekey.s, db->ekey.len, data ? eval.s : NULL,
		    eval.len);
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
