/*
 * mimeparse.h: the MIME parse of a message file that yields exactly the
 * cyrus.cache record Cyrus IMAP 3.6.1 writes for it (imap/message.c
 * message_parse_mapped, message_parse_body/headers/multipart/content,
 * message_create_record, message_write_cache and the writers of ENVELOPE,
 * BODYSTRUCTURE, BODY, SECTION, the search addresses; lib/parseaddr.c;
 * docs/formats/mailbox.md section 6).
 *
 * The parse is Cyrus's, broken input included: a header block ends only at
 * a line that is exactly CRLF (a bare-LF message is all header), a NUL in
 * the header block ends what is looked at (and the header size), a missing
 * closing boundary ends every open multipart at the end of the file,
 * boundaries are matched as prefixes unless followed by non-space,
 * 8-bit header text is kept raw in ENVELOPE/BODYSTRUCTURE (as literals)
 * and becomes U+FFFD in the decoded search items.
 * Defaults of imapd.conf assumed: maxheaderlines 1000, boundary_limit
 * 1000, rfc2046_strict off, rfc2047_utf8 off.
 *
 * Verified: byte-identical cache records for every message of a store
 * filled by the real 3.6.1 lmtpd/reconstruct (tests/t/3000-reconstruct.sh,
 * tests/unit/test-mimeparse.c).
 */
#ifndef CYRUS_LIB_MIMEPARSE_H
#define CYRUS_LIB_MIMEPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cache.h"


struct message_info;

/*
 * Parses the message data[0..len) and fills:
 *  - mi (may be NULL): size, header_size (as Cyrus computes it, which
 *    differs from message_scan() only for broken headers), sentdate,
 *    gmtime (0 when the Date: header does not parse; the caller applies
 *    message_info_date_defaults()), GUID;
 *  - items (may be NULL): the 10 cache items, each appended to items[k];
 *  - rec (may be NULL): the whole cache record appended, as
 *    cache_format_record() pads it; *crc_r (may be NULL) its CRC32.
 * Never fails: any bytes are some message.
 */
void mimeparse_message(const char *data, size_t len, struct message_info *mi,
		       struct buf items[CACHE_NUM_ITEMS], struct buf *rec,
		       uint32_t *crc_r);

#endif
