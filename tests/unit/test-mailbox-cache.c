/* Unit tests of lib/cache.h: cyrus.cache records. */
#include "harness.h"

#include <zlib.h>

#include "buf.h"
#include "cache.h"
#include "error.h"
#include "mailbox.h"

static const char *const items[CACHE_NUM_ITEMS] = {
	"(NIL \"hi\" NIL NIL NIL NIL NIL NIL NIL NIL)",
	"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 3 1 NIL NIL NIL NIL)",
	"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 3 1)",
	"\0\0\0\0",
	"X-Mailer: t\r\n",
	"a <a@b>", "", "", "", "\"hi\"",
};

static void lens_of(size_t *lens)
{
	for (int k = 0; k < CACHE_NUM_ITEMS; k++)
		lens[k] = k == CACHE_SECTION ? 4 : strlen(items[k]);
}

static void test_format_parse(void)
{
	struct buf file = BUF_INIT, rec = BUF_INIT;
	struct cache_record cr;
	struct error err = ERROR_INIT;
	size_t lens[CACHE_NUM_ITEMS];
	uint64_t off = 0;

	test_begin("cache: format, append, parse, CRC");
	lens_of(lens);
	uint32_t crc = cache_format_record(items, lens, &rec);
	test_assert_int(rec.len % 4, 0);
	size_t want = 0;
	for (int k = 0; k < CACHE_NUM_ITEMS; k++)
		want += 4 + ((lens[k] + 3) & ~(size_t)3);
	test_assert_int(rec.len, want);
	test_assert_int(crc, (uint32_t)crc32(0, (const Bytef *)rec.s,
					     (uInt)rec.len));
	cache_file_init(&file, 7);
	test_assert_int(cache_file_append(&file, rec.s, rec.len, &off), crc);
	test_assert_int(off, 4);
	test_assert_int(cache_generation((unsigned char *)file.s, file.len), 7);
	test_assert_int(cache_parse_record((unsigned char *)file.s, file.len,
					   off, &cr, &err), 0);
	test_assert_int(cr.len, rec.len);
	for (int k = 0; k < CACHE_NUM_ITEMS; k++) {
		test_assert_idx(cr.item[k].len == lens[k], k);
		test_assert_idx(!memcmp(file.s + cr.item[k].offset, items[k],
					lens[k]), k);
	}
	test_assert_int(cache_record_crc((unsigned char *)file.s, &cr), crc);

	struct mailbox_record r;
	memset(&r, 0, sizeof(r));
	r.cache_offset = off;
	r.cache_crc = crc;
	const unsigned char *d = (const unsigned char *)file.s;
	test_assert_int(cache_check_record(d, file.len, &r, NULL), CACHE_OK);
	r.cache_crc ^= 1;
	test_assert_int(cache_check_record(d, file.len, &r, NULL),
			CACHE_BAD_CRC);
	r.cache_crc = 0;
	test_assert_int(cache_check_record(d, file.len, &r, NULL),
			CACHE_NO_CRC);
	r.cache_offset = 0;
	test_assert_int(cache_check_record(d, file.len, &r, NULL),
			CACHE_NO_OFFSET);
	buf_release(&file);
	buf_release(&rec);
	test_end();
}

static void test_bad(void)
{
	struct buf file = BUF_INIT, rec = BUF_INIT;
	struct cache_record cr;
	struct error err = ERROR_INIT;
	size_t lens[CACHE_NUM_ITEMS];
	uint64_t off;
	struct mailbox_record r;

	test_begin("cache: truncated, garbage and out-of-range records");
	lens_of(lens);
	uint32_t crc = cache_format_record(items, lens, &rec);
	cache_file_init(&file, 0);
	cache_file_append(&file, rec.s, rec.len, &off);
	const unsigned char *d = (const unsigned char *)file.s;
	/* Every truncation is refused. */
	for (size_t n = 0; n < file.len; n++)
		test_assert_idx(cache_parse_record(d, n, off, &cr, &err) < 0,
				n);
	/* Offset past the end, and in the middle of nowhere. */
	test_assert(cache_parse_record(d, file.len, file.len, &cr, &err) < 0);
	test_assert(cache_parse_record(d, file.len, 1ull << 40, &cr, &err) < 0);
	/* A huge length word. */
	file.s[4] = (char)0xff;
	test_assert(cache_parse_record(d, file.len, off, &cr, &err) < 0);
	test_assert(strstr(err.msg, "truncated") != NULL);
	memset(&r, 0, sizeof(r));
	r.cache_offset = off;
	r.cache_crc = crc;
	test_assert_int(cache_check_record(d, file.len, &r, NULL),
			CACHE_BAD_RECORD);
	/* Garbage that parses but fails the CRC. */
	file.s[4] = 0;
	file.s[20] ^= 0x55;
	test_assert_int(cache_check_record(d, file.len, &r, NULL),
			CACHE_BAD_CRC);
	test_assert(cache_generation(d, 3) == -1);
	buf_release(&file);
	buf_release(&rec);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = { test_format_parse, test_bad,
					       NULL };
	return test_run(tests);
}
