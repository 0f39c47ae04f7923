#include "compat.h"
#include "backup_manifest.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

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

static void hex20(const unsigned char *md, char out[41])
{
	static const char lower[] = "0123456789abcdef";
	for (int i = 0; i < 20; i++) {
		out[2 * i] = lower[md[i] >> 4];
		out[2 * i + 1] = lower[md[i] & 15];
	}
	out[40] = '\0';
}

static void writer_flush(struct backup_manifest_writer *w)
{
	if (!w->out.len || w->failed)
		return;
	EVP_DigestUpdate(w->md, w->out.s, w->out.len);
	if (atomicfile_write(&w->af, w->out.s, w->out.len, w->ferr) < 0)
		w->failed = true;
	w->bytes += w->out.len;
	buf_reset(&w->out);
}

int backup_manifest_begin(struct backup_manifest_writer *w, const char *path,
			  bool nosync, struct error *err)
{
	memset(w, 0, sizeof(*w));
	buf_init(&w->out);
	if (atomicfile_begin(&w->af, path, 0666, err) < 0)
		return -1;
	w->af.nosync = nosync;
	w->md = EVP_MD_CTX_new();
	if (!w->md || !EVP_DigestInit_ex(w->md, EVP_sha1(), NULL))
		BUG("cannot set up SHA-1");
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
		writer_flush(w);
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
	buf_release(&w->out);
	free(w->ferr);
	w->ferr = NULL;
}

int backup_manifest_commit(struct backup_manifest_writer *w,
			   uint64_t *bytes_r, struct error *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char hex[41];

	writer_flush(w);
	if (w->failed) {
		*err = *w->ferr;
		backup_manifest_abort(w);
		return -1;
	}
	EVP_DigestFinal_ex(w->md, md, &mdlen);
	hex20(md, hex);
	buf_printf(&w->out, "end\t%s\n", hex);
	w->bytes += w->out.len;
	if (atomicfile_write(&w->af, w->out.s, w->out.len, err) < 0) {
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

static void add_field(struct backup_manifest *m, char *f, size_t len)
{
	if (m->nfields == m->afields) {
		m->afields = m->afields ? 2 * m->afields : 256;
		m->fields = xrealloc(m->fields, m->afields * sizeof(char *));
		m->lens = xrealloc(m->lens, m->afields * sizeof(size_t));
	}
	m->fields[m->nfields] = f;
	m->lens[m->nfields++] = len;
}

static int read_all(const char *path, char **data_r, size_t *len_r,
		    struct error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return error_sys(err, error_kind_from_errno(errno), errno,
				 "cannot open '%s'", path);
	if (fstat(fd, &st) < 0) {
		close(fd);
		return error_sys(err, ERR_IO, errno, "cannot stat '%s'", path);
	}
	size_t len = (size_t)st.st_size, got = 0;
	char *data = xmalloc(len + 1);
	while (got < len) {
		ssize_t n = read(fd, data + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			free(data);
			close(fd);
			return error_sys(err, ERR_IO, e, "cannot read '%s'",
					 path);
		}
		got += (size_t)n;
	}
	close(fd);
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
}

int backup_manifest_load(const char *path, struct backup_manifest *m,
			 struct error *err)
{
	memset(m, 0, sizeof(*m));
	if (read_all(path, &m->data, &m->len, err) < 0)
		return -1;

	/* The end line: "end\t<40 hex>\n" at the very end. */
	const size_t endlen = 4 + 40 + 1;
	char *d = m->data;
	if (m->len < endlen || d[m->len - 1] != '\n' ||
	    memcmp(d + m->len - endlen, "end\t", 4) ||
	    (m->len > endlen && d[m->len - endlen - 1] != '\n')) {
		error_set(err, ERR_DATA, "'%s': damaged: no end line "
			  "(truncated?)", path);
		goto bad;
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char hex[41];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha1(), NULL))
		BUG("cannot set up SHA-1");
	EVP_DigestUpdate(ctx, d, m->len - endlen);
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	hex20(md, hex);
	if (memcmp(hex, d + m->len - endlen + 4, 40)) {
		error_set(err, ERR_DATA, "'%s': damaged: checksum mismatch",
			  path);
		goto bad;
	}

	size_t body = m->len - endlen;
	size_t pos = 0;
	while (pos < body) {
		char *line = d + pos;
		char *nl = memchr(line, '\n', body - pos);
		size_t ll = nl ? (size_t)(nl - line) : body - pos;
		pos += ll + 1;
		line[ll] = '\0';
		if (m->nrecs == m->arecs) {
			m->arecs = m->arecs ? 2 * m->arecs : 64;
			m->recs = xrealloc(m->recs,
					   m->arecs * sizeof(*m->recs));
		}
		struct backup_rec *r = &m->recs[m->nrecs++];
		r->first = m->nfields;
		char *f = line;
		for (;;) {
			char *tab = strchr(f, '\t');
			size_t fl = tab ? (size_t)(tab - f) : strlen(f);
			long ul = unescape(f, fl);
			if (ul < 0) {
				error_set(err, ERR_DATA, "'%s': damaged: bad "
					  "escape in record %zu", path,
					  m->nrecs);
				goto bad;
			}
			add_field(m, f, (size_t)ul);
			if (!tab)
				break;
			f = tab + 1;
		}
		r->n = m->nfields - r->first;
	}
	if (!m->nrecs || strcmp(m->fields[0], BACKUP_MANIFEST_MAGIC) ||
	    m->recs[0].n < 2) {
		error_set(err, ERR_DATA, "'%s': not a backup manifest", path);
		goto bad;
	}
	m->version = (unsigned)strtoul(m->fields[1], NULL, 10);
	if (m->version != 1) {
		error_set(err, ERR_DATA, "'%s': manifest format %s is not "
			  "supported (this tool reads 1)", path, m->fields[1]);
		goto bad;
	}
	return 0;
bad:
	backup_manifest_release(m);
	return -1;
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
