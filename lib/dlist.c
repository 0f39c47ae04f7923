#include "compat.h"
#include "dlist.h"

#include <ctype.h>

#include "buf.h"
#include "error.h"
#include "imapstr.h"
#include "xmalloc.h"

static struct dlist *dlist_alloc(enum dlist_type type, const char *key)
{
	struct dlist *dl = xzmalloc(sizeof(*dl));
	dl->type = type;
	dl->key = key ? xstrdup(key) : NULL;
	return dl;
}

struct dlist *dlist_new_kvlist(const char *key)
{
	return dlist_alloc(DLIST_KVLIST, key);
}

struct dlist *dlist_new_list(const char *key)
{
	return dlist_alloc(DLIST_LIST, key);
}

static struct dlist *dlist_append(struct dlist *parent, struct dlist *child)
{
	if (parent->type != DLIST_LIST && parent->type != DLIST_KVLIST)
		BUG("dlist: append to a non-list");
	if (parent->type == DLIST_KVLIST && !child->key)
		BUG("dlist: kvlist item without a key");
	if (parent->tail)
		parent->tail->next = child;
	else
		parent->head = child;
	parent->tail = child;
	return child;
}

struct dlist *dlist_add_map(struct dlist *parent, const char *key,
			    const char *data, size_t len)
{
	struct dlist *dl = dlist_alloc(DLIST_STRING, key);
	dl->val = xmalloc(len + 1);
	memcpy(dl->val, data, len);
	dl->val[len] = '\0';
	dl->len = len;
	return dlist_append(parent, dl);
}

struct dlist *dlist_add_atom(struct dlist *parent, const char *key,
			     const char *val)
{
	if (!val)
		return dlist_append(parent, dlist_alloc(DLIST_NIL, key));
	return dlist_add_map(parent, key, val, strlen(val));
}

struct dlist *dlist_add_num(struct dlist *parent, const char *key,
			    unsigned long long val)
{
	char num[32];
	int n = snprintf(num, sizeof(num), "%llu", val);
	return dlist_add_map(parent, key, num, (size_t)n);
}

struct dlist *dlist_add_kvlist(struct dlist *parent, const char *key)
{
	return dlist_append(parent, dlist_alloc(DLIST_KVLIST, key));
}

struct dlist *dlist_add_list(struct dlist *parent, const char *key)
{
	return dlist_append(parent, dlist_alloc(DLIST_LIST, key));
}

struct dlist *dlist_get(const struct dlist *kv, const char *key)
{
	if (!kv || kv->type != DLIST_KVLIST)
		return NULL;
	for (struct dlist *i = kv->head; i; i = i->next)
		if (i->key && !strcmp(i->key, key))
			return i;
	return NULL;
}

const char *dlist_get_string(const struct dlist *kv, const char *key)
{
	const struct dlist *dl = dlist_get(kv, key);
	return dl && dl->type == DLIST_STRING ? dl->val : NULL;
}

void dlist_free(struct dlist **dlp)
{
	struct dlist *dl = *dlp;
	if (!dl)
		return;
	*dlp = NULL;
	/* Siblings iteratively, children recursively (depth is bounded). */
	while (dl) {
		struct dlist *next = dl->next;
		struct dlist *child = dl->head;
		dlist_free(&child);
		free(dl->key);
		free(dl->val);
		free(dl);
		dl = next;
	}
}

/* Cyrus prints into a buffer as a client: literals are "{N+}". */
static void print_string(struct buf *out, const char *s, size_t len)
{
	size_t start = out->len;
	if (memchr(s, '\0', len)) {
		buf_printf(out, "{%zu+}\r\n", len);
		buf_add(out, s, len);
		return;
	}
	imapstr_append_amap(out, s, len);
	/* Only a literal starts with '{' (it is not an atom character). */
	if (out->s[start] == '{') {
		char *close = memchr(out->s + start, '}', out->len - start);
		size_t at = (size_t)(close - out->s);
		buf_grow(out, 1);
		memmove(out->s + at + 1, out->s + at, out->len - at + 1);
		out->s[at] = '+';
		out->len++;
	}
}

static void print_item(const struct dlist *dl, bool printkey, struct buf *out)
{
	if (printkey) {
		if (dl->key)
			print_string(out, dl->key, strlen(dl->key));
		else
			buf_adds(out, "NIL");
		buf_addch(out, ' ');
	}
	switch (dl->type) {
	case DLIST_NIL:
		buf_adds(out, "NIL");
		break;
	case DLIST_STRING:
		print_string(out, dl->val, dl->len);
		break;
	case DLIST_KVLIST:
	case DLIST_LIST:
		buf_adds(out, dl->type == DLIST_KVLIST ? "%(" : "(");
		for (const struct dlist *i = dl->head; i; i = i->next) {
			print_item(i, dl->type == DLIST_KVLIST, out);
			if (i->next)
				buf_addch(out, ' ');
		}
		buf_addch(out, ')');
		break;
	}
}

void dlist_print(const struct dlist *dl, struct buf *out)
{
	print_item(dl, false, out);
}

struct parser {
	const char *base, *p, *end;
	int depth;
	struct error *err;
};

static int parse_fail(struct parser *ps, const char *what)
{
	if (ps->p >= ps->end)
		return error_set(ps->err, ERR_DATA,
				 "dlist: truncated at offset %zu: %s",
				 (size_t)(ps->end - ps->base), what);
	return error_set(ps->err, ERR_DATA,
			 "dlist: bad byte 0x%02x at offset %zu: %s",
			 (unsigned char)*ps->p, (size_t)(ps->p - ps->base),
			 what);
}

