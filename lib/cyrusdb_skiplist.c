/*
 * cyrusdb_skiplist.c: the legacy skiplist backend, byte-compatible with
 * Cyrus 3.6.1 (docs/formats/cyrusdb.md section 3).
 *
 * The file is a header, a DUMMY node, the INORDER records written by the
 * last checkpoint, then a log of ADD/DELETE records closed by COMMITs. The
 * skiplist pointers live in the records and are patched in place.
 *
 * Reads go through a shared read-only mapping under a shared fcntl lock.
 * A write transaction holds the exclusive lock and works on a private
 * (copy-on-write) mapping of the file: pointer patches land in those private
 * pages and new records in an in-memory tail, so nothing touches the file
 * until commit. Commit writes the tail, then the patched pages, syncs,
 * appends COMMIT and syncs again: the order Cyrus uses, so a crash leaves at
 * worst a tail without COMMIT, which recovery discards. Abort only has to
 * drop the memory.
 */
#include "compat.h"

#include <endian.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "buf.h"
#include "cyrusdb-private.h"
#include "error.h"
#include "lock.h"
#include "xmalloc.h"

enum {
	SL_INORDER = 1,
	SL_ADD = 2,
	SL_DELETE = 4,
	SL_COMMIT = 255,
	SL_DUMMY = 257,
};

#define SL_HEADER_SIZE 48
#define SL_DUMMY_OFFSET 48
#define SL_DUMMY_PTRS (SL_DUMMY_OFFSET + 12)
#define SL_MAXLEVEL 20
#define SL_VERSION 1
#define SL_VERSION_MINOR 2
#define SL_MINREWRITE 16834 /* sic: Cyrus's constant */
#define SL_END 0xffffffffU
#define SL_PAGE 4096
/* Checkpoint output is buffered; pointer words already flushed are
 * patched with pwrite at the end (only the few highest levels). */
#define SL_CPBUF (8u << 20)

/* The magic is 20 bytes: the literal below plus its terminating NUL. */
static const char sl_magic[] = "\241\002\213\015skiplist file\0\0";

enum sl_lock { SL_UNLOCKED, SL_READLOCKED, SL_WRITELOCKED };

struct sl {
	struct cyrusdb base;
	char *path;
	int fd;
	bool rdonly;	/* opened O_RDONLY: reads only, no recovery */
	int flags;
	bool mbox;
	enum sl_lock lock;

	/* The mapping of the file; [0, size) is valid. */
	char *map;
	size_t maplen;
	bool map_private;
	size_t size;
	dev_t dev;
	ino_t ino;

	/*
	 * The view: file offsets below vbase are read from map, offsets from
	 * vbase on from tail (records appended by the open transaction).
	 * Records never straddle vbase.
	 */
	uint32_t vbase;
	struct buf tail;
	uint8_t *dirty;	/* bitmap of private pages patched below vbase */
	bool header_dirty;

	uint32_t minor, maxlevel, curlevel, listsize, logstart, last_recovery;
	uint32_t dummy_end;

	struct cyrusdb_txn *txn;
	uint64_t gen;	/* bumped by every change, so foreach can re-find */
	/*
	 * Sequential stores: after a store past the last key, seq_upd is what
	 * find() returns for any key after it (seq_key/seq_klen, the view
	 * offset of that key); valid while gen == seq_gen.
	 */
	uint64_t seq_gen;
	uint32_t seq_upd[SL_MAXLEVEL];
	uint32_t seq_key, seq_klen;
	/* Every record in the tail was stored past the last key (so the tail
	 * is in key order and has nothing dead in it). */
	bool tail_sorted;
	uintptr_t tail_dropped_to; /* checkpoint() gave tail pages back */
	/* A streaming commit (see stream_may_start), its last key, and
	 * whether this transaction stopped streaming. */
	struct cpwriter *stream;
	struct buf stream_last;
	bool stream_off;
	uint64_t rnd;
	struct buf fetched;
};

struct cyrusdb_txn {
	struct sl *db;
	bool shared;
};

/* A decoded INORDER/ADD/DUMMY record. */
struct node {
	uint32_t off;
	uint32_t type, klen, dlen;
	const char *key, *data;
	const char *ptrs;	/* first pointer word */
	uint32_t ptroff;	/* its file offset */
	uint32_t nwords;	/* readable words from ptrs to the end of region */
};

static inline uint32_t get32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static inline void put32(char *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static inline uint64_t ru4(uint64_t n)
{
	return (n + 3) & ~(uint64_t)3;
}

/*
 * Cyrus compares skiplist keys as signed chars. Flipping the top bit maps
 * signed order onto unsigned order, which lets us compare 8 bytes at once;
 * the result equals cyrusdb_compar_signed().
 */
static int cmp_signed(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen, i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t x, y;
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		if (x != y) {
			x = be64toh(x) ^ 0x8080808080808080ULL;
			y = be64toh(y) ^ 0x8080808080808080ULL;
			return x < y ? -1 : 1;
		}
	}
	for (; i < n; i++) {
		signed char ca = (signed char)a[i], cb = (signed char)b[i];
		if (ca != cb)
			return ca < cb ? -1 : 1;
	}
	return alen < blen ? -1 : alen > blen;
}

static inline int sl_cmp(const struct sl *db, const char *a, size_t alen,
			 const char *b, size_t blen)
{
	if (db->mbox)
		return cyrusdb_compar_mbox(a, alen, b, blen);
	return cmp_signed(a, alen, b, blen);
}

static int corrupt(struct sl *db, uint32_t off, const char *what)
{
	return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
			      "skiplist '%s': corrupt at offset 0x%04X: %s",
			      db->path, off, what);
}

static int syserr(struct sl *db, const char *what, const char *name)
{
	return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR, "%s '%s': %s",
			      what, name, strerror(errno));
}

/* ---- the view ---- */

static inline uint32_t view_end(const struct sl *db)
{
	return db->vbase + (uint32_t)db->tail.len;
}

/* Byte at file offset off and the bytes readable from it, or NULL. */
static inline const char *at(const struct sl *db, uint32_t off,
			     uint32_t *avail)
{
	if (off < db->vbase) {
		*avail = db->vbase - off;
		return db->map + off;
	}
	off -= db->vbase;
	if (off < db->tail.len) {
		*avail = (uint32_t)db->tail.len - off;
		return db->tail.s + off;
	}
	return NULL;
}

static inline uint32_t word_at(const struct sl *db, uint32_t off)
{
	uint32_t avail;
	return get32(at(db, off, &avail));
}

/* Decodes the record at off; false if it does not fit in the file. */
static bool node_get(const struct sl *db, uint32_t off, struct node *n)
{
	uint32_t avail;
	const char *p = at(db, off, &avail);
	if (!p || (off & 3) || avail < 16)
		return false;
	n->off = off;
	n->type = get32(p);
	n->klen = get32(p + 4);
	uint64_t kr = ru4(n->klen);
	if (12 + kr > avail)
		return false;
	n->dlen = get32(p + 8 + kr);
	uint64_t fp = 12 + kr + ru4(n->dlen);
	if (fp + 4 > avail)
		return false;
	n->key = p + 8;
	n->data = p + 12 + kr;
	n->ptrs = p + fp;
	n->ptroff = off + (uint32_t)fp;
	n->nwords = (uint32_t)((avail - fp) / 4);
	return true;
}

/* Number of pointers (words before the 0xFFFFFFFF end mark), 0 if bad. */
static uint32_t node_level(const struct sl *db, const struct node *n)
{
	uint32_t lim = n->nwords < db->maxlevel + 1 ? n->nwords
						    : db->maxlevel + 1;
	for (uint32_t i = 0; i < lim; i++)
		if (get32(n->ptrs + 4 * i) == SL_END)
			return i;
	return 0;
}

static inline uint32_t node_size(const struct node *n, uint32_t level)
{
	return n->ptroff - n->off + 4 * level + 4;
}

/* Follows a pointer: the record at off must be INORDER or ADD. */
static int node_follow(struct sl *db, uint32_t from, uint32_t off,
		       struct node *n)
{
	if (off < db->dummy_end || !node_get(db, off, n))
		return corrupt(db, from, "pointer to a bad offset");
	if (n->type != SL_INORDER && n->type != SL_ADD)
		return corrupt(db, from, "pointer to a record that is not "
			       "INORDER or ADD");
	return 0;
}

/*
 * Finds the first record whose key is >= key (n->off 0 if none). upd (may be
 * NULL) gets, per level, the file offset of the first pointer word of the
 * last record before key at that level (the DUMMY above curlevel).
 */
static int find(struct sl *db, const char *key, size_t keylen, uint32_t *upd,
		struct node *n)
{
	struct node x, y;
	/* A cycle in corrupt pointers must not loop forever. */
	uint64_t steps = 0, maxsteps = (uint64_t)view_end(db) / 4 * 2 + 64;
	int r;

