#include "compat.h"
#include "backup_manifest.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup_archive.h"
#include "error.h"
#include "xmalloc.h"

#define FLUSH_AT 65536

static const char hexdig[] = "0123456789abcdef";

void backup_escape(struct buf *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '\\': buf_adds(out, "\\\\"); break;
		case '\t': buf_adds(out, "\\t"); break;
		case '\n': buf_adds(out, "\\n"); break;
		case '\r': buf_adds(out, "\\r"); break;
		default:
			if (c < 0x20 || c == 0x7f) {
				buf_adds(out, "\\x");
				buf_addch(out, hexdig[c >> 4]);
				buf_addch(out, hexdig[c & 15]);
			} else {
				buf_addch(out, c);
			}
		}
	}
}

/* Writes what w->out holds (hashed unless it is the end line), through
 * gzip for a .gz manifest; finish ends the gzip member. */
static void writer_flush(struct backup_manifest_writer *w, bool hash,
			 bool finish)
{
	if ((!w->out.len && !finish) || w->failed)
		return;
	if (hash)
		EVP_DigestUpdate(w->md, w->out.s, w->out.len);
	const struct buf *b = &w->out;
	if (w->gz) {
		backup_gzout_add(w->gz, w->out.s, w->out.len, finish,
				 &w->zout);
		b = &w->zout;
	}
	if (b->len && atomicfile_write(&w->af, b->s, b->len, w->ferr) < 0)
		w->failed = true;
	w->bytes += b->len;
	buf_reset(&w->out);
	buf_reset(&w->zout);
}

static bool is_gz(const char *path)
{
	size_t l = strlen(path);
	return l >= 3 && !strcmp(path + l - 3, ".gz");
}

int backup_manifest_begin(struct backup_manifest_writer *w, const char *path,
			  bool nosync, struct error *err)
{
	memset(w, 0, sizeof(*w));
	buf_init(&w->out);
	buf_init(&w->zout);
	if (atomicfile_begin(&w->af, path, 0666, err) < 0)
		return -1;
	w->af.nosync = nosync;
	w->md = backup_sha1_begin();
	/* Small next to the objects: the best compression costs little. */
	if (is_gz(path))
		w->gz = backup_gzout_new(9);
	w->ferr = xzmalloc(sizeof(*w->ferr));
	char v[16];
	snprintf(v, sizeof(v), "%d", 1);
	const char *f[] = { v };
	backup_manifest_add(w, BACKUP_MANIFEST_MAGIC, 1, f);
	return 0;
}

void backup_manifest_addn(struct backup_manifest_writer *w, const char *type,
			  size_t nfields, const char *const *fields,
			  const size_t *lens)
{
	buf_adds(&w->out, type);
	for (size_t i = 0; i < nfields; i++) {
		buf_addch(&w->out, '\t');
		const char *f = fields[i] ? fields[i] : "";
		backup_escape(&w->out, f, lens ? lens[i] : strlen(f));
	}
	buf_addch(&w->out, '\n');
	if (w->out.len >= FLUSH_AT)
		writer_flush(w, true, false);
}

void backup_manifest_add(struct backup_manifest_writer *w, const char *type,
			 size_t nfields, const char *const *fields)
{
	backup_manifest_addn(w, type, nfields, fields, NULL);
}

static void writer_free(struct backup_manifest_writer *w)
{
	if (w->md)
		EVP_MD_CTX_free(w->md);
	w->md = NULL;
	backup_gzout_free(w->gz);
	w->gz = NULL;
	buf_release(&w->out);
	buf_release(&w->zout);
	free(w->ferr);
	w->ferr = NULL;
}

int backup_manifest_commit(struct backup_manifest_writer *w,
			   uint64_t *bytes_r, struct error *err)
{
	char hex[BACKUP_SHA1_HEX];

	writer_flush(w, true, false);
	backup_sha1_end(w->md, hex);
	w->md = NULL;
	buf_printf(&w->out, "end\t%s\n", hex);
	writer_flush(w, false, true);
	if (w->failed) {
		*err = *w->ferr;
		backup_manifest_abort(w);
		return -1;
	}
	int r = atomicfile_commit(&w->af, err);
	if (bytes_r)
		*bytes_r = w->bytes;
	writer_free(w);
	return r;
}

