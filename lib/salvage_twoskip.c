/*
 * salvage_twoskip.c: the front-to-back twoskip reader of salvage
 * (docs/formats/cyrusdb.md section 2). A record counts when both its CRCs
 * hold, a store also when only its tail CRC (key and value) holds; its
 * pointers are never followed.
 */
#include "compat.h"

#include <endian.h>

#include "error.h"
#include "salvage-private.h"
#include "twoskip-private.h"

#define TS_HEADER 64
#define TS_MAXLEVEL 31
#define TS_BLANK " BLANK\x07\xa0"

static const char ts_magic[20] = "\241\002\213\015twoskip file\0\0\0\0";

static uint32_t rd32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static uint64_t rd64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

/* zlib's CRC-32, by the fast implementation the backend uses. */
static uint32_t crc(const char *p, uint64_t len)
{
	return twoskip_crc(0, p, len);
}

struct ts_rec {
	char type;
	unsigned level;
	uint64_t keylen, vallen, len;
	uint64_t slot0;
	const char *key;
	bool head_damaged;
};

/*
 * Reads the record at off if it checks out: known type, sane level and
 * lengths, inside the file, both CRCs. Returns false otherwise.
 */
static bool read_rec(const struct salvage_scan *s, uint64_t off,
		     struct ts_rec *r)
{
	const char *p = s->base + off;
	uint64_t room = s->size - off, pos = 8;

	if (room < 8)
		return false;
	r->type = p[0];
	r->level = (unsigned char)p[1];
	if (r->level > TS_MAXLEVEL)
		return false;
	if (r->type != '+' && r->type != '-' && r->type != '$' &&
	    r->type != '=')
		return false;
	r->keylen = ((uint64_t)(unsigned char)p[2] << 8) | (unsigned char)p[3];
	r->vallen = rd32(p + 4);
	if (r->keylen == 0xffff) {
		if (room < pos + 8)
			return false;
		r->keylen = rd64(p + pos);
		pos += 8;
	}
	if (r->vallen == 0xffffffffu) {
		if (room < pos + 8)
			return false;
		r->vallen = rd64(p + pos);
		pos += 8;
	}
	uint64_t headlen = pos + 8 * ((uint64_t)r->level + 1);
	if (room < headlen + 8)
		return false;
	if (r->keylen > room || r->vallen > room)
		return false;
	uint64_t datalen = (r->keylen + r->vallen + 7) & ~(uint64_t)7;
	if (room - headlen - 8 < datalen)
		return false;
	/* Type rules first: they are cheaper than the CRCs. */
	switch (r->type) {
	case '+':
		if (r->level < 1 || r->keylen == 0)
			return false;
		break;
	case '-':
	case '$':
		if (r->level != 0 || r->keylen || r->vallen)
			return false;
		break;
	case '=':
		if (r->level != TS_MAXLEVEL || r->keylen || r->vallen)
			return false;
		break;
	}
	if (crc(p + headlen + 8, datalen) != rd32(p + headlen + 4))
		return false;
	/* A store whose head CRC fails but whose key and value check out
	 * has damaged pointers (or lengths that happen to frame the same
	 * bytes): salvage needs no pointers, so it is kept. Deletes and
	 * commits are only as good as their head. */
	r->head_damaged = crc(p, headlen) != rd32(p + headlen);
	if (r->head_damaged && r->type != '+')
		return false;
	r->slot0 = rd64(p + pos);
	r->key = p + headlen + 8;
	r->len = headlen + 8 + datalen;
	return true;
}

static void read_header(struct salvage_scan *s, uint64_t *current_size)
{
	struct salvage_report *rep = s->rep;
	const char *h = s->base;

	*current_size = 0;
	if (memcmp(h, ts_magic, sizeof(ts_magic)) != 0) {
		snprintf(rep->header_problem, sizeof(rep->header_problem),
			 "bad magic");
		return;
	}
	if (crc(h, 60) != rd32(h + 60)) {
		snprintf(rep->header_problem, sizeof(rep->header_problem),
			 "header CRC mismatch");
		return;
	}
	if (rd32(h + 20) != 1) {
		snprintf(rep->header_problem, sizeof(rep->header_problem),
			 "unknown version %u", rd32(h + 20));
		return;
	}
	rep->header_ok = true;
	rep->generation = rd64(h + 24);
	rep->header_records = rd64(h + 32);
	*current_size = rd64(h + 48);
}

int salvage_scan_twoskip(struct salvage_scan *s, struct error *err)
{
	struct salvage_report *rep = s->rep;
	uint64_t current_size, last_commit_end = 0, foreign = 0;
	struct ts_rec r;

	if (s->size < TS_HEADER + 8)
		return error_set(err, ERR_DATA, "too short for a twoskip file "
				 "(%zu bytes)", s->size);
	read_header(s, &current_size);
	if (!rep->header_ok && memcmp(s->base, ts_magic, 4) != 0 &&
	    !read_rec(s, TS_HEADER, &r))
		return error_set(err, ERR_DATA, "not a twoskip file (%s, and "
				 "no twoskip record at offset 64)",
				 rep->header_problem);
	if (!rep->header_ok)
		salvage_scan_damaged(s, 0, TS_HEADER);
	s->deletes_by_successor = true;

	uint64_t off = TS_HEADER;
	while (off + 8 <= s->size) {
		if (!memcmp(s->base + off, TS_BLANK, 8)) {
			off += 8;
			continue;
		}
		if (off + sizeof(ts_magic) <= s->size &&
		    !memcmp(s->base + off, ts_magic, sizeof(ts_magic))) {
			/* Another file appended: not this database's data. */
			salvage_scan_good(s);
			salvage_scan_region(s, SALVAGE_FOREIGN, off, s->size);
			foreign = off;
			break;
		}
		if (!read_rec(s, off, &r)) {
			salvage_scan_damaged(s, off, 8);
			off += 8;
			continue;
		}
		switch (r.type) {
		case '+':
			if (r.head_damaged)
				rep->heads_damaged++;
			salvage_scan_add(s, SALVAGE_REC_STORE, off, 0, r.key,
					 r.keylen, r.key + r.keylen, r.vallen);
			break;
		case '-':
			salvage_scan_add(s, SALVAGE_REC_DELETE, off, r.slot0,
					 NULL, 0, NULL, 0);
			break;
		case '$':
			salvage_scan_good(s);
			rep->commits++;
			last_commit_end = off + r.len;
			break;
		default: /* a DUMMY */
			salvage_scan_good(s);
			break;
		}
		off += r.len;
	}
	if (!foreign && off < s->size)
		salvage_scan_damaged(s, off, s->size - off);

	if (rep->header_ok && current_size > s->size) {
		salvage_scan_region(s, SALVAGE_TRUNCATED, s->size,
				    current_size);
		rep->committed_end = s->size;
	} else if (rep->header_ok) {
		rep->committed_end = current_size;
	} else {
		rep->committed_end = last_commit_end;
	}
	if (foreign && rep->committed_end > foreign)
		rep->committed_end = foreign;
	return 0;
}
