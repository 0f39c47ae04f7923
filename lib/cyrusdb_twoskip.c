/*
 * cyrusdb_twoskip.c: the twoskip backend, compatible with Cyrus 3.6.1
 * (docs/formats/cyrusdb.md section 2): search, writes, transactions, the
 * per-process list of open files and the cyrusdb vtable. The file format
 * lives in twoskip_file.c, recovery/repack/dump in twoskip_repair.c.
 */
#include "compat.h"
#include "twoskip-private.h"

#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cyrusdb-private.h"
#include "xmalloc.h"

/* Without a transaction, foreach releases its read lock at least this
 * often while the filter rejects records. */
#define FOREACH_LOCK_RELEASE 256

/* The cyrusdb handle; several may share one engine (same file). */
struct ts_handle {
	struct cyrusdb base;
	struct twoskip *ts;
};

static struct twoskip *open_list;

/* ---- random levels ---- */

/* Level 1, plus one per successful coin flip (P = 0.5), at most 31. */
static uint8_t random_level(struct twoskip *ts)
{
	/* xorshift32 */
	uint32_t x = ts->rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	ts->rng = x;
	unsigned level = 1 + __builtin_ctz(~x | 0x80000000u);
	return level > TS_MAXLEVEL ? TS_MAXLEVEL : level;
}

/* ---- locks with header handling ---- */

static int write_lock(struct twoskip *ts)
{
	int r = twoskip_lock(ts, LOCK_EXCLUSIVE);
	if (r)
		return r;
	if (!ts->writable) {
		r = twoskip_seterr(ts, CYRUSDB_READONLY,
				   "cannot write '%s': opened read-only",
				   ts->fname);
		goto fail;
	}
	r = twoskip_read_header(ts);
	if (!r)
		r = twoskip_recovery(ts);
	if (!r)
		return 0;
fail:
	twoskip_unlock(ts);
	return r;
}

/* A reader that finds the file unclean lets the write lock repair it. */
static int read_lock(struct twoskip *ts)
{
	for (int tries = 0;; tries++) {
		int r = twoskip_lock(ts, LOCK_SHARED);
		if (r)
			return r;
		r = twoskip_read_header(ts);
		if (r) {
			twoskip_unlock(ts);
			return r;
		}
		if (twoskip_is_clean(ts))
			return 0;
		twoskip_unlock(ts);
		if (tries > 100)
			return twoskip_seterr(ts, CYRUSDB_AGAIN,
					      "'%s' keeps being unclean",
					      ts->fname);
		r = write_lock(ts);
		if (r)
			return r;
		twoskip_unlock(ts);
	}
}

/* ---- locations ---- */

void twoskip_loc_reset(struct twoskip *ts)
{
	buf_reset(&ts->loc.key);
	ts->loc.exact = false;
	ts->loc.generation = 0;
	ts->loc.end = 0;
	memset(&ts->loc.rec, 0, sizeof(ts->loc.rec));
	ts->dummy_ok = false;
}

/* Every search starts at the DUMMY: keep it decoded while unchanged. */
static int read_dummy(struct twoskip *ts, struct ts_record *rec)
{
	if (ts->dummy_ok && ts->dummy_end == ts->end &&
	    ts->dummy_gen == ts->header.generation) {
		*rec = ts->dummy;
		return 0;
	}
	int r = twoskip_read_record(ts, TS_DUMMY_OFFSET, rec);
	if (r)
		return r;
	if (rec->type != TS_DUMMY || rec->level != TS_MAXLEVEL)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "no twoskip DUMMY record in '%s'",
				      ts->fname);
	ts->dummy = *rec;
	ts->dummy_ok = true;
	ts->dummy_end = ts->end;
	ts->dummy_gen = ts->header.generation;
	return 0;
}

static void set_forward(struct twoskip *ts)
{
	struct ts_loc *loc = &ts->loc;
	for (unsigned i = 0; i < loc->rec.level; i++)
		loc->fwd[i] = twoskip_getloc(ts, &loc->rec, i);
}

static int cmp_key(struct twoskip *ts, const struct ts_record *rec,
		   const char *key, size_t keylen)
{
	return ts->compar(TS_KEY(ts, rec), rec->keylen, key, keylen);
}

