#include "compat.h"
#include "backup_archive.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "atomicfile.h"
#include "buf.h"
#include "error.h"
#include "fsutil.h"
#include "xmalloc.h"

#define CHUNK 65536
/* A batch of new objects is made durable and renamed at these sizes. */
#define BATCH_OBJECTS 4096
#define BATCH_BYTES (256u << 20)

static const char *const kind_dir[] = { "messages", "files" };

struct backup_pending {
	char *tmp, *final;
};

/* ---- small helpers ---- */

static void hex20(const unsigned char *md, char out[41])
{
	static const char lower[] = "0123456789abcdef";
	for (int i = 0; i < 20; i++) {
		out[2 * i] = lower[md[i] >> 4];
		out[2 * i + 1] = lower[md[i] & 15];
	}
	out[40] = '\0';
}

bool backup_sha1_valid(const char *s)
{
	size_t i;
	for (i = 0; i < 40; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[i] == '\0';
}

static EVP_MD_CTX *sha1_new(void)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha1(), NULL))
		BUG("cannot set up SHA-1");
	return ctx;
}

static void sha1_done(EVP_MD_CTX *ctx, char hex[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	hex20(md, hex);
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
	if (fsutil_mkdir_parents(path, mode) < 0)
		return -1;
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static void rm_tmp_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *p = xasprintf("%s/%s", dir, de->d_name);
		unlink(p);
		free(p);
	}
	closedir(d);
}

/* ---- open, lock, close ---- */

static int take_lock(struct backup_archive *ar, off_t start, off_t len,
		     short type, struct error *err)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET,
			    .l_start = start, .l_len = len };
	if (fcntl(ar->lock_fd, F_SETLK, &fl) == 0)
		return 0;
	if (errno == EACCES || errno == EAGAIN) {
		struct flock q = fl;
		pid_t pid = 0;
		if (fcntl(ar->lock_fd, F_GETLK, &q) == 0 &&
		    q.l_type != F_UNLCK)
			pid = q.l_pid;
		return error_set(err, ERR_TEMPFAIL, "'%s' is in use by "
				 "another backup run (pid %ld)", ar->dir,
				 (long)pid);
	}
	return error_sys(err, ERR_IO, errno, "cannot lock '%s/lock'",
			 ar->dir);
}

/* Empty but for our lock file. */
static bool dir_is_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool empty = true;
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    strcmp(de->d_name, "lock"))
			empty = false;
	if (d)
		closedir(d);
	return empty;
}

static int check_format(struct backup_archive *ar, bool create,
			struct error *err)
{
	char *p = xasprintf("%s/FORMAT", ar->dir);
	char line[64] = "";
	int r = -1;
	FILE *f = fopen(p, "re");
	if (!f && errno == ENOENT && create) {
		/* A new archive only in an empty (or new) directory. */
		if (!dir_is_empty(ar->dir)) {
			error_set(err, ERR_DATA, "'%s' is not a backup "
				  "archive (no FORMAT file) and not empty",
				  ar->dir);
			goto out;
		}
		char buf[32];
		int n = snprintf(buf, sizeof(buf), "cyrus-backup %d\n",
				 BACKUP_FORMAT_VERSION);
		struct atomicfile af;
		if (atomicfile_begin(&af, p, 0666, err) < 0)
			goto out;
		af.nosync = ar->nosync;
		if (atomicfile_write(&af, buf, (size_t)n, err) < 0) {
			atomicfile_abort(&af);
			goto out;
		}
		r = atomicfile_commit(&af, err);
		goto out;
	}
	if (!f) {
		error_sys(err, errno == ENOENT ? ERR_NOINPUT : ERR_IO, errno,
			  "'%s' is not a backup archive: cannot open FORMAT",
			  ar->dir);
		goto out;
	}
	if (!fgets(line, sizeof(line), f) ||
	    strncmp(line, "cyrus-backup ", 13)) {
		error_set(err, ERR_DATA, "'%s' is not a backup archive: bad "
			  "FORMAT file", ar->dir);
	} else if (atoi(line + 13) != BACKUP_FORMAT_VERSION) {
		line[strcspn(line, "\n")] = '\0';
		error_set(err, ERR_DATA, "'%s' is archive format %s; this "
			  "tool reads format %d", ar->dir, line + 13,
			  BACKUP_FORMAT_VERSION);
	} else {
		r = 0;
	}
	fclose(f);
out:
	free(p);
	return r;
}

