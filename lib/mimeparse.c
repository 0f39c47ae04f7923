/*
 * mimeparse.c: the MIME parse of Cyrus 3.6.1 imap/message.c, behaviour for
 * behaviour (see mimeparse.h). Header values are handled as C strings in a
 * copy of the header block, as Cyrus does: what follows a NUL in the
 * header block is not looked at.
 */
#include "compat.h"
#include "mimeparse.h"

#include <ctype.h>
#include <strings.h>
#include <zlib.h>

#include "buf.h"
#include "charset.h"
#include "message.h"
#include "mimeparse-private.h"
#include "xmalloc.h"

#define MIME_TSPECIALS "()<>@,;:\\\"/[]?="
#define MAX_HEADER_LINES 1000
#define BOUNDARY_LIMIT 1000
#define MAX_CACHED_HEADER_SIZE 32

static bool is_space(int c)
{
	return isspace((unsigned char)c) != 0;
}

/* Cyrus compares plain (signed) chars with ' ': 8-bit bytes are "< ' '". */
static bool is_ctl(char c)
{
	return (signed char)c < ' ';
}

static bool is_tspecial(char c)
{
	return c && strchr(MIME_TSPECIALS, c) != NULL;
}

static char *ucase(char *s)
{
	for (char *p = s; *p; p++)
		if (islower((unsigned char)*p))
			*p = (char)toupper((unsigned char)*p);
	return s;
}

struct msg {
	const char *base;
	size_t len, offset;
};

struct bounds {
	char **v;
	int count, alloc;
};

static void bounds_push(struct bounds *b, char *s)
{
	if (b->count == b->alloc) {
		b->alloc = b->alloc ? 2 * b->alloc : 4;
		b->v = xrealloc(b->v, (size_t)b->alloc * sizeof(*b->v));
	}
	b->v[b->count++] = s;
}

static void bounds_truncate(struct bounds *b, int n)
{
	while (b->count > n)
		free(b->v[--b->count]);
}

/* ------------------------------------------------------------------ */
/* Header values                                                       */

/* Skips RFC 822 whitespace and comments; NULL at the end of the field. */
static void skip_cfws(const char **s)
{
	const char *p = *s;
	int level;

	if (!p)
		return;
	while (*p && (is_space(*p) || *p == '(')) {
		if (*p == '\n') {
			p++;
			if (*p != ' ' && *p != '\t') {
				*s = NULL;
				return;
			}
		} else if (*p == '(') {
			p++;
			level = 1;
			while (level) {
				switch (*p) {
				case '\n':
					p++;
					if (*p == ' ' || *p == '\t')
						break;
					/* fall through */
				case '\0':
					*s = NULL;
					return;
				case '\\':
					p++;
					break;
				case '(':
					level++;
					break;
				case ')':
					level--;
					break;
				}
				p++;
			}
		} else {
			p++;
		}
	}
	*s = *p ? p : NULL;
}

/* The end of a (possibly folded) field starting at hdr: its last '\n'
 * (minus a CR before it), or the end of the string. */
static const char *field_end(const char *hdr, const char *from)
{
	const char *e = from;
	if (!*from)
		return from;
	do {
		e = strchr(e + 1, '\n');
	} while (e && (e[1] == ' ' || e[1] == '\t'));
	if (e) {
		if (e > hdr && e[-1] == '\r')
			e--;
	} else {
		e = from + strlen(from);
	}
	return e;
}

/* message_parse_string: unfolded, leading blanks skipped; replaces *hdrp. */
static void parse_string(const char *hdr, char **hdrp)
{
	free(*hdrp);
	while (*hdr == ' ' || *hdr == '\t')
		hdr++;
	const char *end = field_end(hdr, hdr);
	char *v = xstrndup(hdr, (size_t)(end - hdr));
	char *w = v;
	for (char *r = v; *r; r++) {
		if (*r == '\n') {
			if (w > v && w[-1] == '\r')
				w--;
			continue;
		}
		*w++ = *r;
	}
	*w = '\0';
	*hdrp = v;
}