/* A full search from the DUMMY for loc->key. */
static int relocate(struct twoskip *ts)
{
	struct ts_loc *loc = &ts->loc;
	struct ts_record next;
	uint64_t last = 0;
	int cmp = -1;

	loc->generation = ts->header.generation;
	loc->end = ts->end;
	loc->exact = false;
	int r = read_dummy(ts, &loc->rec);
	if (r)
		return r;

	unsigned level = TS_MAXLEVEL;
	if (!loc->key.len) {
		for (unsigned i = 0; i < level; i++) {
			loc->back[i] = loc->rec.offset;
			loc->fwd[i] = twoskip_getloc(ts, &loc->rec, i);
		}
		return 0;
	}
	next.offset = 0;
	while (level) {
		uint64_t off = twoskip_getloc(ts, &loc->rec, level - 1);
		loc->back[level - 1] = loc->rec.offset;
		loc->fwd[level - 1] = off;
		if (off != last) {
			last = off;
			r = twoskip_read_skipdelete(ts, off, &next);
			if (r)
				return r;
			if (next.offset) {
				if (next.level < level || next.type != TS_RECORD)
					return twoskip_seterr(ts,
						CYRUSDB_IOERROR,
						"twoskip broken linkage at "
						"offset %08llX in '%s'",
						(unsigned long long)next.offset,
						ts->fname);
				cmp = cmp_key(ts, &next, loc->key.s,
					      loc->key.len);
				if (cmp < 0) {
					loc->rec = next;
					continue;
				}
			}
		}
		level--;
	}
	if (cmp == 0 && next.offset) {
		loc->exact = true;
		loc->rec = next;
		set_forward(ts);
		return twoskip_check_tail(ts, &loc->rec);
	}
	return 0;
}

/*
 * Positions loc at key. Sequential access (the same key again, or the gap
 * or record right after the current one) reuses the last position when
 * nothing changed since; anything else is a full search.
 */
static int find_loc(struct twoskip *ts, const char *key, size_t keylen)
{
	struct ts_loc *loc = &ts->loc;
	struct ts_record next;
	int r = twoskip_seq_finish(ts);
	if (r)
		return r;
	if (key != loc->key.s)
		buf_set(&loc->key, key, keylen);
	else
		buf_setlen(&loc->key, keylen);

	if (!keylen || loc->end != ts->end ||
	    loc->generation != ts->header.generation)
		return relocate(ts);

	int cmp = cmp_key(ts, &loc->rec, loc->key.s, loc->key.len);
	if (loc->exact && cmp == 0)
		return 0;
	if (cmp > 0 || (cmp == 0 && loc->rec.offset != TS_DUMMY_OFFSET))
		return relocate(ts);

	/* key sorts after the current record: try the next one */
	r = twoskip_read_skipdelete(ts, loc->fwd[0], &next);
	if (r)
		return r;
	if (next.offset) {
		cmp = cmp_key(ts, &next, loc->key.s, loc->key.len);
		if (cmp < 0)
			return relocate(ts);
	}
	for (unsigned i = 0; i < loc->rec.level; i++)
		loc->back[i] = loc->rec.offset;
	if (!next.offset || cmp > 0) {
		/* in the gap: rec stays the predecessor */
		loc->exact = false;
		return 0;
	}
	loc->exact = true;
	loc->rec = next;
	set_forward(ts);
	return twoskip_check_tail(ts, &loc->rec);
}

/* Moves loc to the record after it (loc->exact false at the end). */
static int advance_loc(struct twoskip *ts)
{
	struct ts_loc *loc = &ts->loc;
	int r;

	if (loc->end != ts->end || loc->generation != ts->header.generation) {
		r = relocate(ts);
		if (r)
			return r;
	}
	for (unsigned i = 0; i < loc->rec.level; i++)
		loc->back[i] = loc->rec.offset;
	r = twoskip_read_skipdelete(ts, loc->fwd[0], &loc->rec);
	if (r)
		return r;
	if (!loc->rec.offset) {
		buf_reset(&loc->key);
		return relocate(ts);
	}
	set_forward(ts);
	buf_set(&loc->key, TS_KEY(ts, &loc->rec), loc->rec.keylen);
	loc->exact = true;
	return twoskip_check_tail(ts, &loc->rec);
}

/* ---- writes (inside a write transaction) ---- */

/* Sets DIRTY (synced) before the first byte of a transaction is written. */
static int append_txn(struct twoskip *ts, struct ts_record *rec,
		      const char *key, const char *val, unsigned flags)
{
	if (!(ts->header.flags & TS_DIRTY)) {
		ts->header.flags |= TS_DIRTY;
		int r = twoskip_write_header(ts);
		if (r)
			return r;
	}
	if (flags & TS_APPEND_STAGED)
		return twoskip_append_staged(ts, rec, key, val, flags);
	ts->txn_compact = false;
	return twoskip_append_ex(ts, rec, key, val, flags);
}

/*
 * Points the predecessors at every level below maxlevel at loc->fwd[],
 * one head rewrite per distinct predecessor, then re-reads newoffset as the
 * current record.
 */
static int stitch(struct twoskip *ts, unsigned maxlevel, uint64_t newoffset)
{
	struct ts_loc *loc = &ts->loc;
	struct ts_record old;
	unsigned level = 0;
	int r;

	while (level < maxlevel) {
		r = twoskip_read_record(ts, loc->back[level], &old);
		if (r)
			return r;
		if (old.level <= level)
			return twoskip_seterr(ts, CYRUSDB_IOERROR,
					      "twoskip broken linkage at offset "
					      "%08llX in '%s'",
					      (unsigned long long)old.offset,
					      ts->fname);
		unsigned top = old.level < maxlevel ? old.level : maxlevel;
		for (unsigned i = level; i < top; i++)
			twoskip_setloc(ts, &old, i, loc->fwd[i]);
		r = twoskip_rewrite_head(ts, &old);
		if (r)
			return r;
		level = old.level;
	}
	r = twoskip_read_record(ts, newoffset, &loc->rec);
	if (r)
		return r;
	set_forward(ts);
	return 0;
}