	if (!node_get(db, SL_DUMMY_OFFSET, &x))
		return corrupt(db, SL_DUMMY_OFFSET, "bad DUMMY");
	if (upd)
		for (uint32_t i = 0; i < db->maxlevel; i++)
			upd[i] = SL_DUMMY_PTRS;
	for (int i = (int)db->curlevel - 1; i >= 0; i--) {
		for (;;) {
			if ((uint32_t)i >= x.nwords)
				return corrupt(db, x.off, "level beyond record");
			uint32_t next = get32(x.ptrs + 4 * i);
			if (!next)
				break;
			if ((r = node_follow(db, x.off, next, &y)))
				return r;
			if (sl_cmp(db, y.key, y.klen, key, keylen) >= 0)
				break;
			x = y;
			if (++steps > maxsteps)
				return corrupt(db, x.off, "pointer cycle");
		}
		if (upd)
			upd[i] = x.ptroff;
	}
	uint32_t next = get32(x.ptrs);
	n->off = 0;
	if (next && (r = node_follow(db, x.off, next, n)))
		return r;
	return 0;
}

static inline bool node_is(const struct sl *db, const struct node *n,
			   const char *key, size_t keylen)
{
	return n->off && !sl_cmp(db, n->key, n->klen, key, keylen);
}

/* ---- header ---- */

static void header_encode(const struct sl *db, char *h)
{
	memcpy(h, sl_magic, 20);
	put32(h + 20, SL_VERSION);
	put32(h + 24, db->minor);
	put32(h + 28, db->maxlevel);
	put32(h + 32, db->curlevel);
	put32(h + 36, db->listsize);
	put32(h + 40, db->logstart);
	put32(h + 44, db->last_recovery);
}

static int header_read(struct sl *db)
{
	const char *h = db->map;
	if (db->size < SL_HEADER_SIZE)
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
				      "skiplist '%s': file too short for the "
				      "header (%zu bytes)", db->path, db->size);
	if (memcmp(h, sl_magic, 20))
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
				      "skiplist '%s': invalid magic header",
				      db->path);
	uint32_t version = get32(h + 20);
	db->minor = get32(h + 24);
	if (version != SL_VERSION)
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
				      "skiplist '%s': version mismatch: file "
				      "has version %u.%u", db->path, version,
				      db->minor);
	db->maxlevel = get32(h + 28);
	if (db->maxlevel < 1 || db->maxlevel > SL_MAXLEVEL)
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
				      "skiplist '%s': maxlevel %u out of range "
				      "1..%d", db->path, db->maxlevel,
				      SL_MAXLEVEL);
	db->curlevel = get32(h + 32);
	if (db->curlevel > db->maxlevel)
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
				      "skiplist '%s': curlevel %u beyond "
				      "maxlevel %u", db->path, db->curlevel,
				      db->maxlevel);
	if (!db->curlevel)
		db->curlevel = 1;
	db->listsize = get32(h + 36);
	db->logstart = get32(h + 40);
	db->last_recovery = get32(h + 44);
	db->dummy_end = SL_DUMMY_OFFSET + 4 * (3 + db->maxlevel + 1);

	struct node d;
	if (db->size < db->dummy_end || !node_get(db, SL_DUMMY_OFFSET, &d))
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
				      "skiplist '%s': file too short for the "
				      "DUMMY node (%zu bytes)", db->path,
				      db->size);
	if (d.type != SL_DUMMY)
		return corrupt(db, SL_DUMMY_OFFSET, "first node is not DUMMY");
	if (d.klen || d.dlen)
		return corrupt(db, SL_DUMMY_OFFSET,
			       "DUMMY has a key or data");
	if (node_level(db, &d) != db->maxlevel)
		return corrupt(db, SL_DUMMY_OFFSET, "DUMMY level != maxlevel");
	return 0;
}

/* ---- mapping and locks ---- */

static void unmap(struct sl *db)
{
	if (db->map)
		munmap(db->map, db->maplen);
	db->map = NULL;
	db->maplen = 0;
	db->map_private = false;
	free(db->dirty);
	db->dirty = NULL;
}

/*
 * Maps the file as locked (st from the lock), private and writable for a
 * writer. A shared mapping is kept while the file is the same and fits.
 */
static int map_file(struct sl *db, const struct stat *st, bool priv)
{
	if ((uint64_t)st->st_size > UINT32_MAX)
		return cyrusdb_seterr(&db->base, CYRUSDB_IOERROR,
				      "skiplist '%s': file larger than 4 GiB",
				      db->path);
	size_t size = (size_t)st->st_size;
	bool keep = !priv && !db->map_private && db->map &&
		    db->ino == st->st_ino && db->dev == st->st_dev &&
		    db->maplen >= size;
	if (!keep) {
		unmap(db);
		if (size) {
			/* Room to grow, so appends rarely force a remap. */
			size_t len = priv ? size : size + size / 4 + 65536;
			void *m = mmap(NULL, len,
				       priv ? PROT_READ | PROT_WRITE : PROT_READ,
				       priv ? MAP_PRIVATE : MAP_SHARED, db->fd,
				       0);
			if (m == MAP_FAILED)
				return syserr(db, "cannot mmap", db->path);
			db->map = m;
			db->maplen = len;
			db->map_private = priv;
			if (priv)
				db->dirty = xzmalloc(size / SL_PAGE / 8 + 1);
		}
	}
	db->ino = st->st_ino;
	db->dev = st->st_dev;
	db->size = size;
	db->vbase = (uint32_t)size;
	buf_release(&db->tail);
	db->header_dirty = false;
	return 0;
}

static int lock_raw(struct sl *db, bool write)
{
	struct error err = ERROR_INIT;
	struct stat st;
	if (write && db->rdonly)
		return cyrusdb_seterr(&db->base, CYRUSDB_READONLY,
				      "skiplist '%s': opened read-only",
				      db->path);
	if (lock_reopen(&db->fd, db->path,
			write ? LOCK_EXCLUSIVE : LOCK_SHARED, &st, &err) < 0)
		return cyrusdb_seterr(&db->base, err.kind == ERR_TEMPFAIL ?
				      CYRUSDB_AGAIN : CYRUSDB_IOERROR,
				      "%s", err.msg);
	db->lock = write ? SL_WRITELOCKED : SL_READLOCKED;
	int r = map_file(db, &st, write);
	if (r) {
		lock_unlock(db->fd);
		db->lock = SL_UNLOCKED;
	}
	return r;
}

static void unlock(struct sl *db)
{
	if (db->lock == SL_UNLOCKED)
		return;
	lock_unlock(db->fd);
	db->lock = SL_UNLOCKED;
	/* Private pages may hold patches: never reuse them unlocked. */
	if (db->map_private)
		unmap(db);
	buf_release(&db->tail);
	db->vbase = (uint32_t)db->size;
}

static int lock_db(struct sl *db, bool write)
{
	int r = lock_raw(db, write);
	if (!r && (r = header_read(db)))
		unlock(db);
	return r;
}

/* Re-maps the locked file after its size or inode changed under us. */
static int remap(struct sl *db, bool priv)
{
	struct stat st;
	if (fstat(db->fd, &st) < 0)
		return syserr(db, "cannot fstat", db->path);
	unmap(db);
	int r = map_file(db, &st, priv);
	if (!r)
		r = header_read(db);
	return r;
}

/* ---- writing the view ---- */

/* Sets the pointer word at file offset woff (tail or private map). */
static void set_word(struct sl *db, uint32_t woff, uint32_t val)
{
	if (woff >= db->vbase) {
		put32(db->tail.s + (woff - db->vbase), val);
		return;
	}
	if (!db->map_private)
		BUG("skiplist: pointer patch without a write mapping");
	char *p = db->map + woff;
	if (get32(p) == val)
		return;
	put32(p, val);
	db->dirty[woff / SL_PAGE / 8] |= 1 << (woff / SL_PAGE % 8);
}

/* Reserves n bytes at the end of the tail; returns where to write them. */
static char *tail_reserve(struct sl *db, size_t n)
{
	buf_grow(&db->tail, n);
	char *p = db->tail.s + db->tail.len;
	db->tail.len += n;
	db->tail.s[db->tail.len] = '\0';
	return p;
}

static int room_for(struct sl *db, uint64_t n)
{
	if ((uint64_t)view_end(db) + n + 4 > UINT32_MAX)
		return cyrusdb_seterr(&db->base, CYRUSDB_FULL,
				      "skiplist '%s': the file would exceed "
				      "4 GiB", db->path);
	return 0;
}