int backup_archive_open(const char *dir, enum backup_open_mode mode,
			struct backup_archive **ar_r, struct error *err)
{
	struct backup_archive *ar = xzmalloc(sizeof(*ar));
	struct stat st;
	ar->dir = xstrdup(dir);
	ar->lock_fd = -1;
	ar->dir_fd = -1;
	ar->nosync = getenv("CYRUS_TOOLKIT_NOSYNC") != NULL;
	ar->dry = mode == BACKUP_OPEN_DRYRUN;
	*ar_r = NULL;

	if (mode == BACKUP_OPEN_DRYRUN && stat(dir, &st) < 0 &&
	    errno == ENOENT) {
		*ar_r = ar; /* nothing there yet: everything would be new */
		return 0;
	}
	if (mode == BACKUP_OPEN_CREATE && mkdir_p(dir, 0777) < 0) {
		error_sys(err, ERR_CANTCREAT, errno, "cannot create '%s'",
			  dir);
		goto bad;
	}
	if (stat(dir, &st) < 0) {
		error_sys(err, error_kind_from_errno(errno), errno,
			  "cannot open archive '%s'", dir);
		goto bad;
	}
	if (!S_ISDIR(st.st_mode)) {
		error_set(err, ERR_DATA, "'%s' is not a backup archive (not "
			  "a directory)", dir);
		goto bad;
	}
	/* Not an archive: say so before anything is created in it. */
	if (mode == BACKUP_OPEN_CREATE) {
		char *fp = xasprintf("%s/FORMAT", dir);
		bool has = access(fp, F_OK) == 0;
		free(fp);
		if (!has && !dir_is_empty(dir)) {
			error_set(err, ERR_DATA, "'%s' is not a backup archive "
				  "(no FORMAT file) and not empty", dir);
			goto bad;
		}
	}
	ar->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ar->dir_fd < 0) {
		error_sys(err, error_kind_from_errno(errno), errno,
			  "cannot open '%s'", dir);
		goto bad;
	}
	if (mode != BACKUP_OPEN_LIST && mode != BACKUP_OPEN_DRYRUN) {
		char *lp = xasprintf("%s/lock", dir);
		bool writes = mode == BACKUP_OPEN_CREATE ||
			      mode == BACKUP_OPEN_PRUNE;
		ar->lock_fd = open(lp, (writes ? O_RDWR | O_CREAT : O_RDONLY) |
				   O_CLOEXEC, 0666);
		if (ar->lock_fd < 0 && !writes && errno == ENOENT) {
			free(lp);
			error_set(err, ERR_NOINPUT, "'%s' is not a backup "
				  "archive (no lock file)", dir);
			goto bad;
		}
		if (ar->lock_fd < 0) {
			error_sys(err, ERR_IO, errno, "cannot open '%s'", lp);
			free(lp);
			goto bad;
		}
		free(lp);
		int r = 0;
		if (mode == BACKUP_OPEN_READ)
			r = take_lock(ar, 1, 1, F_RDLCK, err);
		else if (mode == BACKUP_OPEN_CREATE)
			r = take_lock(ar, 0, 1, F_WRLCK, err);
		else
			r = take_lock(ar, 0, 2, F_WRLCK, err);
		if (r < 0)
			goto bad;
	}
	if (check_format(ar, mode == BACKUP_OPEN_CREATE, err) < 0)
		goto bad;
	if (mode == BACKUP_OPEN_CREATE || mode == BACKUP_OPEN_PRUNE) {
		static const char *const sub[] = { "messages", "files",
						   "snapshots", "tmp" };
		for (size_t i = 0; i < ARRAY_SIZE(sub); i++) {
			char *p = xasprintf("%s/%s", dir, sub[i]);
			int r = mkdir(p, 0777);
			int e = errno;
			free(p);
			if (r < 0 && e != EEXIST) {
				error_sys(err, ERR_CANTCREAT, e, "cannot "
					  "create '%s/%s'", dir, sub[i]);
				goto bad;
			}
		}
		/* Work files of a run that died: nothing refers to them. */
		char *t = xasprintf("%s/tmp", dir);
		rm_tmp_dir(t);
		free(t);
	}
	*ar_r = ar;
	return 0;
