/*
 * twoskip_file.c: the twoskip file itself: header, records, the mapping,
 * appends with BLANK padding, the alternating level-0 pointers and locks.
 */
#include "compat.h"
#include "twoskip-private.h"

#include <endian.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cyrusdb.h"
#include "error.h"
#include "xmalloc.h"

static const char ts_magic[20] = "\241\002\213\015twoskip file\0\0\0\0";

enum {
	OFF_VERSION = 20,
	OFF_GENERATION = 24,
	OFF_NUM_RECORDS = 32,
	OFF_REPACK_SIZE = 40,
	OFF_CURRENT_SIZE = 48,
	OFF_FLAGS = 56,
	OFF_CRC32 = 60,
};

/* Preallocation steps while a transaction appends. */
#define TS_GROW_MIN (64 * 1024)
#define TS_GROW_MAX (64 * 1024 * 1024)

int twoskip_seterr(struct twoskip *ts, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ts->errmsg, sizeof(ts->errmsg), fmt, ap);
	va_end(ap);
	return r;
}

static uint16_t get16(const char *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return be16toh(v);
}

static uint32_t get32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static uint64_t get64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

static void put16(unsigned char *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}

static void put32(unsigned char *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static void put64(unsigned char *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static uint64_t round8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

/* ---- header ---- */

int twoskip_read_header(struct twoskip *ts)
{
	const char *b = ts->base;
	if (ts->size < TS_HEADER_SIZE)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "twoskip file '%s' too short for a header "
				      "(%llu bytes)", ts->fname,
				      (unsigned long long)ts->size);
	if (memcmp(b, ts_magic, sizeof(ts_magic)))
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "invalid magic header in '%s': not a "
				      "twoskip file", ts->fname);
	uint32_t version = get32(b + OFF_VERSION);
	if (version > TS_VERSION)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "twoskip version mismatch: '%s' has "
				      "version %u, only %u is supported",
				      ts->fname, version, TS_VERSION);
	if (!(ts->flags & CYRUSDB_NOCRC)) {
		uint32_t crc = get32(b + OFF_CRC32);
		uint32_t want = twoskip_crc(0, b, OFF_CRC32);
		if (crc != want)
			return twoskip_seterr(ts, CYRUSDB_IOERROR,
					      "twoskip header CRC failure in "
					      "'%s': stored %08X, computed %08X",
					      ts->fname, crc, want);
	}
	ts->header.version = version;
	ts->header.generation = get64(b + OFF_GENERATION);
	ts->header.num_records = get64(b + OFF_NUM_RECORDS);
	ts->header.repack_size = get64(b + OFF_REPACK_SIZE);
	ts->header.current_size = get64(b + OFF_CURRENT_SIZE);
	ts->header.flags = get32(b + OFF_FLAGS);
	ts->end = ts->header.current_size;
	return 0;
}

static void format_header(const struct ts_header *h, unsigned char *buf)
{
	memcpy(buf, ts_magic, sizeof(ts_magic));
	put32(buf + OFF_VERSION, h->version);
	put64(buf + OFF_GENERATION, h->generation);
	put64(buf + OFF_NUM_RECORDS, h->num_records);
	put64(buf + OFF_REPACK_SIZE, h->repack_size);
	put64(buf + OFF_CURRENT_SIZE, h->current_size);
	put32(buf + OFF_FLAGS, h->flags);
	put32(buf + OFF_CRC32, twoskip_crc(0, buf, OFF_CRC32));
}

int twoskip_sync(struct twoskip *ts)
{
	if (cyrusdb_getenv()->nosync)
		return 0;
	if (fdatasync(ts->fd) < 0)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "cannot sync '%s': %s", ts->fname,
				      strerror(errno));
	return 0;
}

/* Writes the header (one 64-byte write, the unit Cyrus relies on being
 * atomic) and syncs it. */