static void append_delete(struct sl *db, uint32_t off)
{
	char *p = tail_reserve(db, 8);
	put32(p, SL_DELETE);
	put32(p + 4, off);
}

static void append_add(struct sl *db, const char *key, size_t keylen,
		       const char *data, size_t datalen, const uint32_t *ptrs,
		       uint32_t level)
{
	size_t kr = ru4(keylen), dr = ru4(datalen);
	char *p = tail_reserve(db, 12 + kr + dr + 4 * level + 4);
	put32(p, SL_ADD);
	put32(p + 4, (uint32_t)keylen);
	memcpy(p + 8, key, keylen);
	memset(p + 8 + keylen, 0, kr - keylen);
	p += 8 + kr;
	put32(p, (uint32_t)datalen);
	if (datalen)
		memcpy(p + 4, data, datalen);
	memset(p + 4 + datalen, 0, dr - datalen);
	p += 4 + dr;
	for (uint32_t i = 0; i < level; i++)
		put32(p + 4 * i, ptrs[i]);
	put32(p + 4 * level, SL_END);
}

static uint32_t random_level(struct sl *db)
{
	/* Cyrus: p = 0.5 per extra level, capped at maxlevel. */
	db->rnd ^= db->rnd << 13;
	db->rnd ^= db->rnd >> 7;
	db->rnd ^= db->rnd << 17;
	uint64_t bits = db->rnd;
	uint32_t level = 1;
	while (level < db->maxlevel && (bits & 1)) {
		level++;
		bits >>= 1;
	}
	return level;
}

static int pwrite_all(int fd, const char *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static bool nosync(void)
{
	return cyrusdb_getenv()->nosync;
}

/* Writes the private pages patched below vbase (clipped to limit). */
static int write_dirty(struct sl *db, uint32_t limit)
{
	size_t npages = (db->vbase + SL_PAGE - 1) / SL_PAGE;
	for (size_t p = 0; p < npages; p++) {
		if (!(db->dirty[p / 8] & (1 << (p % 8))))
			continue;
		size_t q = p + 1;
		while (q < npages && (db->dirty[q / 8] & (1 << (q % 8))))
			q++;
		uint64_t start = (uint64_t)p * SL_PAGE;
		uint64_t end = (uint64_t)q * SL_PAGE;
		if (end > limit)
			end = limit;
		if (start < end && pwrite_all(db->fd, db->map + start,
					      end - start, start) < 0)
			return syserr(db, "cannot write", db->path);
		p = q;
	}
	return 0;
}

/* Whether any private page below vbase was patched. */
static bool any_dirty(const struct sl *db)
{
	/* the bitmap's size, as map_file allocates it */
	size_t nbytes = db->dirty ? db->size / SL_PAGE / 8 + 1 : 0;
	for (size_t i = 0; i < nbytes; i++)
		if (db->dirty[i])
			return true;
	return false;
}

/* ---- checkpoint ---- */

struct cpwriter {
	int fd;
	char *name;		/* <file>.NEW */
	struct buf b;
	uint64_t bstart;	/* file offset of b.s[0] */
	uint64_t *late;		/* (offset << 32 | value) patches */
	size_t nlate, alate;
	bool failed;
	uint32_t pend[SL_MAXLEVEL]; /* pointer word to fill, per level */
	uint32_t count;
	uint32_t maxlevel;	/* highest record level written */
};

static void cpw_flush(struct cpwriter *w)
{
	if (!w->failed && pwrite_all(w->fd, w->b.s, w->b.len, w->bstart) < 0)
		w->failed = true;
	w->bstart += w->b.len;
	buf_reset(&w->b);
}

static void cpw_add(struct cpwriter *w, const void *p, size_t n)
{
	buf_add(&w->b, p, n);
	if (w->b.len >= SL_CPBUF)
		cpw_flush(w);
}

static void cpw_put32(struct cpwriter *w, uint64_t off, uint32_t v)
{
	if (off >= w->bstart) {
		put32(w->b.s + (off - w->bstart), v);
		return;
	}
	if (w->nlate == w->alate) {
		w->alate = w->alate ? w->alate * 2 : 64;
		w->late = xrealloc(w->late, w->alate * sizeof(*w->late));
	}
	w->late[w->nlate++] = off << 32 | v;
}

/*
 * A tail in key order is read front to back by the checkpoint: the part
 * before the record at view offset off is copied and can go, so that the
 * peak memory is the new file's buffer, not a second copy of the data.
 * Afterwards only a failure can still read the tail, and that ends the
 * transaction (tail_dropped).
 */
static void drop_tail_before(struct sl *db, uint32_t off)
{
	if (!db->tail_sorted || off < db->vbase)
		return;
	/* whole aligned chunks inside the tail's allocation */
	uintptr_t mask = ~(uintptr_t)(SL_CPBUF - 1);
	uintptr_t base = (uintptr_t)db->tail.s;
	uintptr_t from = db->tail_dropped_to ? db->tail_dropped_to
					     : (base + SL_CPBUF - 1) & mask;
	uintptr_t to = (base + (off - db->vbase)) & mask;
	if (to > from && madvise((void *)from, to - from, MADV_DONTNEED) == 0)
		db->tail_dropped_to = to;
}

static void cpw_discard(struct cpwriter *w)
{
	if (w->fd >= 0) {
		close(w->fd);
		unlink(w->name);
	}
	w->fd = -1;
	buf_release(&w->b);
	free(w->late);
	w->late = NULL;
	free(w->name);
	w->name = NULL;
}

/* Creates <file>.NEW with room for the header and an empty DUMMY. */
static int cpw_open(struct sl *db, struct cpwriter *w)
{
	struct stat st;
	char word[4];

	memset(w, 0, sizeof(*w));
	w->b = (struct buf)BUF_INIT;
	w->name = xasprintf("%s.NEW", db->path);
	w->fd = open(w->name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		int r = syserr(db, "cannot create", w->name);
		cpw_discard(w);
		return r;
	}
	/* Keep the database's mode and (when we may) its owner. */
	if (fstat(db->fd, &st) == 0) {
		if (fchmod(w->fd, st.st_mode & 07777) < 0) {
			/* Not fatal: the file stays 0644 minus umask. */
		}
		if (geteuid() == 0 && fchown(w->fd, st.st_uid, st.st_gid) < 0) {
			/* Not fatal either. */
		}
	}
	/* Header last, once listsize and logstart are known. */
	char zero[SL_HEADER_SIZE] = { 0 };
	cpw_add(w, zero, SL_HEADER_SIZE);
	put32(word, SL_DUMMY);
	cpw_add(w, word, 4);
	put32(word, 0);
	for (uint32_t i = 0; i < db->maxlevel + 2; i++)
		cpw_add(w, word, 4);
	put32(word, SL_END);
	cpw_add(w, word, 4);
	for (uint32_t i = 0; i < db->maxlevel; i++)
		w->pend[i] = SL_DUMMY_PTRS + 4 * i;
	return 0;
}

/* Appends an INORDER record after the last one (its key sorts after it). */
static int cpw_record(struct sl *db, struct cpwriter *w, const char *key,
		      uint32_t klen, const char *data, uint32_t dlen,
		      uint32_t level)
{
	uint64_t newoff = w->bstart + w->b.len;
	uint32_t kr = (uint32_t)ru4(klen), dr = (uint32_t)ru4(dlen);
	uint32_t fp = 12 + kr + dr, size = fp + 4 * level + 4;
	if (newoff + size > UINT32_MAX)
		return cyrusdb_seterr(&db->base, CYRUSDB_FULL,
				      "skiplist '%s': the file would exceed "
				      "4 GiB", db->path);
	/* One piece: type, klen, key, dlen, data (padded), pointers, end. */
	buf_grow(&w->b, size);
	char *p = w->b.s + w->b.len;
	memset(p, 0, size);
	put32(p, SL_INORDER);
	put32(p + 4, klen);
	memcpy(p + 8, key, klen);
	put32(p + 8 + kr, dlen);
	if (dlen)
		memcpy(p + 12 + kr, data, dlen);
	put32(p + size - 4, SL_END);
	buf_setlen(&w->b, w->b.len + size);
	for (uint32_t i = 0; i < level; i++) {
		cpw_put32(w, w->pend[i], (uint32_t)newoff);
		w->pend[i] = (uint32_t)newoff + fp + 4 * i;
	}
	if (w->b.len >= SL_CPBUF)
		cpw_flush(w);
	if (w->failed)
		return syserr(db, "cannot write", w->name);
	if (level > w->maxlevel)
		w->maxlevel = level;
	w->count++;
	return 0;
}

/*
 * Completes the file (the last record of each level keeps its zero),
 * syncs it, renames it over the database and makes db use it: the
 * checkpoint's commit point. Leaves the new file write-locked and mapped;
 * w is discarded either way.
 */
static int cpw_close(struct sl *db, struct cpwriter *w)
{
	char word[4];
	int r = 0;
	uint32_t logstart = (uint32_t)(w->bstart + w->b.len);
	cpw_flush(w);
	for (size_t i = 0; i < w->nlate && !w->failed; i++) {
		put32(word, (uint32_t)w->late[i]);
		if (pwrite_all(w->fd, word, 4, w->late[i] >> 32) < 0)
			w->failed = true;
	}
	struct sl hdr = *db;
	hdr.listsize = w->count;
	hdr.logstart = logstart;
	if (w->maxlevel > hdr.curlevel)
		hdr.curlevel = w->maxlevel;
	hdr.last_recovery = (uint32_t)time(NULL);
	char h[SL_HEADER_SIZE];
	header_encode(&hdr, h);
	if (w->failed || pwrite_all(w->fd, h, SL_HEADER_SIZE, 0) < 0) {
		r = syserr(db, "cannot write", w->name);
		goto out;
	}
	if (!nosync() && fdatasync(w->fd) < 0) {
		r = syserr(db, "cannot fdatasync", w->name);
		goto out;
	}
	/* Whoever opens the new name waits until we are done with it. */
	if (lock_fd(w->fd, LOCK_EXCLUSIVE, true) < 0) {
		r = syserr(db, "cannot lock", w->name);
		goto out;
	}
	if (rename(w->name, db->path) < 0) {
		r = syserr(db, "cannot rename", w->name);
		goto out;
	}
	if (!nosync())
		fsync_parent_dir(db->path);

	/* The old inode is dead; free its space as Cyrus does. */
	unmap(db);
	buf_release(&db->tail);
	if (ftruncate(db->fd, 0) < 0) {
		/* Only disk space is lost; the file is already replaced. */
	}
	close(db->fd);
	db->fd = w->fd;
	w->fd = -1;
	db->gen++;
	r = remap(db, false);
out:
	cpw_discard(w);
	return r;
}

/*
 * Writes every live record of the current view, in key order, as INORDER
 * records to <file>.NEW (levels kept, pointers recomputed), then renames it
 * over the file. Needs the write lock; leaves the new file write-locked and
 * mapped.
 */
static int checkpoint(struct sl *db)
{
	struct cpwriter w;
	struct node n, prev = { 0 };
	uint64_t steps = 0, maxsteps = (uint64_t)view_end(db) / 4 + 16;
	uint64_t flushed = 0;
	int r = cpw_open(db, &w);
	if (r)
		return r;

	struct node d;
	if (!node_get(db, SL_DUMMY_OFFSET, &d)) {
		r = corrupt(db, SL_DUMMY_OFFSET, "bad DUMMY");
		goto fail;
	}
	uint32_t off = get32(d.ptrs), from = SL_DUMMY_OFFSET;
	while (off) {
		if ((r = node_follow(db, from, off, &n)))
			goto fail;
		uint32_t level = node_level(db, &n);
		if (!level) {
			r = corrupt(db, off, "record without end mark");
			goto fail;
		}
		if (prev.off && sl_cmp(db, prev.key, prev.klen, n.key,
				       n.klen) >= 0) {
			r = cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
					   "skiplist '%s': not consistent "
					   "before checkpoint: key at 0x%04X "
					   "out of order", db->path, off);
			goto fail;
		}
		if (++steps > maxsteps) {
			r = corrupt(db, off, "pointer cycle");
			goto fail;
		}
		r = cpw_record(db, &w, n.key, n.klen, n.data, n.dlen, level);
		if (r)
			goto fail;
		if (w.bstart != flushed) {
			/* what came before this record is on its way */
			flushed = w.bstart;
			drop_tail_before(db, off);
		}
		prev = n;
		from = off;
		off = get32(n.ptrs);
	}
	return cpw_close(db, &w);
fail:
	cpw_discard(&w);
	return r;
}

