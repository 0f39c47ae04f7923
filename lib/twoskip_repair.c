/*
 * twoskip_repair.c: recovery after a crash or an abort, the consistency
 * check, repack (checkpoint) and the debug dump, as Cyrus 3.6.1 does them.
 */
#include "compat.h"
#include "twoskip-private.h"

#include <unistd.h>

#include "atomicfile.h"
#include "cyrusdb.h"
#include "xmalloc.h"

/* Both level-0 slots of rec: one at or past the logical end was written by
 * a transaction that never committed; it goes back to 0. */
static int reset_future_slots(struct twoskip *ts, struct ts_record *rec,
			      uint64_t *changed)
{
	bool dirty = false;
	for (int i = 0; i < 2; i++)
		if (rec->next[i] >= ts->end) {
			rec->next[i] = 0;
			dirty = true;
		}
	if (!dirty)
		return 0;
	(*changed)++;
	return twoskip_rewrite_head(ts, rec);
}

static int set_upper(struct twoskip *ts, uint64_t offset, unsigned slot,
		     uint64_t value, uint64_t *changed)
{
	struct ts_record fix;
	int r = twoskip_read_record(ts, offset, &fix);
	if (r)
		return r;
	if (fix.level < slot)
		return twoskip_seterr(ts, CYRUSDB_INTERNAL,
				      "twoskip broken linkage at offset "
				      "%08llX in '%s'",
				      (unsigned long long)offset, ts->fname);
	fix.next[slot] = value;
	(*changed)++;
	return twoskip_rewrite_head(ts, &fix);
}

/*
 * recovery1: the fast path. With the logical end at current_size, walk
 * level 0 (every pointer an unfinished transaction wrote is >= the end and
 * so ignored by the read rule), re-link the upper levels to the records
 * actually found, clear the uncommitted level-0 slots, count, truncate.
 * The order matters: DIRTY is on disk before the first head is touched,
 * the data is synced before the header that declares the file clean.
 */
int twoskip_recovery1(struct twoskip *ts, uint64_t *count_r)
{
	uint64_t prev[TS_MAXLEVEL + 1], next[TS_MAXLEVEL + 1];
	struct ts_record rec, prevrec;
	uint64_t num = 0, changed = 0;
	int r;

	if (twoskip_is_clean(ts))
		return 0;
	if (ts->header.current_size <= TS_HEADER_SIZE ||
	    ts->header.current_size > ts->size)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "twoskip '%s': current_size %llu outside "
				      "the file (%llu bytes)", ts->fname,
				      (unsigned long long)ts->header.current_size,
				      (unsigned long long)ts->size);
	ts->end = ts->header.current_size;
	if (!(ts->header.flags & TS_DIRTY)) {
		ts->header.flags |= TS_DIRTY;
		r = twoskip_write_header(ts);
		if (r)
			return r;
	}

	r = twoskip_read_record(ts, TS_DUMMY_OFFSET, &prevrec);
	if (r)
		return r;
	if (prevrec.type != TS_DUMMY || prevrec.level != TS_MAXLEVEL)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "no twoskip DUMMY record in '%s'",
				      ts->fname);
	for (unsigned i = 2; i <= TS_MAXLEVEL; i++) {
		prev[i] = prevrec.offset;
		next[i] = prevrec.next[i];
	}
	r = reset_future_slots(ts, &prevrec, &changed);
	if (r)
		return r;

	uint64_t offset = twoskip_getloc(ts, &prevrec, 0);
	while (offset) {
		r = twoskip_read_record(ts, offset, &rec);
		if (r)
			return r;
		if (rec.type == TS_DELETE) {
			offset = rec.next[0];
			continue;
		}
		if (rec.type != TS_RECORD ||
		    ts->compar(TS_KEY(ts, &rec), rec.keylen,
			       TS_KEY(ts, &prevrec), prevrec.keylen) <= 0)
			return twoskip_seterr(ts, CYRUSDB_INTERNAL,
					      "twoskip out of order at offset "
					      "%08llX in '%s' (previous %08llX)",
					      (unsigned long long)rec.offset,
					      ts->fname,
					      (unsigned long long)prevrec.offset);
		for (unsigned i = 2; i <= rec.level; i++) {
			if (next[i] != rec.offset) {
				r = set_upper(ts, prev[i], i, rec.offset,
					      &changed);
				if (r)
					return r;
			}
			prev[i] = rec.offset;
			next[i] = rec.next[i];
		}
		r = reset_future_slots(ts, &rec, &changed);
		if (r)
			return r;
		num++;
		offset = twoskip_getloc(ts, &rec, 0);
		prevrec = rec;
	}
	for (unsigned i = 2; i <= TS_MAXLEVEL; i++) {
		if (next[i]) {
			r = set_upper(ts, prev[i], i, 0, &changed);
			if (r)
				return r;
		}
	}

	r = twoskip_truncate(ts, ts->header.current_size);
	if (!r)
		r = twoskip_sync(ts);
	if (r)
		return r;
	ts->header.flags &= ~TS_DIRTY;
	ts->header.num_records = num;
	r = twoskip_write_header(ts);
	if (!r && count_r)
		*count_r = changed;
	return r;
}