void backup_manifest_abort(struct backup_manifest_writer *w)
{
	atomicfile_abort(&w->af);
	writer_free(w);
}

/* ---- reading ---- */

#define RBUF_SIZE 65536
/* "end", TAB, 40 digits, LF */
#define END_LEN (4 + 40 + 1)

static int unhex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Unescapes s[0..len) in place; returns the new length, or -1. */
static long unescape(char *s, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '\\') {
			s[o++] = s[i];
			continue;
		}
		if (++i >= len)
			return -1;
		switch (s[i]) {
		case '\\': s[o++] = '\\'; break;
		case 't': s[o++] = '\t'; break;
		case 'n': s[o++] = '\n'; break;
		case 'r': s[o++] = '\r'; break;
		case 'x': {
			if (i + 2 >= len)
				return -1;
			int a = unhex((unsigned char)s[i + 1]);
			int b = unhex((unsigned char)s[i + 2]);
			if (a < 0 || b < 0)
				return -1;
			s[o++] = (char)(a * 16 + b);
			i += 2;
			break;
		}
		default:
			return -1;
		}
	}
	s[o] = '\0';
	return (long)o;
}

/* The text of the manifest, from its start: plain bytes, or inflated.
 * Up to n bytes, 0 at the end, -1 on error. */
static ssize_t src_read(struct backup_manifest_reader *rd, void *p, size_t n,
			struct error *err)
{
	if (rd->gz)
		return backup_gzin_read(rd->gz, p, n, err);
	for (;;) {
		ssize_t got = pread(rd->fd, p, n, (off_t)rd->foff);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return error_sys(err, ERR_IO, errno,
					 "cannot read '%s'", rd->path);
		rd->foff += (uint64_t)got;
		return got;
	}
}

static void src_rewind(struct backup_manifest_reader *rd)
{
	rd->foff = 0;
	if (rd->gz)
		backup_gzin_rewind(rd->gz);
}

/* The first pass: the SHA-1 of everything but the last END_LEN + 1
 * bytes (held back in a window), then the end line and the LF before it
 * checked in that window. */
static int check_sum(struct backup_manifest_reader *rd, struct error *err)
{
	unsigned char tail[END_LEN + 1];
	size_t tl = 0;
	uint64_t size = 0;
	void *ctx = backup_sha1_begin();
	int r = 0;

	src_rewind(rd);
	for (;;) {
		ssize_t got = src_read(rd, rd->rbuf, RBUF_SIZE, err);
		if (got <= 0) {
			r = got < 0 ? -1 : 0;
			break;
		}
		size_t n = (size_t)got;
		size += n;
		if (n >= sizeof(tail)) {
			EVP_DigestUpdate(ctx, tail, tl);
			EVP_DigestUpdate(ctx, rd->rbuf, n - sizeof(tail));
			memcpy(tail, rd->rbuf + n - sizeof(tail), sizeof(tail));
			tl = sizeof(tail);
			continue;
		}
		if (tl + n > sizeof(tail)) {
			size_t drop = tl + n - sizeof(tail);
			EVP_DigestUpdate(ctx, tail, drop);
			memmove(tail, tail + drop, tl - drop);
			tl -= drop;
		}
		memcpy(tail + tl, rd->rbuf, n);
		tl += n;
	}
	const unsigned char *e = tail + (tl > END_LEN ? tl - END_LEN : 0);
	if (r == 0 && (size < END_LEN || tail[tl - 1] != '\n' ||
		       memcmp(e, "end\t", 4) || (size > END_LEN && tail[0] != '\n')))
		r = error_set(err, ERR_DATA, "'%s': damaged: no end line "
			      "(truncated?)", rd->path);
	if (r < 0) {
		EVP_MD_CTX_free(ctx);
		return -1;
	}
	if (size > END_LEN)
		EVP_DigestUpdate(ctx, tail, 1); /* the LF before the end line */
	memcpy(rd->sum, e + 4, 40);
	rd->sum[40] = '\0';
	rd->body = size - END_LEN;
	char hex[BACKUP_SHA1_HEX];
	backup_sha1_end(ctx, hex);
	if (strcmp(hex, rd->sum))
		return error_set(err, ERR_DATA, "'%s': damaged: checksum "
				 "mismatch", rd->path);
	return 0;
}