bad:
	backup_archive_close(&ar);
	return -1;
}

void backup_archive_close(struct backup_archive **arp)
{
	struct backup_archive *ar = *arp;
	if (!ar)
		return;
	for (size_t i = 0; i < ar->npend; i++) {
		unlink(ar->pend[i].tmp);
		atomicfile_cleanup_unregister(ar->pend[i].tmp);
		free(ar->pend[i].tmp);
		free(ar->pend[i].final);
	}
	free(ar->pend);
	for (int k = 0; k < 2; k++) {
		if (ar->pendset[k])
			backup_shaset_release(ar->pendset[k]);
		free(ar->pendset[k]);
	}
	if (ar->lock_fd >= 0)
		close(ar->lock_fd);
	if (ar->dir_fd >= 0)
		close(ar->dir_fd);
	free(ar->dir);
	free(ar);
	*arp = NULL;
}

char *backup_archive_tmpname(struct backup_archive *ar, const char *tag)
{
	return xasprintf("%s/tmp/%s.%ld.%lu", ar->dir, tag, (long)getpid(),
			 ++ar->seq);
}

/* ---- objects ---- */

void backup_object_path(const struct backup_archive *ar,
			enum backup_kind kind, const char *sha1,
			struct buf *out)
{
	buf_printf(out, "%s/%s/%.2s/%s.gz", ar->dir, kind_dir[kind], sha1,
		   sha1);
}

