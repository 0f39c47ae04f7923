/*
 * cache.h: cyrus.cache records of Cyrus IMAP 3.6.1 (docs/formats/mailbox.md
 * section 6; imap/mailbox.c cache_parserecord, mailbox_cacherecord_internal,
 * cache_append_record; imap/message.c message_write_cache).
 *
 * The file: a 4-byte big-endian generation number (equal to the index
 * header's generation_no), then records. A record is exactly 10 items;
 * each item is a big-endian u32 length L, L bytes, NUL padding to a
 * multiple of 4. An index record points at its cache record by offset and
 * carries the CRC32 of the record's bytes (cache_crc).
 *
 * STATUS (issue 4): parse, bounds checks, CRC check (what imapd checks
 * before trusting a record; the real reconstruct does not), formatting a
 * record from its items, building a new cache file. Generating the items
 * from a message is lib/message.h's job.
 */
#ifndef CYRUS_LIB_CACHE_H
#define CYRUS_LIB_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct error;
struct mailbox_record;

#define CACHE_NUM_ITEMS 10

enum cache_item {
	CACHE_ENVELOPE = 0,
	CACHE_BODYSTRUCTURE,
	CACHE_BODY,
	CACHE_SECTION,
	CACHE_HEADERS,
	CACHE_FROM,
	CACHE_TO,
	CACHE_CC,
	CACHE_BCC,
	CACHE_SUBJECT,
};

/* A parsed record: offsets are into the cache file image. */
struct cache_record {
	uint64_t offset; /* of the record (its first length word) */
	size_t len;      /* of the whole record, padding included */
	struct {
		size_t offset; /* of the item's bytes */
		uint32_t len;
	} item[CACHE_NUM_ITEMS];
};

/*
 * Parses the record at offset of the cache file image data[0..size), with
 * cache_parserecord's bounds checks: -1 with ERR_DATA "offset beyond end"
 * or "item N truncated".
 */
int cache_parse_record(const unsigned char *data, size_t size,
		       uint64_t offset, struct cache_record *cr,
		       struct error *err);

/* CRC32 of the record's bytes (what the index's cache_crc holds). */
uint32_t cache_record_crc(const unsigned char *data,
			  const struct cache_record *cr);

enum cache_check {
	CACHE_OK = 0,
	CACHE_NO_OFFSET,  /* cache_offset 0 */
	CACHE_BAD_RECORD, /* offset beyond the file, truncated item */
	CACHE_NO_CRC,     /* cache_crc 0: an old-style record */
	CACHE_BAD_CRC,    /* CRC32 differs from cache_crc */
};

/*
 * Checks the cache record of index record r as imapd does before it trusts
 * it (mailbox_cacherecord_internal); cr (may be NULL) gets the parse.
 */
enum cache_check cache_check_record(const unsigned char *data, size_t size,
				    const struct mailbox_record *r,
				    struct cache_record *cr);
/* A one-line description of a check result ("bad CRC", ...). */
const char *cache_check_string(enum cache_check c);

/*
 * Appends one record made of the 10 items (items[k] of lens[k] bytes) to
 * out, padded as Cyrus pads. Returns the CRC32 of the appended record.
 */
uint32_t cache_format_record(const char *const items[CACHE_NUM_ITEMS],
			     const size_t lens[CACHE_NUM_ITEMS],
			     struct buf *out);

/* The generation number of a cache image, -1 if shorter than 4 bytes. */
int64_t cache_generation(const unsigned char *data, size_t size);

/* Starts a new cache image in out: just the generation. */
void cache_file_init(struct buf *out, uint32_t generation);

/*
 * Appends to the cache image file a copy of the record rec_len bytes long
 * at rec; *offset_r gets its offset. Returns the CRC32 of the record.
 */
uint32_t cache_file_append(struct buf *file, const void *rec, size_t rec_len,
			   uint64_t *offset_r);

#endif
