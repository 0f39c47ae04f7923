/*
 * message.h: what reconstruct needs from a message file (docs/formats/
 * mailbox.md section 7; imap/message.c message_parse_headers,
 * message_parse_string, message_create_record; lib/times.c
 * time_from_rfc5322 of Cyrus 3.6.1).
 *
 * STATUS (issue 4): done and unit-tested: the index fields of a message
 * file -- size, header_size, sentdate, gmtime and the GUID (SHA-1 of the
 * whole file, OpenSSL libcrypto: whatever links this needs -lcrypto).
 * The MIME parse that yields the cache items (ENVELOPE,
 * BODYSTRUCTURE, BODY, SECTION, cached HEADERS, search addresses,
 * SUBJECT) exactly as imapd writes them: lib/mimeparse.h (done).
 */
#ifndef CYRUS_LIB_MESSAGE_H
#define CYRUS_LIB_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct error;

#define MESSAGE_GUID_SIZE 20

struct message_info {
	uint32_t size;        /* file size */
	uint32_t header_size; /* through the CRLF CRLF; whole file if none */
	uint32_t sentdate;    /* Date: day at 00:00 server-local time, or 0 */
	uint32_t gmtime;      /* Date: as UTC seconds, or 0 */
	unsigned char guid[MESSAGE_GUID_SIZE]; /* SHA-1 of the file */
};

/*
 * Parses an RFC 5322 date-time with Cyrus's time_from_rfc5322 rules
 * (optional 3-letter weekday + ',', 1-2 digit day, month name, 2 or 4+
 * digit year; with dateonly the rest is ignored and the day is converted
 * with mktime in local time; else hh:mm[:ss] and a zone: +hhmm, UT, GMT,
 * the US zones, military letters; an unknown zone counts as +0000).
 * Returns 0 and sets *t, or -1 (unparsable or before 1970).
 */
int message_parse_date(const char *s, bool dateonly, time_t *t);

/* The SHA-1 of data[0..len) into guid. */
void message_guid(const void *data, size_t len,
		  unsigned char guid[MESSAGE_GUID_SIZE]);

/*
 * Fills mi from the message bytes: header_size as message_parse_headers
 * finds it (the headers end at the first line that is exactly CRLF), the
 * last Date: header (unfolded, as message_parse_string keeps it) for
 * sentdate and gmtime, the GUID. Never fails: any bytes are some message.
 */
void message_scan(const char *data, size_t len, struct message_info *mi);

/*
 * The defaults a record gets when the Date: header gave nothing (as
 * mailbox_append_index_record and mailbox_reconstruct apply them):
 * gmtime = internaldate, sentdate = internaldate's day at 00:00 local.
 */
void message_info_date_defaults(struct message_info *mi, time_t internaldate);

/* Maps path and scans it. ERR_NOINPUT if missing, ERR_IO on read errors,
 * ERR_DATA for a file of 4 GiB or more. */
int message_scan_file(const char *path, struct message_info *mi,
		      struct error *err);

#endif