/* ---- streaming commits ---- */

/*
 * A write transaction that starts on an empty file and stores keys in
 * increasing order writes them straight into the checkpoint file (the
 * writer's pend[] links each record to the one before it at every level),
 * when its commit is to be a checkpoint anyway (CYRUSDB_COMMIT_CHECKPOINT,
 * or big enough for the automatic one). Nothing touches the database
 * itself until the rename, so a crash or an abort leaves it as it was.
 * Anything else the transaction does first puts the records written so far
 * into the ordinary view (stream_end), and it goes on from there.
 */
static bool stream_may_start(const struct sl *db)
{
	return !db->stream_off && !db->tail.len &&
	       db->size == db->dummy_end && db->logstart == db->dummy_end &&
	       ((db->flags & CYRUSDB_COMMIT_CHECKPOINT) ||
		!(db->flags & CYRUSDB_NOCOMPACT));
}

static bool stream_follows(const struct sl *db, const char *key,
			   size_t keylen)
{
	return sl_cmp(db, key, keylen, db->stream_last.s,
		      db->stream_last.len) > 0;
}

static int stream_add(struct sl *db, const char *key, size_t keylen,
		      const char *data, size_t datalen)
{
	int r = cpw_record(db, db->stream, key, (uint32_t)keylen, data,
			   (uint32_t)datalen, random_level(db));
	if (r)
		return r;
	buf_set(&db->stream_last, key, keylen);
	db->gen++;
	return 0;
}

static int do_store(struct sl *db, const char *key, size_t keylen,
		    const char *data, size_t datalen, bool overwrite);

/* Moves the streamed records into the view; no more streaming in this
 * transaction. */
static int stream_end(struct sl *db)
{
	struct cpwriter *w = db->stream;
	int r = 0;
	if (!w)
		return 0;
	db->stream = NULL;
	db->stream_off = true;
	cpw_flush(w);
	size_t len = (size_t)w->bstart;
	const char *m = MAP_FAILED;
	if (w->failed)
		r = syserr(db, "cannot write", w->name);
	else
		m = mmap(NULL, len, PROT_READ, MAP_SHARED, w->fd, 0);
	if (!r && m == MAP_FAILED)
		r = syserr(db, "cannot mmap", w->name);
	for (size_t off = db->dummy_end; !r && off + 16 <= len;) {
		uint32_t klen = get32(m + off + 4);
		size_t kr = ru4(klen);
		uint32_t dlen = get32(m + off + 8 + kr);
		size_t fp = 12 + kr + ru4(dlen);
		r = do_store(db, m + off + 8, klen, m + off + 12 + kr, dlen,
			     true);
		off += fp;
		while (off + 4 <= len && get32(m + off) != SL_END)
			off += 4;
		off += 4;
	}
	if (m != MAP_FAILED)
		munmap((void *)m, len);
	cpw_discard(w);
	free(w);
	return r;
}

static void stream_discard(struct sl *db)
{
	if (db->stream) {
		cpw_discard(db->stream);
		free(db->stream);
		db->stream = NULL;
	}
}

/* ---- recovery ---- */

/* Size of the log record at off, 0 if it is bad or does not fit. */
static uint32_t log_recsize(struct sl *db, uint32_t off, uint32_t limit)
{
	struct node n;
	if (off + 4 > limit)
		return 0;
	switch (get32(db->map + off)) {
	case SL_INORDER:
	case SL_ADD:
	case SL_DUMMY: {
		if (!node_get(db, off, &n))
			return 0;
		uint32_t level = node_level(db, &n);
		if (!level || (uint64_t)node_size(&n, level) + off > limit)
			return 0;
		return node_size(&n, level);
	}
	case SL_DELETE:
		return off + 8 <= limit ? 8 : 0;
	case SL_COMMIT:
		return 4;
	default:
		return 0;
	}
}

/*
 * Cyrus's test before a write transaction: the file must end at a record
 * boundary (end of the ordered part, or a COMMIT after a record end mark
 * or a DELETE).
 */
static bool safe_to_append(const struct sl *db)
{
	uint32_t size = (uint32_t)db->size;
	if (size % 4)
		return false;
	if (size == db->logstart)
		return get32(db->map + size - 4) == SL_END;
	if (get32(db->map + size - 4) != SL_COMMIT)
		return false;
	return get32(db->map + size - 8) == SL_END ||
	       get32(db->map + size - 12) == SL_DELETE;
}

static void unlink_node(struct sl *db, const uint32_t *upd,
			const struct node *n, uint32_t level)
{
	for (uint32_t i = 0; i < level; i++) {
		if (word_at(db, upd[i] + 4 * i) != n->off)
			break;
		set_word(db, upd[i] + 4 * i, get32(n->ptrs + 4 * i));
	}
}