static int store_here(struct twoskip *ts, const char *val, size_t vallen)
{
	struct ts_loc *loc = &ts->loc;
	struct ts_record rec;
	unsigned level = 0;

	if (loc->exact) {
		level = loc->rec.level;
		ts->header.num_records--;
	}
	memset(&rec, 0, sizeof(rec));
	rec.type = TS_RECORD;
	rec.level = random_level(ts);
	rec.keylen = loc->key.len;
	rec.vallen = vallen;
	for (unsigned i = 0; i < rec.level; i++)
		rec.next[i + 1] = loc->fwd[i];
	if (rec.level > level)
		level = rec.level;

	int r = append_txn(ts, &rec, loc->key.s, val, 0);
	if (r)
		return r;
	for (unsigned i = 0; i < rec.level; i++)
		loc->fwd[i] = rec.offset;
	r = stitch(ts, level, rec.offset);
	if (r)
		return r;
	ts->header.num_records++;
	loc->exact = true;
	loc->end = ts->end;
	return 0;
}

static int delete_here(struct twoskip *ts)
{
	struct ts_loc *loc = &ts->loc;
	struct ts_record rec, next;

	if (!loc->exact)
		return CYRUSDB_NOTFOUND;
	ts->header.num_records--;
	int r = twoskip_read_skipdelete(ts, loc->fwd[0], &next);
	if (r)
		return r;
	memset(&rec, 0, sizeof(rec));
	rec.type = TS_DELETE;
	rec.next[0] = next.offset;
	r = append_txn(ts, &rec, NULL, NULL, 0);
	if (r)
		return r;
	loc->fwd[0] = rec.offset;
	/* every level of the old record now skips it */
	r = stitch(ts, loc->rec.level, loc->back[0]);
	if (r)
		return r;
	loc->exact = false;
	loc->end = ts->end;
	return 0;
}

/* ---- sequential appends ---- */

/*
 * Sets level `level` of the record at offset p, which precedes the new
 * record x at that level and at levels up to top - 1 as well (one head
 * rewrite for all of them).
 */
static int seq_link(struct twoskip *ts, uint64_t p, unsigned level,
		    unsigned top, uint64_t x)
{
	if (p >= ts->seq.start) {
		/* Ours, fresh: slot 1 is level 0 (setloc's choice with both
		 * slots empty), slot l + 1 level l. */
		for (unsigned l = level; l < top; l++)
			twoskip_put_next(ts, p, l + 1, x);
		/* Its highest level done: nothing will change it now. */
		if ((unsigned char)twoskip_wptr(ts, p)[1] == top)
			twoskip_seal_head(ts, p);
		return 0;
	}
	struct ts_record rec;
	int r = twoskip_read_record(ts, p, &rec);
	if (r)
		return r;
	if (rec.level < top)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "twoskip broken linkage at offset "
				      "%08llX in '%s'", (unsigned long long)p,
				      ts->fname);
	for (unsigned l = level; l < top; l++)
		twoskip_setloc(ts, &rec, l, x);
	return twoskip_rewrite_head(ts, &rec);
}

/*
 * Appends key after the last record: the record is written once, its
 * predecessors (pend) get their pointers in place. Needs seq mode on and
 * key sorting after every key in the file.
 */
static int seq_append(struct twoskip *ts, const char *key, size_t keylen,
		      const char *val, size_t vallen, const uint32_t *crc_tail)
{
	struct ts_record rec;
	memset(&rec, 0, sizeof(rec));
	rec.type = TS_RECORD;
	rec.level = random_level(ts);
	rec.keylen = keylen;
	rec.vallen = vallen;
	if (crc_tail)
		rec.crc_tail = *crc_tail;
	int r = append_txn(ts, &rec, key, val, TS_APPEND_STAGED |
			   TS_APPEND_NOHEADCRC |
			   (crc_tail ? TS_APPEND_TAILCRC : 0));
	if (r)
		return r;
	for (unsigned l = 0; l < rec.level;) {
		uint64_t p = ts->seq.pend[l];
		unsigned top = l + 1;
		while (top < rec.level && ts->seq.pend[top] == p)
			top++;
		r = seq_link(ts, p, l, top, rec.offset);
		if (r)
			return r;
		for (; l < top; l++)
			ts->seq.pend[l] = rec.offset;
	}
	ts->seq.lastkey = rec.keyoff;
	ts->seq.lastkeylen = keylen;
	ts->header.num_records++;
	return 0;
}

