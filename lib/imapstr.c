#include "compat.h"
#include "imapstr.h"

#include <ctype.h>

#include "buf.h"

#define MAXQSTRING 1024

/* Cyrus's imparse_isnatom(): note 0x1f itself passes (its test is < 0x1f). */
static bool is_atom(const char *s, size_t len)
{
	if (!len || len >= 1024)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c & 0x80 || c < 0x1f || c == 0x7f || c == ' ' || c == '{' ||
		    c == '(' || c == ')' || c == '"' || c == '%' || c == '*' ||
		    c == '\\')
			return false;
	}
	return true;
}

static bool is_quotable(const char *s, size_t len)
{
	if (len >= MAXQSTRING)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!c || c & 0x80 || c == '\r' || c == '\n' || c == '"' ||
		    c == '%' || c == '\\')
			return false;
	}
	return true;
}

void imapstr_append_amap(struct buf *out, const char *data, size_t len)
{
	if (!len) {
		buf_adds(out, "\"\"");
	} else if (is_atom(data, len) && !(len == 3 && !memcmp(data, "NIL", 3))) {
		buf_add(out, data, len);
	} else if (is_quotable(data, len)) {
		buf_addch(out, '"');
		buf_add(out, data, len);
		buf_addch(out, '"');
	} else {
		buf_printf(out, "{%zu}\r\n", len);
		buf_add(out, data, len);
	}
}

static bool is_word_end(int c)
{
	return c == EOF || isspace(c) || c == '(' || c == ')' || c == '"';
}

int imapstr_getword(FILE *in, struct buf *word)
{
	buf_reset(word);
	for (;;) {
		int c = getc(in);
		if (is_word_end(c))
			return c;
		buf_addch(word, c);
	}
}

static int get_literal(FILE *in, struct buf *s, size_t maxlen)
{
	size_t len = 0;
	bool digits = false;
	int c;
	while ((c = getc(in)) != EOF && isdigit(c)) {
		if (len > (maxlen - (size_t)(c - '0')) / 10)
			return EOF;
		len = len * 10 + (size_t)(c - '0');
		digits = true;
	}
	if (c == '+')
		c = getc(in);
	if (!digits || c != '}' || getc(in) != '\r' || getc(in) != '\n')
		return EOF;
	buf_grow(s, len);
	if (len && fread(s->s, 1, len, in) != len)
		return EOF;
	buf_setlen(s, len);
	return getc(in);
}

int imapstr_getastring(FILE *in, struct buf *s, size_t maxlen)
{
	buf_reset(s);
	int c = getc(in);
	switch (c) {
	case EOF:
	case ' ':
	case '(':
	case ')':
	case '\r':
	case '\n':
		return EOF;
	case '"':
		for (;;) {
			c = getc(in);
			if (c == '\\')
				c = getc(in);
			else if (c == '"')
				return getc(in);
			if (c == EOF || c == '\r' || c == '\n')
				return EOF;
			buf_addch(s, c);
		}
	case '{':
		return get_literal(in, s, maxlen);
	default:
		while (!is_word_end(c)) {
			buf_addch(s, c);
			c = getc(in);
		}
		return c;
	}
}
