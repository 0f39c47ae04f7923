/*
 * salvage_skiplist.c: the front-to-back skiplist reader of salvage
 * (docs/formats/cyrusdb.md section 3). Skiplist has no checksums, so a
 * record counts when its structure holds: known type, key and data inside
 * the file, 1..maxlevel pointer words (whatever their values), then the
 * 0xFFFFFFFF terminator. Its pointers are never followed.
 */
#include "compat.h"

#include <endian.h>

#include "error.h"
#include "salvage-private.h"

#define SL_HEADER 48
#define SL_MAXLEVEL 20
#define SL_END 0xffffffffU

enum {
	SL_INORDER = 1,
	SL_ADD = 2,
	SL_DELETE = 4,
	SL_COMMIT = 255,
	SL_DUMMY = 257,
};

static const char sl_magic[20] = "\241\002\213\015skiplist file\0\0\0";

static uint32_t rd32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

struct sl_rec {
	uint32_t type;
	uint64_t len, target;
	const char *key, *val;
	uint32_t keylen, vallen;
};

static uint64_t round4(uint64_t n)
{
	return (n + 3) & ~(uint64_t)3;
}

static bool read_rec(const struct salvage_scan *s, uint64_t off,
		     unsigned maxlevel, struct sl_rec *r)
{
	const char *p = s->base + off;
	uint64_t room = s->size - off;

	if (room < 4)
		return false;
	r->type = rd32(p);
	switch (r->type) {
	case SL_COMMIT:
		r->len = 4;
		return true;
	case SL_DELETE:
		if (room < 8)
			return false;
		r->target = rd32(p + 4);
		/* It names an earlier record. */
		if (r->target < SL_HEADER || r->target >= off ||
		    r->target % 4)
			return false;
		r->len = 8;
		return true;
	case SL_INORDER:
	case SL_ADD:
	case SL_DUMMY:
		break;
	default:
		return false;
	}
	if (room < 8)
		return false;
	r->keylen = rd32(p + 4);
	uint64_t pos = 8 + round4(r->keylen);
	if (pos + 4 > room)
		return false;
	r->key = p + 8;
	r->vallen = rd32(p + pos);
	r->val = p + pos + 4;
	pos += 4 + round4(r->vallen);
	if (pos > room)
		return false;
	if ((r->type == SL_DUMMY) != (r->keylen == 0))
		return false;
	if (r->type == SL_DUMMY && r->vallen)
		return false;
	unsigned level = 0;
	for (;;) {
		if (pos + 4 > room)
			return false;
		uint32_t ptr = rd32(p + pos);
		pos += 4;
		if (ptr == SL_END)
			break;
		/* Pointer values are never followed nor judged: skiplist has no
		 * checksums, so a damaged pointer must not cost its record. */
		if (++level > maxlevel)
			return false;
	}
	if (level == 0)
		return false;
	if (r->type == SL_DUMMY && level != maxlevel)
		return false;
	r->len = pos;
	return true;
}

int salvage_scan_skiplist(struct salvage_scan *s, struct error *err)
{
	struct salvage_report *rep = s->rep;
	unsigned maxlevel = SL_MAXLEVEL;
	uint64_t last_commit_end = 0, last_inorder_end = 0, foreign = 0;
	struct sl_rec r;

	if (s->size < SL_HEADER + 4)
		return error_set(err, ERR_DATA, "too short for a skiplist "
				 "file (%zu bytes)", s->size);
	if (memcmp(s->base, sl_magic, sizeof(sl_magic)) != 0) {
		snprintf(rep->header_problem, sizeof(rep->header_problem),
			 "bad magic");
	} else if (rd32(s->base + 20) != 1) {
		snprintf(rep->header_problem, sizeof(rep->header_problem),
			 "unknown version %u", rd32(s->base + 20));
	} else if (rd32(s->base + 28) == 0 ||
		   rd32(s->base + 28) > SL_MAXLEVEL) {
		snprintf(rep->header_problem, sizeof(rep->header_problem),
			 "bad maxlevel %u", rd32(s->base + 28));
	} else {
		rep->header_ok = true;
		maxlevel = rd32(s->base + 28);
	}
	if (!rep->header_ok && memcmp(s->base, sl_magic, 4) != 0 &&
	    !(read_rec(s, SL_HEADER, maxlevel, &r) && r.type == SL_DUMMY))
		return error_set(err, ERR_DATA, "not a skiplist file (%s, and "
				 "no skiplist DUMMY at offset 48)",
				 rep->header_problem);
	if (!rep->header_ok)
		salvage_scan_damaged(s, 0, SL_HEADER);

	uint64_t off = SL_HEADER;
	while (off + 4 <= s->size) {
		if (off + sizeof(sl_magic) <= s->size &&
		    !memcmp(s->base + off, sl_magic, sizeof(sl_magic))) {
			/* Another file appended: not this database's data. */
			salvage_scan_good(s);
			salvage_scan_region(s, SALVAGE_FOREIGN, off, s->size);
			foreign = off;
			break;
		}
		if (!read_rec(s, off, maxlevel, &r)) {
			salvage_scan_damaged(s, off, 4);
			off += 4;
			continue;
		}
		switch (r.type) {
		case SL_INORDER:
		case SL_ADD:
			salvage_scan_add(s, SALVAGE_REC_STORE, off, 0, r.key,
					 r.keylen, r.val, r.vallen);
			/* A checkpoint writes INORDER records completely
			 * before the file is renamed into place. */
			if (r.type == SL_INORDER)
				last_inorder_end = off + r.len;
			break;
		case SL_DELETE:
			salvage_scan_add(s, SALVAGE_REC_DELETE, off, r.target,
					 NULL, 0, NULL, 0);
			break;
		case SL_COMMIT:
			salvage_scan_good(s);
			rep->commits++;
			last_commit_end = off + r.len;
			break;
		default:
			salvage_scan_good(s);
			break;
		}
		off += r.len;
	}
	if (!foreign && off < s->size)
		salvage_scan_damaged(s, off, s->size - off);
	rep->committed_end = last_commit_end > last_inorder_end
				     ? last_commit_end
				     : last_inorder_end;
	if (foreign && rep->committed_end > foreign)
		rep->committed_end = foreign;
	return 0;
}
