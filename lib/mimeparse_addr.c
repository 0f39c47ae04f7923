/*
 * mimeparse_addr.c: address lists as Cyrus 3.6.1 lib/parseaddr.c splits
 * them for ENVELOPE and the search items (phrase, route, mailbox, domain;
 * groups; comments; "unspecified-domain" for a bare local part).
 */
#include "compat.h"

#include <ctype.h>

#include "mimeparse-private.h"
#include "xmalloc.h"

static const char unspecified_domain[] = "unspecified-domain";

static bool is_space(int c)
{
	return isspace((unsigned char)c) != 0;
}

static bool is_alnum(int c)
{
	return isalnum((unsigned char)c) != 0;
}

static void append(struct mime_addr ***tail, const char *name,
		   const char *route, const char *mailbox, const char *domain,
		   char **freeme)
{
	struct mime_addr *a = xzmalloc(sizeof(*a));
	a->name = name && *name ? name : NULL;
	a->route = route && *route ? route : NULL;
	a->mailbox = mailbox;
	if (domain && !*domain)
		domain = unspecified_domain;
	a->domain = domain;
	a->freeme = *freeme;
	*freeme = NULL;
	**tail = a;
	*tail = &a->next;
}

static char *skip_ws(char *s)
{
	int c;
	while ((c = *s)) {
		if (c == '(') {
			int comment = 1;
			s++;
			while (comment && (c = *s)) {
				s++;
				if (c == '\\' && *s)
					s++;
				else if (c == '(')
					comment++;
				else if (c == ')')
					comment--;
			}
			s--;
		} else if (!is_space(c)) {
			break;
		}
		s++;
	}
	return s;
}

static int phrase(char **inp, char **phrasep, const char *specials)
{
	int c;
	char *src = skip_ws(*inp);
	char *dst;

	*phrasep = dst = src;
	for (;;) {
		c = *src++;
		if (c == '"') {
			while ((c = *src)) {
				src++;
				if (c == '\\' && *src == '\r' && src[1] == '\n') {
					c = *src;
					src++;
				}
				if (c == '\r' && *src == '\n') {
					src++;
					if (*src == ' ' || *src == '\t')
						continue;
					goto fail;
				} else if (c >= 0 && iscntrl(c)) {
					if (c == '\r' || c == '\n')
						c = ' ';
					else if (c != '\t')
						continue;
				}
				if (c == '"')
					break;
				if (c == '\\') {
					if (!(c = *src))
						goto fail;
					src++;
				}
				*dst++ = (char)c;
			}
			if (c != '"')
				goto fail;
		} else if (is_space(c) || c == '(') {
			src--;
			src = skip_ws(src);
			*dst++ = ' ';
		} else if (!c || strchr(specials, c)) {
			if (dst > *phrasep && dst[-1] == ' ')
				dst--;
			*dst = '\0';
			*inp = src;
			return c;
		} else {
			*dst++ = (char)c;
		}
	}
fail:
	*phrasep = (char *)"";
	return 0;
}

static int domain(char **inp, char **domainp, char **commentp)
{
	int c;
	char *src = skip_ws(*inp);
	char *dst, *cdst;

	if (commentp)
		*commentp = NULL;
	*domainp = dst = src;
	for (;;) {
		c = *src++;
		if (is_alnum(c) || c == '-' || c == '[' || c == ']' ||
		    c == ':') {
			*dst++ = (char)c;
			if (commentp)
				*commentp = NULL;
		} else if (c == '.') {
			if (dst > *domainp && dst[-1] != '.')
				*dst++ = (char)c;
			if (commentp)
				*commentp = NULL;
		} else if (c == '(') {
			if (commentp) {
				int comment = 1;
				*commentp = cdst = src;
				while (comment && (c = *src)) {
					src++;
					if (c == '(')
						comment++;
					else if (c == ')')
						comment--;
					else if (c == '\\' && (c = *src))
						src++;
					if (comment)
						*cdst++ = (char)c;
				}
				*cdst = '\0';
			} else {
				src--;
				src = skip_ws(src);
			}
		} else if (c == '@') {
			*dst++ = (char)c;
			if (commentp)
				*commentp = NULL;
		} else if (!is_space(c)) {
			if (dst > *domainp && dst[-1] == '.')
				dst--;
			*dst = '\0';
			*inp = src;
			return c;
		}
	}
}

static int route(char **inp, char **routep)
{
	int c;
	char *src = skip_ws(*inp);
	char *dst;

	*routep = dst = src;
	for (;;) {
		c = *src++;
		if (is_alnum(c) || c == '-' || c == '[' || c == ']' ||
		    c == ',' || c == '@') {
			*dst++ = (char)c;
		} else if (c == '.') {
			if (dst > *routep && dst[-1] != '.')
				*dst++ = (char)c;
		} else if (is_space(c) || c == '(') {
			src--;
			src = skip_ws(src);
		} else {
			while (dst > *routep && (dst[-1] == '.' ||
						 dst[-1] == ',' ||
						 dst[-1] == '@'))
				dst--;
			*dst = '\0';
			*inp = src;
			return c;
		}
	}
}

void mimeparse_addr_list(const char *str, struct mime_addr **addrp)
{
	char *s, *freeme;
	int ingroup = 0, tok = ' ';
	char *ph, *rt, *mbox, *dom, *comment;
	struct mime_addr **tail = addrp;

	while (*tail)
		tail = &(*tail)->next;
	s = freeme = xstrdup(str);

	while (tok) {
		tok = phrase(&s, &ph, ingroup ? ",@<;" : ",@<:");
		switch (tok) {
		case ',':
		case '\0':
		case ';':
			if (*ph)
				append(&tail, NULL, NULL, ph, "", &freeme);
			if (tok == ';') {
				append(&tail, NULL, NULL, NULL, NULL, &freeme);
				ingroup = 0;
			}
			continue;
		case ':':
			append(&tail, NULL, NULL, ph, NULL, &freeme);
			ingroup++;
			continue;
		case '@':
			tok = domain(&s, &dom, &comment);
			append(&tail, comment, NULL, ph, dom, &freeme);
			if (tok == ';') {
				append(&tail, NULL, NULL, NULL, NULL, &freeme);
				ingroup = 0;
			}
			continue;
		case '<':
			tok = phrase(&s, &mbox, "@>");
			if (tok == '@') {
				rt = NULL;
				if (!*mbox) {
					*--s = '@';
					tok = route(&s, &rt);
					if (tok != ':') {
						append(&tail, ph, rt, "", "",
						       &freeme);
						while (tok && tok != '>')
							tok = *s++;
						continue;
					}
					tok = phrase(&s, &mbox, "@>");
					if (tok != '@') {
						append(&tail, ph, rt, mbox, "",
						       &freeme);
						continue;
					}
				}
				tok = domain(&s, &dom, NULL);
				append(&tail, ph, rt, mbox, dom, &freeme);
				while (tok && tok != '>')
					tok = *s++;
				continue;
			}
			append(&tail, ph, NULL, mbox, "", &freeme);
		}
	}
	if (ingroup)
		append(&tail, NULL, NULL, NULL, NULL, &freeme);
	free(freeme);
}

void mimeparse_addr_free(struct mime_addr *a)
{
	while (a) {
		struct mime_addr *n = a->next;
		free(a->freeme);
		free(a);
		a = n;
	}
}