static char *new_name(const struct twoskip *ts)
{
	return xasprintf("%s.NEW", ts->fname);
}

/*
 * Renames nts's file over ts's and makes ts use it. nts must hold no
 * transaction; it is locked exclusively first, so the new file is never
 * visible unlocked to another process.
 */
static int replace_with(struct twoskip *ts, struct twoskip *nts)
{
	int r = twoskip_lock(nts, LOCK_EXCLUSIVE);
	if (!r)
		r = twoskip_read_header(nts);
	if (r) {
		snprintf(ts->errmsg, sizeof(ts->errmsg), "%s", nts->errmsg);
		return r;
	}
	if (rename(nts->fname, ts->fname) < 0)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "cannot rename '%s' to '%s': %s",
				      nts->fname, ts->fname, strerror(errno));
	if (!cyrusdb_getenv()->nosync)
		fsync_parent_dir(ts->fname);
	twoskip_adopt(ts, nts);
	return 0;
}

/* Replays the records of one committed transaction into nts. */
static int copy_commit(struct twoskip *ts, struct twoskip *nts,
		       const struct ts_record *commit)
{
	struct cyrusdb_txn *tid = NULL;
	struct ts_record rec, target;
	int r = 0;

	for (uint64_t off = commit->next[0]; off < commit->offset;
	     off += rec.len) {
		if (twoskip_is_blank(ts, off)) {
			rec.len = 8;
			continue;
		}
		r = twoskip_read_record(ts, off, &rec);
		if (r)
			break;
		if (!tid) {
			r = twoskip_txn_begin(nts, false, NULL, &tid);
			if (r)
				return r;
		}
		if (rec.type == TS_RECORD) {
			r = twoskip_write(nts, TS_KEY(ts, &rec), rec.keylen,
					  TS_VAL(ts, &rec), rec.vallen, true);
		} else if (rec.type == TS_DELETE) {
			/*
			 * The DELETE points at the record that followed the
			 * deleted key, so the deleted key is the last one
			 * before that record in the replayed state. (Cyrus
			 * 3.6.1 deletes the pointed-to record instead, losing
			 * a live key; we do not copy that.)
			 */
			r = twoskip_read_record(ts, rec.next[0], &target);
			if (!r)
				r = twoskip_delete_before(nts,
					target.offset ? TS_KEY(ts, &target) : "",
					target.keylen);
		} else {
			r = twoskip_seterr(ts, CYRUSDB_IOERROR,
					   "unexpected twoskip record type "
					   "0x%02X at offset %08llX in '%s'",
					   rec.type, (unsigned long long)off,
					   ts->fname);
		}
		if (r)
			break;
	}
	if (r) {
		if (tid)
			twoskip_txn_abort(nts, tid);
		return r;
	}
	return tid ? twoskip_txn_commit(nts, tid, false) : 0;
}

/*
 * recovery2: the structure cannot be trusted. Scan the file from the start
 * and replay every transaction that has a COMMIT record and no unreadable
 * record into <file>.NEW, then rename it over the file. Like Cyrus, the
 * new file keeps generation 1 and an empty result is a failure.
 */
static int recovery2(struct twoskip *ts)
{
	char *newfname = new_name(ts);
	struct twoskip *nts = NULL;
	struct ts_record rec;
	bool dirty = false;
	int r;

	unlink(newfname);
	r = twoskip_engine_open(newfname, ts->flags | CYRUSDB_CREATE |
				CYRUSDB_NOCOMPACT, &nts);
	if (r) {
		snprintf(ts->errmsg, sizeof(ts->errmsg), "%s", nts->errmsg);
		goto out;
	}
	for (uint64_t off = TS_DUMMY_OFFSET; off < ts->size; off += rec.len) {
		if (twoskip_is_blank(ts, off)) {
			rec.len = 8;
			continue;
		}
		if (twoskip_read_record(ts, off, &rec)) {
			/* look on for a COMMIT; this transaction is lost */
			dirty = true;
			rec.len = 8;
			continue;
		}
		if (rec.type == TS_COMMIT) {
			/* a transaction that fails to replay is skipped */
			if (!dirty)
				copy_commit(ts, nts, &rec);
			dirty = false;
		}
	}
	if (!nts->header.num_records) {
		r = twoskip_seterr(ts, CYRUSDB_NOTFOUND,
				   "twoskip recovery of '%s' found no records",
				   ts->fname);
		goto out;
	}
	r = replace_with(ts, nts);
	if (!r)
		nts = NULL;
out:
	if (nts) {
		unlink(newfname);
		twoskip_engine_free(nts);
	}
	free(newfname);
	return r;
}

