/* mimeparse-private.h: the parsed body tree shared by lib/mimeparse*.c. */
#ifndef CYRUS_LIB_MIMEPARSE_PRIVATE_H
#define CYRUS_LIB_MIMEPARSE_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

struct mime_param {
	struct mime_param *next;
	char *attribute, *value;
};

/* An address as lib/parseaddr.c leaves it: strings point into freeme or
 * are static. A group start has no domain, a group end nothing at all. */
struct mime_addr {
	struct mime_addr *next;
	const char *name, *route, *mailbox, *domain;
	char *freeme;
};

struct mime_body {
	char *type, *subtype; /* upper case */
	struct mime_param *params;
	char *id, *description, *encoding, *md5;
	char *disposition;
	struct mime_param *disposition_params;
	struct mime_param *language;
	char *location;
	char *date, *subject, *in_reply_to, *message_id;
	struct mime_addr *from, *sender, *reply_to, *to, *cc, *bcc;

	uint32_t header_offset, header_size, header_lines;
	uint32_t content_offset, content_size, content_lines;
	uint32_t boundary_size, boundary_lines;

	int numparts;
	struct mime_body *subpart; /* numparts entries, or one for rfc822 */

	unsigned char content_guid[20];
	bool has_content_guid;
	uint32_t decoded_content_size;

	struct buf cacheheaders; /* top level only */
	bool cache_headers;
};

void mimeparse_addr_list(const char *s, struct mime_addr **addrp);
void mimeparse_addr_free(struct mime_addr *a);

void mimeparse_body_free(struct mime_body *b);
/* Splits a Content-Type value; used for the default type too. */
void mimeparse_bodytype(const char *hdr, struct mime_body *b);
/* Encoding and charset of a part as message_parse_charset: the charset
 * name as written (static or pointing into b), NULL if none. */
void mimeparse_charset(const struct mime_body *b, int *enc_r,
		       const char **cs_r);

void mimeparse_write_envelope(struct buf *out, const struct mime_body *b);
void mimeparse_write_body(struct buf *out, const struct mime_body *b,
			  bool structure);
void mimeparse_write_section(struct buf *out, const struct mime_body *top);
void mimeparse_write_searchaddr(struct buf *out, const struct mime_addr *a);
void mimeparse_write_nstring(struct buf *out, const char *s);

#define MIMEPARSE_DEFAULT_TYPE "TEXT/PLAIN; CHARSET=us-ascii"

#endif
