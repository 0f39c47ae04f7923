/* mailbox_header.c: cyrus.header read and write (see mailbox.h). */
#include "compat.h"
#include "mailbox.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "buf.h"
#include "dlist.h"
#include "error.h"
#include "mboxlist.h"
#include "xmalloc.h"

void mailbox_header_init(struct mailbox_header *h)
{
	memset(h, 0, sizeof(*h));
}

void mailbox_header_release(struct mailbox_header *h)
{
	free(h->name);
	free(h->uniqueid);
	free(h->quotaroot);
	free(h->acl);
	for (int i = 0; i < MAILBOX_MAX_USER_FLAGS; i++)
		free(h->flagname[i]);
	mailbox_header_init(h);
}

static char *dupnull(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void mailbox_header_copy(struct mailbox_header *dst,
			 const struct mailbox_header *src)
{
	mailbox_header_init(dst);
	dst->mbtype = src->mbtype;
	dst->name = dupnull(src->name);
	dst->uniqueid = dupnull(src->uniqueid);
	dst->quotaroot = dupnull(src->quotaroot);
	dst->acl = dupnull(src->acl);
	for (int i = 0; i < MAILBOX_MAX_USER_FLAGS; i++)
		dst->flagname[i] = dupnull(src->flagname[i]);
	dst->oldformat = src->oldformat;
}

/* The 3.x form: one dlist kvlist, as _parse_header_data reads it. */
static int parse_dlist(const char *p, size_t len, struct mailbox_header *h,
		       struct error *err)
{
	struct dlist *dl = NULL;
	if (!len)
		return error_set(err, ERR_DATA, "empty header data");
	if (dlist_parse(p, len, &dl, err) < 0)
		return -1;
	if (dl->type != DLIST_KVLIST) {
		dlist_free(&dl);
		return error_set(err, ERR_DATA, "header data is not a kvlist");
	}
	int r = 0;
	for (struct dlist *c = dl->head; c; c = c->next) {
		const char *key = c->key ? c->key : "";
		if (c->type == DLIST_KVLIST && !strcmp(key, "A")) {
			struct buf acl = BUF_INIT;
			for (struct dlist *a = c->head; a; a = a->next) {
				if (a->type != DLIST_STRING)
					continue;
				buf_printf(&acl, "%s\t%s\t", a->key ? a->key : "",
					   a->val);
			}
			free(h->acl);
			h->acl = buf_detach(&acl, NULL);
		} else if (c->type == DLIST_LIST && !strcmp(key, "U")) {
			int n = 0;
			for (struct dlist *f = c->head;
			     f && n < MAILBOX_MAX_USER_FLAGS; f = f->next, n++) {
				free(h->flagname[n]);
				h->flagname[n] = f->type == DLIST_STRING ?
					xstrdup(f->val) : NULL;
			}
			for (; n < MAILBOX_MAX_USER_FLAGS; n++) {
				free(h->flagname[n]);
				h->flagname[n] = NULL;
			}
		} else if (c->type == DLIST_STRING) {
			if (!strcmp(key, "I")) {
				free(h->uniqueid);
				h->uniqueid = xstrdup(c->val);
			} else if (!strcmp(key, "N")) {
				free(h->name);
				h->name = xstrdup(c->val);
			} else if (!strcmp(key, "Q")) {
				free(h->quotaroot);
				h->quotaroot = xstrdup(c->val);
			} else if (!strcmp(key, "T")) {
				if (mboxlist_mbtype_from_string(c->val, &h->mbtype,
								err) < 0) {
					r = -1;
					break;
				}
			}
		}
	}
	dlist_free(&dl);
	return r;
}

int mailbox_header_parse(const char *data, size_t len,
			 struct mailbox_header *h, struct error *err)
{
	mailbox_header_release(h);
	if (len < MAILBOX_HEADER_MAGIC_LEN ||
	    memcmp(data, MAILBOX_HEADER_MAGIC, MAILBOX_HEADER_MAGIC_LEN))
		return error_set(err, ERR_DATA, "bad magic");

	const char *end = data + len;
	const char *p = data + MAILBOX_HEADER_MAGIC_LEN;
	const char *eol = memchr(p, '\n', (size_t)(end - p));
	if (!eol)
		return error_set(err, ERR_DATA, "no end of line");
	if (*p == '%')
		return parse_dlist(p, (size_t)(eol - p), h, err);

	/* The 2.x form: quotaroot TAB uniqueid / flags / ACL. */
	h->oldformat = true;
	const char *tab = memchr(p, '\t', (size_t)(eol - p));
	if (!tab)
		tab = eol;
	if (p < tab)
		h->quotaroot = xstrndup(p, (size_t)(tab - p));
	if (tab < eol) {
		p = tab + 1;
		if (p == eol)
			return error_set(err, ERR_DATA, "empty uniqueid");
		tab = memchr(p, '\t', (size_t)(eol - p));
		if (!tab)
			tab = eol;
		h->uniqueid = xstrndup(p, (size_t)(tab - p));
	}

	p = eol + 1;
	eol = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
	if (!eol)
		return error_set(err, ERR_DATA, "no user flags line");
	const char *name = p;
	for (int flag = 0; name <= eol && flag < MAILBOX_MAX_USER_FLAGS;
	     flag++) {
		const char *sp = memchr(name, ' ', (size_t)(eol - name));
		if (!sp)
			sp = eol;
		if (name != sp)
			h->flagname[flag] = xstrndup(name, (size_t)(sp - name));
		name = sp + 1;
	}

	p = eol + 1;
	eol = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
	if (!eol)
		return error_set(err, ERR_DATA, "no ACL line");
	h->acl = xstrndup(p, (size_t)(eol - p));
	return 0;
}

void mailbox_header_format(const struct mailbox_header *h, struct buf *out)
{
	struct dlist *dl = dlist_new_kvlist(NULL);
	struct buf type = BUF_INIT;

	mboxlist_mbtype_to_string(h->mbtype, &type);
	dlist_add_atom(dl, "T", type.s);
	dlist_add_atom(dl, "N", h->name);
	dlist_add_atom(dl, "I", h->uniqueid);
	if (h->quotaroot)
		dlist_add_atom(dl, "Q", h->quotaroot);
	if (h->acl) {
		struct dlist *al = dlist_add_kvlist(dl, "A");
		const char *p = h->acl;
		while (p && *p) {
			const char *q = strchr(p, '\t');
			if (!q)
				break;
			char *id = xstrndup(p, (size_t)(q - p));
			q++;
			p = strchr(q, '\t');
			char *rights = p ? xstrndup(q, (size_t)(p - q)) :
					   xstrdup(q);
			if (p)
				p++;
			dlist_add_atom(al, id, rights);
			free(id);
			free(rights);
		}
	}
	int nflags = 0;
	for (int i = 0; i < MAILBOX_MAX_USER_FLAGS; i++)
		if (h->flagname[i])
			nflags = i + 1;
	if (nflags) {
		struct dlist *fl = dlist_add_list(dl, "U");
		for (int i = 0; i < nflags; i++)
			dlist_add_atom(fl, NULL, h->flagname[i]);
	}

	buf_add(out, MAILBOX_HEADER_MAGIC, MAILBOX_HEADER_MAGIC_LEN);
	dlist_print(dl, out);
	buf_addch(out, '\n');
	dlist_free(&dl);
	buf_release(&type);
}

int mailbox_header_read(const char *path, struct mailbox_header *h,
			uint32_t *crc_r, ino_t *ino_r, struct error *err)
{
	struct buf data = BUF_INIT;
	struct stat st;
	int r = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_sys(err, error_kind_from_errno(errno) == ERR_NOINPUT ?
				 ERR_NOINPUT : ERR_IO, errno,
				 "cannot open '%s'", path);
	if (fstat(fd, &st) < 0) {
		error_sys(err, ERR_IO, errno, "cannot stat '%s'", path);
		goto out;
	}
	buf_grow(&data, (size_t)st.st_size + 1);
	for (;;) {
		buf_grow(&data, 4096);
		ssize_t n = read(fd, data.s + data.len, data.alloc - data.len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			error_sys(err, ERR_IO, errno, "cannot read '%s'", path);
			goto out;
		}
		if (n == 0)
			break;
		buf_setlen(&data, data.len + (size_t)n);
	}
	if (crc_r)
		*crc_r = (uint32_t)crc32(0, (const Bytef *)data.s,
					 (uInt)data.len);
	if (ino_r)
		*ino_r = st.st_ino;
	r = mailbox_header_parse(data.s, data.len, h, err);
out:
	close(fd);
	buf_release(&data);
	return r;
}

int mailbox_header_write(const char *path, const struct mailbox_header *h,
			 uint32_t *crc_r, struct error *err)
{
	struct buf data = BUF_INIT;
	mailbox_header_format(h, &data);
	if (crc_r)
		*crc_r = (uint32_t)crc32(0, (const Bytef *)data.s,
					 (uInt)data.len);
	int r = mailbox_write_file(path, data.s, data.len, err);
	buf_release(&data);
	return r;
}