int twoskip_write_header(struct twoskip *ts)
{
	unsigned char buf[TS_HEADER_SIZE];
	format_header(&ts->header, buf);
	if (pwrite(ts->fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "cannot write header of '%s': %s",
				      ts->fname, strerror(errno));
	return twoskip_sync(ts);
}

bool twoskip_is_clean(const struct twoskip *ts)
{
	return ts->header.current_size == ts->size &&
	       !(ts->header.flags & TS_DIRTY);
}

/* ---- mapping ---- */

static void unmap(struct twoskip *ts)
{
	if (ts->base)
		munmap(ts->base, ts->maplen);
	ts->base = NULL;
	ts->maplen = 0;
}

/*
 * Makes the mapping cover at least len bytes. It is made larger than asked
 * (mapping past the end of the file is allowed, only touching it is not),
 * so a file growing by small appends is not remapped each time.
 */
static int map_at_least(struct twoskip *ts, uint64_t len)
{
	if (len <= ts->maplen)
		return 0;
	uint64_t want = (len + len / 8 + (1 << 20) + 4095) & ~(uint64_t)4095;
	int prot = PROT_READ | (ts->writable ? PROT_WRITE : 0);
	void *p;
	if (ts->base)
		p = mremap(ts->base, ts->maplen, want, MREMAP_MAYMOVE);
	else
		p = mmap(NULL, want, prot, MAP_SHARED, ts->fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		unmap(ts);
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "cannot map '%s' (%llu bytes): %s",
				      ts->fname, (unsigned long long)want,
				      strerror(e));
	}
	ts->base = p;
	ts->maplen = want;
	return 0;
}

/*
 * Lets the pages of [from, to) of the mapping go from this process (whole
 * pages inside the range). The mapping is shared, so nothing is lost: the
 * page cache keeps the bytes (dirty ones too) and the next access maps them
 * again. Long scans use it so that a file read once is not all resident.
 */
void twoskip_drop_pages(struct twoskip *ts, uint64_t from, uint64_t to)
{
	uint64_t page = 4096;
	from = (from + page - 1) & ~(page - 1);
	to &= ~(page - 1);
	if (to > ts->maplen)
		to = ts->maplen & ~(page - 1);
	if (ts->base && to > from)
		madvise(ts->base + from, to - from, MADV_DONTNEED);
}

/*
 * A scan notes each record it visits: while it moves forward through the
 * file (a repacked file read in key order), the pages behind it are given
 * back every TS_SCAN_WINDOW bytes; a window where it jumped back keeps
 * its pages.
 */
#define TS_SCAN_WINDOW (32 << 20)

void twoskip_scan_note(struct twoskip *ts, struct ts_scan *sc,
		       uint64_t offset)
{
	if (offset < sc->last)
		sc->back = true;
	sc->last = offset;
	if (offset < sc->from + TS_SCAN_WINDOW)
		return;
	if (!sc->back)
		twoskip_drop_pages(ts, sc->from, offset);
	sc->from = offset;
	sc->back = false;
}

int twoskip_truncate(struct twoskip *ts, uint64_t size)
{
	if (ftruncate(ts->fd, size) < 0)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "cannot truncate '%s' to %llu: %s",
				      ts->fname, (unsigned long long)size,
				      strerror(errno));
	ts->size = ts->alloc = size;
	return 0;
}

/*
 * Makes room up to newend for a transaction that has appended big bytes
 * (counting this record) so far. Small transactions just extend the file by writing (the caller
 * then uses pwritev: returns 1). Bigger ones preallocate in steps
 * proportional to what they appended, with fallocate so that a full disk
 * is an error here rather than a SIGBUS on a mapped page later, and write
 * through the mapping.
 */
