/* json.h: JSON text as jansson writes it, for --json outputs. */
#ifndef CYRUS_LIB_JSON_H
#define CYRUS_LIB_JSON_H

struct buf;

/* Appends s (NUL-terminated, taken as UTF-8) as a JSON string: "..." with
 * jansson's escapes (\" \\ \b \f \n \r \t, other controls as \u00XX). */
void json_append_string(struct buf *out, const char *s);

#endif