static void parse_address(const char *hdr, struct mime_addr **addrp)
{
	if (*addrp) {
		mimeparse_addr_free(*addrp);
		*addrp = NULL;
	}
	const char *e = hdr;
	const char *end = NULL;
	if (*hdr) {
		do {
			e = strchr(e + 1, '\n');
		} while (e && (e[1] == ' ' || e[1] == '\t'));
		if (e) {
			if (e > hdr && e[-1] == '\r')
				e--;
			end = e;
		}
	}
	char *v = end ? xstrndup(hdr, (size_t)(end - hdr)) : xstrdup(hdr);
	mimeparse_addr_list(v, addrp);
	free(v);
}

static void parse_encoding(const char *hdr, char **hdrp)
{
	const char *p;

	free(*hdrp);
	*hdrp = NULL;
	skip_cfws(&hdr);
	if (!hdr)
		return;
	for (p = hdr; *p && !is_space(*p) && *p != '('; p++)
		if (is_ctl(*p) || is_tspecial(*p))
			return;
	size_t len = (size_t)(p - hdr);
	skip_cfws(&p);
	if (p)
		return;
	*hdrp = ucase(xstrndup(hdr, len));
}

static void params_free(struct mime_param **pp)
{
	struct mime_param *p = *pp, *n;
	*pp = NULL;
	for (; p; p = n) {
		n = p->next;
		free(p->attribute);
		free(p->value);
		free(p);
	}
}

static void parse_params(const char *hdr, struct mime_param **paramp)
{
	for (;;) {
		const char *attr, *value;
		size_t attrlen, valuelen;

		skip_cfws(&hdr);
		if (!hdr)
			return;
		attr = hdr;
		for (; *hdr && !is_space(*hdr) && *hdr != '=' && *hdr != '(';
		     hdr++)
			if (is_ctl(*hdr) || is_tspecial(*hdr))
				goto skip;
		attrlen = (size_t)(hdr - attr);
		skip_cfws(&hdr);
		if (!hdr)
			return;
		if (*hdr++ != '=')
			goto skip;
		skip_cfws(&hdr);
		if (!hdr)
			return;
		value = hdr;
		if (*hdr == '"') {
			hdr++;
			while (*hdr && *hdr != '"') {
				if (*hdr == '\\') {
					hdr++;
					if (!*hdr)
						return;
				}
				if (*hdr == '\r') {
					if (hdr[1] == '\n' &&
					    (hdr[2] == ' ' || hdr[2] == '\t'))
						hdr += 2;
					else
						return;
				}
				hdr++;
			}
			if (!*hdr++)
				return;
		} else {
			const char *endval = hdr;
			while (*hdr && *hdr != ';' && *hdr != '(') {
				if (*hdr == '\r') {
					if (hdr[1] == '\n' &&
					    (hdr[2] == ' ' || hdr[2] == '\t')) {
						hdr += 2;
						continue;
					}
					break;
				}
				if (*hdr & 0x80) {
					/* unencoded 8-bit is allowed */
				} else if (*hdr < ' ' && *hdr != '\t') {
					goto skip;
				}
				if (*hdr != ' ' && *hdr != '\t')
					endval = hdr;
				hdr++;
			}
			hdr = endval + 1;
		}
		valuelen = (size_t)(hdr - value);
		skip_cfws(&hdr);
		if (hdr && *hdr++ != ';') {
skip:
			hdr += strcspn(hdr, ";\r\n");
			if (*hdr == ';')
				hdr++;
			continue;
		}

		struct mime_param *param = xzmalloc(sizeof(*param));
		*paramp = param;
		param->attribute = ucase(xstrndup(attr, attrlen));
		param->value = xzmalloc(valuelen + 1);
		if (*value == '"') {
			char *p = param->value;
			value++;
			while (*value != '"') {
				if (*value == '\\')
					value++;
				else if (*value == '\r')
					value += 2;
				*p++ = *value++;
			}
			*p = '\0';
		} else {
			memcpy(param->value, value, valuelen);
		}
		paramp = &param->next;
	}
}

/* Appends src to *dst percent-encoded as RFC 2231 wants. */
static char *xvalue_append(char *dst, const char *src, bool encode)
{
	struct buf b = BUF_INIT;
	buf_adds(&b, dst);
	for (const char *f = src; *f; f++) {
		unsigned char c = (unsigned char)*f;
		if (encode && (c <= ' ' || c >= 0x7f || c == '*' ||
			       c == '\'' || c == '%' || is_tspecial(*f)))
			buf_printf(&b, "%%%02X", c);
		else
			buf_addch(&b, c);
	}
	free(dst);
	return buf_detach(&b, NULL);
}