/* Exactly n more bytes of the text into rd->rbuf. */
static int src_fill(struct backup_manifest_reader *rd, size_t n,
		    struct error *err)
{
	for (size_t got = 0; got < n;) {
		ssize_t k = src_read(rd, rd->rbuf + got, n - got, err);
		if (k < 0)
			return -1;
		if (k == 0)
			return error_set(err, ERR_DATA, "'%s' changed while "
					 "it was read", rd->path);
		got += (size_t)k;
	}
	return 0;
}

/* The next line of the body into rd->line (without its LF): 1, 0 at the
 * end of the body, -1 on error. */
static int read_line(struct backup_manifest_reader *rd, struct error *err)
{
	buf_reset(&rd->line);
	if (rd->pos + rd->roff >= rd->body)
		return 0;
	for (;;) {
		if (rd->roff == rd->rlen) {
			rd->pos += rd->rlen;
			rd->rlen = rd->roff = 0;
			uint64_t left = rd->body - rd->pos;
			size_t n = left < RBUF_SIZE ? (size_t)left : RBUF_SIZE;
			if (!n)
				break; /* a last line without LF */
			if (src_fill(rd, n, err) < 0)
				return -1;
			EVP_DigestUpdate(rd->md, rd->rbuf, n);
			rd->rlen = n;
		}
		char *p = rd->rbuf + rd->roff;
		char *nl = memchr(p, '\n', rd->rlen - rd->roff);
		size_t n = nl ? (size_t)(nl - p) : rd->rlen - rd->roff;
		buf_add(&rd->line, p, n);
		rd->roff += n + (nl ? 1 : 0);
		if (nl)
			break;
	}
	buf_grow(&rd->line, 1);
	rd->line.s[rd->line.len] = '\0';
	if (rd->pos + rd->roff >= rd->body && rd->md) {
		/* All of the body went through the hash again. */
		char hex[BACKUP_SHA1_HEX];
		backup_sha1_end(rd->md, hex);
		rd->md = NULL;
		if (strcmp(hex, rd->sum))
			return error_set(err, ERR_DATA, "'%s' changed while it "
					 "was read", rd->path);
	}
	return 1;
}

/* Splits and unescapes rd->line into fields. */
static int split_line(struct backup_manifest_reader *rd, struct error *err)
{
	char *f = rd->line.s, *end = rd->line.s + rd->line.len;
	rd->nfields = 0;
	for (;;) {
		char *tab = memchr(f, '\t', (size_t)(end - f));
		size_t fl = tab ? (size_t)(tab - f) : (size_t)(end - f);
		long ul = unescape(f, fl);
		if (ul < 0)
			return error_set(err, ERR_DATA, "'%s': damaged: bad "
					 "escape in record %lu", rd->path,
					 rd->recno);
		if (rd->nfields == rd->afields) {
			rd->afields = rd->afields ? 2 * rd->afields : 16;
			rd->fields = xrealloc(rd->fields,
					      rd->afields * sizeof(char *));
			rd->lens = xrealloc(rd->lens,
					    rd->afields * sizeof(size_t));
		}
		rd->fields[rd->nfields] = f;
		rd->lens[rd->nfields++] = (size_t)ul;
		if (!tab)
			break;
		f = tab + 1;
	}
	return 0;
}

int backup_manifest_rewind(struct backup_manifest_reader *rd,
			   struct error *err)
{
	if (rd->md)
		EVP_MD_CTX_free(rd->md);
	rd->md = backup_sha1_begin();
	src_rewind(rd);
	rd->pos = rd->rlen = rd->roff = 0;
	rd->recno = 1;
	rd->again = rd->at_end = false;
	int r = read_line(rd, err);
	if (r < 0)
		return -1;
	if (r == 0 || split_line(rd, err) < 0 || rd->nfields < 2 ||
	    strcmp(rd->fields[0], BACKUP_MANIFEST_MAGIC)) {
		error_clear(err);
		return error_set(err, ERR_DATA, "'%s': not a backup manifest",
				 rd->path);
	}
	rd->version = (unsigned)strtoul(rd->fields[1], NULL, 10);
	if (rd->version != 1)
		return error_set(err, ERR_DATA, "'%s': manifest format %s is "
				 "not supported (this tool reads 1)", rd->path,
				 rd->fields[1]);
	return 0;
}

