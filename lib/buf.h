/*
 * buf.h: a growable byte string (the strbuf shape).
 *
 * Invariants: once initialised with BUF_INIT or buf_init(), s is never NULL
 * and s[len] is always '\0', so text can be used as a C string; binary data
 * (NULs included) is fine too, use len. buf_detach() is the only way to take
 * ownership of the bytes; buf_release() frees them and re-initialises.
 */
#ifndef CYRUS_LIB_BUF_H
#define CYRUS_LIB_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *s;
	size_t len, alloc;
};

extern char buf_empty_[];
#define BUF_INIT { buf_empty_, 0, 0 }

void buf_init(struct buf *b);
void buf_release(struct buf *b);
/* Ensures room for n more bytes (plus the terminating NUL). */
void buf_grow(struct buf *b, size_t n);
void buf_setlen(struct buf *b, size_t len);
void buf_reset(struct buf *b);
void buf_add(struct buf *b, const void *data, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_addch(struct buf *b, int c);
void buf_addbuf(struct buf *b, const struct buf *other);
void buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
void buf_set(struct buf *b, const void *data, size_t n);
void buf_sets(struct buf *b, const char *s);
/* Returns the malloc'd bytes (NUL-terminated), caller frees; b is reset. */
char *buf_detach(struct buf *b, size_t *len_r);
/* Removes trailing whitespace. */
void buf_rtrim(struct buf *b);

#endif