/* RFC 2231 continuations folded as message_fold_params does. */
static void fold_params(struct mime_param **params)
{
	for (struct mime_param *tp = *params; tp; tp = tp->next) {
		char *ast = strchr(tp->attribute, '*');
		if (!ast || ast[1] != '0' ||
		    !(!ast[2] || (ast[2] == '*' && !ast[3])))
			continue;
		bool ext = ast[2] == '*';
		*ast = '\0';
		size_t alen = (size_t)(ast - tp->attribute);
		for (int section = 1; section < 100; section++) {
			char sb[5];
			size_t sblen = (size_t)snprintf(sb, sizeof(sb), "*%d",
							section);
			struct mime_param **c;
			for (c = params; *c; c = &(*c)->next) {
				const char *a = (*c)->attribute;
				if (!strncmp(a, tp->attribute, alen) &&
				    !strncmp(a + alen, sb, sblen) &&
				    (a[alen + sblen] == '\0' ||
				     (a[alen + sblen] == '*' &&
				      a[alen + sblen + 1] == '\0')))
					break;
			}
			if (!*c)
				break;
			bool cext = (*c)->attribute[alen + sblen] == '*';
			if (!cext) {
				tp->value = xvalue_append(tp->value,
							  (*c)->value, ext);
			} else if (ext) {
				tp->value = xvalue_append(tp->value,
							  (*c)->value, false);
			} else {
				char *nv = xvalue_append(xstrdup("''"),
							 tp->value, true);
				nv = xvalue_append(nv, (*c)->value, false);
				free(tp->value);
				tp->value = nv;
				ext = true;
			}
			struct mime_param *gone = *c;
			*c = gone->next;
			free(gone->attribute);
			free(gone->value);
			free(gone);
		}
		if (ext) {
			ast[0] = '*';
			ast[1] = '\0';
		} else {
			ast[0] = '\0';
		}
	}
}

static void parse_type(const char *hdr, char **typep, char **subtypep,
		       struct mime_param **paramp)
{
	const char *type, *subtype;
	size_t typelen, subtypelen;
	char *decbuf = NULL;

	skip_cfws(&hdr);
	if (!hdr)
		return;
	/* Old Mail.app encoded the whole value as an encoded word. */
	if (strlen(hdr) > 2 && hdr[0] == '=' && hdr[1] == '?') {
		decbuf = charset_decode_mimeheader(hdr);
		if (decbuf && strcmp(decbuf, hdr))
			hdr = decbuf;
	}
	type = hdr;
	for (; *hdr && !is_space(*hdr) && *hdr != '/' && *hdr != '('; hdr++)
		if (is_ctl(*hdr) || is_tspecial(*hdr))
			goto done;
	typelen = (size_t)(hdr - type);
	skip_cfws(&hdr);
	if (!hdr)
		goto done;
	if (*hdr++ != '/')
		goto done;
	skip_cfws(&hdr);
	if (!hdr)
		goto done;
	subtype = hdr;
	for (; *hdr && !is_space(*hdr) && *hdr != ';' && *hdr != '('; hdr++)
		if (is_ctl(*hdr) || is_tspecial(*hdr))
			goto done;
	subtypelen = (size_t)(hdr - subtype);
	skip_cfws(&hdr);
	if (hdr && *hdr != ';')
		goto done;
	*typep = ucase(xstrndup(type, typelen));
	*subtypep = ucase(xstrndup(subtype, subtypelen));
	if (hdr) {
		parse_params(hdr + 1, paramp);
		fold_params(paramp);
	}
done:
	free(decbuf);
}

void mimeparse_bodytype(const char *hdr, struct mime_body *b)
{
	if (b->type) {
		free(b->type);
		free(b->subtype);
		b->type = b->subtype = NULL;
		params_free(&b->params);
	}
	parse_type(hdr, &b->type, &b->subtype, &b->params);
}