static int reserve(struct twoskip *ts, uint64_t newend, uint64_t big)
{
	if (newend <= ts->alloc)
		return 0;
	if (big < TS_GROW_MIN && ts->alloc == ts->size)
		return 1;
	uint64_t step = big;
	if (step < TS_GROW_MIN)
		step = TS_GROW_MIN;
	if (step > TS_GROW_MAX)
		step = TS_GROW_MAX;
	uint64_t newalloc = ts->alloc + step;
	if (newalloc < newend)
		newalloc = newend;
	newalloc = (newalloc + 4095) & ~(uint64_t)4095;
	int e = posix_fallocate(ts->fd, ts->alloc, newalloc - ts->alloc);
	if (e)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "cannot extend '%s' to %llu bytes: %s",
				      ts->fname, (unsigned long long)newalloc,
				      strerror(e));
	ts->alloc = newalloc;
	return map_at_least(ts, newalloc);
}

/* ---- records ---- */

static int past_end(struct twoskip *ts, uint64_t offset, uint64_t len)
{
	return twoskip_seterr(ts, CYRUSDB_IOERROR,
			      "twoskip record at offset %08llX in '%s' "
			      "extends past end of file (%llu > %llu)",
			      (unsigned long long)offset, ts->fname,
			      (unsigned long long)(offset + len),
			      (unsigned long long)ts->size);
}

int twoskip_read_record(struct twoskip *ts, uint64_t offset,
			struct ts_record *rec)
{
	if (!offset) {
		memset(rec, 0, sizeof(*rec));
		return 0;
	}
	rec->offset = offset;
	if (offset < TS_DUMMY_OFFSET || offset % 8)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "bad twoskip record offset %08llX in "
				      "'%s'", (unsigned long long)offset,
				      ts->fname);
	/* the smallest record: fixed head, one pointer, CRCs */
	if (offset > ts->size || ts->size - offset < 24)
		return past_end(ts, offset, 24);

	const char *p = ts->base + offset;
	uint64_t pos = 8;
	rec->type = p[0];
	rec->level = p[1];
	rec->keylen = get16(p + 2);
	rec->vallen = get32(p + 4);
	if (rec->level > TS_MAXLEVEL)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "twoskip invalid level %u at offset "
				      "%08llX in '%s'", rec->level,
				      (unsigned long long)offset, ts->fname);
	if (rec->keylen == UINT16_MAX) {
		rec->keylen = get64(p + pos);
		pos += 8;
	}
	if (rec->vallen == UINT32_MAX) {
		rec->vallen = get64(p + pos);
		pos += 8;
	}
	uint64_t avail = ts->size - offset;
	if (rec->keylen > avail || rec->vallen > avail)
		return past_end(ts, offset, rec->keylen + rec->vallen);
	uint64_t headlen = pos + 8 * (rec->level + 1) + 8;
	rec->len = headlen + round8(rec->keylen + rec->vallen);
	if (rec->len > avail)
		return past_end(ts, offset, rec->len);

	for (unsigned i = 0; i <= rec->level; i++, pos += 8)
		rec->next[i] = get64(p + pos);
	rec->crc_head = get32(p + pos);
	rec->crc_tail = get32(p + pos + 4);
	rec->keyoff = offset + headlen;
	rec->valoff = rec->keyoff + rec->keylen;

	if (ts->flags & CYRUSDB_NOCRC)
		return 0;
	/* Appended by our own write transaction under the exclusive lock:
	 * nobody else can have touched it since we computed its CRC. */
	if (ts->lock == TS_EXCLUSIVE && offset >= ts->header.current_size)
		return 0;
	uint32_t crc = twoskip_crc(0, p, pos);
	if (crc != rec->crc_head)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "twoskip checksum head error at offset "
				      "%08llX in '%s': stored %08X, computed "
				      "%08X", (unsigned long long)offset,
				      ts->fname, rec->crc_head, crc);
	return 0;
}

/* A DELETE record only stands in the level-0 chain: step over it. */
int twoskip_read_skipdelete(struct twoskip *ts, uint64_t offset,
			    struct ts_record *rec)
{
	int r = twoskip_read_record(ts, offset, rec);
	if (!r && rec->offset && rec->type == TS_DELETE)
		r = twoskip_read_record(ts, rec->next[0], rec);
	return r;
}

