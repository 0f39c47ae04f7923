/* Unit tests of lib/message.h; expected values are what the real 3.6.1
 * lmtpd stored in cyrus.index for the same Date: headers (TZ=UTC). */
#include "harness.h"

#include <time.h>

#include "message.h"

static const struct {
	const char *date;
	long sentdate, gmtime; /* -1: unparsable */
} dates[] = {
	{ "Mon, 01 Jan 2024 10:00:00 +0000", 1704067200, 1704103200 },
	{ "Tue, 2 Jan 2024 23:30:00 -0800", 1704153600, 1704267000 },
	{ "3 Jan 2024 01:00 +0530", 1704240000, 1704223800 },
	{ "Thu, 04 Jan 99 12:00:00 GMT", 915408000, 915451200 },
	{ "Fri, 05 Jan 2024 12:00:00 EST", 1704412800, 1704474000 },
	{ "Sat, 06 Jan 2024 12:00:00 PDT", 1704499200, 1704567600 },
	{ "Sun, 07 Jan 2024 12:00:00 Z", 1704585600, 1704628800 },
	{ "Mon, 08 Jan 2024 12:00:00 +0100 (CET)", 1704672000, 1704711600 },
	{ "Wed, 10-Jan-2024 12:00:00 +0000", 1704844800, 1704888000 },
	{ "Mon, 01 Jan 2024 10:00:00 +0200", 1704067200, 1704096000 },
	{ "garbage date", -1, -1 },
	{ "Tuesday, 09 Jan 2024 12:00:00 +0000", -1, -1 },
	{ "Thu, 11 Jan 1969 00:00:00 +0000", -1, -1 },
	{ "", -1, -1 },
	{ "Mon, 01 Foo 2024 10:00:00 +0000", -1, -1 },
	{ "Mon, 01 Jan 2024", 1704067200, -1 },
};

static void test_dates(void)
{
	test_begin("message: Date: parsing as time_from_rfc5322");
	for (size_t k = 0; k < ARRAY_SIZE(dates); k++) {
		time_t t;
		int r = message_parse_date(dates[k].date, true, &t);
		test_assert_idx(dates[k].sentdate < 0 ? r < 0 :
				(r == 0 && t == dates[k].sentdate), k);
		r = message_parse_date(dates[k].date, false, &t);
		test_assert_idx(dates[k].gmtime < 0 ? r < 0 :
				(r == 0 && t == dates[k].gmtime), k);
	}
	time_t t;
	test_assert(message_parse_date(NULL, false, &t) < 0);
	test_end();
}

static void test_scan(void)
{
	struct message_info mi;
	static const char m1[] =
		"From: a@b.c\r\nDate: Mon, 01 Jan 2024\r\n 10:00:00 +0200\r\n"
		"Subject: folded\r\n\r\nx\r\n";
	static const char m2[] = "From: a@b.c\r\nSubject: no body\r\n";
	static const char m3[] = "Date: Mon, 01 Jan 2024 10:00:00 +0000\n"
				 "Subject: bare LF\n\nbody\n";

	test_begin("message: header size, last Date:, GUID");
	message_scan(m1, sizeof(m1) - 1, &mi);
	test_assert_int(mi.size, sizeof(m1) - 1);
	test_assert_int(mi.header_size, sizeof(m1) - 1 - 3);
	test_assert_int(mi.gmtime, 1704096000); /* folded value unfolded */
	test_assert_int(mi.sentdate, 1704067200);
	/* No blank line: the whole file is header; no Date: -> 0. */
	message_scan(m2, sizeof(m2) - 1, &mi);
	test_assert_int(mi.header_size, sizeof(m2) - 1);
	test_assert_int(mi.gmtime, 0);
	message_info_date_defaults(&mi, 1795613941);
	test_assert_int(mi.gmtime, 1795613941);
	test_assert_int(mi.sentdate, 1795564800);
	/* A bare-LF blank line does not end the header (CRLF only). */
	message_scan(m3, sizeof(m3) - 1, &mi);
	test_assert_int(mi.header_size, sizeof(m3) - 1);
	test_assert_int(mi.gmtime, 1704103200);
	/* SHA-1 of "abc". */
	message_scan("abc", 3, &mi);
	static const unsigned char abc[20] = {
		0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e,
		0x25, 0x71, 0x78, 0x50, 0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d };
	test_assert_mem(mi.guid, 20, abc, 20);
	/* Empty and NUL-laden input do not crash. */
	message_scan("", 0, &mi);
	test_assert_int(mi.header_size, 0);
	message_scan("Date\0:\r\n\r\n", 10, &mi);
	test_assert_int(mi.header_size, 10);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = { test_dates, test_scan, NULL };
	setenv("TZ", "UTC", 1);
	tzset();
	return test_run(tests);
}