/* Seals the heads still open and writes what is staged; the file is a
 * plain skiplist again. */
int twoskip_seq_finish(struct twoskip *ts)
{
	if (!ts->seq.on)
		return 0;
	ts->seq.on = false;
	for (unsigned l = 0; l < TS_MAXLEVEL; l++) {
		uint64_t p = ts->seq.pend[l];
		if (p >= ts->seq.start && (l == 0 || p != ts->seq.pend[l - 1]))
			twoskip_seal_head(ts, p);
	}
	/* the next search starts from the DUMMY */
	ts->loc.end = 0;
	return twoskip_stage_flush(ts);
}

/* store (val != NULL) or delete (val == NULL), with Cyrus's force rules;
 * crc_tail (may be NULL) is the known tail CRC of key and val. */
static int write_rec(struct twoskip *ts, const char *key, size_t keylen,
		     const char *val, size_t vallen, bool force,
		     const uint32_t *crc_tail)
{
	if (ts->seq.on && val &&
	    ts->compar(key, keylen, twoskip_wptr(ts, ts->seq.lastkey),
		       ts->seq.lastkeylen) > 0)
		return seq_append(ts, key, keylen, val, vallen, crc_tail);
	int r = find_loc(ts, key, keylen);
	if (r)
		return r;
	if (ts->loc.exact) {
		if (!val)
			return delete_here(ts);
		if (!force)
			return twoskip_seterr(ts, CYRUSDB_EXISTS,
					      "key exists in '%s'", ts->fname);
		/* same value (by the comparator, as Cyrus): nothing to do */
		if (!ts->compar(val, vallen, TS_VAL(ts, &ts->loc.rec),
				ts->loc.rec.vallen))
			return 0;
		return store_here(ts, val, vallen);
	}
	if (!val) {
		if (!force)
			return twoskip_seterr(ts, CYRUSDB_NOTFOUND,
					      "key not found in '%s'",
					      ts->fname);
		return 0;
	}
	/* Past the last key (nothing follows at any level): seq mode. */
	for (unsigned l = 0; l < TS_MAXLEVEL; l++)
		if (ts->loc.fwd[l])
			return store_here(ts, val, vallen);
	ts->seq.on = true;
	ts->seq.start = ts->end;
	memcpy(ts->seq.pend, ts->loc.back, sizeof(ts->seq.pend));
	return seq_append(ts, key, keylen, val, vallen, crc_tail);
}

int twoskip_write(struct twoskip *ts, const char *key, size_t keylen,
		  const char *val, size_t vallen, bool force)
{
	return write_rec(ts, key, keylen, val, vallen, force, NULL);
}

/* Stores a copy of a record whose tail CRC (key, value, padding) is known
 * and verified; an existing key is an error. */
int twoskip_copy_record(struct twoskip *ts, const char *key, size_t keylen,
			const char *val, size_t vallen, uint32_t crc_tail)
{
	return write_rec(ts, key, keylen, val, vallen, false, &crc_tail);
}

/* Deletes the last key sorting before key (with keylen 0: the last key of
 * all); recovery2 replays a DELETE record with it. */
int twoskip_delete_before(struct twoskip *ts, const char *key, size_t keylen)
{
	struct ts_record rec, next;
	int r = twoskip_seq_finish(ts);
	if (!r)
		r = read_dummy(ts, &rec);
	if (r)
		return r;
	for (unsigned level = TS_MAXLEVEL; level > 0; level--) {
		for (;;) {
			uint64_t off = twoskip_getloc(ts, &rec, level - 1);
			r = twoskip_read_skipdelete(ts, off, &next);
			if (r)
				return r;
			if (!next.offset || (keylen && cmp_key(ts, &next, key,
							       keylen) >= 0))
				break;
			rec = next;
		}
	}
	if (rec.offset == TS_DUMMY_OFFSET)
		return 0;
	char *k = xmemdup(TS_KEY(ts, &rec), rec.keylen);
	r = twoskip_write(ts, k, rec.keylen, NULL, 0, true);
	free(k);
	return r;
}

/* ---- transactions ---- */

int twoskip_txn_begin(struct twoskip *ts, bool shared, const void *owner,
		      struct cyrusdb_txn **tid_r)
{
	int r = shared ? read_lock(ts) : write_lock(ts);
	if (r)
		return r;
	struct cyrusdb_txn *tid = xzmalloc(sizeof(*tid));
	tid->ts = ts;
	tid->shared = shared;
	ts->txn_compact = !shared && !ts->header.num_records &&
			  ts->header.current_size == TS_DUMMY_END;
	tid->owner = owner;
	ts->txn = tid;
	*tid_r = tid;
	return 0;
}

int twoskip_txn_abort(struct twoskip *ts, struct cyrusdb_txn *tid)
{
	int r = 0;
	free(tid);
	ts->txn = NULL;
	/* what seq mode appended is past current_size: recovery1 drops it */
	ts->seq.on = false;
	buf_reset(&ts->stage);
	if (ts->lock == TS_EXCLUSIVE) {
		/* recovery1 undoes the pointer changes and truncates */
		ts->end = ts->header.current_size;
		r = twoskip_recovery1(ts, NULL);
	}
	twoskip_loc_reset(ts);
	twoskip_unlock(ts);
	return r;
}