int twoskip_check_tail(struct twoskip *ts, const struct ts_record *rec)
{
	if (ts->flags & CYRUSDB_NOCRC)
		return 0;
	uint32_t crc = twoskip_crc(0, ts->base + rec->keyoff,
				   round8(rec->keylen + rec->vallen));
	if (crc != rec->crc_tail)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "twoskip invalid tail crc at offset "
				      "%08llX in '%s': stored %08X, computed "
				      "%08X", (unsigned long long)rec->offset,
				      ts->fname, rec->crc_tail, crc);
	return 0;
}

static size_t format_head(struct ts_record *rec, unsigned char *buf,
			  bool headcrc)
{
	size_t len = 8;
	buf[0] = rec->type;
	buf[1] = rec->level;
	/* like Cyrus, a length equal to the escape value uses the long form */
	if (rec->keylen < UINT16_MAX) {
		put16(buf + 2, rec->keylen);
	} else {
		put16(buf + 2, UINT16_MAX);
		put64(buf + len, rec->keylen);
		len += 8;
	}
	if (rec->vallen < UINT32_MAX) {
		put32(buf + 4, rec->vallen);
	} else {
		put32(buf + 4, UINT32_MAX);
		put64(buf + len, rec->vallen);
		len += 8;
	}
	for (unsigned i = 0; i <= rec->level; i++, len += 8)
		put64(buf + len, rec->next[i]);
	rec->crc_head = headcrc ? twoskip_crc(0, buf, len) : 0;
	put32(buf + len, rec->crc_head);
	put32(buf + len + 4, rec->crc_tail);
	return len + 8;
}

/* Encodes everything up to and including the two CRCs; computes the head
 * CRC (the tail CRC is taken from rec). Returns the length. */
size_t twoskip_format_head(struct ts_record *rec, unsigned char *buf)
{
	return format_head(rec, buf, true);
}

/* Rewrites the head of an existing record in place (pointers and CRCs;
 * the first 8 bytes come out unchanged). */
int twoskip_rewrite_head(struct twoskip *ts, struct ts_record *rec)
{
	unsigned char buf[TS_MAXHEAD];
	if (!(ts->header.flags & TS_DIRTY) || !rec->offset)
		BUG("twoskip: head rewrite outside a dirty transaction");
	size_t len = twoskip_format_head(rec, buf);
	if (rec->offset + len > ts->size)
		return past_end(ts, rec->offset, len);
	memcpy(ts->base + rec->offset, buf, len);
	if (rec->offset == TS_DUMMY_OFFSET)
		ts->dummy_ok = false;
	return 0;
}

/* The small-transaction path of twoskip_append: one pwritev extends the
 * file by exactly the padding and the record. */
static int append_by_write(struct twoskip *ts, uint64_t start,
			   const unsigned char *head, size_t headlen,
			   const char *key, const char *val, uint64_t keylen,
			   uint64_t vallen, uint64_t pad)
{
	static const char blanks[TS_BLOCKSIZE] =
		TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK
		TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK
		TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK
		TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK
		TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK
		TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK
		TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK
		TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK
		TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK TS_BLANK
		TS_BLANK;
	static const char zeros[8];
	struct iovec io[5] = {
		{ (void *)blanks, start - ts->end },
		{ (void *)head, headlen },
		{ (void *)key, keylen },
		{ (void *)val, vallen },
		{ (void *)zeros, pad },
	};
	uint64_t total = start - ts->end + headlen + keylen + vallen + pad;
	uint64_t done = 0;
	int n = 0;
	/* write out the iovecs, resuming after a short write */
	while (done < total) {
		while (n < 5 && !io[n].iov_len)
			n++;
		ssize_t w = pwritev(ts->fd, io + n, 5 - n, ts->end + done);
		if (w <= 0)
			return twoskip_seterr(ts, CYRUSDB_IOERROR,
					      "cannot write '%s' at %llu: %s",
					      ts->fname, (unsigned long long)
					      (ts->end + done),
					      w < 0 ? strerror(errno)
						    : "short write");
		done += w;
		for (; n < 5 && (size_t)w >= io[n].iov_len; n++)
			w -= io[n].iov_len;
		if (n < 5) {
			io[n].iov_base = (char *)io[n].iov_base + w;
			io[n].iov_len -= w;
		}
	}
	ts->size = ts->alloc = start + headlen + round8(keylen + vallen);
	return map_at_least(ts, ts->alloc);
}

