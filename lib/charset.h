/*
 * charset.h: the character set work the message parser needs to produce
 * the cache items of Cyrus IMAP 3.6.1 (lib/charset.c of 3.6.1:
 * charset_lookupname, charset_parse_mimeheader, charset_decode_sha1,
 * charset_parse_mimexvalue), with the same results for what real mail
 * holds.
 *
 * Differences from Cyrus: conversions from charsets other than us-ascii
 * and utf-8 use glibc iconv where Cyrus uses ICU; the two agree on the
 * charsets mail uses (iso-8859-*, windows-125x, koi8-*, iso-2022-jp, ...)
 * and may differ on how invalid bytes of those are replaced.
 */
#ifndef CYRUS_LIB_CHARSET_H
#define CYRUS_LIB_CHARSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHARSET_ENC_NONE 0
#define CHARSET_ENC_QP 1
#define CHARSET_ENC_BASE64 2
#define CHARSET_ENC_BASE64URL 3
#define CHARSET_ENC_UNKNOWN 255

/*
 * Whether Cyrus would know charset name (its alias table, then what a
 * converter accepts). Empty and NULL names are unknown.
 */
bool charset_known(const char *name);

/*
 * Decodes the RFC 2047 encoded words of s into UTF-8 as
 * charset_parse_mimeheader(s, 0) does: text outside encoded words is
 * us-ascii (8-bit bytes become U+FFFD, NULs vanish), whitespace between
 * two encoded words is dropped, an unknown charset gives one U+FFFD.
 * Returns a malloc'd string, caller frees; NULL for NULL.
 */
char *charset_decode_mimeheader(const char *s);

/*
 * SHA-1 and length of the decoded content src[0..len) in encoding
 * (CHARSET_ENC_*). Returns 0, or -1 for an unknown encoding (nothing
 * written).
 */
int charset_decode_sha1(const char *src, size_t len, int encoding,
			unsigned char sha1[20], size_t *decodedlen_r);

/*
 * Decodes an RFC 2231 extended value ("charset'lang'%41%42"). Returns a
 * malloc'd string, caller frees, or NULL if s is not of that form.
 */
char *charset_decode_xvalue(const char *s);

#endif