static bool wants_repack(const struct twoskip *ts)
{
	return !(ts->flags & CYRUSDB_NOCOMPACT) &&
	       ts->header.current_size > TS_MINREWRITE &&
	       ts->header.current_size > 2 * ts->header.repack_size;
}

/*
 * The commit protocol: COMMIT record, data synced, then the header with the
 * new current_size and DIRTY clear, synced again. Any failure aborts.
 */
int twoskip_txn_commit(struct twoskip *ts, struct cyrusdb_txn *tid,
		       bool may_repack)
{
	struct ts_record rec;
	int r = twoskip_seq_finish(ts);

	if (r || tid->shared || !(ts->header.flags & TS_DIRTY))
		goto done;
	uint64_t data_end = ts->end;
	memset(&rec, 0, sizeof(rec));
	rec.type = TS_COMMIT;
	rec.next[0] = ts->header.current_size;
	r = twoskip_append(ts, &rec, NULL, NULL);
	if (!r && ts->alloc > ts->end)
		r = twoskip_truncate(ts, ts->end);
	if (!r)
		r = twoskip_sync(ts);
	if (r)
		goto done;
	ts->header.current_size = ts->end;
	ts->header.flags &= ~TS_DIRTY;
	bool repack = may_repack && wants_repack(ts);
	/* Filled from empty in key order, the file is already what the
	 * repack would write: it only gets the header a repack gives. */
	if (repack && ts->txn_compact) {
		ts->header.repack_size = data_end;
		ts->header.generation++;
		repack = false;
	}
	r = twoskip_write_header(ts);
	if (r)
		goto done;
	/* Cyrus delays this to the end of the command; we do it while we
	 * still hold the lock. The commit stands whatever happens here. */
	if (repack) {
		twoskip_checkpoint(ts);
		ts->errmsg[0] = '\0';
	}
done:
	if (r) {
		char msg[sizeof(ts->errmsg)];
		memcpy(msg, ts->errmsg, sizeof(msg));
		twoskip_txn_abort(ts, tid);
		memcpy(ts->errmsg, msg, sizeof(msg));
		return r;
	}
	free(tid);
	ts->txn = NULL;
	twoskip_unlock(ts);
	return 0;
}

/* ---- open and close ---- */

/* Cyrus's opendb: open, create the file if empty, recover if unclean. */
int twoskip_engine_open(const char *fname, int flags, struct twoskip **ts_r)
{
	struct twoskip *ts;
	int r = twoskip_engine_new(fname, flags, flags & CYRUSDB_CREATE, &ts);
	if (r)
		goto out;
	r = twoskip_lock(ts, LOCK_SHARED);
	if (r)
		goto out;
	if (ts->size) {
		r = twoskip_read_header(ts);
		if (r || twoskip_is_clean(ts))
			goto out;
	}
	/* empty (new) or unclean: both need the write lock */
	twoskip_unlock(ts);
	r = twoskip_lock(ts, LOCK_EXCLUSIVE);
	if (r)
		goto out;
	if (!ts->size) {
		if (!ts->writable) {
			r = twoskip_seterr(ts, CYRUSDB_IOERROR,
					   "cannot initialise empty '%s': "
					   "opened read-only", fname);
			goto out;
		}
		r = twoskip_create_empty(ts);
		if (r)
			goto out;
	}
	r = twoskip_read_header(ts);
	if (!r && !twoskip_is_clean(ts)) {
		if (!ts->writable)
			r = twoskip_seterr(ts, CYRUSDB_IOERROR,
					   "'%s' needs recovery but is opened "
					   "read-only", fname);
		else
			r = twoskip_recovery(ts);
	}
out:
	if (ts)
		twoskip_unlock(ts);
	*ts_r = ts;
	return r;
}

static struct twoskip *find_open(const char *fname)
{
	struct stat st;
	bool have_st = stat(fname, &st) == 0;
	for (struct twoskip *ts = open_list; ts; ts = ts->next_open) {
		if (!strcmp(ts->fname, fname))
			return ts;
		if (have_st && st.st_dev == ts->dev && st.st_ino == ts->ino)
			return ts;
	}
	return NULL;
}

static int ts_open(const char *fname, int flags, struct cyrusdb **db_r,
		   char *errmsg_r)
{
	struct twoskip *ts = find_open(fname);
	if (ts) {
		/* one engine per file and process, as Cyrus keeps it */
		if (ts->txn) {
			snprintf(errmsg_r, 512, "'%s' is already open with a "
				 "transaction in this process", fname);
			return CYRUSDB_LOCKED;
		}
		ts->refcount++;
	} else {
		int r = twoskip_engine_open(fname, flags, &ts);
		if (r) {
			snprintf(errmsg_r, 512, "%s", ts->errmsg);
			twoskip_engine_free(ts);
			return r;
		}
		ts->refcount = 1;
		ts->next_open = open_list;
		open_list = ts;
	}
	struct ts_handle *h = xzmalloc(sizeof(*h));
	h->ts = ts;
	*db_r = &h->base;
	return CYRUSDB_OK;
}

