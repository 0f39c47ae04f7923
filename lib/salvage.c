/*
 * salvage.c: replay of what the scanners found, the report, and the
 * writing of the salvaged database (see salvage.h).
 */
#include "compat.h"

#include "salvage.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "buf.h"
#include "cyrusdb.h"
#include "error.h"
#include "salvage-private.h"
#include "xmalloc.h"

/* ---- what the scanners call ---- */

static char *memdup0(const char *p, size_t n)
{
	char *s = xmalloc(n + 1);
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

struct salvage_region *salvage_scan_region(struct salvage_scan *s,
					   enum salvage_region_kind kind,
					   uint64_t start, uint64_t end)
{
	struct salvage_report *rep = s->rep;
	if (rep->nregions == s->regions_alloc) {
		s->regions_alloc = s->regions_alloc ? 2 * s->regions_alloc : 8;
		rep->regions = xrealloc(rep->regions, s->regions_alloc *
						    sizeof(*rep->regions));
	}
	struct salvage_region *g = &rep->regions[rep->nregions++];
	memset(g, 0, sizeof(*g));
	g->kind = kind;
	g->start = start;
	g->end = end;
	return g;
}

static void close_damage(struct salvage_scan *s)
{
	if (!s->in_damage)
		return;
	s->in_damage = false;
	struct salvage_region *g = salvage_scan_region(
		s, SALVAGE_DAMAGED, s->damage_start, s->damage_end);
	/* The key of the last readable record before it. */
	for (size_t i = s->nrecs; i-- > 0;) {
		if (s->recs[i].type == SALVAGE_REC_STORE) {
			g->key_before = memdup0(s->recs[i].key,
						 s->recs[i].keylen);
			g->key_before_len = s->recs[i].keylen;
			break;
		}
	}
	s->rep->damaged_bytes += s->damage_end - s->damage_start;
}

void salvage_scan_damaged(struct salvage_scan *s, uint64_t offset,
			  uint64_t len)
{
	if (s->in_damage && s->damage_end == offset) {
		s->damage_end += len;
		return;
	}
	close_damage(s);
	s->in_damage = true;
	s->damage_start = offset;
	s->damage_end = offset + len;
}

void salvage_scan_good(struct salvage_scan *s)
{
	close_damage(s);
}

void salvage_scan_add(struct salvage_scan *s, char type, uint64_t offset,
		      uint64_t target, const char *key, size_t keylen,
		      const char *val, size_t vallen)
{
	close_damage(s);
	if (type == SALVAGE_REC_STORE) {
		struct salvage_report *rep = s->rep;
		for (; s->regions_need_after < rep->nregions;
		     s->regions_need_after++) {
			struct salvage_region *g =
				&rep->regions[s->regions_need_after];
			g->key_after = memdup0(key, keylen);
			g->key_after_len = keylen;
		}
	}
	if (s->nrecs == s->alloc) {
		s->alloc = s->alloc ? 2 * s->alloc : 1024;
		s->recs = xrealloc(s->recs, s->alloc * sizeof(*s->recs));
	}
	struct salvage_rec *r = &s->recs[s->nrecs++];
	r->offset = offset;
	r->target = target;
	r->key = key;
	r->keylen = keylen;
	r->val = val;
	r->vallen = vallen;
	r->keyid = 0;
	r->type = type;
}

/* ---- replay ---- */

typedef int compar_fn(const char *a, size_t alen, const char *b,
		      size_t blen);

static int sort_cmp(const void *a, const void *b, void *rock)
{
	const struct salvage_scan *s = ((void **)rock)[0];
	compar_fn *cmp = (compar_fn *)((void **)rock)[1];
	const struct salvage_rec *x = &s->recs[*(const uint32_t *)a];
	const struct salvage_rec *y = &s->recs[*(const uint32_t *)b];
	int c = cmp(x->key, x->keylen, y->key, y->keylen);
	if (c)
		return c;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* A Fenwick tree over key ids: which keys are live, and the nearest live
 * key before a given one, in O(log n). */
struct live_set {
	int32_t *tree; /* 1-based */
	uint32_t n, top;
};

static void live_add(struct live_set *l, uint32_t id, int32_t d)
{
	for (uint32_t i = id + 1; i <= l->n; i += i & -i)
		l->tree[i] += d;
}

static int32_t live_prefix(const struct live_set *l, uint32_t id)
{
	int32_t sum = 0;
	for (uint32_t i = id; i > 0; i -= i & -i)
		sum += l->tree[i];
	return sum;
}

/* The id of the k-th live key (k >= 1). */
static uint32_t live_kth(const struct live_set *l, int32_t k)
{
	uint32_t pos = 0;
	for (uint32_t step = l->top; step; step >>= 1) {
		if (pos + step <= l->n && l->tree[pos + step] < k) {
			pos += step;
			k -= l->tree[pos];
		}
	}
	return pos; /* 0-based id */
}

/* Offset -> index in recs (recs are in file order). */
static bool find_rec(const struct salvage_scan *s, uint64_t off, size_t *i_r)
{
	size_t lo = 0, hi = s->nrecs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->recs[mid].offset < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < s->nrecs && s->recs[lo].offset == off) {
		*i_r = lo;
		return true;
	}
	return false;
}

struct replay {
	uint32_t *order;   /* store records sorted by key: first of each id */
	uint32_t nkeys;
	uint32_t *first;   /* keyid -> index of one record (for the key) */
	uint32_t *live;    /* keyid -> index of the live record + 1, or 0 */
};

static void replay_release(struct replay *rp)
{
	free(rp->order);
	free(rp->first);
	free(rp->live);
}

/* Drops what lies beyond the committed end; one region says so. */
static void cut_uncommitted(struct salvage_scan *s)
{
	struct salvage_report *rep = s->rep;
	uint64_t end = rep->committed_end;
	size_t keep = s->nrecs;
	while (keep > 0 && s->recs[keep - 1].offset >= end)
		keep--;
	/* Damaged regions past the end are part of the uncommitted tail. */
	size_t nr = 0;
	uint64_t damaged_dropped = 0;
	for (size_t i = 0; i < rep->nregions; i++) {
		struct salvage_region *g = &rep->regions[i];
		if (g->kind == SALVAGE_DAMAGED && g->start >= end) {
			damaged_dropped += g->end - g->start;
			free(g->key_before);
			free(g->key_after);
			continue;
		}
		if (g->kind == SALVAGE_DAMAGED && g->end > end) {
			damaged_dropped += g->end - end;
			g->end = end;
		}
		rep->regions[nr++] = *g;
	}
	rep->nregions = nr;
	rep->damaged_bytes -= damaged_dropped;
	s->regions_need_after = nr;
	uint64_t tail_end = s->size;
	for (size_t i = 0; i < rep->nregions; i++)
		if (rep->regions[i].kind == SALVAGE_FOREIGN &&
		    rep->regions[i].start < tail_end)
			tail_end = rep->regions[i].start;
	if (end < tail_end) {
		struct salvage_region *g = salvage_scan_region(
			s, SALVAGE_UNCOMMITTED, end, tail_end);
		g->records = s->nrecs - keep;
	}
	s->nrecs = keep;
}

static int replay(struct salvage_scan *s, compar_fn *cmp, struct replay *rp)
{
	struct salvage_report *rep = s->rep;
	size_t nstores = 0;

	for (size_t i = 0; i < s->nrecs; i++)
		nstores += s->recs[i].type == SALVAGE_REC_STORE;
	if (nstores > UINT32_MAX - 1)
		return -1;
	rp->order = xmalloc((nstores + 1) * sizeof(*rp->order));
	for (size_t i = 0, j = 0; i < s->nrecs; i++)
		if (s->recs[i].type == SALVAGE_REC_STORE)
			rp->order[j++] = (uint32_t)i;
	void *rock[2] = { s, (void *)cmp };
	qsort_r(rp->order, nstores, sizeof(*rp->order), sort_cmp, rock);

	/* Key ids in sort order. */
	rp->first = xmalloc((nstores + 1) * sizeof(*rp->first));
	uint32_t nkeys = 0;
	for (size_t j = 0; j < nstores; j++) {
		struct salvage_rec *r = &s->recs[rp->order[j]];
		if (j > 0) {
			const struct salvage_rec *p =
				&s->recs[rp->first[nkeys - 1]];
			if (cmp(p->key, p->keylen, r->key, r->keylen) == 0) {
				r->keyid = nkeys - 1;
				continue;
			}
		}
		rp->first[nkeys] = rp->order[j];
		r->keyid = nkeys++;
	}
	rp->nkeys = nkeys;
	rp->live = xcalloc(nkeys + 1, sizeof(*rp->live));

	struct live_set ls = { xcalloc(nkeys + 1, sizeof(int32_t)), nkeys, 1 };
	while (ls.top * 2 <= ls.n)
		ls.top *= 2;
	int32_t nlive = 0;

	for (size_t i = 0; i < s->nrecs; i++) {
		struct salvage_rec *r = &s->recs[i];
		if (r->type == SALVAGE_REC_STORE) {
			rep->versions++;
			if (!rp->live[r->keyid]) {
				live_add(&ls, r->keyid, 1);
				nlive++;
			}
			rp->live[r->keyid] = (uint32_t)i + 1;
			continue;
		}
		/* A delete: which key? */
		uint32_t victim = UINT32_MAX;
		size_t t;
		if (!s->deletes_by_successor) {
			if (find_rec(s, r->target, &t) &&
			    s->recs[t].type == SALVAGE_REC_STORE &&
			    rp->live[s->recs[t].keyid] == t + 1)
				victim = s->recs[t].keyid;
		} else if (r->target == 0) {
			if (nlive > 0)
				victim = live_kth(&ls, nlive);
		} else if (find_rec(s, r->target, &t) &&
			   s->recs[t].type == SALVAGE_REC_STORE &&
			   rp->live[s->recs[t].keyid] == t + 1) {
			int32_t before = live_prefix(&ls, s->recs[t].keyid);
			if (before > 0)
				victim = live_kth(&ls, before);
		}
		if (victim == UINT32_MAX) {
			rep->deletes_unresolved++;
			continue;
		}
		rep->deletes++;
		rp->live[victim] = 0;
		live_add(&ls, victim, -1);
		nlive--;
	}
	free(ls.tree);
	rep->keys = (uint64_t)nlive;
	return 0;
}

/* ---- reading ---- */

int salvage_read(const char *fname, const char *backend, bool mboxsort,
		 salvage_cb *cb, void *rock, struct salvage_report *rep,
		 struct error *err)
{
	struct salvage_scan s = { 0 };
	struct replay rp = { 0 };
	struct stat st;
	void *map = MAP_FAILED;
	compar_fn *cmp;
	int r = -1, fd = -1;

	memset(rep, 0, sizeof(*rep));
	if (!strcmp(backend, "twoskip")) {
		rep->backend = "twoskip";
		cmp = mboxsort ? cyrusdb_compar_mbox : cyrusdb_compar_raw;
	} else if (!strcmp(backend, "skiplist")) {
		rep->backend = "skiplist";
		cmp = mboxsort ? cyrusdb_compar_mbox : cyrusdb_compar_signed;
	} else {
		return error_set(err, ERR_USAGE, "cannot salvage a '%s' "
				 "database: only twoskip and skiplist",
				 backend);
	}

	fd = open(fname, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_sys(err, error_kind_from_errno(errno), errno,
				 "cannot open '%s'", fname);
	if (fstat(fd, &st) < 0) {
		error_sys(err, ERR_IO, errno, "cannot stat '%s'", fname);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		error_set(err, ERR_NOINPUT, "'%s' is not a regular file",
			  fname);
		goto out;
	}
	rep->file_size = (uint64_t)st.st_size;
	if (st.st_size == 0) {
		error_set(err, ERR_DATA, "'%s' is empty", fname);
		goto out;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		error_sys(err, ERR_IO, errno, "cannot map '%s'", fname);
		goto out;
	}
	madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
	s.base = map;
	s.size = (size_t)st.st_size;
	s.rep = rep;

	int sr = rep->backend[0] == 't' ? salvage_scan_twoskip(&s, err)
					: salvage_scan_skiplist(&s, err);
	if (sr < 0) {
		char msg[sizeof(err->msg)];
		snprintf(msg, sizeof(msg), "%s", err->msg);
		error_set(err, ERR_DATA, "cannot salvage '%s': %s", fname, msg);
		goto out;
	}
	close_damage(&s);
	cut_uncommitted(&s);
	if (replay(&s, cmp, &rp) < 0) {
		error_set(err, ERR_SOFTWARE, "'%s': too many records", fname);
		goto out;
	}
	for (uint32_t id = 0; cb && id < rp.nkeys; id++) {
		if (!rp.live[id])
			continue;
		const struct salvage_rec *x = &s.recs[rp.live[id] - 1];
		int cr = cb(rock, x->key, x->keylen, x->val, x->vallen);
		if (cr) {
			if (!err || err->kind == ERR_NONE)
				error_set(err, ERR_IO, "cannot salvage '%s': "
					  "writing failed (%d)", fname, cr);
			goto out;
		}
	}
	r = 0;
out:
	replay_release(&rp);
	free(s.recs);
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	if (fd >= 0)
		close(fd);
	return r;
}

/* ---- writing ---- */

struct writer {
	struct cyrusdb *db;
	struct cyrusdb_txn *tid;
	struct error *err;
	const char *tmp;
};

static int write_cb(void *rock, const char *key, size_t keylen,
		    const char *val, size_t vallen)
{
	struct writer *w = rock;
	int r = cyrusdb_store(w->db, key, keylen, val, vallen, &w->tid);
	if (r)
		error_set(w->err, ERR_IO, "cannot write '%s': %s", w->tmp,
			  cyrusdb_errmsg(w->db));
	return r;
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	if (!strcmp(a, b))
		return true;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 &&
	       sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Reopens the written file and checks it as a reader will see it. */
static int verify_written(const char *backend, const char *tmp, int flags,
			  uint64_t keys, struct error *err)
{
	struct cyrusdb *db = NULL;
	int r = cyrusdb_open(backend, tmp, flags, &db, err);
	if (r)
		return -1;
	r = cyrusdb_consistent(db);
	if (r)
		error_set(err, ERR_SOFTWARE, "salvaged copy '%s' is not "
			  "consistent: %s", tmp, cyrusdb_errmsg(db));
	cyrusdb_close(&db);
	(void)keys;
	return r ? -1 : 0;
}

int salvage_file(const char *fname, const char *backend, bool mboxsort,
		 const char *outfile, struct salvage_report *rep,
		 struct error *err)
{
	struct writer w = { .err = err };
	struct stat st;
	char *tmp = NULL;
	int flags = CYRUSDB_CREATE | CYRUSDB_NOCOMPACT |
		    (mboxsort ? CYRUSDB_MBOXSORT : 0);
	int r = -1;

	memset(rep, 0, sizeof(*rep));
	if (same_file(fname, outfile))
		return error_set(err, ERR_USAGE, "will not salvage '%s' onto "
				 "itself: name another output file", fname);
	if (stat(fname, &st) < 0)
		return error_sys(err, error_kind_from_errno(errno), errno,
				 "cannot open '%s'", fname);

	tmp = xasprintf("%s.salvage-%ld", outfile, (long)getpid());
	if (unlink(tmp) < 0 && errno != ENOENT) {
		error_sys(err, error_kind_from_errno(errno), errno,
			  "cannot remove '%s'", tmp);
		goto out;
	}
	atomicfile_cleanup_register(tmp);
	w.tmp = tmp;
	if (cyrusdb_open(backend, tmp, flags, &w.db, err) != 0)
		goto out_unlink;
	if (salvage_read(fname, backend, mboxsort, write_cb, &w, rep, err) <
	    0)
		goto out_unlink;
	if (w.tid && cyrusdb_commit(w.db, w.tid) != 0) {
		w.tid = NULL;
		error_set(err, ERR_IO, "cannot commit '%s': %s", tmp,
			  cyrusdb_errmsg(w.db));
		goto out_unlink;
	}
	w.tid = NULL;
	cyrusdb_close(&w.db);
	if (verify_written(backend, tmp, flags & ~CYRUSDB_CREATE, rep->keys,
			   err) < 0)
		goto out_unlink;
	if (chmod(tmp, st.st_mode & 07777) < 0) {
		error_sys(err, ERR_IO, errno, "cannot chmod '%s'", tmp);
		goto out_unlink;
	}
	if (rename(tmp, outfile) < 0) {
		error_sys(err, error_kind_from_errno(errno), errno,
			  "cannot rename '%s' to '%s'", tmp, outfile);
		goto out_unlink;
	}
	atomicfile_cleanup_unregister(tmp);
	if (!cyrusdb_getenv()->nosync)
		fsync_parent_dir(outfile);
	r = 0;
	goto out;
out_unlink:
	if (w.tid)
		cyrusdb_abort(w.db, w.tid);
	cyrusdb_close(&w.db);
	unlink(tmp);
	atomicfile_cleanup_unregister(tmp);
out:
	free(tmp);
	return r;
}

/* ---- the report ---- */

bool salvage_report_lossy(const struct salvage_report *rep)
{
	return !rep->header_ok || rep->nregions || rep->deletes_unresolved;
}

/* A key for a person: printable bytes as they are, others as \xNN, long
 * keys cut. */
static void add_key(struct buf *out, const char *k, size_t len)
{
	if (!k) {
		buf_adds(out, "(none)");
		return;
	}
	buf_addch(out, '\'');
	for (size_t i = 0; i < len && i < 200; i++) {
		unsigned char c = (unsigned char)k[i];
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
			buf_addch(out, c);
		else
			buf_printf(out, "\\x%02x", c);
	}
	if (len > 200)
		buf_adds(out, "...");
	buf_addch(out, '\'');
}

void salvage_report_text(const struct salvage_report *rep, const char *fname,
			 struct buf *out)
{
	buf_printf(out, "file: %s (%s, %llu bytes)\n", fname, rep->backend,
		   (unsigned long long)rep->file_size);
	if (rep->header_ok && !strcmp(rep->backend, "twoskip"))
		buf_printf(out, "header: ok (generation %llu, %llu records, "
			   "committed size %llu)\n",
			   (unsigned long long)rep->generation,
			   (unsigned long long)rep->header_records,
			   (unsigned long long)rep->committed_end);
	else if (rep->header_ok)
		buf_adds(out, "header: ok\n");
	else
		buf_printf(out, "header: damaged (%s)\n", rep->header_problem);
	buf_printf(out, "read: %llu record versions, %llu deletes, %llu "
		   "commits, up to offset %llu\n",
		   (unsigned long long)rep->versions,
		   (unsigned long long)rep->deletes,
		   (unsigned long long)rep->commits,
		   (unsigned long long)rep->committed_end);
	for (size_t i = 0; i < rep->nregions; i++) {
		const struct salvage_region *g = &rep->regions[i];
		unsigned long long len = g->end - g->start;
		switch (g->kind) {
		case SALVAGE_DAMAGED:
			buf_printf(out, "lost: damaged bytes %llu-%llu (%llu "
				   "bytes) between key ", (unsigned long long)
				   g->start, (unsigned long long)g->end, len);
			add_key(out, g->key_before, g->key_before_len);
			buf_adds(out, " and key ");
			add_key(out, g->key_after, g->key_after_len);
			buf_adds(out, " (file order)\n");
			break;
		case SALVAGE_UNCOMMITTED:
			buf_printf(out, "lost: uncommitted bytes %llu-%llu "
				   "(%llu bytes, %llu records)\n",
				   (unsigned long long)g->start,
				   (unsigned long long)g->end, len,
				   (unsigned long long)g->records);
			break;
		case SALVAGE_FOREIGN:
			buf_printf(out, "lost: another %s file starts at "
				   "offset %llu: bytes %llu-%llu (%llu bytes) "
				   "ignored\n", rep->backend,
				   (unsigned long long)g->start,
				   (unsigned long long)g->start,
				   (unsigned long long)g->end, len);
			break;
		case SALVAGE_TRUNCATED:
			buf_printf(out, "lost: truncated: committed bytes "
				   "%llu-%llu (%llu bytes) are missing\n",
				   (unsigned long long)g->start,
				   (unsigned long long)g->end, len);
			break;
		}
	}
	if (rep->heads_damaged)
		buf_printf(out, "damaged: %llu records with a damaged head "
			   "(pointers), kept: their key and value check out\n",
			   (unsigned long long)rep->heads_damaged);
	if (rep->deletes_unresolved)
		buf_printf(out, "lost: %llu deletes whose key could not be "
			   "found (those keys may have come back)\n",
			   (unsigned long long)rep->deletes_unresolved);
	if (!strcmp(rep->backend, "skiplist"))
		buf_adds(out, "note: skiplist has no checksums: damage inside "
			 "a key or value cannot be seen\n");
	buf_printf(out, "kept: %llu keys", (unsigned long long)rep->keys);
	if (rep->header_ok && !strcmp(rep->backend, "twoskip"))
		buf_printf(out, " (header says %llu)",
			   (unsigned long long)rep->header_records);
	buf_printf(out, "; %llu damaged bytes\n",
		   (unsigned long long)rep->damaged_bytes);
}

void salvage_report_release(struct salvage_report *rep)
{
	for (size_t i = 0; i < rep->nregions; i++) {
		free(rep->regions[i].key_before);
		free(rep->regions[i].key_after);
	}
	free(rep->regions);
	rep->regions = NULL;
	rep->nregions = 0;
}