static void link_node(struct sl *db, uint32_t *upd, const struct node *n,
		      uint32_t level)
{
	if (level > db->curlevel) {
		for (uint32_t i = db->curlevel; i < level; i++)
			upd[i] = SL_DUMMY_PTRS;
		db->curlevel = level;
		db->header_dirty = true;
	}
	for (uint32_t i = 0; i < level; i++) {
		set_word(db, n->ptroff + 4 * i, word_at(db, upd[i] + 4 * i));
		set_word(db, upd[i] + 4 * i, n->off);
	}
}

static int replay_record(struct sl *db, uint32_t off, bool *need_cp)
{
	uint32_t upd[SL_MAXLEVEL];
	struct node rec, old;
	uint32_t type = get32(db->map + off);
	int r;

	if (type != SL_ADD && type != SL_DELETE)
		return corrupt(db, off, "log record is not ADD or DELETE");
	if (type == SL_ADD) {
		if (!node_get(db, off, &rec))
			return corrupt(db, off, "bad ADD record");
		uint32_t level = node_level(db, &rec);
		if (!level)
			return corrupt(db, off, "ADD record level out of range");
		if ((r = find(db, rec.key, rec.klen, upd, &old)))
			return r;
		if (node_is(db, &old, rec.key, rec.klen)) {
			/* An ADD of a live key without a DELETE: replace. */
			*need_cp = true;
			unlink_node(db, upd, &old, node_level(db, &old));
		} else {
			db->listsize++;
		}
		link_node(db, upd, &rec, level);
		return 0;
	}
	/* DELETE: by key, unlinking exactly the named record. */
	uint32_t target = get32(db->map + off + 4);
	if (target >= off || node_follow(db, off, target, &rec)) {
		*need_cp = true;
		return 0;
	}
	if ((r = find(db, rec.key, rec.klen, upd, &old)))
		return r;
	if (!node_is(db, &old, rec.key, rec.klen)) {
		*need_cp = true;
		return 0;
	}
	db->listsize--;
	unlink_node(db, upd, &rec, node_level(db, &rec));
	return 0;
}

/*
 * Recovery (spec 3.6): re-links the ordered part, replays committed
 * transactions, drops a trailing one without COMMIT. Runs on the private
 * mapping, so a failure leaves the file as it was; the result is written
 * in place, or as a checkpoint when one is due (skiplist_always_checkpoint
 * or anomalies), which makes the in-place writes unnecessary.
 * Caller holds the write lock with no transaction open.
 */
static int recovery(struct sl *db)
{
	bool need_cp = cyrusdb_getenv()->skiplist_always_checkpoint;
	uint32_t pend[SL_MAXLEVEL];
	uint32_t size = (uint32_t)db->size, off = db->dummy_end;
	struct node n, prev = { 0 };
	int r;

	for (uint32_t i = 0; i < db->maxlevel; i++)
		pend[i] = SL_DUMMY_PTRS + 4 * i;
	db->listsize = 0;
	while (off + 4 <= size && get32(db->map + off) == SL_INORDER) {
		uint32_t level;
		if (!node_get(db, off, &n) || !(level = node_level(db, &n)))
			return corrupt(db, off, "damaged INORDER record "
				       "(length past the end or no end mark)");
		if (prev.off && sl_cmp(db, prev.key, prev.klen, n.key,
				       n.klen) >= 0)
			return corrupt(db, off, "INORDER records out of order");
		for (uint32_t i = 0; i < level; i++) {
			set_word(db, pend[i], off);
			pend[i] = n.ptroff + 4 * i;
		}
		if (level > db->curlevel) {
			db->curlevel = level;
			db->header_dirty = true;
		}
		db->listsize++;
		prev = n;
		off += node_size(&n, level);
	}
	db->logstart = off;
	for (uint32_t i = 0; i < db->maxlevel; i++)
		set_word(db, pend[i], 0);
	/*
	 * Only INORDER records and every pointer already right: the file is
	 * what a checkpoint would write (the same bytes but for the header's
	 * recovery time), so "always checkpoint" has nothing to gain from
	 * copying it; the header is updated in place.
	 */
	if (off == size && !any_dirty(db))
		need_cp = false;

	while (off < size) {
		if (off + 4 > size)
			break;
		uint32_t type = get32(db->map + off);
		if (type == 0) {
			/* Cyrus skips zero words left by old truncation bugs. */
			while (off + 4 <= size && !get32(db->map + off))
				off += 4;
			need_cp = true;
			continue;
		}
		if (type == SL_COMMIT) {
			off += 4;
			continue;
		}
		if (type != SL_ADD && type != SL_DELETE)
			return corrupt(db, off, "log record is not ADD or "
				       "DELETE");
		/* Only a transaction whose COMMIT is on disk counts. */
		uint32_t p = off, sz;
		for (;;) {
			if (!(sz = log_recsize(db, p, size))) {
				p = size;
				break;
			}
			p += sz;
			if (p + 4 > size || get32(db->map + p) == SL_COMMIT)
				break;
		}
		if (p + 4 > size)
			break;
		for (uint32_t q = off; q < p; q += log_recsize(db, q, size))
			if ((r = replay_record(db, q, &need_cp)))
				return r;
		off = p + 4;
	}
	if (off > size)
		off = size;

	db->last_recovery = (uint32_t)time(NULL);
	db->gen++;
	if (need_cp)
		return checkpoint(db);

	/* In place: pointers, truncation, sync, then the header, sync. */
	if ((r = write_dirty(db, off)))
		return r;
	if (off < size && ftruncate(db->fd, off) < 0)
		return syserr(db, "cannot truncate", db->path);
	if (!nosync() && fdatasync(db->fd) < 0)
		return syserr(db, "cannot fdatasync", db->path);
	char h[SL_HEADER_SIZE];
	header_encode(db, h);
	if (pwrite_all(db->fd, h, SL_HEADER_SIZE, 0) < 0)
		return syserr(db, "cannot write", db->path);
	if (!nosync() && fdatasync(db->fd) < 0)
		return syserr(db, "cannot fdatasync", db->path);
	return remap(db, true);
}

static uint32_t global_recovery_stamp(void)
{
	const char *dir = cyrusdb_getenv()->configdir;
	uint32_t stamp = 0;
	if (!dir)
		return 0;
	char *name = xasprintf("%s/db/skipstamp", dir);
	int fd = open(name, O_RDONLY | O_CLOEXEC);
	free(name);
	if (fd < 0)
		return 0;
	char b[4];
	if (read(fd, b, 4) == 4)
		stamp = get32(b);
	close(fd);
	return stamp;
}

/* ---- transactions ---- */

static void txn_end(struct sl *db)
{
	stream_discard(db);
	free(db->txn);
	db->txn = NULL;
	db->header_dirty = false;
	db->gen++;
	unlock(db);
}

/*
 * Makes *tid usable: starts a transaction if *tid is NULL (exclusive lock,
 * or shared with CYRUSDB_SHARED), else checks it belongs to db.
 */
static int txn_get(struct sl *db, struct cyrusdb_txn **tid, bool write)
{
	int r;
	if (*tid) {
		if (*tid != db->txn)
			return cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
					      "skiplist '%s': transaction "
					      "belongs to another database",
					      db->path);
		if (write && db->txn->shared)
			return cyrusdb_seterr(&db->base, CYRUSDB_READONLY,
					      "skiplist '%s': shared "
					      "transaction is read-only",
					      db->path);
		return 0;
	}
	if (db->txn || db->lock != SL_UNLOCKED)
		return cyrusdb_seterr(&db->base, CYRUSDB_LOCKED,
				      "skiplist '%s': a transaction or "
				      "iteration is in progress", db->path);
	bool shared = db->flags & CYRUSDB_SHARED;
	if (write && shared)
		return cyrusdb_seterr(&db->base, CYRUSDB_READONLY,
				      "skiplist '%s': opened shared, "
				      "read-only", db->path);
	if ((r = lock_db(db, !shared)))
		return r;
	if (!shared && !safe_to_append(db)) {
		/* A writer died mid-transaction: clean up first. */
		if ((r = recovery(db)) || (r = remap(db, true))) {
			unlock(db);
			return r;
		}
	}
	db->txn = xzmalloc(sizeof(*db->txn));
	db->txn->db = db;
	db->txn->shared = shared;
	db->tail_sorted = true;
	db->tail_dropped_to = 0;
	db->stream_off = false;
	*tid = db->txn;
	return 0;
}