static int ts_close(struct cyrusdb *db)
{
	struct ts_handle *h = (struct ts_handle *)db;
	struct twoskip *ts = h->ts;
	int r = 0;

	if (ts->txn && ts->txn->owner == h)
		r = twoskip_txn_abort(ts, ts->txn);
	if (--ts->refcount <= 0) {
		if (ts->txn)
			r = twoskip_txn_abort(ts, ts->txn);
		for (struct twoskip **p = &open_list; *p; p = &(*p)->next_open)
			if (*p == ts) {
				*p = ts->next_open;
				break;
			}
		twoskip_engine_free(ts);
	}
	free(h);
	return r;
}

/* ---- the vtable operations ---- */

/* Copies the engine's message of a failure into the handle. */
static int done(struct ts_handle *h, int r)
{
	if (r < 0) {
		if (h->ts->errmsg[0])
			snprintf(h->base.errmsg, sizeof(h->base.errmsg), "%s",
				 h->ts->errmsg);
		else
			snprintf(h->base.errmsg, sizeof(h->base.errmsg),
				 "'%s': %s", h->ts->fname,
				 cyrusdb_strerror(r));
	}
	return r;
}

/*
 * Resolves tid for an operation: NULL (a read alone uses the engine's open
 * transaction, as Cyrus's "hacky workaround" does), a new transaction, or
 * the current one. *locked_r says a read lock was taken for this call.
 */
static int use_txn(struct ts_handle *h, struct cyrusdb_txn ***tidp,
		   bool *locked_r)
{
	struct twoskip *ts = h->ts;
	struct cyrusdb_txn **tid = *tidp;
	*locked_r = false;
	ts->errmsg[0] = '\0';
	if (!tid && ts->txn)
		*tidp = tid = &ts->txn;
	if (!tid) {
		*locked_r = true;
		return read_lock(ts);
	}
	if (!*tid)
		return twoskip_txn_begin(ts, h->base.flags & CYRUSDB_SHARED,
					 h, tid);
	if (*tid != ts->txn)
		return twoskip_seterr(ts, CYRUSDB_INTERNAL,
				      "transaction does not belong to '%s'",
				      ts->fname);
	return 0;
}

static int myfetch(struct ts_handle *h, const char *key, size_t keylen,
		   const char **foundkey, size_t *foundkeylen,
		   const char **data, size_t *datalen,
		   struct cyrusdb_txn **tid, bool next)
{
	struct twoskip *ts = h->ts;
	bool locked;
	if (data)
		*data = NULL;
	if (datalen)
		*datalen = 0;
	if (!keylen && !next)
		return done(h, twoskip_seterr(ts, CYRUSDB_INTERNAL,
					      "empty key for '%s'", ts->fname));
	int r = use_txn(h, &tid, &locked);
	if (r)
		return done(h, r);
	r = find_loc(ts, key, keylen);
	if (!r && next)
		r = advance_loc(ts);
	if (!r) {
		if (foundkey)
			*foundkey = ts->loc.key.s;
		if (foundkeylen)
			*foundkeylen = ts->loc.key.len;
		if (ts->loc.exact) {
			if (data)
				*data = TS_VAL(ts, &ts->loc.rec);
			if (datalen)
				*datalen = ts->loc.rec.vallen;
		} else {
			r = CYRUSDB_NOTFOUND;
		}
	}
	if (locked)
		twoskip_unlock(ts);
	return done(h, r);
}

static int ts_fetch(struct cyrusdb *db, const char *key, size_t keylen,
		    const char **data, size_t *datalen,
		    struct cyrusdb_txn **tid)
{
	return myfetch((struct ts_handle *)db, key, keylen, NULL, NULL, data,
		       datalen, tid, false);
}

static int ts_fetchnext(struct cyrusdb *db, const char *key, size_t keylen,
			const char **foundkey, size_t *foundkeylen,
			const char **data, size_t *datalen,
			struct cyrusdb_txn **tid)
{
	return myfetch((struct ts_handle *)db, key, keylen, foundkey,
		       foundkeylen, data, datalen, tid, true);
}

/* Records copied out under the read lock, handed to callbacks unlocked. */
struct ts_batch {
	struct buf data;  /* keylen, vallen (size_t each), key, value... */
	size_t count;
	struct buf lastkey;
};

static void batch_add(struct ts_batch *b, const char *key, size_t keylen,
		      const char *val, size_t vallen)
{
	buf_add(&b->data, &keylen, sizeof(keylen));
	buf_add(&b->data, &vallen, sizeof(vallen));
	buf_add(&b->data, key, keylen);
	buf_add(&b->data, val, vallen);
	b->count++;
}

