#include "compat.h"
#include "perlre.h"

#include "xmalloc.h"

enum node_kind { N_SEQ, N_ALT, N_GROUP, N_REPEAT, N_CLASS, N_BOL, N_EOL };

struct node {
	enum node_kind kind;
	struct node **kids;
	int nkids;
	int cap;                /* N_GROUP: capture number or -1 */
	int min, max;           /* N_REPEAT; max -1: unbounded */
	bool lazy;
	unsigned char set[32];  /* N_CLASS */
};

struct perlre {
	struct node *root;
	int ncap;
};

struct parser {
	const char *p;
	int ncap;
};

static struct node *new_node(enum node_kind k)
{
	struct node *n = xzmalloc(sizeof(*n));
	n->kind = k;
	n->cap = -1;
	return n;
}

static void add_kid(struct node *n, struct node *kid)
{
	n->kids = xrealloc(n->kids, sizeof(*n->kids) * (size_t)(n->nkids + 1));
	n->kids[n->nkids++] = kid;
}

static void set_bit(struct node *n, unsigned c)
{
	n->set[c >> 3] |= (unsigned char)(1u << (c & 7));
}

static void set_escape_class(struct node *n, char e)
{
	for (unsigned c = 0; c < 256; c++) {
		bool in;
		switch (e) {
		case 's': case 'S':
			in = c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
			     c == '\f' || c == '\v';
			break;
		case 'd': case 'D':
			in = c >= '0' && c <= '9';
			break;
		default: /* w W */
			in = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			     (c >= 'A' && c <= 'Z') || c == '_';
			break;
		}
		if (e == 'S' || e == 'D' || e == 'W')
			in = !in;
		if (in)
			set_bit(n, c);
	}
}

static struct node *parse_alt(struct parser *ps);

static struct node *parse_class(struct parser *ps)
{
	struct node *n = new_node(N_CLASS);
	bool neg = false, first = true;
	unsigned char tmp[32];

	if (*ps->p == '^') {
		neg = true;
		ps->p++;
	}
	while (*ps->p && (*ps->p != ']' || first)) {
		unsigned lo;
		first = false;
		if (*ps->p == '\\' && ps->p[1]) {
			char e = ps->p[1];
			ps->p += 2;
			if (strchr("sSdDwW", e)) {
				set_escape_class(n, e);
				continue;
			}
			lo = (unsigned char)(e == 'n' ? '\n' : e == 'r' ? '\r' :
					     e == 't' ? '\t' : e);
		} else {
			lo = (unsigned char)*ps->p++;
		}
		if (*ps->p == '-' && ps->p[1] && ps->p[1] != ']') {
			unsigned hi = (unsigned char)ps->p[1];
			ps->p += 2;
			for (unsigned c = lo; c <= hi; c++)
				set_bit(n, c);
		} else {
			set_bit(n, lo);
		}
	}
	if (*ps->p != ']')
		BUG("perlre: unterminated class");
	ps->p++;
	if (neg) {
		memcpy(tmp, n->set, sizeof(tmp));
		for (int i = 0; i < 32; i++)
			n->set[i] = (unsigned char)~tmp[i];
	}
	return n;
}

static struct node *parse_atom(struct parser *ps)
{
	struct node *n;
	char c = *ps->p++;

	switch (c) {
	case '(':
		n = new_node(N_GROUP);
		if (ps->p[0] == '?' && ps->p[1] == ':')
			ps->p += 2;
		else if (ps->ncap + 1 < PERLRE_MAXCAP)
			n->cap = ++ps->ncap;
		else
			BUG("perlre: too many groups");
		add_kid(n, parse_alt(ps));
		if (*ps->p != ')')
			BUG("perlre: unbalanced parenthesis");
		ps->p++;
		return n;
	case '[':
		return parse_class(ps);
	case '.':
		n = new_node(N_CLASS);
		memset(n->set, 0xff, sizeof(n->set));
		n->set['\n' >> 3] &= (unsigned char)~(1u << ('\n' & 7));
		return n;
	case '^':
		return new_node(N_BOL);
	case '$':
		return new_node(N_EOL);
	case '\\':
		c = *ps->p++;
		if (!c)
			BUG("perlre: trailing backslash");
		n = new_node(N_CLASS);
		if (strchr("sSdDwW", c))
			set_escape_class(n, c);
		else
			set_bit(n, (unsigned char)(c == 'n' ? '\n' :
						   c == 'r' ? '\r' :
						   c == 't' ? '\t' : c));
		return n;
	default:
		n = new_node(N_CLASS);
		set_bit(n, (unsigned char)c);
		return n;
	}
}

static struct node *parse_seq(struct parser *ps)
{
	struct node *seq = new_node(N_SEQ);
	while (*ps->p && *ps->p != '|' && *ps->p != ')') {
		struct node *a = parse_atom(ps);
		int min = -2, max = -1;
		if (*ps->p == '*') {
			min = 0;
			ps->p++;
		} else if (*ps->p == '+') {
			min = 1;
			ps->p++;
		} else if (*ps->p == '?') {
			min = 0;
			max = 1;
			ps->p++;
		} else if (*ps->p == '{' && ps->p[1] >= '0' && ps->p[1] <= '9') {
			char *end;
			min = (int)strtol(ps->p + 1, &end, 10);
			max = min;
			if (*end == ',') {
				end++;
				max = *end == '}' ? -1 : (int)strtol(end, &end, 10);
			}
			if (*end != '}')
				BUG("perlre: bad {n,m}");
			ps->p = end + 1;
		}
		if (min != -2) {
			struct node *r = new_node(N_REPEAT);
			r->min = min;
			r->max = max;
			if (*ps->p == '?') {
				r->lazy = true;
				ps->p++;
			}
			add_kid(r, a);
			a = r;
		}
		add_kid(seq, a);
	}
	return seq;
}