static void parse_disposition(const char *hdr, struct mime_body *b)
{
	const char *d;

	if (b->disposition) {
		free(b->disposition);
		b->disposition = NULL;
		params_free(&b->disposition_params);
	}
	skip_cfws(&hdr);
	if (!hdr)
		return;
	d = hdr;
	for (; *hdr && !is_space(*hdr) && *hdr != ';' && *hdr != '('; hdr++)
		if (is_ctl(*hdr) || is_tspecial(*hdr))
			return;
	size_t len = (size_t)(hdr - d);
	skip_cfws(&hdr);
	if (hdr && *hdr != ';')
		return;
	b->disposition = ucase(xstrndup(d, len));
	if (hdr) {
		parse_params(hdr + 1, &b->disposition_params);
		fold_params(&b->disposition_params);
	}
}

static void parse_language(const char *hdr, struct mime_param **paramp)
{
	if (*paramp)
		params_free(paramp);
	for (;;) {
		skip_cfws(&hdr);
		if (!hdr)
			return;
		const char *value = hdr;
		for (; *hdr && !is_space(*hdr) && *hdr != ',' && *hdr != '(';
		     hdr++)
			if (*hdr != '-' && !isalpha((unsigned char)*hdr))
				return;
		size_t len = (size_t)(hdr - value);
		skip_cfws(&hdr);
		if (hdr && *hdr++ != ',')
			return;
		struct mime_param *p = xzmalloc(sizeof(*p));
		*paramp = p;
		p->value = ucase(xstrndup(value, len));
		paramp = &p->next;
	}
}

/* ------------------------------------------------------------------ */
/* Header names                                                        */

static const char *const never_cached[] = {
	"bcc", "cc", "date", "delivery-date", "envelope-to", "from",
	"in-reply-to", "mime-version", "received", "return-path", "subject",
	"to", "dkim-signature", "domainkey-signature", "domainkey-x509",
	"message-id", "arc-seal", "arc-message-signature",
	"arc-authentication-results", "authentication-results",
	"received-spf", "archived-at", "listbox-message-date",
	"topicbox-message-uuid", "topicbox-policy-reasoning",
};

/* X- headers imapd caches anyway (mailbox_header_cache.gperf). */
static const char *const x_cached[] = {
	"x-mailer", "x-trace", "x-ref", "x-priority", "x-msmail-priority",
	"x-msoesrec", "x-spam-score", "x-resolved-to", "x-delivered-to",
	"x-mail-from", "x-truedomain-domain", "x-me-message-id",
	"x-cyrus-session-id", "x-universally-unique-identifier",
	"x-uniform-type-identifier", "x-apple-base-url",
	"x-apple-mail-remote-attachments",
};

/* mailbox_cached_header_inline: is the header starting at text cached? */
static bool header_cached(const char *text)
{
	char name[MAX_CACHED_HEADER_SIZE];
	int i;

	for (i = 0; i < MAX_CACHED_HEADER_SIZE; i++) {
		if (!text[i] || text[i] == '\r' || text[i] == '\n')
			return false;
		if (text[i] == ':')
			break;
		name[i] = text[i];
	}
	if (i == MAX_CACHED_HEADER_SIZE)
		return false;
	name[i] = '\0';
	for (size_t k = 0; k < ARRAY_SIZE(never_cached); k++)
		if (!strcasecmp(name, never_cached[k]))
			return false;
	for (size_t k = 0; k < ARRAY_SIZE(x_cached); k++)
		if (!strcasecmp(name, x_cached[k]))
			return true;
	if ((name[0] == 'x' || name[0] == 'X') && name[1] == '-')
		return false;
	return true;
}

enum hdr {
	H_OTHER,
	H_BCC,
	H_CC,
	H_CONTENT_DESCRIPTION,
	H_CONTENT_DISPOSITION,
	H_CONTENT_ID,
	H_CONTENT_LANGUAGE,
	H_CONTENT_LOCATION,
	H_CONTENT_MD5,
	H_CONTENT_TRANSFER_ENCODING,
	H_CONTENT_TYPE,
	H_DATE,
	H_FROM,
	H_IN_REPLY_TO,
	H_MESSAGE_ID,
	H_REPLY_TO,
	H_SUBJECT,
	H_SENDER,
	H_TO,
};