static int commit_write(struct sl *db)
{
	char word[4];
	if (!db->tail.len)
		return 0;	/* nothing written: no COMMIT, as Cyrus */
	if (pwrite_all(db->fd, db->tail.s, db->tail.len, db->vbase) < 0)
		return syserr(db, "cannot write", db->path);
	if (db->header_dirty) {
		header_encode(db, db->map);
		db->dirty[0] |= 1;
	}
	int r = write_dirty(db, db->vbase);
	if (r)
		return r;
	if (!nosync() && fdatasync(db->fd) < 0)
		return syserr(db, "cannot fdatasync", db->path);
	put32(word, SL_COMMIT);
	if (pwrite_all(db->fd, word, 4, view_end(db)) < 0)
		return syserr(db, "cannot write", db->path);
	if (!nosync() && fdatasync(db->fd) < 0)
		return syserr(db, "cannot fdatasync", db->path);
	return 0;
}

static int sl_commit(struct cyrusdb *base, struct cyrusdb_txn *tid)
{
	struct sl *db = (struct sl *)base;
	if (!tid || tid != db->txn)
		return cyrusdb_seterr(base, CYRUSDB_INTERNAL,
				      "skiplist '%s': commit of a transaction "
				      "that is not open", db->path);
	if (tid->shared) {
		txn_end(db);
		return 0;
	}
	/*
	 * When a checkpoint follows anyway, the commit is written as that
	 * checkpoint: the new file is complete and synced before it is
	 * renamed over the old one, which the transaction never touched, so
	 * a crash leaves the old state or the new one, as a log commit does.
	 * A failure leaves the old file: the transaction is lost, as when a
	 * log commit fails.
	 */
	/* A stream's records would take as much room in the log. */
	uint64_t logend = db->stream ? db->stream->bstart + db->stream->b.len
				     : view_end(db);
	bool compact = !(db->flags & CYRUSDB_NOCOMPACT) &&
		       logend > 2 * (uint64_t)db->logstart + SL_MINREWRITE;
	if (db->stream && (compact || (db->flags & CYRUSDB_COMMIT_CHECKPOINT))) {
		struct cpwriter *w = db->stream;
		db->stream = NULL;
		int r = cpw_close(db, w);
		free(w);
		txn_end(db);
		return r;
	}
	int r0 = stream_end(db);
	if (r0) {
		txn_end(db);
		return r0;
	}
	if (db->tail.len &&
	    (compact || (db->flags & CYRUSDB_COMMIT_CHECKPOINT))) {
		int r = checkpoint(db);
		/* Before the rename nothing changed: a log commit may still do
		 * (a directory we cannot create .NEW in), if the tail is all
		 * there. */
		if (!r || !db->tail.len || db->tail_dropped_to) {
			txn_end(db);
			return r;
		}
	}
	int r = commit_write(db);
	if (r) {
		/*
		 * Leave what reached the disk: without a COMMIT it is not
		 * safe to append to, so the next writer runs recovery, which
		 * rebuilds every pointer. Truncating here could hide the
		 * patched pointers from that check.
		 */
		txn_end(db);
		return r;
	}
	txn_end(db);
	return 0;
}

static int sl_abort(struct cyrusdb *base, struct cyrusdb_txn *tid)
{
	struct sl *db = (struct sl *)base;
	if (!tid || tid != db->txn)
		return cyrusdb_seterr(base, CYRUSDB_INTERNAL,
				      "skiplist '%s': abort of a transaction "
				      "that is not open", db->path);
	/* Nothing reached the file: dropping the memory is the undo. */
	txn_end(db);
	return 0;
}

/* Ends a write that failed inside a transaction: Cyrus aborts it. */
static void fail_txn(struct sl *db, struct cyrusdb_txn **tid)
{
	txn_end(db);
	*tid = NULL;
}

/* ---- operations ---- */

/* Whether key sorts after the key of the last sequential store. */
static bool seq_follows(const struct sl *db, const char *key, size_t keylen)
{
	uint32_t avail;
	if (db->seq_gen != db->gen || !db->seq_key)
		return false;
	const char *last = at(db, db->seq_key, &avail);
	return last && sl_cmp(db, key, keylen, last, db->seq_klen) > 0;
}

static int do_store(struct sl *db, const char *key, size_t keylen,
		    const char *data, size_t datalen, bool overwrite)
{
	uint32_t upd[SL_MAXLEVEL], ptrs[SL_MAXLEVEL], level;
	struct node old;
	int r;

	if (db->stream) {
		if (stream_follows(db, key, keylen))
			return stream_add(db, key, keylen, data, datalen);
		if ((r = stream_end(db)))
			return r;
	} else if (stream_may_start(db)) {
		db->stream = xmalloc(sizeof(*db->stream));
		if (!cpw_open(db, db->stream))
			return stream_add(db, key, keylen, data, datalen);
		/* No .NEW: the ordinary way (and commit) will do. */
		free(db->stream);
		db->stream = NULL;
		db->stream_off = true;
	}
	if ((r = room_for(db, 24 + ru4(keylen) + ru4(datalen) +
			  4 * SL_MAXLEVEL)))
		return r;
	if (seq_follows(db, key, keylen)) {
		/* After the last key: where find() would end up. */
		memcpy(upd, db->seq_upd, sizeof(upd));
		old.off = 0;
	} else if ((r = find(db, key, keylen, upd, &old))) {
		return r;
	}
	uint32_t newoff = view_end(db);
	if (node_is(db, &old, key, keylen)) {
		if (!overwrite)
			return cyrusdb_seterr(&db->base, CYRUSDB_EXISTS,
					      "skiplist '%s': key exists",
					      db->path);
		/* Replace with a node of the same height. */
		if (!(level = node_level(db, &old)))
			return corrupt(db, old.off, "record without end mark");
		for (uint32_t i = 0; i < level; i++)
			ptrs[i] = get32(old.ptrs + 4 * i);
		append_delete(db, old.off);
		newoff += 8;
	} else {
		level = random_level(db);
		if (level > db->curlevel) {
			for (uint32_t i = db->curlevel; i < level; i++)
				upd[i] = SL_DUMMY_PTRS;
			db->curlevel = level;
			db->header_dirty = true;
		}
		for (uint32_t i = 0; i < level; i++)
			ptrs[i] = word_at(db, upd[i] + 4 * i);
	}
	append_add(db, key, keylen, data, datalen, ptrs, level);
	for (uint32_t i = 0; i < level; i++)
		set_word(db, upd[i] + 4 * i, newoff);
	db->gen++;
	if (old.off || ptrs[0]) {
		db->tail_sorted = false;
		return 0;
	}
	/* Nothing after it: the next key past it goes after it too. */
	uint32_t ptroff = newoff + 12 + (uint32_t)ru4(keylen) +
			  (uint32_t)ru4(datalen);
	for (uint32_t i = 0; i < level; i++)
		upd[i] = ptroff;
	memcpy(db->seq_upd, upd, sizeof(upd));
	db->seq_key = newoff + 8;
	db->seq_klen = (uint32_t)keylen;
	db->seq_gen = db->gen;
	return 0;
}

static int store_common(struct cyrusdb *base, const char *key, size_t keylen,
			const char *data, size_t datalen,
			struct cyrusdb_txn **tid, bool overwrite)
{
	struct sl *db = (struct sl *)base;
	struct cyrusdb_txn *local = NULL;
	int r;

	if (!key || !keylen)
		return cyrusdb_seterr(base, CYRUSDB_INTERNAL,
				      "skiplist '%s': empty key", db->path);
	if (!data)
		datalen = 0;
	if (keylen > UINT32_MAX / 2 || datalen > UINT32_MAX / 2)
		return cyrusdb_seterr(base, CYRUSDB_FULL,
				      "skiplist '%s': record too large",
				      db->path);
	if (!tid)
		tid = &local;
	if ((r = txn_get(db, tid, true)))
		return r;
	r = do_store(db, key, keylen, data, datalen, overwrite);
	if (r == CYRUSDB_EXISTS) {
		/* The transaction stays usable (Cyrus would abort it). */
		if (local)
			fail_txn(db, &local);
		return r;
	}
	if (r) {
		fail_txn(db, tid);
		return r;
	}
	if (local)
		return sl_commit(base, local);
	return 0;
}

static int sl_create(struct cyrusdb *base, const char *key, size_t keylen,
		     const char *data, size_t datalen,
		     struct cyrusdb_txn **tid)
{
	return store_common(base, key, keylen, data, datalen, tid, false);
}

static int sl_store(struct cyrusdb *base, const char *key, size_t keylen,
		    const char *data, size_t datalen, struct cyrusdb_txn **tid)
{
	return store_common(base, key, keylen, data, datalen, tid, true);
}