/*
 * Appends rec at the logical end, with Cyrus's BLANK padding first so that
 * the head (the part rewritten later) never straddles a 512-byte block:
 * the fixed first 8 bytes may sit before the boundary, the rest must fit
 * in one block. Heads longer than 504 bytes cannot fit and are not padded.
 * flags: TS_APPEND_TAILCRC takes rec->crc_tail as given (a copy of a
 * record whose tail was just verified); TS_APPEND_NOHEADCRC leaves the
 * head CRC to a later twoskip_seal_head().
 */
int twoskip_append_ex(struct twoskip *ts, struct ts_record *rec,
		      const char *key, const char *val, unsigned flags)
{
	static const char zeros[8];
	unsigned char head[TS_MAXHEAD];
	uint64_t kvlen = rec->keylen + rec->vallen;
	uint64_t pad = round8(kvlen) - kvlen;

	if (!(flags & TS_APPEND_TAILCRC)) {
		uint32_t crc = twoskip_crc(0, key, rec->keylen);
		crc = twoskip_crc(crc, val, rec->vallen);
		rec->crc_tail = twoskip_crc(crc, zeros, pad);
	}
	size_t headlen = format_head(rec, head,
				     !(flags & TS_APPEND_NOHEADCRC));

	uint64_t start = ts->end;
	if (headlen <= TS_BLOCKSIZE - 8)
		while ((start + 8) % TS_BLOCKSIZE >
		       (start - 8 + headlen) % TS_BLOCKSIZE)
			start += 8;
	uint64_t newend = start + headlen + round8(kvlen);
	uint64_t big = newend - ts->header.current_size;
	int r = reserve(ts, newend, big);
	if (r < 0)
		return r;
	if (r > 0) {
		r = append_by_write(ts, start, head, headlen, key, val,
				    rec->keylen, rec->vallen, pad);
		if (r)
			return r;
	} else {
		char *p = ts->base + ts->end;
		for (uint64_t o = ts->end; o < start; o += 8, p += 8)
			memcpy(p, TS_BLANK, 8);
		memcpy(p, head, headlen);
		p += headlen;
		if (rec->keylen)
			memcpy(p, key, rec->keylen);
		p += rec->keylen;
		if (rec->vallen)
			memcpy(p, val, rec->vallen);
		p += rec->vallen;
		memcpy(p, zeros, pad);
	}

	rec->offset = start;
	rec->len = newend - start;
	rec->keyoff = start + headlen;
	rec->valoff = rec->keyoff + rec->keylen;
	ts->end = newend;
	if (ts->size < newend)
		ts->size = newend;
	return 0;
}

int twoskip_append(struct twoskip *ts, struct ts_record *rec,
		   const char *key, const char *val)
{
	return twoskip_append_ex(ts, rec, key, val, 0);
}

/* ---- staged appends (seq mode) ---- */

/* Appends of seq mode are written in pieces of about this size. */
#define TS_STAGE (4 << 20)

/* Where the bytes at offset are now: in the staging buffer or the map. */
char *twoskip_wptr(struct twoskip *ts, uint64_t offset)
{
	if (ts->stage.len && offset >= ts->stage_off)
		return ts->stage.s + (offset - ts->stage_off);
	return ts->base + offset;
}