static const struct {
	const char *name;
	enum hdr h;
} known_headers[] = {
	{ "bcc", H_BCC },
	{ "cc", H_CC },
	{ "content-description", H_CONTENT_DESCRIPTION },
	{ "content-disposition", H_CONTENT_DISPOSITION },
	{ "content-id", H_CONTENT_ID },
	{ "content-language", H_CONTENT_LANGUAGE },
	{ "content-location", H_CONTENT_LOCATION },
	{ "content-md5", H_CONTENT_MD5 },
	{ "content-transfer-encoding", H_CONTENT_TRANSFER_ENCODING },
	{ "content-type", H_CONTENT_TYPE },
	{ "date", H_DATE },
	{ "from", H_FROM },
	{ "in-reply-to", H_IN_REPLY_TO },
	{ "message-id", H_MESSAGE_ID },
	{ "reply-to", H_REPLY_TO },
	{ "subject", H_SUBJECT },
	{ "sender", H_SENDER },
	{ "to", H_TO },
};

static enum hdr header_lookup(const char *s, const char **valp)
{
	size_t len = strcspn(s, ":\r\n");
	if (s[len] != ':')
		return H_OTHER;
	*valp = s + len + 1;
	for (size_t k = 0; k < ARRAY_SIZE(known_headers); k++)
		if (strlen(known_headers[k].name) == len &&
		    !strncasecmp(s, known_headers[k].name, len))
			return known_headers[k].h;
	return H_OTHER;
}

/* Appends the (folded) header starting at hdr and CRLF to out. */
static void cache_header(const char *hdr, struct buf *out)
{
	const char *end = field_end(hdr, hdr);
	buf_add(out, hdr, (size_t)(end - hdr));
	buf_add(out, "\r\n", 2);
}

/* ------------------------------------------------------------------ */
/* The body parse                                                      */

/* An enclosing boundary? A closing one drops it and those inside it. */
static bool pending_boundary(const char *s, size_t slen, struct bounds *bs)
{
	if (slen < 2 || s[0] != '-' || s[1] != '-')
		return false;
	const char *bb = s + 2;
	size_t blen = slen - 2;
	for (int i = 0; i < bs->count; i++) {
		size_t len = strlen(bs->v[i]);
		if (blen < len)
			continue;
		if (!strncmp(bb, bs->v[i], len)) {
			if (blen >= len + 2 && bb[len] == '-' &&
			    bb[len + 1] == '-')
				bounds_truncate(bs, i);
			else if (blen > len + 1 && bb[len] && !is_space(bb[len]))
				continue; /* a longer boundary */
			return true;
		}
	}
	return false;
}

static void body_content_guid(const char *base, struct mime_body *b)
{
	int enc;
	mimeparse_charset(b, &enc, NULL);
	size_t dlen = 0;
	if (!charset_decode_sha1(base, b->content_size, enc, b->content_guid,
				 &dlen)) {
		b->has_content_guid = true;
		b->decoded_content_size = (uint32_t)dlen;
	} else {
		memset(b->content_guid, 0, sizeof(b->content_guid));
		b->has_content_guid = false;
		b->decoded_content_size = 0;
	}
}

static void parse_content(struct msg *m, struct mime_body *b,
			  struct bounds *bs)
{
	size_t start = m->offset;

	while (m->offset < m->len) {
		const char *line = m->base + m->offset;
		const char *nl = memchr(line, '\n', m->len - m->offset);
		const char *endline = nl ? nl + 1 : m->base + m->len;
		size_t len = (size_t)(endline - line);
		m->offset += len;

		if (len >= 2 && line[0] == '-' && line[1] == '-' &&
		    pending_boundary(line, len, bs)) {
			b->boundary_size = (uint32_t)len;
			b->boundary_lines++;
			if (b->content_lines) {
				b->content_lines--;
				b->boundary_lines++;
			}
			if (b->content_size > 1) {
				b->content_size -= 2;
				b->boundary_size += 2;
			}
			break;
		}
		b->content_size += (uint32_t)len;
		if (endline[-1] == '\n')
			b->content_lines++;
	}
	body_content_guid(m->base + start, b);
}

static bool parse_headers(struct msg *m, struct mime_body *b,
			  const char *deftype, struct bounds *bs);
static void parse_multipart(struct msg *m, struct mime_body *b,
			    struct bounds *bs);