/* Called with the write lock held and the header just read. */
int twoskip_recovery(struct twoskip *ts)
{
	if (twoskip_is_clean(ts))
		return 0;
	int r = twoskip_recovery1(ts, NULL);
	if (r)
		r = recovery2(ts);
	twoskip_loc_reset(ts);
	return r;
}

/* Cyrus's consistency check: order, every level's chain, the count;
 * with tails, also every record's tail CRC (Cyrus checks those on reads). */
static int consistent(struct twoskip *ts, bool tails)
{
	uint64_t fwd[TS_MAXLEVEL];
	struct ts_record rec, prevrec;
	struct ts_scan scan = { 0, 0, false };
	uint64_t num = 0;

	int r = twoskip_seq_finish(ts);
	if (!r)
		r = twoskip_read_record(ts, TS_DUMMY_OFFSET, &prevrec);
	if (r)
		return r;
	if (prevrec.type != TS_DUMMY || prevrec.level != TS_MAXLEVEL)
		return twoskip_seterr(ts, CYRUSDB_INTERNAL,
				      "no twoskip DUMMY record in '%s'",
				      ts->fname);
	for (unsigned i = 0; i < TS_MAXLEVEL; i++)
		fwd[i] = twoskip_getloc(ts, &prevrec, i);

	while (fwd[0]) {
		r = twoskip_read_record(ts, fwd[0], &rec);
		if (r)
			return r;
		if (rec.type == TS_DELETE) {
			fwd[0] = rec.next[0];
			continue;
		}
		if (rec.type != TS_RECORD ||
		    ts->compar(TS_KEY(ts, &rec), rec.keylen,
			       TS_KEY(ts, &prevrec), prevrec.keylen) <= 0)
			return twoskip_seterr(ts, CYRUSDB_INTERNAL,
					      "twoskip out of order at offset "
					      "%08llX in '%s' (previous %08llX)",
					      (unsigned long long)rec.offset,
					      ts->fname,
					      (unsigned long long)prevrec.offset);
		for (unsigned i = 0; i < rec.level; i++) {
			if (fwd[i] != rec.offset)
				return twoskip_seterr(ts, CYRUSDB_INTERNAL,
					"twoskip broken linkage in '%s': "
					"record %08llX level %u, expected "
					"%08llX", ts->fname,
					(unsigned long long)rec.offset, i,
					(unsigned long long)fwd[i]);
			fwd[i] = twoskip_getloc(ts, &rec, i);
		}
		r = tails ? twoskip_check_tail(ts, &rec) : 0;
		if (r)
			return r;
		twoskip_scan_note(ts, &scan, rec.offset);
		num++;
		prevrec = rec;
	}
	for (unsigned i = 0; i < TS_MAXLEVEL; i++)
		if (fwd[i])
			return twoskip_seterr(ts, CYRUSDB_INTERNAL,
					      "twoskip broken tail in '%s': "
					      "level %u points to %08llX",
					      ts->fname, i,
					      (unsigned long long)fwd[i]);
	if (num != ts->header.num_records)
		return twoskip_seterr(ts, CYRUSDB_INTERNAL,
				      "twoskip record count mismatch in '%s': "
				      "%llu found, header says %llu",
				      ts->fname, (unsigned long long)num,
				      (unsigned long long)ts->header.num_records);
	return 0;
}

int twoskip_consistent_locked(struct twoskip *ts)
{
	return consistent(ts, true);
}

/* The structure only: what a copy of checked records needs checking. */
int twoskip_consistent_links(struct twoskip *ts)
{
	return consistent(ts, false);
}

/*
 * Copies every live record, in order, into nts inside tid. The caller has
 * just checked ts (every head and tail CRC) under the lock it still holds,
 * so the records are not checked again, and each copy keeps the tail CRC
 * of its original (the same key, value and padding bytes).
 */
static int copy_all(struct twoskip *ts, struct twoskip *nts)
{
	struct ts_record rec;
	int r = twoskip_read_record(ts, TS_DUMMY_OFFSET, &rec);
	for (uint64_t off = r ? 0 : twoskip_getloc(ts, &rec, 0); off;
	     off = twoskip_getloc(ts, &rec, 0)) {
		r = twoskip_read_skipdelete(ts, off, &rec);
		if (r || !rec.offset)
			break;
		r = twoskip_copy_record(nts, TS_KEY(ts, &rec), rec.keylen,
					TS_VAL(ts, &rec), rec.vallen,
					rec.crc_tail);
		if (r) {
			if (!ts->errmsg[0])
				snprintf(ts->errmsg, sizeof(ts->errmsg), "%s",
					 nts->errmsg);
			break;
		}
	}
	return r;
}