/* Writes the staged appends to the file (and maps them). */
int twoskip_stage_flush(struct twoskip *ts)
{
	const char *p = ts->stage.s;
	uint64_t off = ts->stage_off, left = ts->stage.len;
	while (left) {
		ssize_t w = pwrite(ts->fd, p, left, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			buf_reset(&ts->stage);
			return twoskip_seterr(ts, CYRUSDB_IOERROR,
					      "cannot write '%s' at %llu: %s",
					      ts->fname, (unsigned long long)off,
					      w < 0 ? strerror(errno)
						    : "short write");
		}
		p += w;
		off += w;
		left -= w;
	}
	buf_reset(&ts->stage);
	if (ts->size < off)
		ts->size = off;
	if (ts->alloc < off)
		ts->alloc = off;
	return map_at_least(ts, ts->alloc);
}

/*
 * twoskip_append_ex for seq mode: the record goes to the staging buffer,
 * written out in big pieces by plain writes (a page the kernel has to
 * zero-fill for a mapped write costs more than the copy). The tail CRC is
 * computed over the staged bytes in one piece. Nothing may read the file
 * through the map past stage_off until twoskip_stage_flush().
 */
int twoskip_append_staged(struct twoskip *ts, struct ts_record *rec,
			  const char *key, const char *val, unsigned flags)
{
	unsigned char head[TS_MAXHEAD];
	uint64_t kvlen = rec->keylen + rec->vallen;
	size_t headlen = format_head(rec, head,
				     !(flags & TS_APPEND_NOHEADCRC));
	uint64_t start = ts->end;
	if (headlen <= TS_BLOCKSIZE - 8)
		while ((start + 8) % TS_BLOCKSIZE >
		       (start - 8 + headlen) % TS_BLOCKSIZE)
			start += 8;
	uint64_t newend = start + headlen + round8(kvlen);
	uint64_t need = newend - ts->end;
	if (ts->stage.len && ts->stage.len + need > TS_STAGE) {
		int r = twoskip_stage_flush(ts);
		if (r)
			return r;
	}
	if (!ts->stage.len)
		ts->stage_off = ts->end;
	buf_grow(&ts->stage, need);
	char *p = ts->stage.s + ts->stage.len;
	for (uint64_t o = ts->end; o < start; o += 8, p += 8)
		memcpy(p, TS_BLANK, 8);
	char *h = p;
	memcpy(p, head, headlen);
	p += headlen;
	char *kv = p;
	if (rec->keylen)
		memcpy(p, key, rec->keylen);
	p += rec->keylen;
	if (rec->vallen)
		memcpy(p, val, rec->vallen);
	p += rec->vallen;
	memset(p, 0, round8(kvlen) - kvlen);
	if (!(flags & TS_APPEND_TAILCRC))
		rec->crc_tail = twoskip_crc(0, kv, round8(kvlen));
	put32((unsigned char *)h + headlen - 4, rec->crc_tail);
	buf_setlen(&ts->stage, ts->stage.len + need);

	rec->offset = start;
	rec->len = newend - start;
	rec->keyoff = start + headlen;
	rec->valoff = rec->keyoff + rec->keylen;
	ts->end = newend;
	return 0;
}

/* File offset of next[0] in the record at offset (its head in place). */
static uint64_t ptrs_at(struct twoskip *ts, uint64_t offset)
{
	const char *p = twoskip_wptr(ts, offset);
	uint64_t pos = 8;
	if (get16(p + 2) == UINT16_MAX)
		pos += 8;
	if (get32(p + 4) == UINT32_MAX)
		pos += 8;
	return offset + pos;
}

/*
 * For records appended with TS_APPEND_NOHEADCRC, not read since: sets
 * next[slot] in place; the head CRC stays to be sealed.
 */
void twoskip_put_next(struct twoskip *ts, uint64_t offset, unsigned slot,
		      uint64_t value)
{
	uint64_t at = ptrs_at(ts, offset) + 8 * slot;
	put64((unsigned char *)twoskip_wptr(ts, at), value);
}

