/* xmalloc.h: allocation that never fails visibly (exits EX_OSERR on OOM). */
#ifndef CYRUS_LIB_XMALLOC_H
#define CYRUS_LIB_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xzmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
/* Returns a malloc'd string built like printf; caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
