#include "compat.h"
#include "imapparse.h"

#include <ctype.h>

const struct imapparse_limits imapparse_default_limits = {
	.max_line = 64 * 1024,
	.max_literal = 64 * 1024 * 1024,
	.max_response = 128 * 1024 * 1024,
};

void imapparse_init(struct imapparse *p, const struct imapparse_limits *lim)
{
	memset(p, 0, sizeof(*p));
	p->limits = lim ? *lim : imapparse_default_limits;
	buf_init(&p->in);
	buf_init(&p->cur);
	error_clear(&p->failure);
}

void imapparse_release(struct imapparse *p)
{
	buf_release(&p->in);
	buf_release(&p->cur);
}

void imapparse_feed(struct imapparse *p, const void *data, size_t len)
{
	/* Drop the consumed prefix before it dominates the buffer. */
	if (p->pos && p->pos >= p->in.len / 2) {
		memmove(p->in.s, p->in.s + p->pos, p->in.len - p->pos);
		buf_setlen(&p->in, p->in.len - p->pos);
		p->pos = 0;
	}
	buf_add(&p->in, data, len);
}

bool imapparse_pending(const struct imapparse *p)
{
	return p->pos < p->in.len || p->cur.len || p->in_literal;
}

void imap_reply_init(struct imap_reply *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->raw_);
	buf_init(&r->parts_);
	r->tag = r->keyword = r->text = "";
	r->msgno = -1;
}

void imap_reply_release(struct imap_reply *r)
{
	buf_release(&r->raw_);
	buf_release(&r->parts_);
	imap_reply_init(r);
}

/* A short printable excerpt of server bytes, for error messages. */
static void excerpt(struct buf *out, const char *s, size_t len)
{
	size_t i;
	for (i = 0; i < len && i < 60; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f)
			buf_addch(out, c);
		else
			buf_printf(out, "\\x%02x", c);
	}
	if (i < len)
		buf_adds(out, "...");
}

static int fail(struct imapparse *p, struct error *err, const char *what,
		const char *s, size_t len)
{
	struct buf b = BUF_INIT;
	buf_adds(&b, what);
	if (s) {
		buf_adds(&b, ": '");
		excerpt(&b, s, len);
		buf_addch(&b, '\'');
	}
	error_set(&p->failure, ERR_PROTOCOL, "%s", b.s);
	buf_release(&b);
	p->failed = true;
	if (err)
		*err = p->failure;
	return -1;
}

long long imapparse_literal_suffix(const char *s, size_t len, size_t *start_r)
{
	size_t i;
	long long n = 0;

	if (len < 3 || s[len - 1] != '}')
		return -1;
	i = len - 1;
	if (s[i - 1] == '+')
		i--;
	size_t digits_end = i;
	while (i > 0 && isdigit((unsigned char)s[i - 1]))
		i--;
	if (i == digits_end || i == 0 || s[i - 1] != '{')
		return -1;
	if (digits_end - i > 12)
		return (long long)1 << 50;  /* absurd; the caller's limit says no */
	for (size_t j = i; j < digits_end; j++)
		n = n * 10 + (s[j] - '0');
	if (start_r)
		*start_r = i - 1;
	return n;
}

static bool is_tag_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && !strchr("(){\"%\\*+]", c);
}

static bool is_atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && !strchr("(){\"%\\*", c);
}

/* Splits the assembled response in p->cur into reply; takes its bytes. */
static int split_reply(struct imapparse *p, struct imap_reply *r,
		       struct error *err)
{
	const char *s = p->cur.s;
	size_t len = p->cur.len, i = 0, tag_end, kw_start, kw_end;

	while (i < len && s[i] != ' ')
		i++;
	tag_end = i;
	if (tag_end == 0)
		return fail(p, err, "bad response from server (no tag)", s, len);

	imap_reply_release(r);
	buf_add(&r->parts_, s, tag_end);
	buf_addch(&r->parts_, '\0');

	if (tag_end == 1 && s[0] == '+') {
		r->kind = IMAP_REPLY_CONTINUATION;
		kw_start = kw_end = tag_end;
		goto text;
	}
	if (tag_end == 1 && s[0] == '*') {
		r->kind = IMAP_REPLY_UNTAGGED;
	} else {
		for (size_t j = 0; j < tag_end; j++)
			if (!is_tag_char((unsigned char)s[j]))
				return fail(p, err, "bad response from server",
					    s, len);
		r->kind = IMAP_REPLY_TAGGED;
	}
	if (i >= len)
		return fail(p, err, "bad response from server (no keyword)",
			    s, len);
	i++;
	kw_start = i;
	if (r->kind == IMAP_REPLY_UNTAGGED && i < len &&
	    isdigit((unsigned char)s[i])) {
		long n = 0;
		while (i < len && isdigit((unsigned char)s[i])) {
			if (n < 100000000000L)
				n = n * 10 + (s[i] - '0');
			i++;
		}
		if (i < len && s[i] == ' ') {
			r->msgno = n;
			i++;
			kw_start = i;
		} else {
			i = kw_start;
		}
	}
	while (i < len && s[i] != ' ' && s[i] != '\r' && s[i] != '\n')
		i++;
	kw_end = i;
	for (size_t j = kw_start; j < kw_end; j++)
		if (!is_atom_char((unsigned char)s[j]) && s[j] != '[' &&
		    s[j] != ']')
			return fail(p, err, "bad response from server", s, len);
	if (kw_end == kw_start)
		return fail(p, err, "bad response from server (no keyword)",
			    s, len);
	if (r->kind == IMAP_REPLY_TAGGED) {
		size_t n = kw_end - kw_start;
		if (!((n == 2 && !strncasecmp(s + kw_start, "OK", 2)) ||
		      (n == 2 && !strncasecmp(s + kw_start, "NO", 2)) ||
		      (n == 3 && !strncasecmp(s + kw_start, "BAD", 3))))
			return fail(p, err,
				    "bad response from server (tagged response "
				    "is not OK, NO or BAD)", s, len);
	}
text:
	buf_add(&r->parts_, s + kw_start, kw_end - kw_start);
	buf_addch(&r->parts_, '\0');
	i = kw_end;
	if (i < len && s[i] == ' ')
		i++;
	/* The reply owns the bytes now; cur starts afresh. */
	r->raw_ = p->cur;
	buf_init(&p->cur);
	r->tag = r->parts_.s;
	r->keyword = r->parts_.s + tag_end + 1;
	r->text = r->raw_.s + i;
	r->textlen = r->raw_.len - i;
	return 1;
}