bool backup_object_exists(const struct backup_archive *ar,
			  enum backup_kind kind, const char *sha1)
{
	if (ar->pendset[kind] && backup_shaset_has(ar->pendset[kind], sha1))
		return true;
	struct buf p = BUF_INIT;
	struct stat st;
	backup_object_path(ar, kind, sha1, &p);
	bool r = stat(p.s, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
	buf_release(&p);
	return r;
}

int backup_archive_sync(struct backup_archive *ar, struct error *err)
{
	int r = 0;
	if (!ar->npend)
		return 0;
	if (!ar->nosync && syncfs(ar->dir_fd) < 0) {
		error_sys(err, ERR_IO, errno, "cannot sync '%s'", ar->dir);
		r = -1;
	}
	for (size_t i = 0; i < ar->npend; i++) {
		struct backup_pending *p = &ar->pend[i];
		if (!r && rename(p->tmp, p->final) < 0 && errno == ENOENT) {
			/* The hash directory: made on demand. */
			if (fsutil_mkdir_parents(p->final, 0777) < 0 ||
			    rename(p->tmp, p->final) < 0)
				r = error_sys(err, ERR_CANTCREAT, errno,
					      "cannot store '%s'", p->final);
		} else if (!r && access(p->final, F_OK) < 0) {
			r = error_sys(err, ERR_CANTCREAT, errno,
				      "cannot store '%s'", p->final);
		}
		if (r)
			unlink(p->tmp);
		atomicfile_cleanup_unregister(p->tmp);
		free(p->tmp);
		free(p->final);
	}
	ar->npend = 0;
	ar->pend_bytes = 0;
	for (int k = 0; k < 2; k++)
		if (ar->pendset[k])
			backup_shaset_release(ar->pendset[k]);
	return r;
}

static int pending_add(struct backup_archive *ar, char *tmp, char *final,
		       uint64_t bytes, struct error *err)
{
	if (ar->npend == ar->apend) {
		ar->apend = ar->apend ? 2 * ar->apend : 64;
		ar->pend = xrealloc(ar->pend, ar->apend * sizeof(*ar->pend));
	}
	ar->pend[ar->npend].tmp = tmp;
	ar->pend[ar->npend].final = final;
	ar->npend++;
	ar->pend_bytes += bytes;
	if (ar->npend >= BATCH_OBJECTS || ar->pend_bytes >= BATCH_BYTES)
		return backup_archive_sync(ar, err);
	return 0;
}

/*
 * The compressor: feeds bytes to SHA-1 and deflate (gzip wrapper) into a
 * temporary file. The name is known only at the end.
 */
struct putter {
	struct backup_archive *ar;
	EVP_MD_CTX *md;
	z_stream zs;
	bool zinit;
	int fd;
	char *tmp;
	uint64_t in, out;
	unsigned char obuf[CHUNK];
};

static int putter_begin(struct putter *p, struct backup_archive *ar,
			struct error *err)
{
	memset(p, 0, sizeof(*p) - sizeof(p->obuf));
	p->ar = ar;
	p->fd = -1;
	p->md = sha1_new();
	if (ar->dry)
		return 0;
	if (deflateInit2(&p->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16,
			 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return error_set(err, ERR_SOFTWARE, "zlib: deflateInit2 "
				 "failed");
	p->zinit = true;
	p->tmp = backup_archive_tmpname(ar, "obj");
	p->fd = open(p->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (p->fd < 0)
		return error_sys(err, ERR_CANTCREAT, errno, "cannot create "
				 "'%s'", p->tmp);
	atomicfile_cleanup_register(p->tmp);
	return 0;
}

static int putter_feed(struct putter *p, const void *data, size_t len,
		       bool finish, struct error *err)
{
	EVP_DigestUpdate(p->md, data, len);
	p->in += len;
	if (!p->zinit)
		return 0;
	p->zs.next_in = (Bytef *)(uintptr_t)data;
	p->zs.avail_in = (uInt)len;
	int zr;
	do {
		p->zs.next_out = p->obuf;
		p->zs.avail_out = CHUNK;
		zr = deflate(&p->zs, finish ? Z_FINISH : Z_NO_FLUSH);
		if (zr == Z_STREAM_ERROR)
			return error_set(err, ERR_SOFTWARE, "zlib: deflate "
					 "failed");
		size_t have = CHUNK - p->zs.avail_out;
		if (have && write_all(p->fd, p->obuf, have) < 0)
			return error_sys(err, ERR_IO, errno, "cannot write "
					 "'%s'", p->tmp);
		p->out += have;
	} while (p->zs.avail_out == 0 || (finish && zr != Z_STREAM_END));
	return 0;
}

static void putter_abort(struct putter *p)
{
	if (p->md)
		EVP_MD_CTX_free(p->md);
	p->md = NULL;
	if (p->zinit)
		deflateEnd(&p->zs);
	p->zinit = false;
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	if (p->tmp) {
		unlink(p->tmp);
		atomicfile_cleanup_unregister(p->tmp);
		free(p->tmp);
		p->tmp = NULL;
	}
}

static int putter_finish(struct putter *p, enum backup_kind kind,
			 char sha1_r[BACKUP_SHA1_HEX], struct error *err)
{
	struct backup_archive *ar = p->ar;
	if (putter_feed(p, "", 0, true, err) < 0) {
		putter_abort(p);
		return -1;
	}
	sha1_done(p->md, sha1_r);
	p->md = NULL;
	if (ar->dry) {
		if (!backup_object_exists(ar, kind, sha1_r)) {
			ar->new_objects++;
			ar->new_bytes += p->in; /* uncompressed: estimate */
		}
		return 0;
	}
	deflateEnd(&p->zs);
	p->zinit = false;
	if (close(p->fd) < 0) {
		p->fd = -1;
		error_sys(err, ERR_IO, errno, "cannot write '%s'", p->tmp);
		putter_abort(p);
		return -1;
	}
	p->fd = -1;
	if (backup_object_exists(ar, kind, sha1_r)) {
		putter_abort(p);
		return 0;
	}
	/* Two objects of one batch may be equal; the rename is harmless. */
	struct buf final = BUF_INIT;
	backup_object_path(ar, kind, sha1_r, &final);
	ar->new_objects++;
	ar->new_bytes += p->out;
	char *tmp = p->tmp;
	p->tmp = NULL;
	if (!ar->pendset[kind])
		ar->pendset[kind] = xzmalloc(sizeof(struct backup_shaset));
	backup_shaset_add(ar->pendset[kind], sha1_r);
	return pending_add(ar, tmp, buf_detach(&final, NULL), p->out, err);
}

int backup_object_put_fd(struct backup_archive *ar, enum backup_kind kind,
			 int fd, char sha1_r[BACKUP_SHA1_HEX],
			 uint64_t *size_r, struct error *err)
{
	static unsigned char ibuf[CHUNK];
	struct putter p;
	if (putter_begin(&p, ar, err) < 0) {
		putter_abort(&p);
		return -1;
	}
	for (;;) {
		ssize_t n = read(fd, ibuf, sizeof(ibuf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error_sys(err, ERR_IO, errno, "read error");
			putter_abort(&p);
			return -1;
		}
		if (n == 0)
			break;
		if (putter_feed(&p, ibuf, (size_t)n, false, err) < 0) {
			putter_abort(&p);
			return -1;
		}
	}
	if (size_r)
		*size_r = p.in;
	return putter_finish(&p, kind, sha1_r, err);
}

int backup_object_put_mem(struct backup_archive *ar, enum backup_kind kind,
			  const void *data, size_t len,
			  char sha1_r[BACKUP_SHA1_HEX], struct error *err)
{
	struct putter p;
	if (putter_begin(&p, ar, err) < 0 ||
	    putter_feed(&p, data, len, false, err) < 0) {
		putter_abort(&p);
		return -1;
	}
	return putter_finish(&p, kind, sha1_r, err);
}

int backup_object_put_path(struct backup_archive *ar, enum backup_kind kind,
			   const char *path, char sha1_r[BACKUP_SHA1_HEX],
			   uint64_t *size_r, struct error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_sys(err, error_kind_from_errno(errno), errno,
				 "cannot open '%s'", path);
	int r = backup_object_put_fd(ar, kind, fd, sha1_r, size_r, err);
	if (r < 0 && err && err->kind == ERR_IO &&
	    !strncmp(err->msg, "read error", 10)) {
		char m[sizeof(err->msg)];
		snprintf(m, sizeof(m), "%s", err->msg);
		error_set(err, ERR_IO, "cannot read '%s'%s", path, m + 10);
	}
	close(fd);
	return r;
}

void backup_sha1_hex(const void *data, size_t len,
		     char out[BACKUP_SHA1_HEX])
{
	EVP_MD_CTX *md = sha1_new();
	EVP_DigestUpdate(md, data, len);
	sha1_done(md, out);
}

static size_t part_size(void)
{
	const char *e = getenv("CYRUS_BACKUP_PART_SIZE");
	long v = e ? atol(e) : 0;
	return v > 0 ? (size_t)v : BACKUP_PART_SIZE;
}

/* Reads up to len bytes (less only at EOF); -1 on error. */
static ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* One part: hashed into whole, stored unless there already. */
static int add_part(struct backup_archive *ar, enum backup_kind kind,
		    EVP_MD_CTX *whole, const char *chunk, size_t clen,
		    uint64_t off, struct backup_part **parts, size_t *nparts,
		    struct error *err)
{
	EVP_DigestUpdate(whole, chunk, clen);
	*parts = xrealloc(*parts, (*nparts + 1) * sizeof(**parts));
	struct backup_part *p = &(*parts)[(*nparts)++];
	p->offset = off;
	p->size = clen;
	backup_sha1_hex(chunk, clen, p->sha1);
	if (backup_object_exists(ar, kind, p->sha1))
		return 0;
	return backup_object_put_mem(ar, kind, chunk, clen, p->sha1, err);
}

int backup_object_put_parts(struct backup_archive *ar, enum backup_kind kind,
			    int fd, const void *data, size_t len,
			    char sha1_r[BACKUP_SHA1_HEX], uint64_t *size_r,
			    struct backup_part **parts_r, size_t *nparts_r,
			    struct error *err)
{
	size_t psize = part_size();
	char *cur = NULL, *next = NULL;
	struct backup_part *parts = NULL;
	size_t nparts = 0;
	uint64_t off = 0;
	int r = -1;

	*parts_r = NULL;
	*nparts_r = 0;
	if (fd < 0) {
		if (len <= psize) {
			*size_r = len;
			return backup_object_put_mem(ar, kind, data, len,
						     sha1_r, err);
		}
		EVP_MD_CTX *whole = sha1_new();
		for (off = 0; off < len; off += psize) {
			size_t clen = len - off < psize ? len - off : psize;
			/* A first cut (the index header, which changes with
			 * every write) keeps the records' parts stable. */
			if (!off && ar->first_cut && ar->first_cut < clen) {
				clen = ar->first_cut;
				if (add_part(ar, kind, whole, data, clen, 0,
					     &parts, &nparts, err) < 0) {
					EVP_MD_CTX_free(whole);
					free(parts);
					return -1;
				}
				off = clen;
				clen = len - off < psize ? len - off : psize;
			}
			if (add_part(ar, kind, whole, (const char *)data + off,
				     clen, off, &parts, &nparts, err) < 0) {
				EVP_MD_CTX_free(whole);
				free(parts);
				return -1;
			}
		}
		sha1_done(whole, sha1_r);
		*size_r = len;
		*parts_r = parts;
		*nparts_r = nparts;
		return 0;
	}

	/* From fd: one chunk of look-ahead tells one object from parts. */
	cur = xmalloc(psize);
	next = xmalloc(psize);
	EVP_MD_CTX *whole = sha1_new();
	ssize_t n = read_full(fd, cur, psize), m = 0;
	if (n >= 0 && (size_t)n == psize)
		m = read_full(fd, next, psize);
	if (n < 0 || m < 0) {
		error_sys(err, ERR_IO, errno, "read error");
		goto out;
	}
	if (m == 0) {
		*size_r = (uint64_t)n;
		r = backup_object_put_mem(ar, kind, cur, (size_t)n, sha1_r,
					  err);
		goto out;
	}
	while (n > 0) {
		if (add_part(ar, kind, whole, cur, (size_t)n, off, &parts,
			     &nparts, err) < 0)
			goto out;
		off += (uint64_t)n;
		char *t = cur;
		cur = next;
		next = t;
		n = m;
		if (n > 0 && (size_t)n == psize) {
			m = read_full(fd, next, psize);
			if (m < 0) {
				error_sys(err, ERR_IO, errno, "read error");
				goto out;
			}
		} else {
			m = 0;
		}
	}
	sha1_done(whole, sha1_r);
	whole = NULL;
	*size_r = off;
	*parts_r = parts;
	*nparts_r = nparts;
	parts = NULL;
	r = 0;
out:
	if (whole)
		EVP_MD_CTX_free(whole);
	free(parts);
	free(cur);
	free(next);
	return r;
}

int backup_object_read(const struct backup_archive *ar, enum backup_kind kind,
		       const char *sha1, uint64_t size, struct buf *out,
		       int fd_out, struct error *err)
{
	static unsigned char ibuf[CHUNK], obuf[CHUNK];
	struct buf path = BUF_INIT;
	z_stream zs = { 0 };
	EVP_MD_CTX *md = NULL;
	uint64_t total = 0;
	bool zinit = false;
	int r = -1, zr = Z_OK;
	char got[41];

	backup_object_path(ar, kind, sha1, &path);
	int fd = open(path.s, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		error_sys(err, errno == ENOENT ? ERR_NOINPUT : ERR_IO, errno,
			  "'%s': missing", path.s);
		goto out;
	}
	if (inflateInit2(&zs, 15 + 16) != Z_OK) {
		error_set(err, ERR_SOFTWARE, "zlib: inflateInit2 failed");
		goto out;
	}
	zinit = true;
	md = sha1_new();
	for (;;) {
		ssize_t n = read(fd, ibuf, sizeof(ibuf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error_sys(err, ERR_IO, errno, "cannot read '%s'",
				  path.s);
			goto out;
		}
		if (n == 0)
			break;
		zs.next_in = ibuf;
		zs.avail_in = (uInt)n;
		while (zs.avail_in && zr != Z_STREAM_END) {
			zs.next_out = obuf;
			zs.avail_out = CHUNK;
			zr = inflate(&zs, Z_NO_FLUSH);
			if (zr != Z_OK && zr != Z_STREAM_END &&
			    zr != Z_BUF_ERROR) {
				error_set(err, ERR_DATA, "'%s': damaged: not "
					  "a valid gzip file (%s)", path.s,
					  zs.msg ? zs.msg : "inflate error");
				goto out;
			}
			size_t have = CHUNK - zs.avail_out;
			EVP_DigestUpdate(md, obuf, have);
			total += have;
			if (out)
				buf_add(out, obuf, have);
			else if (fd_out >= 0 && have &&
				 write_all(fd_out, obuf, have) < 0) {
				error_sys(err, ERR_IO, errno, "write error");
				goto out;
			}
		}
		if (zr == Z_STREAM_END)
			break;
	}
	if (zr != Z_STREAM_END) {
		error_set(err, ERR_DATA, "'%s': damaged: truncated gzip data",
			  path.s);
		goto out;
	}
	sha1_done(md, got);
	md = NULL;
	if (strcmp(got, sha1)) {
		error_set(err, ERR_DATA, "'%s': damaged: content has SHA-1 "
			  "%s", path.s, got);
		goto out;
	}
	if (size != UINT64_MAX && total != size) {
		error_set(err, ERR_DATA, "'%s': damaged: %llu bytes, the "
			  "manifest says %llu", path.s,
			  (unsigned long long)total, (unsigned long long)size);
		goto out;
	}
	r = 0;
out:
	if (md)
		EVP_MD_CTX_free(md);
	if (zinit)
		inflateEnd(&zs);
	if (fd >= 0)
		close(fd);
	buf_release(&path);
	return r;
}

int backup_object_extract(const struct backup_archive *ar,
			  enum backup_kind kind, const char *sha1,
			  uint64_t size, const char *dst, struct error *err)
{
	char *tmp = xasprintf("%s.NEW", dst);
	int r = -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0) {
		error_sys(err, ERR_CANTCREAT, errno, "cannot create '%s'",
			  tmp);
		free(tmp);
		return -1;
	}
	atomicfile_cleanup_register(tmp);
	if (backup_object_read(ar, kind, sha1, size, NULL, fd, err) < 0)
		goto out;
	if (close(fd) < 0) {
		fd = -1;
		error_sys(err, ERR_IO, errno, "cannot write '%s'", tmp);
		goto out;
	}
	fd = -1;
	if (rename(tmp, dst) < 0) {
		error_sys(err, ERR_CANTCREAT, errno, "cannot rename '%s'",
			  tmp);
		goto out;
	}
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	if (r < 0)
		unlink(tmp);
	atomicfile_cleanup_unregister(tmp);
	free(tmp);
	return r;
}

/* ---- snapshots ---- */

char *backup_manifest_path(const struct backup_archive *ar, const char *id)
{
	return xasprintf("%s/snapshots/%s/manifest", ar->dir, id);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int backup_snapshot_ids(const struct backup_archive *ar, char ***ids_r,
			size_t *n_r, struct error *err)
{
	char *sd = xasprintf("%s/snapshots", ar->dir);
	DIR *d = opendir(sd);
	struct dirent *de;
	char **ids = NULL;
	size_t n = 0, a = 0;
	*ids_r = NULL;
	*n_r = 0;
	if (!d) {
		int e = errno;
		free(sd);
		if (e == ENOENT)
			return 0;
		return error_sys(err, ERR_IO, e, "cannot read '%s/snapshots'",
				 ar->dir);
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *mp = backup_manifest_path(ar, de->d_name);
		bool ok = access(mp, F_OK) == 0;
		free(mp);
		if (!ok)
			continue;
		if (n == a) {
			a = a ? 2 * a : 16;
			ids = xrealloc(ids, a * sizeof(char *));
		}
		ids[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	free(sd);
	if (n)
		qsort(ids, n, sizeof(char *), cmp_str);
	*ids_r = ids;
	*n_r = n;
	return 0;
}

void backup_ids_free(char **ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

char *backup_snapshot_newid(const struct backup_archive *ar, time_t t)
{
	struct tm tm;
	char base[32];
	gmtime_r(&t, &tm);
	strftime(base, sizeof(base), "%Y%m%dT%H%M%SZ", &tm);
	for (int i = 1;; i++) {
		char *id = i == 1 ? xstrdup(base) : xasprintf("%s-%d", base, i);
		char *p = xasprintf("%s/snapshots/%s", ar->dir, id);
		struct stat st;
		bool used = stat(p, &st) == 0;
		free(p);
		if (!used)
			return id;
		free(id);
	}
}

/* ---- the set ---- */

static bool sha_bin(const char *hex, unsigned char out[20])
{
	if (!backup_sha1_valid(hex))
		return false;
	for (int i = 0; i < 20; i++) {
		int a = hex[2 * i], b = hex[2 * i + 1];
		a = a <= '9' ? a - '0' : a - 'a' + 10;
		b = b <= '9' ? b - '0' : b - 'a' + 10;
		out[i] = (unsigned char)(a * 16 + b);
	}
	return true;
}

static bool is_zero(const unsigned char *k)
{
	for (int i = 0; i < 20; i++)
		if (k[i])
			return false;
	return true;
}

static size_t slot_of(const unsigned char *keys, size_t cap,
		      const unsigned char *k)
{
	size_t h;
	memcpy(&h, k, sizeof(h));
	for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1))
		if (is_zero(keys + 20 * i) || !memcmp(keys + 20 * i, k, 20))
			return i;
}

bool backup_shaset_add(struct backup_shaset *s, const char *sha1hex)
{
	unsigned char k[20];
	if (!sha_bin(sha1hex, k) || is_zero(k))
		return false;
	if (2 * (s->n + 1) > s->cap) {
		size_t ncap = s->cap ? 2 * s->cap : 1024;
		unsigned char *nk = xcalloc(ncap, 20);
		for (size_t i = 0; i < s->cap; i++)
			if (!is_zero(s->keys + 20 * i))
				memcpy(nk + 20 * slot_of(nk, ncap,
							 s->keys + 20 * i),
				       s->keys + 20 * i, 20);
		free(s->keys);
		s->keys = nk;
		s->cap = ncap;
	}
	size_t i = slot_of(s->keys, s->cap, k);
	if (!is_zero(s->keys + 20 * i))
		return false;
	memcpy(s->keys + 20 * i, k, 20);
	s->n++;
	return true;
}

bool backup_shaset_has(const struct backup_shaset *s, const char *sha1hex)
{
	unsigned char k[20];
	if (!s->cap || !sha_bin(sha1hex, k))
		return false;
	return !is_zero(s->keys + 20 * slot_of(s->keys, s->cap, k));
}

void backup_shaset_release(struct backup_shaset *s)
{
	free(s->keys);
	memset(s, 0, sizeof(*s));
}