static int do_delete(struct sl *db, const char *key, size_t keylen)
{
	uint32_t upd[SL_MAXLEVEL], ptrs[SL_MAXLEVEL], level;
	struct node old;
	int r;

	if ((r = stream_end(db)))
		return r;
	if ((r = find(db, key, keylen, upd, &old)))
		return r;
	if (!node_is(db, &old, key, keylen))
		return 0;	/* Cyrus: a missing key is not an error */
	if ((r = room_for(db, 8)))
		return r;
	if (!(level = node_level(db, &old)))
		return corrupt(db, old.off, "record without end mark");
	for (uint32_t i = 0; i < level; i++)
		ptrs[i] = get32(old.ptrs + 4 * i);
	uint32_t off = old.off;
	db->tail_sorted = false;
	append_delete(db, off);
	for (uint32_t i = 0; i < level; i++) {
		if (word_at(db, upd[i] + 4 * i) != off)
			break;
		set_word(db, upd[i] + 4 * i, ptrs[i]);
	}
	db->gen++;
	return 0;
}

static int sl_delete(struct cyrusdb *base, const char *key, size_t keylen,
		     struct cyrusdb_txn **tid, bool force UNUSED)
{
	struct sl *db = (struct sl *)base;
	struct cyrusdb_txn *local = NULL;
	int r;

	if (!tid)
		tid = &local;
	if ((r = txn_get(db, tid, true)))
		return r;
	if ((r = do_delete(db, key, keylen))) {
		fail_txn(db, tid);
		return r;
	}
	if (local)
		return sl_commit(base, local);
	return 0;
}

/*
 * Sets up a read: inside the transaction (the given one, or the open one as
 * Cyrus does when none is passed), under a lock already held (a filter
 * reading), or under a shared lock of our own (*own set).
 */
static int read_begin(struct sl *db, struct cyrusdb_txn ***tidp, bool *own)
{
	*own = false;
	if (!*tidp && db->txn)
		*tidp = &db->txn;
	if (*tidp) {
		int r = txn_get(db, *tidp, false);
		return r ? r : stream_end(db);
	}
	if (db->lock != SL_UNLOCKED)
		return 0;
	int r = lock_db(db, false);
	if (!r)
		*own = true;
	return r;
}

static int sl_fetch(struct cyrusdb *base, const char *key, size_t keylen,
		    const char **data, size_t *datalen,
		    struct cyrusdb_txn **tid)
{
	struct sl *db = (struct sl *)base;
	struct node n;
	bool own;
	int r;

	if (data)
		*data = NULL;
	if (datalen)
		*datalen = 0;
	if ((r = read_begin(db, &tid, &own)))
		return r;
	if ((r = find(db, key, keylen, NULL, &n)))
		goto out;
	if (!node_is(db, &n, key, keylen)) {
		r = CYRUSDB_NOTFOUND;
		goto out;
	}
	if (own) {
		/* The lock goes: another writer may truncate the mapping. */
		buf_set(&db->fetched, n.data, n.dlen);
		n.data = db->fetched.s;
	}
	if (data)
		*data = n.data;
	if (datalen)
		*datalen = n.dlen;
out:
	if (own)
		unlock(db);
	return r;
}

static int next_node(struct sl *db, const struct node *n, struct node *next)
{
	uint32_t off = get32(n->ptrs);
	next->off = 0;
	return off ? node_follow(db, n->off, off, next) : 0;
}

struct fe_item {
	size_t koff, doff;
	uint32_t klen, dlen;
};

/*
 * Without a transaction the lock is dropped around the callbacks, as Cyrus
 * does, so they may write to the database. To keep that cheap, records are
 * copied out in batches under the lock and the callbacks run on the copies;
 * a change through this handle (gen) drops the rest of the batch, and any
 * change re-finds the position by key, as Cyrus re-finds after each one.
 * Inside a transaction (or under a lock held by an outer read) the batch is
 * a single record and the lock stays.
 */
static int sl_foreach(struct cyrusdb *base, const char *prefix,
		      size_t prefixlen, cyrusdb_filter_fn *p,
		      cyrusdb_cb_fn *cb, void *rock, struct cyrusdb_txn **tid)
{
	struct sl *db = (struct sl *)base;
	struct buf batch = BUF_INIT, resume = BUF_INIT;
	struct fe_item *items = NULL;
	size_t nitems, aitems = 0;
	struct node n;
	bool own;
	int r, cb_r = 0;
	uint64_t steps = 0;

	if ((r = read_begin(db, &tid, &own)))
		return r;
	if ((r = find(db, prefix, prefixlen, NULL, &n)))
		goto out;
	for (;;) {
		size_t limit = own ? 256 : 1;
		bool done = false;
		nitems = 0;
		buf_reset(&batch);
		for (;;) {
			if (!n.off) {
				done = true;
				break;
			}
			if (++steps > (uint64_t)view_end(db) / 4 + 16) {
				r = corrupt(db, n.off, "pointer cycle");
				goto out;
			}
			if (n.klen < prefixlen ||
			    (prefixlen && sl_cmp(db, n.key, prefixlen, prefix,
						 prefixlen))) {
				done = true;
				break;
			}
			buf_set(&resume, n.key, n.klen);
			if (!p || p(rock, n.key, n.klen, n.data, n.dlen)) {
				if (nitems == aitems) {
					aitems = aitems ? aitems * 2 : 16;
					items = xrealloc(items, aitems *
							 sizeof(*items));
				}
				struct fe_item *it = &items[nitems++];
				it->koff = batch.len;
				it->klen = n.klen;
				buf_add(&batch, n.key, n.klen);
				it->doff = batch.len;
				it->dlen = n.dlen;
				buf_add(&batch, n.data, n.dlen);
			}
			if ((r = next_node(db, &n, &n)))
				goto out;
			if (nitems >= limit || batch.len >= (1u << 20))
				break;
		}
		uint32_t nextoff = n.off;
		uint64_t gen = db->gen;
		dev_t dev = db->dev;
		ino_t ino = db->ino;
		size_t size = db->size;
		bool changed = false;
		if (own && nitems) {
			unlock(db);
			own = false;
		}
		for (size_t i = 0; i < nitems; i++) {
			uint64_t g = db->gen;
			cb_r = cb(rock, batch.s + items[i].koff, items[i].klen,
				  batch.s + items[i].doff, items[i].dlen);
			if (cb_r)
				goto out;
			if (db->gen != g) {
				/* It wrote: what we copied may be stale. */
				buf_set(&resume, batch.s + items[i].koff,
					items[i].klen);
				changed = true;
				break;
			}
		}
		if (done && !changed)
			break;
		if (db->lock == SL_UNLOCKED) {
			if ((r = lock_db(db, false)))
				goto out;
			own = true;
			changed = changed || dev != db->dev ||
				  ino != db->ino || size != db->size;
		}
		changed = changed || gen != db->gen;
		if (changed) {
			/* Re-find: the first key after the last one seen. */
			if ((r = find(db, resume.s, resume.len, NULL, &n)))
				goto out;
			if (node_is(db, &n, resume.s, resume.len) &&
			    (r = next_node(db, &n, &n)))
				goto out;
		} else if (nextoff) {
			if ((r = node_follow(db, nextoff, nextoff, &n)))
				goto out;
		} else {
			n.off = 0;
		}
	}
out:
	if (own)
		unlock(db);
	buf_release(&batch);
	buf_release(&resume);
	free(items);
	return r ? r : cb_r;
}

/*
 * Full check: every level is a chain, in key order, through exactly the
 * records of that height, ending in 0; nothing points outside the file.
 */
static int check_structure(struct sl *db)
{
	uint32_t last[SL_MAXLEVEL];
	struct node d, n, prev = { 0 };
	uint64_t steps = 0;

	if (!node_get(db, SL_DUMMY_OFFSET, &d))
		return corrupt(db, SL_DUMMY_OFFSET, "bad DUMMY");
	for (uint32_t i = 0; i < db->maxlevel; i++)
		last[i] = SL_DUMMY_PTRS + 4 * i;
	uint32_t off = get32(d.ptrs), from = SL_DUMMY_OFFSET;
	while (off) {
		if (++steps > (uint64_t)view_end(db) / 4)
			return corrupt(db, off, "pointer cycle");
		if (node_follow(db, from, off, &n)) {
			char why[sizeof(db->base.errmsg)];
			memcpy(why, db->base.errmsg, sizeof(why));
			return cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
					      "skiplist inconsistent: %s", why);
		}
		uint32_t level = node_level(db, &n);
		if (!level)
			return cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
					      "skiplist inconsistent: '%s': "
					      "%04X: no end mark", db->path,
					      off);
		if (prev.off && sl_cmp(db, prev.key, prev.klen, n.key,
				       n.klen) >= 0)
			return cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
					      "skiplist inconsistent: '%s': "
					      "%04X: key not after the one at "
					      "%04X", db->path, off, prev.off);
		for (uint32_t i = 0; i < level; i++) {
			uint32_t got = word_at(db, last[i]);
			if (got != off)
				return cyrusdb_seterr(
					&db->base, CYRUSDB_INTERNAL,
					"skiplist inconsistent: '%s': pointer "
					"at %04X (level %u) is %04X, expected "
					"%04X", db->path, last[i], i, got, off);
			last[i] = n.ptroff + 4 * i;
		}
		prev = n;
		from = off;
		off = get32(n.ptrs);
	}
	for (uint32_t i = 0; i < db->maxlevel; i++) {
		uint32_t got = word_at(db, last[i]);
		if (got)
			return cyrusdb_seterr(&db->base, CYRUSDB_INTERNAL,
					      "skiplist inconsistent: '%s': "
					      "pointer at %04X (level %u) is "
					      "%04X, expected 0 (end of list)",
					      db->path, last[i], i, got);
	}
	return 0;
}