/*
 * Repack: copy into <file>.NEW, repack_size = its end before the final
 * COMMIT, generation + 1, rename over the file. Called with the write lock
 * held and no open transaction; ts keeps the lock (on the new file).
 */
int twoskip_checkpoint(struct twoskip *ts)
{
	char *newfname = new_name(ts);
	struct twoskip *nts = NULL;
	struct cyrusdb_txn *tid = NULL;

	int r = twoskip_consistent_locked(ts);
	if (r)
		goto out;
	unlink(newfname);
	r = twoskip_engine_open(newfname, ts->flags | CYRUSDB_CREATE, &nts);
	if (r) {
		snprintf(ts->errmsg, sizeof(ts->errmsg), "%s", nts->errmsg);
		goto out;
	}
	r = twoskip_txn_begin(nts, false, NULL, &tid);
	if (!r)
		r = copy_all(ts, nts);
	/* The old file is read; its pages need not stay with us. */
	twoskip_drop_pages(ts, 0, ts->size);
	if (!r) {
		/* Like Cyrus: the copy's structure (its data are copies of
		 * what was just checked, tail CRCs included). */
		r = twoskip_consistent_links(nts);
		if (r)
			snprintf(ts->errmsg, sizeof(ts->errmsg), "%s",
				 nts->errmsg);
	}
	if (r)
		goto out;
	nts->header.repack_size = nts->end;
	nts->header.generation = ts->header.generation + 1;
	/* as in Cyrus, an empty copy commits nothing and keeps the header
	 * of a new file (generation 1) */
	r = twoskip_txn_commit(nts, tid, false);
	tid = NULL;
	if (r) {
		snprintf(ts->errmsg, sizeof(ts->errmsg), "%s", nts->errmsg);
		goto out;
	}
	r = replace_with(ts, nts);
	if (!r)
		nts = NULL;
out:
	if (nts) {
		if (tid)
			twoskip_txn_abort(nts, tid);
		unlink(newfname);
		twoskip_engine_free(nts);
	}
	free(newfname);
	return r;
}

static void dump_text(FILE *f, const char *p, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		fputc(p[i] ? p[i] : '-', f);
}

/*
 * Cyrus's dump format: detail 1 lists the records, 3 adds the values.
 * Walks the committed part of the file.
 */
int twoskip_dump_locked(struct twoskip *ts, FILE *f, int detail)
{
	struct ts_record rec;
	int r = twoskip_seq_finish(ts);
	if (r)
		return r;

	fprintf(f, "HEADER: v=%lu fl=%lu num=%llu sz=(%08llX/%08llX)\n",
		(unsigned long)ts->header.version,
		(unsigned long)ts->header.flags,
		(unsigned long long)ts->header.num_records,
		(unsigned long long)ts->header.current_size,
		(unsigned long long)ts->header.repack_size);
	for (uint64_t off = TS_DUMMY_OFFSET; off < ts->header.current_size;
	     off += rec.len) {
		fprintf(f, "%08llX ", (unsigned long long)off);
		if (twoskip_is_blank(ts, off)) {
			fprintf(f, "BLANK\n");
			rec.len = 8;
			continue;
		}
		r = twoskip_read_record(ts, off, &rec);
		if (r) {
			fprintf(f, "ERROR\n");
			break;
		}
		if (twoskip_check_tail(ts, &rec))
			fprintf(f, "ERROR [TAILCRC %08lX] ",
				(unsigned long)rec.crc_tail);
		switch (rec.type) {
		case TS_DELETE:
			fprintf(f, "DELETE ptr=%08llX\n",
				(unsigned long long)rec.next[0]);
			break;
		case TS_COMMIT:
			fprintf(f, "COMMIT start=%08llX\n",
				(unsigned long long)rec.next[0]);
			break;
		case TS_RECORD:
		case TS_DUMMY:
			fprintf(f, "%s kl=%llu dl=%llu lvl=%d (",
				rec.type == TS_RECORD ? "RECORD" : "DUMMY",
				(unsigned long long)rec.keylen,
				(unsigned long long)rec.vallen, rec.level);
			dump_text(f, TS_KEY(ts, &rec), rec.keylen);
			fprintf(f, ")\n\t");
			for (unsigned i = 0; i <= rec.level; i++) {
				fprintf(f, "%08llX ",
					(unsigned long long)rec.next[i]);
				if (!(i % 8))
					fprintf(f, "\n\t");
			}
			fprintf(f, "\n");
			if (detail > 2) {
				fprintf(f, "\tv=(");
				dump_text(f, TS_VAL(ts, &rec), rec.vallen);
				fprintf(f, ")\n");
			}
			break;
		}
	}
	return r;
}