/* Computes and stores the head CRC of such a record, now complete. */
void twoskip_seal_head(struct twoskip *ts, uint64_t offset)
{
	unsigned char *p = (unsigned char *)twoskip_wptr(ts, offset);
	uint64_t len = ptrs_at(ts, offset) - offset + 8 * (p[1] + 1);
	put32(p + len, twoskip_crc(0, p, len));
}

bool twoskip_is_blank(const struct twoskip *ts, uint64_t offset)
{
	return offset + 8 <= ts->size &&
	       !memcmp(ts->base + offset, TS_BLANK, 8);
}

/* ---- the level-0 pair ---- */

/*
 * Level 0 has two slots. A reader ignores a slot at or past the logical end
 * (written by an uncommitted transaction) and otherwise takes the larger,
 * i.e. newer, one.
 */
uint64_t twoskip_getloc(const struct twoskip *ts, const struct ts_record *rec,
			unsigned level)
{
	if (level)
		return rec->next[level + 1];
	if (rec->next[0] >= ts->end)
		return rec->next[1];
	if (rec->next[1] >= ts->end)
		return rec->next[0];
	return rec->next[0] > rec->next[1] ? rec->next[0] : rec->next[1];
}

/*
 * A writer reuses a slot it already set in this transaction, else replaces
 * the older one: the slot holding the committed successor stays intact
 * until the commit, which is what recovery1 relies on.
 */
void twoskip_setloc(const struct twoskip *ts, struct ts_record *rec,
		    unsigned level, uint64_t offset)
{
	uint64_t cs = ts->header.current_size;
	if (level)
		rec->next[level + 1] = offset;
	else if (rec->next[0] >= cs)
		rec->next[0] = offset;
	else if (rec->next[1] >= cs)
		rec->next[1] = offset;
	else if (rec->next[1] > rec->next[0])
		rec->next[0] = offset;
	else
		rec->next[1] = offset;
}

/* ---- locks ---- */

/*
 * Takes the fcntl lock (re-opening the path if another process replaced the
 * file) and maps the whole file as it now is. The header is not read here.
 */
int twoskip_lock(struct twoskip *ts, enum lock_mode mode)
{
	struct error err = ERROR_INIT;
	struct stat st;
	int oldfd = ts->fd;
	if (lock_reopen(&ts->fd, ts->fname, mode, &st, &err) < 0)
		return twoskip_seterr(ts, CYRUSDB_IOERROR, "%s", err.msg);
	ts->lock = mode == LOCK_EXCLUSIVE ? TS_EXCLUSIVE : TS_SHARED;
	if (ts->fd != oldfd || st.st_ino != ts->ino || st.st_dev != ts->dev) {
		/* a repack or recovery elsewhere renamed a new file in */
		unmap(ts);
		twoskip_loc_reset(ts);
		ts->dev = st.st_dev;
		ts->ino = st.st_ino;
		ts->writable = (fcntl(ts->fd, F_GETFL) & O_ACCMODE) == O_RDWR;
	}
	ts->size = ts->alloc = st.st_size;
	int r = map_at_least(ts, ts->size);
	if (r)
		twoskip_unlock(ts);
	return r;
}

void twoskip_unlock(struct twoskip *ts)
{
	if (ts->lock != TS_UNLOCKED)
		lock_unlock(ts->fd);
	ts->lock = TS_UNLOCKED;
}

/* ---- creation and lifetime ---- */

/* Writes the 336-byte empty database: the DUMMY, then the header. The
 * caller holds the exclusive lock on an empty file. */
int twoskip_create_empty(struct twoskip *ts)
{
	struct ts_record dummy;
	unsigned char head[TS_MAXHEAD];
	memset(&dummy, 0, sizeof(dummy));
	dummy.type = TS_DUMMY;
	dummy.level = TS_MAXLEVEL;
	size_t len = twoskip_format_head(&dummy, head);
	if (pwrite(ts->fd, head, len, TS_DUMMY_OFFSET) != (ssize_t)len)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "cannot write '%s': %s", ts->fname,
				      strerror(errno));
	memset(&ts->header, 0, sizeof(ts->header));
	ts->header.version = TS_VERSION;
	ts->header.generation = 1;
	ts->header.repack_size = TS_DUMMY_OFFSET + len;
	ts->header.current_size = TS_DUMMY_OFFSET + len;
	int r = twoskip_write_header(ts);
	if (r)
		return r;
	ts->size = ts->alloc = TS_DUMMY_OFFSET + len;
	ts->end = ts->size;
	return map_at_least(ts, ts->size);
}