static int sl_consistent(struct cyrusdb *base)
{
	struct sl *db = (struct sl *)base;
	struct cyrusdb_txn **tid = NULL;
	bool own;
	int r = read_begin(db, &tid, &own);
	if (r)
		return r;
	r = check_structure(db);
	if (own)
		unlock(db);
	return r;
}

static int sl_repack(struct cyrusdb *base)
{
	struct sl *db = (struct sl *)base;
	if (db->txn || db->lock != SL_UNLOCKED)
		return cyrusdb_seterr(base, CYRUSDB_LOCKED,
				      "skiplist '%s': cannot checkpoint inside "
				      "a transaction", db->path);
	int r = lock_db(db, true);
	if (r)
		return r;
	/* A dead writer's tail is cleaned up by recovery, not copied. */
	if (!safe_to_append(db))
		r = recovery(db);
	if (!r)
		r = checkpoint(db);
	unlock(db);
	return r;
}

static const char *type_name(uint32_t type)
{
	switch (type) {
	case SL_DUMMY:
		return "DUMMY";
	case SL_INORDER:
		return "INORDER";
	case SL_ADD:
		return "ADD";
	case SL_DELETE:
		return "DELETE";
	case SL_COMMIT:
		return "COMMIT";
	default:
		return NULL;
	}
}

/* Cyrus's dump format, record by record from the DUMMY on. */
static int sl_dump(struct cyrusdb *base, FILE *f, int detail UNUSED)
{
	struct sl *db = (struct sl *)base;
	struct cyrusdb_txn **tid = NULL;
	bool own;
	int r = read_begin(db, &tid, &own);
	if (r)
		return r;
	uint32_t end = view_end(db), off = SL_DUMMY_OFFSET;
	while (off < end) {
		uint32_t avail = 0;
		const char *p = at(db, off, &avail);
		uint32_t type = avail >= 4 ? get32(p) : 0;
		const char *name = type_name(type);
		struct node n = { 0 };
		uint32_t level = 0, size;
		if (!name) {
			r = corrupt(db, off, "unknown record type");
			break;
		}
		if (type == SL_DELETE || type == SL_COMMIT) {
			size = type == SL_DELETE ? 8 : 4;
			if (avail < size) {
				r = corrupt(db, off, "record past the end");
				break;
			}
		} else if (!node_get(db, off, &n) ||
			   !(level = node_level(db, &n))) {
			r = corrupt(db, off, "record past the end");
			break;
		} else {
			size = node_size(&n, level);
		}
		fprintf(f, "%04lX: %s ", (unsigned long)off, name);
		if (type == SL_DELETE) {
			fprintf(f, "offset=%04X\n", get32(p + 4));
		} else if (type == SL_COMMIT) {
			fprintf(f, "\n");
		} else {
			fprintf(f, "kl=%d dl=%d lvl=%d\n", (int)n.klen,
				(int)n.dlen, (int)level);
			fprintf(f, "\t");
			for (uint32_t i = 0; i < level; i++)
				fprintf(f, "%04X ", get32(n.ptrs + 4 * i));
			fprintf(f, "\n");
		}
		off += size;
	}
	if (own)
		unlock(db);
	return r;
}

static int sl_compar(struct cyrusdb *base, const char *a, size_t alen,
		     const char *b, size_t blen)
{
	return sl_cmp((struct sl *)base, a, alen, b, blen);
}

/* ---- open and close ---- */

static void dispose(struct sl *db)
{
	if (db->txn)
		txn_end(db);
	unlock(db);
	unmap(db);
	if (db->fd >= 0)
		close(db->fd);
	buf_release(&db->tail);
	buf_release(&db->fetched);
	buf_release(&db->stream_last);
	free(db->path);
	free(db);
}

static int sl_close(struct cyrusdb *base)
{
	dispose((struct sl *)base);
	return 0;
}

static void mkdir_parents(const char *path)
{
	char *p = xstrdup(path);
	for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		mkdir(p, 0755);
		*s = '/';
	}
	free(p);
}

/* A new file gets the header and DUMMY Cyrus writes (144 bytes). */
static int create_file(struct sl *db)
{
	size_t dsize = 4 * (3 + SL_MAXLEVEL + 1);
	char b[SL_HEADER_SIZE + 4 * (3 + SL_MAXLEVEL + 1)] = { 0 };
	db->minor = SL_VERSION_MINOR;
	db->maxlevel = SL_MAXLEVEL;
	db->curlevel = 1;
	db->listsize = 0;
	db->logstart = SL_HEADER_SIZE + dsize;
	db->last_recovery = (uint32_t)time(NULL);
	header_encode(db, b);
	put32(b + SL_DUMMY_OFFSET, SL_DUMMY);
	put32(b + sizeof(b) - 4, SL_END);
	if (pwrite_all(db->fd, b, sizeof(b), 0) < 0)
		return syserr(db, "cannot write", db->path);
	if (!nosync() && fsync(db->fd) < 0)
		return syserr(db, "cannot fsync", db->path);
	return remap(db, true);
}

static int open_locked(struct sl *db)
{
	int r;
	if ((r = lock_raw(db, false)))
		return r;
	if (db->size == 0 && !db->rdonly) {
		/* Empty: create the header, unless someone beats us to it. */
		unlock(db);
		if ((r = lock_raw(db, true)))
			return r;
		if (db->size == 0 && (r = create_file(db)))
			goto out;
	}
	if ((r = header_read(db)))
		goto out;

	uint32_t stamp = global_recovery_stamp();
	if (db->rdonly || (stamp && db->last_recovery >= stamp))
		goto out;
	/* Recovery needs the write lock; re-check once we hold it. */
	if (db->lock != SL_WRITELOCKED) {
		unlock(db);
		if ((r = lock_db(db, true)))
			return r;
	}
	if (!stamp || db->last_recovery < stamp)
		r = recovery(db);
out:
	unlock(db);
	return r;
}

static int sl_open(const char *fname, int flags, struct cyrusdb **db_r,
		   char *errmsg_r)
{
	struct sl *db = xzmalloc(sizeof(*db));
	int r;

	buf_init(&db->tail);
	buf_init(&db->fetched);
	buf_init(&db->stream_last);
	db->fd = -1;
	db->path = xstrdup(fname);
	db->flags = flags;
	db->mbox = flags & CYRUSDB_MBOXSORT;
	db->rnd = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^
		  (uint64_t)(uintptr_t)db;
	if (!db->rnd)
		db->rnd = 1;

	db->fd = open(fname, O_RDWR | O_CLOEXEC);
	if (db->fd < 0 && errno == ENOENT) {
		if (!(flags & CYRUSDB_CREATE)) {
			r = CYRUSDB_NOTFOUND;
			goto out;
		}
		mkdir_parents(fname);
		db->fd = open(fname, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	} else if (db->fd < 0 && (errno == EACCES || errno == EROFS)) {
		/* Readable but not writable: serve reads, skip recovery. */
		db->fd = open(fname, O_RDONLY | O_CLOEXEC);
		db->rdonly = true;
	}
	if (db->fd < 0) {
		r = syserr(db, "cannot open", fname);
		snprintf(errmsg_r, 512, "%s", db->base.errmsg);
		goto out;
	}
	r = open_locked(db);
	if (r)
		snprintf(errmsg_r, 512, "%s", db->base.errmsg);
out:
	if (r) {
		dispose(db);
		return r;
	}
	*db_r = &db->base;
	return 0;
}

const struct cyrusdb_backend cyrusdb_skiplist = {
	.name = "skiplist",
	.open = sl_open,
	.close = sl_close,
	.fetch = sl_fetch,
	.fetchlock = sl_fetch,
	.fetchnext = NULL,	/* not implemented, as in Cyrus */
	.foreach = sl_foreach,
	.create = sl_create,
	.store = sl_store,
	.delete = sl_delete,
	.commit = sl_commit,
	.abort = sl_abort,
	.consistent = sl_consistent,
	.repack = sl_repack,
	.dump = sl_dump,
	.compar = sl_compar,
};