/* Calls cb for each batched record; returns the first non-zero result. */
static int batch_flush(struct ts_batch *b, cyrusdb_cb_fn *cb, void *rock)
{
	const char *p = b->data.s, *end = b->data.s + b->data.len;
	int r = 0;
	while (!r && p < end) {
		size_t keylen, vallen;
		memcpy(&keylen, p, sizeof(keylen));
		memcpy(&vallen, p + sizeof(keylen), sizeof(vallen));
		p += sizeof(keylen) + sizeof(vallen);
		r = cb(rock, p, keylen, p + keylen, vallen);
		p += keylen + vallen;
	}
	buf_reset(&b->data);
	b->count = 0;
	return r;
}

/*
 * In-order iteration. Inside a transaction the callback sees the records
 * in place. Without one, Cyrus drops the read lock around each callback so
 * that the callback may write (and a slow reader of the output does not
 * hold up the server); we copy up to FOREACH_LOCK_RELEASE records out under
 * the lock, release it, run their callbacks, then find the position again
 * by key: the same guarantees at a fraction of the locking cost. A
 * callback's own writes are seen from the next batch on.
 */
static int ts_foreach(struct cyrusdb *db, const char *prefix,
		      size_t prefixlen, cyrusdb_filter_fn *p,
		      cyrusdb_cb_fn *cb, void *rock, struct cyrusdb_txn **tid)
{
	struct ts_handle *h = (struct ts_handle *)db;
	struct twoskip *ts = h->ts;
	struct ts_batch batch = { BUF_INIT, 0, BUF_INIT };
	struct ts_scan scan = { 0, 0, false };
	int r, cb_r = 0, seen = 0;
	bool locked, finished = false;

	r = use_txn(h, &tid, &locked);
	if (r)
		return done(h, r);
	r = find_loc(ts, prefix, prefixlen);
	if (!r && !ts->loc.exact)
		r = advance_loc(ts);
	while (!r && !cb_r && !finished) {
		if (!ts->loc.exact) {
			finished = true;
		} else {
			struct ts_record *rec = &ts->loc.rec;
			const char *key = TS_KEY(ts, rec);
			const char *val = TS_VAL(ts, rec);
			if (prefixlen &&
			    (rec->keylen < prefixlen ||
			     ts->compar(key, prefixlen, prefix, prefixlen))) {
				finished = true;
			} else if (!p || p(rock, key, rec->keylen, val,
					   rec->vallen)) {
				if (tid)
					cb_r = cb(rock, key, rec->keylen, val,
						  rec->vallen);
				else
					batch_add(&batch, key, rec->keylen,
						  val, rec->vallen);
			}
			if (!tid && !finished)
				buf_set(&batch.lastkey, key, rec->keylen);
			twoskip_scan_note(ts, &scan, rec->offset);
			seen++;
		}
		if (!tid && (finished || seen >= FOREACH_LOCK_RELEASE)) {
			twoskip_unlock(ts);
			locked = false;
			cb_r = batch_flush(&batch, cb, rock);
			if (cb_r || finished)
				break;
			r = read_lock(ts);
			if (r)
				break;
			locked = true;
			seen = 0;
			r = find_loc(ts, batch.lastkey.s, batch.lastkey.len);
		}
		if (!r && !cb_r && !finished)
			r = advance_loc(ts);
	}
	buf_release(&batch.data);
	buf_release(&batch.lastkey);
	if (locked)
		twoskip_unlock(ts);
	return r ? done(h, r) : cb_r;
}

/*
 * All writes. Like Cyrus, any failure (EXISTS and NOTFOUND included) aborts
 * the transaction and sets *tid to NULL.
 */
static int mystore(struct ts_handle *h, const char *key, size_t keylen,
		   const char *data, size_t datalen,
		   struct cyrusdb_txn **tid, bool force)
{
	struct twoskip *ts = h->ts;
	struct cyrusdb_txn *local = NULL;
	int r;

	ts->errmsg[0] = '\0';
	if ((h->base.flags & CYRUSDB_SHARED) || (tid && *tid && (*tid)->shared))
		return done(h, twoskip_seterr(ts, CYRUSDB_READONLY,
					      "'%s' is opened shared "
					      "(read-only)", ts->fname));
	if (!keylen)
		return done(h, twoskip_seterr(ts, CYRUSDB_INTERNAL,
					      "empty key for '%s'", ts->fname));
	if (!tid) {
		if (ts->txn)
			return done(h, twoskip_seterr(ts, CYRUSDB_LOCKED,
					"'%s' has a transaction in progress",
					ts->fname));
		tid = &local;
	}
	if (!*tid) {
		r = twoskip_txn_begin(ts, false, h, tid);
		if (r)
			return done(h, r);
	} else if (*tid != ts->txn) {
		return done(h, twoskip_seterr(ts, CYRUSDB_INTERNAL,
					      "transaction does not belong "
					      "to '%s'", ts->fname));
	}
	r = twoskip_write(ts, key, keylen, data, datalen, force);
	if (r) {
		char msg[sizeof(ts->errmsg)];
		memcpy(msg, ts->errmsg, sizeof(msg));
		int r2 = twoskip_txn_abort(ts, *tid);
		*tid = NULL;
		if (!r2)
			memcpy(ts->errmsg, msg, sizeof(msg));
		return done(h, r2 ? r2 : r);
	}
	if (local)
		r = twoskip_txn_commit(ts, local, true);
	return done(h, r);
}