static void parse_body(struct msg *m, struct mime_body *b,
		       const char *deftype, struct bounds *bs)
{
	struct bounds top = { NULL, 0, 0 };

	memset(b, 0, sizeof(*b));
	buf_init(&b->cacheheaders);
	if (!bs) {
		bs = &top;
		b->cache_headers = true;
	}
	bool sawboundary = parse_headers(m, b, deftype, bs);

	if (!strcmp(b->type, "MULTIPART")) {
		if (!sawboundary)
			parse_multipart(m, b, bs);
	} else if (!strcmp(b->type, "MESSAGE") &&
		   !strcmp(b->subtype, "RFC822")) {
		const char *base = m->base + m->offset;
		b->subpart = xzmalloc(sizeof(*b->subpart));
		if (sawboundary) {
			buf_init(&b->subpart->cacheheaders);
			mimeparse_bodytype(MIMEPARSE_DEFAULT_TYPE, b->subpart);
		} else {
			struct mime_body *s = b->subpart;
			parse_body(m, s, MIMEPARSE_DEFAULT_TYPE, bs);
			b->content_size = s->header_size + s->content_size;
			b->content_lines = s->header_lines + s->content_lines;
			b->boundary_size = s->boundary_size;
			b->boundary_lines = s->boundary_lines;
			body_content_guid(base, b);
		}
	} else if (!sawboundary) {
		parse_content(m, b, bs);
	}
	bounds_truncate(&top, 0);
	free(top.v);
}

/* Returns whether the header block ended at an enclosing boundary. */
static bool parse_headers(struct msg *m, struct mime_body *b,
			  const char *deftype, struct bounds *bs)
{
	struct buf h = BUF_INIT;
	bool sawboundary = false;
	const char *value;

	b->header_offset = (uint32_t)m->offset;
	buf_addch(&h, '\n'); /* primes the "line start" test */

	for (;;) {
		size_t old = h.len;
		while (m->offset < m->len) {
			char c = m->base[m->offset++];
			buf_addch(&h, c);
			if (c == '\n')
				break;
		}
		if (h.len == old)
			break;
		char *next = h.s + old;
		if (next[-1] == '\n' && next[0] == '\r' && next[1] == '\n')
			break;
		size_t len = strlen(next);
		if (next[-1] == '\n' && *next == '-' &&
		    pending_boundary(next, len, bs)) {
			b->boundary_size = (uint32_t)len;
			b->boundary_lines++;
			if (next - 1 > h.s) {
				b->boundary_size += 2;
				b->boundary_lines++;
				next[-2] = '\0';
			} else {
				*next = '\0';
			}
			sawboundary = true;
			break;
		}
	}

	b->content_offset = (uint32_t)m->offset;
	b->header_size = (uint32_t)strlen(h.s + 1);

	bool skipping = false;
	uint32_t lines = 0;
	bool first = true;
	for (char *next = h.s; *next; next++) {
		if (*next != '\n')
			continue;
		if (first)
			first = false;
		else
			lines++;
		if (skipping)
			continue;
		if (lines > MAX_HEADER_LINES) {
			skipping = true;
			continue;
		}
		if (b->cache_headers && next[1] != ' ' && next[1] != '\t' &&
		    header_cached(next + 1))
			cache_header(next + 1, &b->cacheheaders);

		switch (header_lookup(next + 1, &value)) {
		case H_BCC:
			parse_address(value, &b->bcc);
			break;
		case H_CC:
			parse_address(value, &b->cc);
			break;
		case H_CONTENT_DESCRIPTION:
			parse_string(value, &b->description);
			break;
		case H_CONTENT_DISPOSITION:
			parse_disposition(value, b);
			break;
		case H_CONTENT_ID:
			parse_string(value, &b->id);
			break;
		case H_CONTENT_LANGUAGE:
			parse_language(value, &b->language);
			break;
		case H_CONTENT_LOCATION:
			parse_string(value, &b->location);
			break;
		case H_CONTENT_MD5:
			parse_string(value, &b->md5);
			break;
		case H_CONTENT_TRANSFER_ENCODING:
			parse_encoding(value, &b->encoding);
			break;
		case H_CONTENT_TYPE:
			mimeparse_bodytype(value, b);
			break;
		case H_DATE:
			parse_string(value, &b->date);
			break;
		case H_FROM:
			parse_address(value, &b->from);
			break;
		case H_IN_REPLY_TO:
			parse_string(value, &b->in_reply_to);
			break;
		case H_MESSAGE_ID:
			parse_string(value, &b->message_id);
			break;
		case H_REPLY_TO:
			parse_address(value, &b->reply_to);
			break;
		case H_SUBJECT:
			parse_string(value, &b->subject);
			break;
		case H_SENDER:
			parse_address(value, &b->sender);
			break;
		case H_TO:
			parse_address(value, &b->to);
			break;
		case H_OTHER:
			break;
		}
	}
	/* header_lines counts the newlines after the priming one. */
	b->header_lines = lines;

	if (!b->type)
		mimeparse_bodytype(deftype, b);
	buf_release(&h);
	return sawboundary;
}

