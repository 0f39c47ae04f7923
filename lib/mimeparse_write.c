/*
 * mimeparse_write.c: the cache items of a parsed message as Cyrus 3.6.1
 * writes them (message_write_envelope, message_write_body,
 * message_write_section, message_write_searchaddr, message_write_nstring).
 */
#include "compat.h"

#include <ctype.h>

#include "charset.h"
#include "mimeparse-private.h"
#include "xmalloc.h"

static void add32(struct buf *b, uint32_t v)
{
	unsigned char p[4] = { (unsigned char)(v >> 24),
			       (unsigned char)(v >> 16),
			       (unsigned char)(v >> 8), (unsigned char)v };
	buf_add(b, p, 4);
}

/* A quoted string, or a literal for long, 8-bit or special text. */
void mimeparse_write_nstring(struct buf *out, const char *s)
{
	if (!s) {
		buf_adds(out, "NIL");
		return;
	}
	size_t len = strlen(s);
	bool literal = len >= 1024;
	for (const char *p = s; !literal && *p; p++)
		if ((*p & 0x80) || *p == '\r' || *p == '\n' || *p == '"' ||
		    *p == '%' || *p == '\\')
			literal = true;
	if (literal) {
		buf_printf(out, "{%zu}\r\n", len);
		buf_add(out, s, len);
	} else {
		buf_addch(out, '"');
		buf_add(out, s, len);
		buf_addch(out, '"');
	}
}

static void write_address(struct buf *out, const struct mime_addr *a)
{
	if (!a) {
		buf_adds(out, "NIL");
		return;
	}
	buf_addch(out, '(');
	for (; a; a = a->next) {
		buf_addch(out, '(');
		mimeparse_write_nstring(out, a->name);
		buf_addch(out, ' ');
		mimeparse_write_nstring(out, a->route);
		buf_addch(out, ' ');
		mimeparse_write_nstring(out, a->mailbox);
		buf_addch(out, ' ');
		mimeparse_write_nstring(out, a->domain);
		buf_addch(out, ')');
	}
	buf_addch(out, ')');
}

void mimeparse_write_envelope(struct buf *out, const struct mime_body *b)
{
	buf_addch(out, '(');
	mimeparse_write_nstring(out, b->date);
	buf_addch(out, ' ');
	mimeparse_write_nstring(out, b->subject);
	buf_addch(out, ' ');
	write_address(out, b->from);
	buf_addch(out, ' ');
	write_address(out, b->sender ? b->sender : b->from);
	buf_addch(out, ' ');
	write_address(out, b->reply_to ? b->reply_to : b->from);
	buf_addch(out, ' ');
	write_address(out, b->to);
	buf_addch(out, ' ');
	write_address(out, b->cc);
	buf_addch(out, ' ');
	write_address(out, b->bcc);
	buf_addch(out, ' ');
	mimeparse_write_nstring(out, b->in_reply_to);
	buf_addch(out, ' ');
	mimeparse_write_nstring(out, b->message_id);
	buf_addch(out, ')');
}