int imapparse_next(struct imapparse *p, struct imap_reply *reply,
		   struct error *err)
{
	if (p->failed) {
		if (err)
			*err = p->failure;
		return -1;
	}
	for (;;) {
		size_t avail = p->in.len - p->pos;
		const char *in = p->in.s + p->pos;

		if (p->in_literal) {
			size_t n = avail < p->literal_left ? avail : p->literal_left;
			buf_add(&p->cur, in, n);
			p->pos += n;
			p->literal_left -= n;
			if (p->literal_left)
				return 0;
			p->in_literal = false;
			p->line_start = p->cur.len;
			continue;
		}

		const char *nl = memchr(in, '\n', avail);
		size_t linelen = nl ? (size_t)(nl - in) : avail;
		if (p->cur.len - p->line_start + linelen > p->limits.max_line)
			return fail(p, err, "server response line too long",
				    in, linelen);
		if (!nl)
			return 0;
		p->pos += linelen + 1;
		if (linelen && in[linelen - 1] == '\r')
			linelen--;
		if (memchr(in, '\0', linelen))
			return fail(p, err, "NUL byte in server response",
				    in, linelen);
		if (p->cur.len + linelen > p->limits.max_response)
			return fail(p, err, "server response too long",
				    in, linelen);
		buf_add(&p->cur, in, linelen);

		size_t lstart;
		const char *line = p->cur.s + p->line_start;
		size_t curline = p->cur.len - p->line_start;
		long long n = imapparse_literal_suffix(line, curline, &lstart);
		if (n < 0)
			return split_reply(p, reply, err);
		if ((unsigned long long)n > p->limits.max_literal) {
			struct buf b = BUF_INIT;
			buf_printf(&b, "server literal of %lld bytes exceeds "
				   "the limit of %zu bytes", n,
				   p->limits.max_literal);
			int r = fail(p, err, b.s, NULL, 0);
			buf_release(&b);
			return r;
		}
		if (p->cur.len + 2 + (size_t)n > p->limits.max_response)
			return fail(p, err, "server response too long",
				    p->cur.s, p->cur.len);
		/* A response that starts with a literal has no tag. */
		if (p->line_start == 0 && lstart == 0)
			return fail(p, err, "bad response from server",
				    p->cur.s, p->cur.len);
		buf_adds(&p->cur, "\r\n");
		p->in_literal = n > 0;
		p->literal_left = (size_t)n;
		p->line_start = p->cur.len;
	}
}

void imap_tokenizer_init(struct imap_tokenizer *t, const char *text,
			 size_t len)
{
	t->p = text;
	t->end = text + len;
}

int imap_tokenizer_next(struct imap_tokenizer *t, struct imap_token *tok,
			struct error *err)
{
	buf_reset(&tok->value);
	while (t->p < t->end && (*t->p == ' ' || *t->p == '\r' ||
				 *t->p == '\n'))
		t->p++;
	if (t->p >= t->end) {
		tok->kind = IMAP_TOK_END;
		return 0;
	}
	char c = *t->p;
	if (c == '(' || c == ')') {
		tok->kind = c == '(' ? IMAP_TOK_LPAREN : IMAP_TOK_RPAREN;
		t->p++;
		return 0;
	}
	if (c == '"') {
		t->p++;
		while (t->p < t->end && *t->p != '"') {
			if (*t->p == '\\' && t->p + 1 < t->end)
				t->p++;
			buf_addch(&tok->value, *t->p++);
		}
		if (t->p >= t->end)
			return error_set(err, ERR_PROTOCOL,
					 "unterminated quoted string in "
					 "server response");
		t->p++;
		tok->kind = IMAP_TOK_QUOTED;
		return 0;
	}
	if (c == '{') {
		const char *q = t->p + 1;
		unsigned long long n = 0;
		while (q < t->end && isdigit((unsigned char)*q) && n < (1ULL << 40))
			n = n * 10 + (unsigned)(*q++ - '0');
		if (q < t->end && *q == '+')
			q++;
		if (q + 3 > t->end || q[0] != '}' || q[1] != '\r' ||
		    q[2] != '\n' || (unsigned long long)(t->end - (q + 3)) < n)
			return error_set(err, ERR_PROTOCOL,
					 "malformed literal in server response");
		q += 3;
		buf_add(&tok->value, q, (size_t)n);
		t->p = q + n;
		tok->kind = IMAP_TOK_LITERAL;
		return 0;
	}
	/* An atom runs to a space or a parenthesis; brackets stay inside. */
	while (t->p < t->end && *t->p != ' ' && *t->p != '(' &&
	       *t->p != ')' && *t->p != '\r' && *t->p != '\n')
		buf_addch(&tok->value, *t->p++);
	tok->kind = IMAP_TOK_ATOM;
	return 0;
}

bool imap_token_is_nil(const struct imap_token *tok)
{
	return tok->kind == IMAP_TOK_ATOM && tok->value.len == 3 &&
	       !strcasecmp(tok->value.s, "NIL");
}