static struct node *parse_alt(struct parser *ps)
{
	struct node *first = parse_seq(ps);
	if (*ps->p != '|')
		return first;
	struct node *alt = new_node(N_ALT);
	add_kid(alt, first);
	while (*ps->p == '|') {
		ps->p++;
		add_kid(alt, parse_seq(ps));
	}
	return alt;
}

struct perlre *perlre_compile(const char *pattern)
{
	struct parser ps = { pattern, 0 };
	struct perlre *re = xzmalloc(sizeof(*re));
	re->root = parse_alt(&ps);
	if (*ps.p)
		BUG("perlre: junk at '%s'", ps.p);
	re->ncap = ps.ncap;
	return re;
}

static void free_node(struct node *n)
{
	for (int i = 0; i < n->nkids; i++)
		free_node(n->kids[i]);
	free(n->kids);
	free(n);
}

void perlre_free(struct perlre **re)
{
	if (!*re)
		return;
	free_node((*re)->root);
	free(*re);
	*re = NULL;
}

/* Continuation frames: what to match after the current node. */
enum frame_kind { F_SEQ, F_GROUPEND, F_REPEAT };

struct frame {
	enum frame_kind kind;
	const struct node *n;
	int idx;             /* F_SEQ: next kid; F_REPEAT: iterations done */
	size_t start;        /* F_GROUPEND / F_REPEAT: where it began */
	const struct frame *up;
};

struct matcher {
	const char *s;
	size_t len;
	long budget;
	struct perlre_match *m;
};

static bool run(struct matcher *mt, const struct node *n, size_t pos,
		const struct frame *k);

static bool cont(struct matcher *mt, size_t pos, const struct frame *k)
{
	if (--mt->budget < 0)
		return false;
	if (!k) {
		mt->m->end = pos;
		return true;
	}
	switch (k->kind) {
	case F_SEQ:
		if (k->idx < k->n->nkids) {
			struct frame f = { F_SEQ, k->n, k->idx + 1, 0, k->up };
			return run(mt, k->n->kids[k->idx], pos, &f);
		}
		return cont(mt, pos, k->up);
	case F_GROUPEND: {
		int c = k->n->cap;
		if (c < 0)
			return cont(mt, pos, k->up);
		long os = mt->m->cap_start[c], oe = mt->m->cap_end[c];
		mt->m->cap_start[c] = (long)k->start;
		mt->m->cap_end[c] = (long)pos;
		if (cont(mt, pos, k->up))
			return true;
		mt->m->cap_start[c] = os;
		mt->m->cap_end[c] = oe;
		return false;
	}
	case F_REPEAT: {
		const struct node *r = k->n;
		int done = k->idx;
		/* An empty iteration past the minimum cannot help: stop. */
		if (done > 0 && pos == k->start && done > r->min)
			return cont(mt, pos, k->up);
		bool more = r->max < 0 || done < r->max;
		struct frame f = { F_REPEAT, r, done + 1, pos, k->up };
		if (!r->lazy) {
			if (more && run(mt, r->kids[0], pos, &f))
				return true;
			return done >= r->min && cont(mt, pos, k->up);
		}
		if (done >= r->min && cont(mt, pos, k->up))
			return true;
		return more && run(mt, r->kids[0], pos, &f);
	}
	}
	return false;
}

static bool run(struct matcher *mt, const struct node *n, size_t pos,
		const struct frame *k)
{
	switch (n->kind) {
	case N_CLASS: {
		if (pos >= mt->len)
			return false;
		unsigned char c = (unsigned char)mt->s[pos];
		if (!(n->set[c >> 3] & (1u << (c & 7))))
			return false;
		return cont(mt, pos + 1, k);
	}
	case N_BOL:
		return pos == 0 && cont(mt, pos, k);
	case N_EOL:
		return (pos == mt->len ||
			(pos + 1 == mt->len && mt->s[pos] == '\n')) &&
		       cont(mt, pos, k);
	case N_SEQ: {
		struct frame f = { F_SEQ, n, 0, 0, k };
		return cont(mt, pos, &f);
	}
	case N_ALT:
		for (int i = 0; i < n->nkids; i++)
			if (run(mt, n->kids[i], pos, k))
				return true;
		return false;
	case N_GROUP: {
		struct frame f = { F_GROUPEND, n, 0, pos, k };
		return run(mt, n->kids[0], pos, &f);
	}
	case N_REPEAT: {
		struct frame f = { F_REPEAT, n, 0, pos, k };
		return cont(mt, pos, &f);
	}
	}
	return false;
}

bool perlre_search(const struct perlre *re, const char *s, size_t len,
		   size_t from, struct perlre_match *m)
{
	struct matcher mt = { s, len, 2000000, m };
	/* The recursion is per character: keep the stack bounded. */
	if (len > 256 * 1024)
		return false;
	for (size_t start = from; start <= len; start++) {
		for (int i = 0; i < PERLRE_MAXCAP; i++)
			m->cap_start[i] = m->cap_end[i] = -1;
		m->start = start;
		if (run(&mt, re->root, start, NULL))
			return true;
		if (mt.budget < 0)
			return false;
	}
	return false;
}

char *perlre_cap(const struct perlre_match *m, const char *s, int n)
{
	if (n < 0 || n >= PERLRE_MAXCAP || m->cap_start[n] < 0)
		return xstrdup("");
	return xstrndup(s + m->cap_start[n],
			(size_t)(m->cap_end[n] - m->cap_start[n]));
}
