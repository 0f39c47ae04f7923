/*
 * imapstr.h: IMAP strings as Cyrus's tools read and print them (atoms,
 * quoted strings, literals), for cyr_dbtool's batch mode and dumps.
 */
#ifndef CYRUS_LIB_IMAPSTR_H
#define CYRUS_LIB_IMAPSTR_H

#include <stddef.h>
#include <stdio.h>

struct buf;

/*
 * Appends data as Cyrus's prot_printamap() prints it: "" when empty, a bare
 * atom when it is one (and not NIL), a quoted string when every byte may be
 * quoted and it is shorter than 1024 bytes, else a literal "{N}\r\n" + data.
 */
void imapstr_append_amap(struct buf *out, const char *data, size_t len);

/*
 * Reads one word (up to whitespace, parentheses or a double quote) into
 * word; returns the character that ended it, or EOF.
 */
int imapstr_getword(FILE *in, struct buf *word);
/*
 * Reads one astring (atom, "quoted" with backslash escapes, or a literal
 * {N} / {N+} CRLF followed by N bytes, NULs allowed) into s; returns the
 * character after it, or EOF on a syntax error or end of input.
 * maxlen bounds a literal's size (larger: EOF).
 */
int imapstr_getastring(FILE *in, struct buf *s, size_t maxlen);

#endif