static void write_params(struct buf *out, const struct mime_param *p)
{
	if (!p) {
		buf_adds(out, "NIL");
		return;
	}
	buf_addch(out, '(');
	for (; p; p = p->next) {
		mimeparse_write_nstring(out, p->attribute);
		buf_addch(out, ' ');
		mimeparse_write_nstring(out, p->value);
		if (p->next)
			buf_addch(out, ' ');
	}
	buf_addch(out, ')');
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc */
static void write_extension(struct buf *out, const struct mime_body *b)
{
	if (b->disposition) {
		buf_addch(out, '(');
		mimeparse_write_nstring(out, b->disposition);
		buf_addch(out, ' ');
		write_params(out, b->disposition_params);
		buf_addch(out, ')');
	} else {
		buf_adds(out, "NIL");
	}
	buf_addch(out, ' ');
	if (b->language) {
		buf_addch(out, '(');
		for (const struct mime_param *p = b->language; p; p = p->next) {
			mimeparse_write_nstring(out, p->value);
			if (p->next)
				buf_addch(out, ' ');
		}
		buf_addch(out, ')');
	} else {
		buf_adds(out, "NIL");
	}
	buf_addch(out, ' ');
	mimeparse_write_nstring(out, b->location);
}

void mimeparse_write_body(struct buf *out, const struct mime_body *b,
			  bool structure)
{
	if (!strcmp(b->type, "MULTIPART")) {
		if (b->numparts == 0) {
			/* 0-part multiparts are written as empty text. */
			struct mime_body z;
			memset(&z, 0, sizeof(z));
			buf_init(&z.cacheheaders);
			mimeparse_bodytype(MIMEPARSE_DEFAULT_TYPE, &z);
			mimeparse_write_body(out, &z, structure);
			mimeparse_body_free(&z);
			return;
		}
		buf_addch(out, '(');
		for (int i = 0; i < b->numparts; i++)
			mimeparse_write_body(out, &b->subpart[i], structure);
		buf_addch(out, ' ');
		mimeparse_write_nstring(out, b->subtype);
		if (structure) {
			buf_addch(out, ' ');
			write_params(out, b->params);
			buf_addch(out, ' ');
			write_extension(out, b);
		}
		buf_addch(out, ')');
		return;
	}

	buf_addch(out, '(');
	mimeparse_write_nstring(out, b->type);
	buf_addch(out, ' ');
	mimeparse_write_nstring(out, b->subtype);
	buf_addch(out, ' ');
	write_params(out, b->params);
	buf_addch(out, ' ');
	mimeparse_write_nstring(out, b->id);
	buf_addch(out, ' ');
	mimeparse_write_nstring(out, b->description);
	buf_addch(out, ' ');
	mimeparse_write_nstring(out, b->encoding ? b->encoding : "7BIT");
	buf_printf(out, " %u", b->content_size);
	if (!strcmp(b->type, "TEXT")) {
		buf_printf(out, " %u", b->content_lines);
	} else if (!strcmp(b->type, "MESSAGE") &&
		   !strcmp(b->subtype, "RFC822")) {
		buf_addch(out, ' ');
		mimeparse_write_envelope(out, b->subpart);
		buf_addch(out, ' ');
		mimeparse_write_body(out, b->subpart, structure);
		buf_printf(out, " %u", b->content_lines);
	}
	if (structure) {
		buf_addch(out, ' ');
		mimeparse_write_nstring(out, b->md5);
		buf_addch(out, ' ');
		write_extension(out, b);
	}
	buf_addch(out, ')');
}

static void write_nocharset(struct buf *out, const struct mime_body *b)
{
	static const unsigned char zero[20];
	add32(out, 0x0000ffff);
	buf_add(out, b ? b->content_guid : zero, 20);
	add32(out, b ? b->decoded_content_size : 0);
	add32(out, b ? b->content_lines : 0);
}

static void write_charset(struct buf *out, const struct mime_body *b)
{
	int enc;
	const char *cs;
	size_t len = 0;

	mimeparse_charset(b, &enc, &cs);
	if (cs) {
		len = (strlen(cs) / 4 + 1) * 4;
		if (len > 0xffff)
			len = 0;
	}
	add32(out, (uint32_t)((len & 0xffff) << 16) | (uint32_t)(enc & 0xff));
	if (len) {
		char *tmp = xzmalloc(len);
		memcpy(tmp, cs, strlen(cs));
		buf_add(out, tmp, len);
		free(tmp);
	}
	buf_add(out, b->content_guid, 20);
	add32(out, b->decoded_content_size);
	add32(out, b->content_lines);
}

static void write_part_entry(struct buf *out, const struct mime_body *p,
			     bool multipart_parent)
{
	add32(out, p->header_offset);
	add32(out, p->header_size);
	add32(out, p->content_offset);
	if (p->numparts == 0 && !strcmp(p->type, "MULTIPART")) {
		add32(out, 0);
		if (multipart_parent)
			write_nocharset(out, p);
		else
			write_charset(out, p);
	} else {
		add32(out, p->content_size);
		write_charset(out, p);
	}
}

void mimeparse_write_section(struct buf *out, const struct mime_body *b)
{
	if (!strcmp(b->type, "MESSAGE") && !strcmp(b->subtype, "RFC822")) {
		const struct mime_body *s = b->subpart;
		if (s->numparts) {
			add32(out, (uint32_t)s->numparts + 1);
			add32(out, s->header_offset);
			add32(out, s->header_size);
			add32(out, s->content_offset);
			add32(out, s->content_size);
			write_nocharset(out, s);
			for (int i = 0; i < s->numparts; i++)
				write_part_entry(out, &s->subpart[i], false);
			for (int i = 0; i < s->numparts; i++)
				mimeparse_write_section(out, &s->subpart[i]);
		} else {
			add32(out, 2);
			add32(out, s->header_offset);
			add32(out, s->header_size);
			add32(out, s->content_offset);
			add32(out, s->content_size);
			write_nocharset(out, s);
			add32(out, s->header_offset);
			add32(out, s->header_size);
			add32(out, s->content_offset);
			if (!strcmp(s->type, "MULTIPART")) {
				add32(out, 0);
				write_nocharset(out, NULL);
			} else {
				add32(out, s->content_size);
				write_charset(out, s);
			}
			mimeparse_write_section(out, s);
		}
	} else if (b->numparts) {
		add32(out, (uint32_t)b->numparts + 1);
		add32(out, 0);
		add32(out, 0xffffffffu);
		add32(out, 0);
		add32(out, 0xffffffffu);
		write_nocharset(out, NULL);
		for (int i = 0; i < b->numparts; i++)
			write_part_entry(out, &b->subpart[i], true);
		for (int i = 0; i < b->numparts; i++)
			mimeparse_write_section(out, &b->subpart[i]);
	} else {
		add32(out, 0);
	}
}

static void add_lcase(struct buf *out, const char *s)
{
	for (; *s; s++)
		buf_addch(out, (*s >= 'A' && *s <= 'Z') ? *s + 32 : *s);
}

void mimeparse_write_searchaddr(struct buf *out, const struct mime_addr *a)
{
	static const char atext_specials[] = "!#$%&'*+-/=?^_`{|}~";
	bool prev = false;

	for (; a; a = a->next) {
		if (!a->domain) {
			if (a->mailbox) {
				if (prev)
					buf_addch(out, ',');
				char *t = charset_decode_mimeheader(a->mailbox);
				buf_adds(out, t);
				free(t);
				buf_addch(out, ':');
				prev = false;
			} else {
				buf_addch(out, ';');
				prev = true;
			}
			continue;
		}
		if (prev)
			buf_addch(out, ',');
		if (a->name) {
			char *t = charset_decode_mimeheader(a->name);
			const char *c;
			for (c = t; *c; c++) {
				/* plain char: 8-bit bytes are not atext */
				if (!isalpha(*c) && !isdigit(*c) &&
				    !isspace(*c) && !strchr(atext_specials, *c))
					break;
			}
			if (*c) {
				buf_addch(out, '"');
				for (c = t; *c; c++) {
					if (*c == '\\' || *c == '"')
						buf_addch(out, '\\');
					buf_addch(out, *c);
				}
				buf_addch(out, '"');
			} else {
				buf_adds(out, t);
			}
			free(t);
			buf_addch(out, ' ');
		}
		buf_addch(out, '<');
		if (a->route) {
			add_lcase(out, a->route);
			buf_addch(out, ':');
		}
		add_lcase(out, a->mailbox);
		buf_addch(out, '@');
		add_lcase(out, a->domain);
		buf_addch(out, '>');
		prev = true;
	}
}
