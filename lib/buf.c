#include "compat.h"
#include "buf.h"

#include "xmalloc.h"

char buf_empty_[1];

void buf_init(struct buf *b)
{
	b->s = buf_empty_;
	b->len = b->alloc = 0;
}

void buf_release(struct buf *b)
{
	if (b->alloc)
		free(b->s);
	buf_init(b);
}

void buf_grow(struct buf *b, size_t n)
{
	size_t want = b->len + n + 1;
	if (want <= b->alloc)
		return;
	size_t alloc = b->alloc ? b->alloc : 64;
	while (alloc < want)
		alloc = alloc / 2 * 3 + 16;
	if (b->alloc) {
		b->s = xrealloc(b->s, alloc);
	} else {
		char *s = xmalloc(alloc);
		memcpy(s, b->s, b->len + 1);
		b->s = s;
	}
	b->alloc = alloc;
}

void buf_setlen(struct buf *b, size_t len)
{
	if (len > b->len)
		buf_grow(b, len - b->len);
	b->len = len;
	if (b->alloc)
		b->s[len] = '\0';
}

void buf_reset(struct buf *b)
{
	buf_setlen(b, 0);
}

void buf_add(struct buf *b, const void *data, size_t n)
{
	if (!n)
		return;
	buf_grow(b, n);
	memcpy(b->s + b->len, data, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void buf_addch(struct buf *b, int c)
{
	buf_grow(b, 1);
	b->s[b->len++] = (char)c;
	b->s[b->len] = '\0';
}

void buf_addbuf(struct buf *b, const struct buf *other)
{
	buf_add(b, other->s, other->len);
}

void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	va_copy(cp, ap);
	buf_grow(b, 64);
	int n = vsnprintf(b->s + b->len, b->alloc - b->len, fmt, cp);
	va_end(cp);
	if (n < 0)
		BUG("vsnprintf failed");
	if ((size_t)n >= b->alloc - b->len) {
		buf_grow(b, (size_t)n);
		n = vsnprintf(b->s + b->len, b->alloc - b->len, fmt, ap);
	}
	b->len += (size_t)n;
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void buf_set(struct buf *b, const void *data, size_t n)
{
	buf_reset(b);
	buf_add(b, data, n);
}

void buf_sets(struct buf *b, const char *s)
{
	buf_set(b, s, strlen(s));
}

char *buf_detach(struct buf *b, size_t *len_r)
{
	char *s;
	if (len_r)
		*len_r = b->len;
	if (b->alloc) {
		s = b->s;
	} else {
		s = xmalloc(1);
		s[0] = '\0';
	}
	buf_init(b);
	return s;
}

void buf_rtrim(struct buf *b)
{
	while (b->len && strchr(" \t\r\n", b->s[b->len - 1]))
		b->len--;
	if (b->alloc)
		b->s[b->len] = '\0';
}