/* mkdir -p of the directory part of path, like Cyrus's cyrus_mkdir. */
static void make_parents(const char *path)
{
	char *copy = xstrdup(path);
	for (char *p = strchr(copy + 1, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		mkdir(copy, 0755);
		*p = '/';
	}
	free(copy);
}

/* Opens the descriptor of a new engine; no lock, no header yet. */
int twoskip_engine_new(const char *fname, int flags, bool create,
		       struct twoskip **ts_r)
{
	struct twoskip *ts = xzmalloc(sizeof(*ts));
	struct stat st;

	ts->fname = xstrdup(fname);
	ts->flags = flags & ~CYRUSDB_CREATE;
	ts->compar = (flags & CYRUSDB_MBOXSORT) ? cyrusdb_compar_mbox
						: cyrusdb_compar_raw;
	ts->loc.key = (struct buf)BUF_INIT;
	ts->stage = (struct buf)BUF_INIT;
	ts->rng = (uint32_t)getpid() * 2654435761u ^ (uint32_t)(uintptr_t)ts;
	if (!ts->rng)
		ts->rng = 1;
	*ts_r = ts;

	int oflags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
	ts->fd = open(fname, oflags, 0644);
	if (ts->fd < 0 && errno == ENOENT && create) {
		make_parents(fname);
		ts->fd = open(fname, oflags, 0644);
	}
	if (ts->fd < 0 && !create && (errno == EACCES || errno == EROFS))
		ts->fd = open(fname, O_RDONLY | O_CLOEXEC);
	if (ts->fd < 0) {
		if (errno == ENOENT)
			return twoskip_seterr(ts, CYRUSDB_NOTFOUND,
					      "twoskip file '%s' does not exist",
					      fname);
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "cannot open '%s': %s", fname,
				      strerror(errno));
	}
	ts->writable = (fcntl(ts->fd, F_GETFL) & O_ACCMODE) == O_RDWR;
	if (fstat(ts->fd, &st) < 0)
		return twoskip_seterr(ts, CYRUSDB_IOERROR,
				      "cannot fstat '%s': %s", fname,
				      strerror(errno));
	ts->dev = st.st_dev;
	ts->ino = st.st_ino;
	return 0;
}

void twoskip_engine_free(struct twoskip *ts)
{
	if (!ts)
		return;
	if (ts->fd >= 0) {
		twoskip_unlock(ts);
		unmap(ts);
		close(ts->fd);
	}
	buf_release(&ts->loc.key);
	buf_release(&ts->stage);
	free(ts->txn);
	free(ts->fname);
	free(ts);
}

/*
 * After from's file was renamed over ts's path: ts drops its old file and
 * takes over from's descriptor, mapping, lock and header. from is freed.
 */
void twoskip_adopt(struct twoskip *ts, struct twoskip *from)
{
	if (ts->lock != TS_UNLOCKED)
		lock_unlock(ts->fd);
	unmap(ts);
	close(ts->fd);
	ts->fd = from->fd;
	ts->writable = from->writable;
	ts->dev = from->dev;
	ts->ino = from->ino;
	ts->base = from->base;
	ts->maplen = from->maplen;
	ts->size = from->size;
	ts->alloc = from->alloc;
	ts->header = from->header;
	ts->end = from->end;
	ts->lock = from->lock;
	twoskip_loc_reset(ts);
	from->fd = -1;
	from->base = NULL;
	twoskip_engine_free(from);
}