/* One string; *nil_r tells the bare atom NIL apart. */
static int parse_string(struct parser *ps, struct buf *s, bool *nil_r)
{
	buf_reset(s);
	*nil_r = false;
	if (ps->p >= ps->end)
		return parse_fail(ps, "value expected");
	if (*ps->p == '"') {
		ps->p++;
		while (ps->p < ps->end) {
			char c = *ps->p++;
			if (c == '"')
				return 0;
			if (c == '\\') {
				if (ps->p >= ps->end)
					break;
				c = *ps->p++;
			}
			buf_addch(s, c);
		}
		return parse_fail(ps, "unterminated quoted string");
	}
	if (*ps->p == '{') {
		size_t len = 0;
		bool digits = false;
		ps->p++;
		while (ps->p < ps->end && isdigit((unsigned char)*ps->p)) {
			len = len * 10 + (size_t)(*ps->p++ - '0');
			digits = true;
			if (len > DLIST_MAX_LITERAL)
				return parse_fail(ps, "literal too large");
		}
		if (ps->p < ps->end && *ps->p == '+')
			ps->p++;
		if (!digits || ps->p >= ps->end || *ps->p != '}')
			return parse_fail(ps, "bad literal size");
		ps->p++;
		if (ps->end - ps->p < 2 || ps->p[0] != '\r' || ps->p[1] != '\n')
			return parse_fail(ps, "literal size not followed by CRLF");
		ps->p += 2;
		/* Cyrus wants at least one byte after a literal. */
		if ((size_t)(ps->end - ps->p) <= len) {
			ps->p = ps->end;
			return parse_fail(ps, "literal data cut short");
		}
		buf_set(s, ps->p, len);
		ps->p += len;
		return 0;
	}
	/* A bare atom: up to the next space, less trailing ')'. */
	const char *sp = memchr(ps->p, ' ', (size_t)(ps->end - ps->p));
	if (!sp)
		sp = ps->end;
	while (sp > ps->p && sp[-1] == ')')
		sp--;
	buf_set(s, ps->p, (size_t)(sp - ps->p));
	ps->p = sp;
	*nil_r = s->len == 3 && !memcmp(s->s, "NIL", 3);
	return 0;
}

static int parse_value(struct parser *ps, struct dlist *parent,
		       const char *key, struct buf *tmp);

static int parse_items(struct parser *ps, struct dlist *dl, struct buf *tmp)
{
	bool kv = dl->type == DLIST_KVLIST;
	ps->p++; /* the '(' */
	if (ps->p >= ps->end)
		return parse_fail(ps, "unterminated list");
	while (*ps->p != ')') {
		char *key = NULL;
		if (kv) {
			bool nil;
			if (parse_string(ps, tmp, &nil) < 0)
				return -1;
			if (nil || memchr(tmp->s, '\0', tmp->len))
				return parse_fail(ps, "bad key");
			if (ps->p >= ps->end || *ps->p != ' ')
				return parse_fail(ps, "space after key expected");
			ps->p++;
			key = xstrdup(tmp->s);
		}
		int r = parse_value(ps, dl, key, tmp);
		free(key);
		if (r < 0)
			return -1;
		if (ps->p >= ps->end)
			return parse_fail(ps, "unterminated list");
		if (*ps->p == ')')
			break;
		if (*ps->p != ' ')
			return parse_fail(ps, "space or ')' expected");
		ps->p++;
		if (ps->p >= ps->end)
			return parse_fail(ps, "unterminated list");
	}
	ps->p++; /* the ')' */
	return 0;
}

static int parse_value(struct parser *ps, struct dlist *parent,
		       const char *key, struct buf *tmp)
{
	struct dlist *dl;
	if (ps->p >= ps->end)
		return parse_fail(ps, "value expected");
	if (++ps->depth > DLIST_MAX_DEPTH)
		return parse_fail(ps, "nested too deeply");
	if (*ps->p == '(' || *ps->p == '%') {
		if (*ps->p == '%') {
			ps->p++;
			/* No whitespace allowed between '%' and '('. */
			if (ps->p >= ps->end || *ps->p != '(')
				return parse_fail(ps, "'(' after '%' expected");
			dl = dlist_add_kvlist(parent, key);
		} else {
			dl = dlist_add_list(parent, key);
		}
		if (parse_items(ps, dl, tmp) < 0)
			return -1;
	} else {
		bool nil;
		if (parse_string(ps, tmp, &nil) < 0)
			return -1;
		if (nil)
			dlist_append(parent, dlist_alloc(DLIST_NIL, key));
		else
			dlist_add_map(parent, key, tmp->s, tmp->len);
	}
	ps->depth--;
	return 0;
}

int dlist_parse(const char *data, size_t len, struct dlist **dl_r,
		struct error *err)
{
	struct parser ps = { data, data, data + len, 0, err };
	struct buf tmp = BUF_INIT;
	/* A holder list, so that the top level parses like any item. */
	struct dlist *holder = dlist_new_list(NULL);
	int r = parse_value(&ps, holder, NULL, &tmp);
	if (!r && ps.p < ps.end)
		r = parse_fail(&ps, "trailing bytes after the value");
	buf_release(&tmp);
	*dl_r = NULL;
	if (r < 0) {
		dlist_free(&holder);
		return -1;
	}
	*dl_r = holder->head;
	holder->head = holder->tail = NULL;
	dlist_free(&holder);
	return 0;
}