int backup_manifest_open(const char *path, struct backup_manifest_reader *rd,
			 struct error *err)
{
	memset(rd, 0, sizeof(*rd));
	buf_init(&rd->line);
	rd->path = xstrdup(path);
	rd->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (rd->fd < 0) {
		error_sys(err, error_kind_from_errno(errno), errno,
			  "cannot open '%s'", path);
		backup_manifest_close(rd);
		return -1;
	}
	rd->rbuf = xmalloc(RBUF_SIZE);
	if (is_gz(path)) {
		rd->what = xasprintf("'%s'", path);
		rd->gz = backup_gzin_new(rd->fd, rd->what);
	}
	if (check_sum(rd, err) < 0 || backup_manifest_rewind(rd, err) < 0) {
		backup_manifest_close(rd);
		return -1;
	}
	return 0;
}

int backup_manifest_next(struct backup_manifest_reader *rd,
			 struct error *err)
{
	if (rd->again) {
		rd->again = false;
		return rd->at_end ? 0 : 1;
	}
	if (rd->at_end)
		return 0;
	int r = read_line(rd, err);
	if (r <= 0) {
		rd->at_end = r == 0;
		rd->nfields = 0;
		return r;
	}
	rd->recno++;
	return split_line(rd, err) < 0 ? -1 : 1;
}

void backup_manifest_unread(struct backup_manifest_reader *rd)
{
	rd->again = true;
}

void backup_manifest_close(struct backup_manifest_reader *rd)
{
	/* A zeroed reader was never opened: its fd 0 is not ours. */
	if (rd->path && rd->fd >= 0)
		close(rd->fd);
	rd->fd = -1;
	if (rd->md)
		EVP_MD_CTX_free(rd->md);
	rd->md = NULL;
	backup_gzin_free(rd->gz);
	free(rd->what);
	free(rd->path);
	free(rd->rbuf);
	free(rd->fields);
	free(rd->lens);
	buf_release(&rd->line);
	memset(rd, 0, sizeof(*rd));
	rd->fd = -1;
}

size_t backup_manifest_nfields(const struct backup_manifest_reader *rd)
{
	return rd->nfields;
}

const char *backup_manifest_field(const struct backup_manifest_reader *rd,
				  size_t i)
{
	return i < rd->nfields ? rd->fields[i] : "";
}

size_t backup_manifest_flen(const struct backup_manifest_reader *rd,
			    size_t i)
{
	return i < rd->nfields ? rd->lens[i] : 0;
}

bool backup_manifest_is(const struct backup_manifest_reader *rd,
			const char *type)
{
	return rd->nfields && !strcmp(rd->fields[0], type);
}

uint64_t backup_manifest_num(const struct backup_manifest_reader *rd,
			     size_t i)
{
	return strtoull(backup_manifest_field(rd, i), NULL, 10);
}

/* ---- mailbox order, and a second manifest alongside ---- */

/* One byte of the database name for byte c of an internal name; the
 * domain (before a '!') is literal. */
static unsigned char db_byte(unsigned char c, bool *in_domain)
{
	if (*in_domain) {
		if (c != '!')
			return c;
		*in_domain = false;
		return 0x1d;
	}
	if (c == '.')
		return 0x1f;
	if (c == '^')
		return '.';
	return c;
}

int backup_manifest_mbox_cmp(const char *a, const char *b)
{
	bool da = strchr(a, '!') != NULL, db = strchr(b, '!') != NULL;
	for (;; a++, b++) {
		if (!*a || !*b)
			return (*a != 0) - (*b != 0);
		unsigned char x = db_byte((unsigned char)*a, &da);
		unsigned char y = db_byte((unsigned char)*b, &db);
		if (x != y)
			return x < y ? -1 : 1;
	}
}

int backup_side_open(struct backup_manifest_side *s, const char *path,
		     struct error *err)
{
	memset(s, 0, sizeof(*s));
	s->rd.fd = -1;
	if (backup_manifest_open(path, &s->rd, err) < 0)
		return -1;
	s->ok = true;
	return 0;
}

