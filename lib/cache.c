/* cache.c: cyrus.cache records (see cache.h). */
#include "compat.h"
#include "cache.h"

#include <zlib.h>

#include "buf.h"
#include "error.h"
#include "mailbox.h"

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void add32(struct buf *b, uint32_t v)
{
	unsigned char p[4] = { (unsigned char)(v >> 24),
			       (unsigned char)(v >> 16),
			       (unsigned char)(v >> 8), (unsigned char)v };
	buf_add(b, p, 4);
}

int cache_parse_record(const unsigned char *data, size_t size,
		       uint64_t offset, struct cache_record *cr,
		       struct error *err)
{
	uint64_t off = offset;
	for (int k = 0; k < CACHE_NUM_ITEMS; k++) {
		if (off >= size || size - off < 4)
			return error_set(err, ERR_DATA,
					 "cache offset %llu beyond end %zu "
					 "(item %d)", (unsigned long long)off,
					 size, k);
		uint32_t len = get32(data + off);
		if ((uint64_t)len > size - off - 4)
			return error_set(err, ERR_DATA,
					 "cache item %d truncated at offset "
					 "%llu (length %u, file %zu)", k,
					 (unsigned long long)off, len, size);
		cr->item[k].offset = (size_t)off + 4;
		cr->item[k].len = len;
		off += 4 + (((uint64_t)len + 3) & ~(uint64_t)3);
	}
	/* The last item's padding may run past the end of the file. */
	if (off > size)
		return error_set(err, ERR_DATA,
				 "cache record at %llu truncated in padding",
				 (unsigned long long)offset);
	cr->offset = offset;
	cr->len = (size_t)(off - offset);
	return 0;
}

uint32_t cache_record_crc(const unsigned char *data,
			  const struct cache_record *cr)
{
	return (uint32_t)crc32(0, data + cr->offset, (uInt)cr->len);
}

enum cache_check cache_check_record(const unsigned char *data, size_t size,
				    const struct mailbox_record *r,
				    struct cache_record *cr)
{
	struct cache_record tmp;
	struct error err = ERROR_INIT;
	if (!cr)
		cr = &tmp;
	if (!r->cache_offset)
		return CACHE_NO_OFFSET;
	if (cache_parse_record(data, size, r->cache_offset, cr, &err) < 0)
		return CACHE_BAD_RECORD;
	if (!r->cache_crc)
		return CACHE_NO_CRC;
	if (cache_record_crc(data, cr) != r->cache_crc)
		return CACHE_BAD_CRC;
	return CACHE_OK;
}

const char *cache_check_string(enum cache_check c)
{
	switch (c) {
	case CACHE_OK: return "ok";
	case CACHE_NO_OFFSET: return "no cache record";
	case CACHE_BAD_RECORD: return "cache record out of bounds";
	case CACHE_NO_CRC: return "cache record without CRC";
	case CACHE_BAD_CRC: return "cache record CRC mismatch";
	}
	return "?";
}

uint32_t cache_format_record(const char *const items[CACHE_NUM_ITEMS],
			     const size_t lens[CACHE_NUM_ITEMS],
			     struct buf *out)
{
	static const char pad[4];
	size_t start = out->len;
	for (int k = 0; k < CACHE_NUM_ITEMS; k++) {
		add32(out, (uint32_t)lens[k]);
		buf_add(out, items[k], lens[k]);
		buf_add(out, pad, ((lens[k] + 3) & ~(size_t)3) - lens[k]);
	}
	return (uint32_t)crc32(0, (const Bytef *)out->s + start,
			       (uInt)(out->len - start));
}

int64_t cache_generation(const unsigned char *data, size_t size)
{
	return size < 4 ? -1 : (int64_t)get32(data);
}

void cache_file_init(struct buf *out, uint32_t generation)
{
	buf_reset(out);
	add32(out, generation);
}

uint32_t cache_file_append(struct buf *file, const void *rec, size_t rec_len,
			   uint64_t *offset_r)
{
	*offset_r = file->len;
	buf_add(file, rec, rec_len);
	return (uint32_t)crc32(0, (const Bytef *)rec, (uInt)rec_len);
}