static void parse_multipart(struct msg *m, struct mime_body *b,
			    struct bounds *bs)
{
	struct mime_body preamble, epilogue;
	const char *deftype = MIMEPARSE_DEFAULT_TYPE;
	struct mime_param *bp;

	memset(&preamble, 0, sizeof(preamble));
	memset(&epilogue, 0, sizeof(epilogue));
	if (!strcmp(b->subtype, "DIGEST"))
		deftype = "MESSAGE/RFC822";
	for (bp = b->params; bp; bp = bp->next)
		if (!strcmp(bp->attribute, "BOUNDARY") ||
		    !strcmp(bp->attribute, "BOUNDARY*"))
			break;
	if (!bp) {
		parse_content(m, b, bs);
		return;
	}
	char *id = NULL;
	if (bp->attribute[8] == '*')
		id = charset_decode_xvalue(bp->value);
	if (!id)
		id = xstrdup(bp->value);
	bounds_push(bs, id);
	int depth = bs->count;

	parse_content(m, &preamble, bs);

	while (bs->count == depth && bs->count < BOUNDARY_LIMIT) {
		b->subpart = xrealloc(b->subpart, (size_t)(b->numparts + 1) *
							  sizeof(*b->subpart));
		struct mime_body *s = &b->subpart[b->numparts];
		parse_body(m, s, deftype, bs);
		if (m->offset == m->len && s->boundary_size == 0)
			bounds_truncate(bs, 0);
		b->numparts++;
	}

	if (bs->count == depth - 1) {
		parse_content(m, &epilogue, bs);
	} else if (b->numparts) {
		struct mime_body *last = &b->subpart[b->numparts - 1];
		b->boundary_size = last->boundary_size;
		b->boundary_lines = last->boundary_lines;
		last->boundary_size = 0;
		last->boundary_lines = 0;
	} else {
		b->boundary_size = preamble.boundary_size;
		b->boundary_lines = preamble.boundary_lines;
		preamble.boundary_size = 0;
		preamble.boundary_lines = 0;
	}

	b->content_size = preamble.content_size + preamble.boundary_size;
	b->content_lines = preamble.content_lines + preamble.boundary_lines;
	for (int i = 0; i < b->numparts; i++) {
		struct mime_body *s = &b->subpart[i];
		b->content_size += s->header_size + s->content_size +
				   s->boundary_size;
		b->content_lines += s->header_lines + s->content_lines +
				    s->boundary_lines;
	}
	b->content_size += epilogue.content_size;
	b->content_lines += epilogue.content_lines;
	b->boundary_size += epilogue.boundary_size;
	b->boundary_lines += epilogue.boundary_lines;
}

void mimeparse_charset(const struct mime_body *b, int *enc_r,
		       const char **cs_r)
{
	int enc = CHARSET_ENC_NONE;
	const char *cs = "us-ascii";

	if (b->encoding) {
		const char *e = b->encoding;
		if (!strcmp(e, "7BIT") || !strcmp(e, "8BIT") ||
		    !strcmp(e, "BINARY"))
			enc = CHARSET_ENC_NONE;
		else if (!strcmp(e, "BASE64"))
			enc = CHARSET_ENC_BASE64;
		else if (!strcmp(e, "QUOTED-PRINTABLE"))
			enc = CHARSET_ENC_QP;
		else
			enc = CHARSET_ENC_UNKNOWN;
	}
	if (!b->type || !strcmp(b->type, "TEXT")) {
		for (const struct mime_param *p = b->params; p; p = p->next)
			if (!strcasecmp(p->attribute, "charset") && p->value &&
			    *p->value && charset_known(p->value))
				cs = p->value;
	} else if (!strcmp(b->type, "MESSAGE")) {
		if (!strcmp(b->subtype, "RFC822"))
			cs = NULL;
		enc = CHARSET_ENC_NONE;
	} else {
		cs = NULL;
	}
	if (enc_r)
		*enc_r = enc;
	if (cs_r)
		*cs_r = cs;
}