bool backup_side_seek(struct backup_manifest_side *s, const char *name)
{
	struct error err = ERROR_INIT;
	while (s->ok) {
		if (backup_manifest_next(&s->rd, &err) <= 0) {
			s->ok = false;
			break;
		}
		if (!backup_manifest_is(&s->rd, "mailbox"))
			continue;
		int c = backup_manifest_mbox_cmp(
			backup_manifest_field(&s->rd, 1), name);
		if (c == 0)
			return true;
		if (c > 0) {
			backup_manifest_unread(&s->rd);
			return false;
		}
	}
	return false;
}

int backup_side_next(struct backup_manifest_side *s)
{
	struct error err = ERROR_INIT;
	if (!s->ok)
		return 0;
	if (backup_manifest_next(&s->rd, &err) <= 0) {
		s->ok = false;
		return 0;
	}
	if (backup_manifest_is(&s->rd, "mailbox")) {
		backup_manifest_unread(&s->rd);
		return 0;
	}
	return 1;
}

void backup_side_close(struct backup_manifest_side *s)
{
	backup_manifest_close(&s->rd);
	s->ok = false;
}

/* ---- a whole manifest in memory ---- */

static void load_record(struct backup_manifest *m,
			const struct backup_manifest_reader *rd,
			struct buf *data, size_t **offs)
{
	if (m->nrecs == m->arecs) {
		m->arecs = m->arecs ? 2 * m->arecs : 64;
		m->recs = xrealloc(m->recs, m->arecs * sizeof(*m->recs));
	}
	struct backup_rec *r = &m->recs[m->nrecs++];
	r->first = m->nfields;
	r->n = rd->nfields;
	for (size_t i = 0; i < rd->nfields; i++) {
		if (m->nfields == m->afields) {
			m->afields = m->afields ? 2 * m->afields : 256;
			*offs = xrealloc(*offs, m->afields * sizeof(size_t));
			m->lens = xrealloc(m->lens,
					   m->afields * sizeof(size_t));
		}
		(*offs)[m->nfields] = data->len;
		m->lens[m->nfields++] = rd->lens[i];
		buf_add(data, rd->fields[i], rd->lens[i]);
		buf_addch(data, '\0');
	}
}

int backup_manifest_load(const char *path, struct backup_manifest *m,
			 struct error *err)
{
	struct backup_manifest_reader rd;
	struct buf data = BUF_INIT;
	size_t *offs = NULL;
	int r;
	memset(m, 0, sizeof(*m));
	if (backup_manifest_open(path, &rd, err) < 0)
		return -1;
	m->version = rd.version;
	load_record(m, &rd, &data, &offs); /* the first line */
	while ((r = backup_manifest_next(&rd, err)) > 0)
		load_record(m, &rd, &data, &offs);
	backup_manifest_close(&rd);
	m->data = buf_detach(&data, &m->len);
	m->fields = xmalloc((m->nfields ? m->nfields : 1) * sizeof(char *));
	for (size_t i = 0; i < m->nfields; i++)
		m->fields[i] = m->data + offs[i];
	free(offs);
	if (r < 0) {
		backup_manifest_release(m);
		return -1;
	}
	return 0;
}

void backup_manifest_release(struct backup_manifest *m)
{
	free(m->data);
	free(m->fields);
	free(m->lens);
	free(m->recs);
	memset(m, 0, sizeof(*m));
}

const char *backup_rec_field(const struct backup_manifest *m,
			     const struct backup_rec *r, size_t i)
{
	return i < r->n ? m->fields[r->first + i] : "";
}

size_t backup_rec_len(const struct backup_manifest *m,
		      const struct backup_rec *r, size_t i)
{
	return i < r->n ? m->lens[r->first + i] : 0;
}

bool backup_rec_is(const struct backup_manifest *m,
		   const struct backup_rec *r, const char *type)
{
	return !strcmp(m->fields[r->first], type);
}

const struct backup_rec *backup_manifest_find(const struct backup_manifest *m,
					      const char *type)
{
	for (size_t i = 0; i < m->nrecs; i++)
		if (backup_rec_is(m, &m->recs[i], type))
			return &m->recs[i];
	return NULL;
}