static int ts_create(struct cyrusdb *db, const char *key, size_t keylen,
		     const char *data, size_t datalen,
		     struct cyrusdb_txn **tid)
{
	return mystore((struct ts_handle *)db, key, keylen, data ? data : "",
		       datalen, tid, false);
}

static int ts_store(struct cyrusdb *db, const char *key, size_t keylen,
		    const char *data, size_t datalen, struct cyrusdb_txn **tid)
{
	return mystore((struct ts_handle *)db, key, keylen, data ? data : "",
		       datalen, tid, true);
}

static int ts_delete(struct cyrusdb *db, const char *key, size_t keylen,
		     struct cyrusdb_txn **tid, bool force)
{
	return mystore((struct ts_handle *)db, key, keylen, NULL, 0, tid,
		       force);
}

static int check_tid(struct ts_handle *h, struct cyrusdb_txn *tid)
{
	h->ts->errmsg[0] = '\0';
	if (!tid || tid != h->ts->txn)
		return twoskip_seterr(h->ts, CYRUSDB_INTERNAL,
				      "transaction does not belong to '%s'",
				      h->ts->fname);
	return 0;
}

static int ts_commit(struct cyrusdb *db, struct cyrusdb_txn *tid)
{
	struct ts_handle *h = (struct ts_handle *)db;
	int r = check_tid(h, tid);
	if (!r)
		r = twoskip_txn_commit(h->ts, tid, true);
	return done(h, r);
}

static int ts_abort(struct cyrusdb *db, struct cyrusdb_txn *tid)
{
	struct ts_handle *h = (struct ts_handle *)db;
	int r = check_tid(h, tid);
	if (!r)
		r = twoskip_txn_abort(h->ts, tid);
	return done(h, r);
}

/* Runs fn under a read lock, or inside the open transaction if any. */
static int with_read_lock(struct ts_handle *h,
			  int (*fn)(struct twoskip *, FILE *, int), FILE *f,
			  int detail)
{
	struct twoskip *ts = h->ts;
	ts->errmsg[0] = '\0';
	if (ts->txn)
		return done(h, fn(ts, f, detail));
	int r = read_lock(ts);
	if (!r) {
		r = fn(ts, f, detail);
		twoskip_unlock(ts);
	}
	return done(h, r);
}

static int consistent_fn(struct twoskip *ts, FILE *f UNUSED, int d UNUSED)
{
	return twoskip_consistent_locked(ts);
}

static int ts_consistent(struct cyrusdb *db)
{
	return with_read_lock((struct ts_handle *)db, consistent_fn, NULL, 0);
}

static int ts_dump(struct cyrusdb *db, FILE *f, int detail)
{
	return with_read_lock((struct ts_handle *)db, twoskip_dump_locked, f,
			      detail);
}

static int ts_repack(struct cyrusdb *db)
{
	struct ts_handle *h = (struct ts_handle *)db;
	struct twoskip *ts = h->ts;
	ts->errmsg[0] = '\0';
	if (ts->txn)
		return done(h, twoskip_seterr(ts, CYRUSDB_LOCKED,
					      "cannot repack '%s' inside a "
					      "transaction", ts->fname));
	if (h->base.flags & CYRUSDB_SHARED)
		return done(h, twoskip_seterr(ts, CYRUSDB_READONLY,
					      "'%s' is opened shared "
					      "(read-only)", ts->fname));
	int r = write_lock(ts);
	if (r)
		return done(h, r);
	r = twoskip_checkpoint(ts);
	twoskip_unlock(ts);
	return done(h, r);
}

static int ts_compar(struct cyrusdb *db, const char *a, size_t alen,
		     const char *b, size_t blen)
{
	return ((struct ts_handle *)db)->ts->compar(a, alen, b, blen);
}

const struct cyrusdb_backend cyrusdb_twoskip = {
	.name = "twoskip",
	.open = ts_open,
	.close = ts_close,
	.fetch = ts_fetch,
	.fetchlock = ts_fetch,
	.fetchnext = ts_fetchnext,
	.foreach = ts_foreach,
	.create = ts_create,
	.store = ts_store,
	.delete = ts_delete,
	.commit = ts_commit,
	.abort = ts_abort,
	.consistent = ts_consistent,
	.repack = ts_repack,
	.dump = ts_dump,
	.compar = ts_compar,
};