void mimeparse_body_free(struct mime_body *b)
{
	if (!b)
		return;
	free(b->type);
	free(b->subtype);
	params_free(&b->params);
	free(b->id);
	free(b->description);
	free(b->encoding);
	free(b->md5);
	free(b->disposition);
	params_free(&b->disposition_params);
	params_free(&b->language);
	free(b->location);
	free(b->date);
	free(b->subject);
	free(b->in_reply_to);
	free(b->message_id);
	mimeparse_addr_free(b->from);
	mimeparse_addr_free(b->sender);
	mimeparse_addr_free(b->reply_to);
	mimeparse_addr_free(b->to);
	mimeparse_addr_free(b->cc);
	mimeparse_addr_free(b->bcc);
	if (b->subpart) {
		if (b->numparts)
			for (int i = 0; i < b->numparts; i++)
				mimeparse_body_free(&b->subpart[i]);
		else
			mimeparse_body_free(b->subpart);
		free(b->subpart);
	}
	buf_release(&b->cacheheaders);
}

/* ------------------------------------------------------------------ */
/* The record                                                          */

static void add_xdr(struct buf *rec, const struct buf *item)
{
	unsigned char l[4] = { (unsigned char)(item->len >> 24),
			       (unsigned char)(item->len >> 16),
			       (unsigned char)(item->len >> 8),
			       (unsigned char)item->len };
	buf_add(rec, l, 4);
	buf_add(rec, item->s, item->len);
	buf_add(rec, "\0\0\0", (4 - (item->len & 3)) & 3);
}

void mimeparse_message(const char *data, size_t len, struct message_info *mi,
		       struct buf items[CACHE_NUM_ITEMS], struct buf *rec,
		       uint32_t *crc_r)
{
	struct msg m = { data, len, 0 };
	struct mime_body body, top;
	struct buf ib[CACHE_NUM_ITEMS];

	parse_body(&m, &body, MIMEPARSE_DEFAULT_TYPE, NULL);

	if (mi) {
		time_t t;
		memset(mi, 0, sizeof(*mi));
		mi->size = (uint32_t)len;
		mi->header_size = body.header_size;
		if (body.date && message_parse_date(body.date, true, &t) == 0)
			mi->sentdate = (uint32_t)t;
		if (body.date && message_parse_date(body.date, false, &t) == 0)
			mi->gmtime = (uint32_t)t;
		message_guid(data, len, mi->guid);
	}

	if (items || rec) {
		for (int k = 0; k < CACHE_NUM_ITEMS; k++)
			buf_init(&ib[k]);
		memset(&top, 0, sizeof(top));
		top.type = (char *)"MESSAGE";
		top.subtype = (char *)"RFC822";
		top.subpart = &body;

		char *subject = charset_decode_mimeheader(body.subject);
		mimeparse_write_envelope(&ib[CACHE_ENVELOPE], &body);
		mimeparse_write_body(&ib[CACHE_BODYSTRUCTURE], &body, true);
		mimeparse_write_body(&ib[CACHE_BODY], &body, false);
		mimeparse_write_section(&ib[CACHE_SECTION], &top);
		buf_addbuf(&ib[CACHE_HEADERS], &body.cacheheaders);
		mimeparse_write_searchaddr(&ib[CACHE_FROM], body.from);
		mimeparse_write_searchaddr(&ib[CACHE_TO], body.to);
		mimeparse_write_searchaddr(&ib[CACHE_CC], body.cc);
		mimeparse_write_searchaddr(&ib[CACHE_BCC], body.bcc);
		mimeparse_write_nstring(&ib[CACHE_SUBJECT], subject);
		free(subject);

		size_t start = rec ? rec->len : 0;
		for (int k = 0; k < CACHE_NUM_ITEMS; k++) {
			if (rec)
				add_xdr(rec, &ib[k]);
			if (items)
				buf_addbuf(&items[k], &ib[k]);
			buf_release(&ib[k]);
		}
		if (rec && crc_r)
			*crc_r = (uint32_t)crc32(0, (const Bytef *)rec->s +
							   start,
						 (uInt)(rec->len - start));
	}
	mimeparse_body_free(&body);
}
