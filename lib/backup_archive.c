#include "compat.h"
#include "backup_archive.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
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

static bool sha_bin(const char *hex, unsigned char out[20]);
static ssize_t read_full(int fd, void *buf, size_t len);

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

void *backup_sha1_begin(void)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha1(), NULL))
		BUG("cannot set up SHA-1");
	return ctx;
}

void backup_sha1_end(void *ctx, char hex[BACKUP_SHA1_HEX])
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

/* ---- gzip streams ---- */

struct backup_gzout {
	z_stream zs;
	bool ended; /* the last add finished a member */
};

struct backup_gzout *backup_gzout_new(int level)
{
	struct backup_gzout *g = xzmalloc(sizeof(*g));
	if (deflateInit2(&g->zs, level, Z_DEFLATED, 15 + 16, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		BUG("zlib: deflateInit2 failed");
	return g;
}

void backup_gzout_add(struct backup_gzout *g, const void *data, size_t len,
		      bool finish, struct buf *out)
{
	const unsigned char *p = data;
	if (g->ended)
		deflateReset(&g->zs);
	g->ended = false;
	do {
		/* avail_in is 32 bits wide. */
		size_t n = len > (1u << 30) ? (1u << 30) : len;
		bool last = n == len;
		int flush = finish && last ? Z_FINISH : Z_NO_FLUSH;
		int zr;
		g->zs.next_in = (Bytef *)(uintptr_t)p;
		g->zs.avail_in = (uInt)n;
		do {
			buf_grow(out, CHUNK);
			g->zs.next_out = (Bytef *)out->s + out->len;
			g->zs.avail_out = CHUNK;
			zr = deflate(&g->zs, flush);
			if (zr == Z_STREAM_ERROR)
				BUG("zlib: deflate failed");
			out->len += CHUNK - g->zs.avail_out;
			out->s[out->len] = '\0'; /* buf's invariant */
		} while (g->zs.avail_out == 0 ||
			 (flush == Z_FINISH && zr != Z_STREAM_END));
		p += n;
		len -= n;
	} while (len);
	g->ended = finish;
}

void backup_gzout_free(struct backup_gzout *g)
{
	if (!g)
		return;
	deflateEnd(&g->zs);
	free(g);
}

struct backup_gzin {
	int fd;
	bool own_fd;      /* opened here: closed by free */
	const char *what; /* names the file in errors, or NULL */
	uint64_t off;  /* file offset of the next read */
	z_stream zs;
	bool between;  /* before a member: none started yet, or one ended */
	bool members;  /* one ended */
	bool eof;
	unsigned char in[CHUNK];
};

struct backup_gzin *backup_gzin_new(int fd, const char *what)
{
	struct backup_gzin *g = xzmalloc(sizeof(*g));
	if (inflateInit2(&g->zs, 15 + 16) != Z_OK)
		BUG("zlib: inflateInit2 failed");
	g->fd = fd;
	g->what = what;
	backup_gzin_rewind(g);
	return g;
}

struct backup_gzin *backup_gzin_open(const char *path, const char *what)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct backup_gzin *g = backup_gzin_new(fd, what);
	g->own_fd = true;
	return g;
}

void backup_gzin_rewind(struct backup_gzin *g)
{
	g->off = 0;
	g->zs.avail_in = 0;
	g->between = true;
	g->members = g->eof = false;
}

ssize_t backup_gzin_read(struct backup_gzin *g, void *p, size_t len,
			 struct error *err)
{
	g->zs.next_out = p;
	g->zs.avail_out = (uInt)(len > CHUNK ? CHUNK : len);
	size_t want = g->zs.avail_out;
	while (want && g->zs.avail_out == want) {
		if (!g->zs.avail_in && !g->eof) {
			ssize_t n = pread(g->fd, g->in, CHUNK, (off_t)g->off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return error_sys(err, ERR_IO, errno,
						 "%s%scannot read",
						 g->what ? g->what : "",
						 g->what ? ": " : "");
			g->eof = n == 0;
			g->off += (uint64_t)n;
			g->zs.next_in = g->in;
			g->zs.avail_in = (uInt)n;
		}
		if (!g->zs.avail_in) {
			/* Only at the end of a member is the end clean. */
			if (g->between && g->members)
				return 0;
			return error_set(err, ERR_DATA, "%s%s%s",
					 g->what ? g->what : "",
					 g->what ? ": damaged: " : "",
					 g->off ? "truncated gzip data"
						: "not a valid gzip file "
						  "(empty)");
		}
		if (g->between)
			inflateReset(&g->zs);
		g->between = false;
		int zr = inflate(&g->zs, Z_NO_FLUSH);
		if (zr == Z_STREAM_END) {
			g->between = g->members = true;
		} else if (zr != Z_OK && zr != Z_BUF_ERROR) {
			return error_set(err, ERR_DATA, "%s%snot a valid "
					 "gzip file (%s)",
					 g->what ? g->what : "",
					 g->what ? ": damaged: " : "",
					 g->zs.msg ? g->zs.msg
						   : "inflate error");
		}
	}
	return (ssize_t)(want - g->zs.avail_out);
}

void backup_gzin_free(struct backup_gzin *g)
{
	if (!g)
		return;
	inflateEnd(&g->zs);
	if (g->own_fd)
		close(g->fd);
	free(g);
}

/* ---- packs ---- */

/*
 * Messages live in packs (doc/backup-format.md): DIR/packs/ID.tar.gz is a
 * ustar stream whose members are named by their SHA-1, compressed as a
 * series of gzip members that each start at a tar header, so that gzip,
 * zcat and tar read it as one .tar.gz while we can start inflating at any
 * member. ID is the SHA-1 of the pack file. DIR/packs/ID.idx.gz says where
 * each message is. The index is loaded into one table at open: 40 bytes a
 * message.
 */

#define PACK_MAGIC "cyrus-backup-pack"
#define PACK_IDX_VERSION 1
/* An object larger than this is staged in tmp/ rather than in memory. */
#define STAGE_MAX (4u << 20)

struct pack_ent {
	uint64_t moff;  /* its gzip member's offset in the pack file */
	uint32_t inoff; /* its data's offset in that member's tar bytes */
	uint32_t pack;  /* which pack: index in packs->p */
	uint32_t size;
	unsigned char sha[20];
};

struct pack_file {
	char id[41];         /* "" while it is being written */
	uint64_t size, tail; /* file size; offset of the end-of-tar member */
	size_t first, nobj;  /* its entries: e[first .. first + nobj) */
	bool gone;           /* removed, or never finished */
	char *problem;       /* its index or file is damaged or missing */
};

/* An object whose SHA-1 (and so its tar header) is known only at its
 * end waits here: in memory, or in a file in tmp/ if it is large. */
struct stage {
	struct buf mem;
	int fd;
	char *tmp;
	uint64_t len;
};

/* Deflate (gzip members) to a file, hashing the file's bytes. */
struct zout {
	int fd;
	char *tmp;
	z_stream zs;
	bool zinit;
	EVP_MD_CTX *md;  /* of the file's bytes, or NULL */
	uint64_t off;    /* bytes written */
	uint64_t *count; /* also added here, or NULL */
	unsigned char buf[CHUNK];
};

/* One gzip member: its tar bytes, compressed by a worker thread. */
struct zjob {
	unsigned char *in, *out;
	size_t inlen, incap, outlen, outcap;
	size_t first, n; /* its entries in packs->e */
	bool done;
};

/*
 * Members are compressed in parallel (deflate is most of create's time)
 * and written in order by the caller's thread: the jobs are a ring; the
 * caller fills ring[head], workers take them in order, the caller writes
 * ring[tail] when done. Without workers the caller compresses each job.
 */
struct zpool {
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	pthread_t th[4];
	int nth;
	bool stop;
	struct zjob *ring;
	size_t nring;
	uint64_t head, take, tail;
	bool filling; /* ring[head % nring] is being filled */
};

struct pack_writer {
	struct zout z;     /* the file; its zs for the end and big messages */
	struct zpool pool;
	uint32_t pack;
	bool index;        /* entries go into the lookup table (create) */
	bool autoclose;    /* committed when full (create) */
	time_t mtime;
};

/* Inflates one pack, remembering where it is, so that the next message
 * of the same member continues instead of starting the member again. */
struct cursor {
	int fd;
	uint32_t pack;
	bool zinit, live, ended;
	uint64_t moff, pos; /* member; tar bytes inflated from it */
	uint64_t foff;      /* file offset of the next read */
	uint64_t bufoff;    /* file offset of in[0] */
	size_t inlen;
	z_stream zs;
	unsigned char in[CHUNK], out[CHUNK];
};

struct backup_packs {
	struct pack_file *p;
	size_t np, ap;
	struct pack_ent *e;
	size_t ne, ae;
	uint32_t *slot; /* 1 + index in e, 0: empty */
	size_t cap, nslot;
	bool loose;     /* DIR/messages exists (format 1): look there too */
	bool rescan;    /* READ: a miss looks for indexes added since */
	struct timespec mtime; /* of packs/ at the last scan */
	unsigned long noidx;   /* READ: pack files without an index */
	size_t member_size;
	uint64_t pack_size;
	struct pack_writer *w;
	struct stage st;
	struct error failed; /* sticky: a pack that could not be written */
	struct cursor *cur;
};

static uint64_t env_size(const char *name, uint64_t dflt)
{
	const char *e = getenv(name);
	long long v = e ? atoll(e) : 0;
	return v > 0 ? (uint64_t)v : dflt;
}

static void pack_name(const struct backup_archive *ar, const char *id,
		      const char *ext, struct buf *out)
{
	buf_printf(out, "%s/packs/%s.%s", ar->dir, id, ext);
}

/* ---- the lookup table ---- */

static size_t sha_slot(const unsigned char *k, size_t cap)
{
	size_t h;
	memcpy(&h, k, sizeof(h));
	return h & (cap - 1);
}

static void table_insert(struct backup_packs *P, size_t i)
{
	if (2 * (P->nslot + 1) > P->cap) {
		size_t ncap = P->cap ? 2 * P->cap : 1024;
		uint32_t *ns = xcalloc(ncap, sizeof(*ns));
		for (size_t k = 0; k < P->cap; k++) {
			uint32_t s = P->slot[k];
			if (!s)
				continue;
			size_t j = sha_slot(P->e[s - 1].sha, ncap);
			while (ns[j])
				j = (j + 1) & (ncap - 1);
			ns[j] = s;
		}
		free(P->slot);
		P->slot = ns;
		P->cap = ncap;
	}
	size_t j = sha_slot(P->e[i].sha, P->cap);
	while (P->slot[j])
		j = (j + 1) & (P->cap - 1);
	P->slot[j] = (uint32_t)(i + 1);
	P->nslot++;
}

/* The entry of sha in a pack that is there (and, sound, whose file was
 * found as its index says), or NULL. */
static const struct pack_ent *table_find(const struct backup_packs *P,
					 const unsigned char *sha, bool sound)
{
	const struct pack_ent *found = NULL;
	if (!P || !P->cap)
		return NULL;
	for (size_t j = sha_slot(sha, P->cap);; j = (j + 1) & (P->cap - 1)) {
		uint32_t s = P->slot[j];
		if (!s)
			return found;
		const struct pack_ent *e = &P->e[s - 1];
		const struct pack_file *p = &P->p[e->pack];
		if (memcmp(e->sha, sha, 20) || p->gone)
			continue;
		if (!p->problem)
			return e;
		if (!sound && !found)
			found = e; /* a copy in a sound pack is better */
	}
}

static struct pack_ent *ent_new(struct backup_packs *P)
{
	if (P->ne == P->ae) {
		/* Half again, not double: the table is most of our memory. */
		P->ae = P->ae ? P->ae + P->ae / 2 : 1024;
		P->e = xrealloc(P->e, P->ae * sizeof(*P->e));
	}
	return &P->e[P->ne++];
}

static uint32_t pack_new(struct backup_packs *P, const char *id)
{
	if (P->np == P->ap) {
		P->ap = P->ap ? 2 * P->ap : 16;
		P->p = xrealloc(P->p, P->ap * sizeof(*P->p));
	}
	struct pack_file *p = &P->p[P->np];
	memset(p, 0, sizeof(*p));
	snprintf(p->id, sizeof(p->id), "%s", id);
	p->first = P->ne;
	return (uint32_t)P->np++;
}

static void pack_problem(struct backup_packs *P, uint32_t i, const char *fmt,
			 ...) __attribute__((format(printf, 3, 4)));
static void pack_problem(struct backup_packs *P, uint32_t i, const char *fmt,
			 ...)
{
	va_list ap;
	struct buf b = BUF_INIT;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	free(P->p[i].problem);
	P->p[i].problem = buf_detach(&b, NULL);
}

/* ---- reading an index ---- */

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*v = x;
	return true;
}

/* One line of an index (no newline). 0, or -1 with why in err. */
static int idx_line(struct backup_packs *P, uint32_t pi, char *line,
		    unsigned nline, struct error *err)
{
	char *f[6];
	size_t nf = 0;
	for (char *s = line; nf < 6;) {
		f[nf++] = s;
		s = strchr(s, '\t');
		if (!s)
			break;
		*s++ = '\0';
	}
	struct pack_file *p = &P->p[pi];
	if (nline == 1) {
		uint64_t v;
		if (nf < 2 || strcmp(f[0], PACK_MAGIC) || !parse_u64(f[1], &v))
			return error_set(err, ERR_DATA, "not a pack index");
		if (v > PACK_IDX_VERSION)
			return error_set(err, ERR_DATA, "index version %s; "
					 "this tool reads %d", f[1],
					 PACK_IDX_VERSION);
		return 0;
	}
	if (!strcmp(f[0], "pack")) {
		if (nf < 4 || strcmp(f[1], p->id) ||
		    !parse_u64(f[2], &p->size) || !parse_u64(f[3], &p->tail))
			return error_set(err, ERR_DATA, "bad pack line");
		return 0;
	}
	if (strlen(f[0]) != 40 || !backup_sha1_valid(f[0]))
		return 0; /* a record a later version added */
	uint64_t moff, inoff, size;
	if (nf < 4 || !parse_u64(f[1], &moff) || !parse_u64(f[2], &inoff) ||
	    !parse_u64(f[3], &size) || inoff < 512 || inoff > UINT32_MAX ||
	    size > UINT32_MAX)
		return error_set(err, ERR_DATA, "bad line %u", nline);
	struct pack_ent *e = ent_new(P);
	e->moff = moff;
	e->inoff = (uint32_t)inoff;
	e->size = (uint32_t)size;
	e->pack = pi;
	sha_bin(f[0], e->sha);
	P->p[pi].nobj++;
	return 0;
}

/*
 * Loads DIR/packs/ID.idx.gz into pack pi. A damaged index is not an error
 * of the open: the pack gets a problem (verify reports it; its messages
 * are missing).
 */
static void idx_load(struct backup_archive *ar, uint32_t pi)
{
	struct backup_packs *P = ar->packs;
	struct buf path = BUF_INIT, line = BUF_INIT;
	struct error err = ERROR_INIT;
	static unsigned char obuf[CHUNK];
	struct backup_gzin *gz = NULL;
	bool ended = false;
	unsigned nline = 0;
	EVP_MD_CTX *md = backup_sha1_begin();
	char want[41] = "", got[41];

	P->p[pi].first = P->ne;
	P->p[pi].nobj = 0;
	pack_name(ar, P->p[pi].id, "idx.gz", &path);
	gz = backup_gzin_open(path.s, NULL);
	if (!gz) {
		error_sys(&err, ERR_NOINPUT, errno, "cannot open");
		goto out;
	}
	for (;;) {
		ssize_t have = backup_gzin_read(gz, obuf, CHUNK, &err);
		if (have < 0)
			goto out;
		if (have == 0)
			break;
		for (size_t k = 0; k < (size_t)have;) {
			unsigned char *nl = memchr(obuf + k, '\n',
						   (size_t)have - k);
			size_t l = nl ? (size_t)(nl - obuf) - k
				      : (size_t)have - k;
			buf_add(&line, obuf + k, l);
			k += l;
			if (!nl)
				break;
			k++;
			nline++;
			if (ended) {
				error_set(&err, ERR_DATA, "lines after the "
					  "end line");
				goto out;
			}
			if (!strncmp(line.s, "end\t", 4)) {
				snprintf(want, sizeof(want), "%s",
					 line.s + 4);
				ended = true;
			} else {
				EVP_DigestUpdate(md, line.s, line.len);
				EVP_DigestUpdate(md, "\n", 1);
				if (idx_line(P, pi, line.s, nline, &err) < 0)
					goto out;
			}
			buf_reset(&line);
		}
	}
	if (!ended || line.len) {
		error_set(&err, ERR_DATA, "no end line");
		goto out;
	}
	backup_sha1_end(md, got);
	md = NULL;
	if (strcmp(got, want)) {
		error_set(&err, ERR_DATA, "wrong checksum");
		goto out;
	}
	if (!P->p[pi].size) {
		error_set(&err, ERR_DATA, "no pack line");
		goto out;
	}
out:
	if (md)
		EVP_MD_CTX_free(md);
	backup_gzin_free(gz);
	if (err.kind) {
		/* None of it is trusted. */
		P->ne = P->p[pi].first;
		P->p[pi].nobj = 0;
		pack_problem(P, pi, "'%s': damaged: %s", path.s, err.msg);
	} else {
		for (size_t i = P->p[pi].first; i < P->ne; i++)
			table_insert(P, i);
		struct stat st;
		buf_reset(&path);
		pack_name(ar, P->p[pi].id, "tar.gz", &path);
		if (stat(path.s, &st) < 0)
			pack_problem(P, pi, "'%s': missing (its index "
				     "names %zu messages)", path.s,
				     P->p[pi].nobj);
		else if ((uint64_t)st.st_size != P->p[pi].size)
			pack_problem(P, pi, "'%s': damaged: %llu bytes, its "
				     "index says %llu", path.s,
				     (unsigned long long)st.st_size,
				     (unsigned long long)P->p[pi].size);
	}
	buf_release(&path);
	buf_release(&line);
}

static bool pack_id_of(const char *name, const char *ext, char id[41])
{
	size_t l = strlen(name), el = strlen(ext);
	if (l != 41 + el || name[40] != '.' || strcmp(name + 41, ext))
		return false;
	memcpy(id, name, 40);
	id[40] = '\0';
	return backup_sha1_valid(id);
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

/*
 * Loads the indexes of DIR/packs not loaded yet. A pack file without an
 * index is a run that died between the two renames: with remove (create,
 * prune: nobody else writes) it is removed, else counted.
 */
static void packs_scan(struct backup_archive *ar, bool remove)
{
	struct backup_packs *P = ar->packs;
	char *dir = xasprintf("%s/packs", ar->dir);
	struct stat st;
	if (stat(dir, &st) == 0)
		P->mtime = st.st_mtim;
	DIR *d = opendir(dir);
	struct dirent *de;
	char (*idx)[41] = NULL, (*pk)[41] = NULL;
	size_t ni = 0, nk = 0, ai = 0, ak = 0;
	char id[41];
	while (d && (de = readdir(d))) {
		if (pack_id_of(de->d_name, "idx.gz", id)) {
			if (ni == ai) {
				ai = ai ? 2 * ai : 64;
				idx = xrealloc(idx, ai * sizeof(*idx));
			}
			memcpy(idx[ni++], id, 41);
		} else if (pack_id_of(de->d_name, "tar.gz", id)) {
			if (nk == ak) {
				ak = ak ? 2 * ak : 64;
				pk = xrealloc(pk, ak * sizeof(*pk));
			}
			memcpy(pk[nk++], id, 41);
		}
	}
	if (d)
		closedir(d);
	if (ni)
		qsort(idx, ni, sizeof(*idx), cmp_id);
	for (size_t i = 0; i < ni; i++) {
		size_t j;
		for (j = 0; j < P->np && strcmp(P->p[j].id, idx[i]); j++)
			;
		if (j < P->np)
			continue;
		idx_load(ar, pack_new(P, idx[i]));
	}
	P->noidx = 0;
	for (size_t k = 0; k < nk; k++) {
		if (ni && bsearch(pk[k], idx, ni, sizeof(*idx), cmp_id))
			continue;
		if (remove) {
			char *p = xasprintf("%s/%s.tar.gz", dir, pk[k]);
			unlink(p);
			free(p);
		} else {
			P->noidx++;
		}
	}
	free(idx);
	free(pk);
	free(dir);
}

static void packs_init(struct backup_archive *ar, enum backup_open_mode mode)
{
	struct backup_packs *P = xzmalloc(sizeof(*P));
	struct stat st;
	ar->packs = P;
	P->st.fd = -1;
	buf_init(&P->st.mem);
	P->member_size = (size_t)env_size("CYRUS_BACKUP_MEMBER_SIZE",
					  BACKUP_MEMBER_SIZE);
	P->pack_size = env_size("CYRUS_BACKUP_PACK_SIZE", BACKUP_PACK_SIZE);
	char *m = xasprintf("%s/messages", ar->dir);
	P->loose = stat(m, &st) == 0 && S_ISDIR(st.st_mode);
	free(m);
	P->rescan = mode == BACKUP_OPEN_READ;
	packs_scan(ar, mode == BACKUP_OPEN_CREATE ||
			       mode == BACKUP_OPEN_PRUNE);
}

/* READ: after a miss, the indexes a create added since (its manifest may
 * be the one being read). */
static void packs_rescan(const struct backup_archive *ar)
{
	struct backup_packs *P = ar->packs;
	struct stat st;
	char *dir;
	if (!P || !P->rescan)
		return;
	dir = xasprintf("%s/packs", ar->dir);
	bool same = stat(dir, &st) < 0 ||
		    (st.st_mtim.tv_sec == P->mtime.tv_sec &&
		     st.st_mtim.tv_nsec == P->mtime.tv_nsec);
	free(dir);
	if (!same)
		packs_scan((struct backup_archive *)ar, false);
}

static void cursor_free(struct cursor *c);
static void writer_abort(struct backup_archive *ar);
static void stage_reset(struct stage *st);

static void packs_free(struct backup_archive *ar)
{
	struct backup_packs *P = ar->packs;
	if (!P)
		return;
	writer_abort(ar);
	stage_reset(&P->st);
	buf_release(&P->st.mem);
	cursor_free(P->cur);
	for (size_t i = 0; i < P->np; i++)
		free(P->p[i].problem);
	free(P->p);
	free(P->e);
	free(P->slot);
	free(P);
	ar->packs = NULL;
}

static const struct pack_ent *packed(const struct backup_archive *ar,
				     const char *sha1)
{
	unsigned char k[20];
	if (!ar->packs || !sha_bin(sha1, k))
		return NULL;
	return table_find(ar->packs, k, false);
}

/* ---- the stage ---- */

static void stage_reset(struct stage *st)
{
	buf_reset(&st->mem);
	if (st->mem.alloc > (1u << 20)) /* a big message: give it back */
		buf_release(&st->mem);
	if (st->fd >= 0) {
		close(st->fd);
		unlink(st->tmp);
		atomicfile_cleanup_unregister(st->tmp);
		free(st->tmp);
	}
	st->fd = -1;
	st->tmp = NULL;
	st->len = 0;
}

static int stage_add(struct backup_archive *ar, struct stage *st,
		     const void *data, size_t len, struct error *err)
{
	if (st->fd < 0 && st->mem.len + len > STAGE_MAX) {
		st->tmp = backup_archive_tmpname(ar, "stage");
		st->fd = open(st->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
			      0600);
		if (st->fd < 0)
			return error_sys(err, ERR_CANTCREAT, errno, "cannot "
					 "create '%s'", st->tmp);
		atomicfile_cleanup_register(st->tmp);
		if (write_all(st->fd, st->mem.s, st->mem.len) < 0)
			return error_sys(err, ERR_IO, errno, "cannot write "
					 "'%s'", st->tmp);
		buf_reset(&st->mem);
	}
	if (st->fd >= 0) {
		if (write_all(st->fd, data, len) < 0)
			return error_sys(err, ERR_IO, errno, "cannot write "
					 "'%s'", st->tmp);
	} else {
		buf_add(&st->mem, data, len);
	}
	st->len += len;
	return 0;
}

/* ---- writing a pack ---- */

static int zout_write(struct zout *z, const void *data, size_t len,
		      struct error *err)
{
	if (write_all(z->fd, data, len) < 0)
		return error_sys(err, ERR_IO, errno, "cannot write '%s'",
				 z->tmp);
	if (z->md)
		EVP_DigestUpdate(z->md, data, len);
	z->off += len;
	if (z->count)
		*z->count += len;
	return 0;
}

/* Compresses data; finish ends the gzip member (the next starts anew). */
static int zout_deflate(struct zout *z, const void *data, size_t len,
			bool finish, struct error *err)
{
	const unsigned char *p = data;
	do {
		size_t n = len > CHUNK ? CHUNK : len;
		bool last = n == len;
		int zr;
		z->zs.next_in = (Bytef *)(uintptr_t)p;
		z->zs.avail_in = (uInt)n;
		do {
			z->zs.next_out = z->buf;
			z->zs.avail_out = CHUNK;
			zr = deflate(&z->zs, finish && last ? Z_FINISH
							    : Z_NO_FLUSH);
			if (zr == Z_STREAM_ERROR)
				return error_set(err, ERR_SOFTWARE, "zlib: "
						 "deflate failed");
			size_t have = CHUNK - z->zs.avail_out;
			if (have && zout_write(z, z->buf, have, err) < 0)
				return -1;
		} while (z->zs.avail_out == 0 ||
			 (finish && last && zr != Z_STREAM_END));
		p += n;
		len -= n;
	} while (len);
	if (finish)
		deflateReset(&z->zs);
	return 0;
}

static int zout_open(struct backup_archive *ar, struct zout *z,
		     const char *tag, int level, bool hash, struct error *err)
{
	memset(z, 0, offsetof(struct zout, buf));
	z->tmp = backup_archive_tmpname(ar, tag);
	z->fd = open(z->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (z->fd < 0)
		return error_sys(err, ERR_CANTCREAT, errno, "cannot create "
				 "'%s'", z->tmp);
	atomicfile_cleanup_register(z->tmp);
	if (deflateInit2(&z->zs, level, Z_DEFLATED, 15 + 16, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return error_set(err, ERR_SOFTWARE, "zlib: deflateInit2 "
				 "failed");
	z->zinit = true;
	if (hash)
		z->md = backup_sha1_begin();
	return 0;
}

/* fsync (unless nosync) and close; the file stays. */
static int zout_close(struct backup_archive *ar, struct zout *z,
		      struct error *err)
{
	int fd = z->fd;
	z->fd = -1;
	if (!ar->nosync && fsync(fd) < 0) {
		int e = errno;
		close(fd);
		return error_sys(err, ERR_IO, e, "cannot write '%s'", z->tmp);
	}
	if (close(fd) < 0)
		return error_sys(err, ERR_IO, errno, "cannot write '%s'",
				 z->tmp);
	return 0;
}

/* Frees z; unlinks its file unless keep. */
static void zout_free(struct zout *z, bool keep)
{
	if (z->fd >= 0)
		close(z->fd);
	z->fd = -1;
	if (z->zinit)
		deflateEnd(&z->zs);
	z->zinit = false;
	if (z->md)
		EVP_MD_CTX_free(z->md);
	z->md = NULL;
	if (z->tmp) {
		if (!keep)
			unlink(z->tmp);
		atomicfile_cleanup_unregister(z->tmp);
		free(z->tmp);
		z->tmp = NULL;
	}
}

static void tar_header(unsigned char h[512], const char *name, uint32_t size,
		       time_t mtime)
{
	unsigned sum = 0;
	memset(h, 0, 512);
	memcpy(h, name, strlen(name));
	memcpy(h + 100, "0000644", 7);
	memcpy(h + 108, "0000000", 7);
	memcpy(h + 116, "0000000", 7);
	/* 11 octal digits: size is below 4 GiB, mtime below 2^33. */
	snprintf((char *)h + 124, 12, "%011llo",
		 (unsigned long long)size & 077777777777ull);
	snprintf((char *)h + 136, 12, "%011llo",
		 (unsigned long long)(mtime > 0 ? mtime : 0) & 077777777777ull);
	memset(h + 148, ' ', 8);
	h[156] = '0';
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum); /* then NUL, space */
}

static void zjob_compress(z_stream *zs, struct zjob *j)
{
	size_t bound = deflateBound(zs, j->inlen);
	if (j->outcap < bound) {
		free(j->out);
		j->out = xmalloc(bound);
		j->outcap = bound;
	}
	zs->next_in = j->in;
	zs->avail_in = (uInt)j->inlen;
	zs->next_out = j->out;
	zs->avail_out = (uInt)bound;
	/* Enough room: one call ends the member. */
	if (deflate(zs, Z_FINISH) != Z_STREAM_END)
		BUG("deflate did not end a member");
	j->outlen = bound - zs->avail_out;
	deflateReset(zs);
}

static void *zworker(void *arg)
{
	struct zpool *zp = arg;
	z_stream zs = { 0 };
	if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		BUG("zlib: deflateInit2 failed");
	pthread_mutex_lock(&zp->mu);
	for (;;) {
		while (zp->take == zp->head && !zp->stop)
			pthread_cond_wait(&zp->work, &zp->mu);
		if (zp->take == zp->head)
			break;
		struct zjob *j = &zp->ring[zp->take++ % zp->nring];
		pthread_mutex_unlock(&zp->mu);
		zjob_compress(&zs, j);
		pthread_mutex_lock(&zp->mu);
		j->done = true;
		pthread_cond_broadcast(&zp->done);
	}
	pthread_mutex_unlock(&zp->mu);
	deflateEnd(&zs);
	return NULL;
}

static void pool_start(struct zpool *zp)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const char *e = getenv("CYRUS_BACKUP_THREADS");
	int nth = e ? atoi(e) : ncpu > 1 ? (int)ncpu : 0;
	if (nth > (int)ARRAY_SIZE(zp->th))
		nth = (int)ARRAY_SIZE(zp->th);
	if (nth < 0)
		nth = 0;
	memset(zp, 0, sizeof(*zp));
	zp->nring = nth ? (size_t)nth + 2 : 1;
	zp->ring = xcalloc(zp->nring, sizeof(*zp->ring));
	if (!nth)
		return;
	pthread_mutex_init(&zp->mu, NULL);
	pthread_cond_init(&zp->work, NULL);
	pthread_cond_init(&zp->done, NULL);
	/* Signals are for the caller's thread (cleanup of tmp files). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 0; i < nth; i++)
		if (pthread_create(&zp->th[zp->nth], NULL, zworker, zp) == 0)
			zp->nth++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Stops the workers (after the jobs they have) and frees the ring. */
static void pool_stop(struct zpool *zp)
{
	if (!zp->ring)
		return;
	if (zp->nth) {
		pthread_mutex_lock(&zp->mu);
		zp->stop = true;
		pthread_cond_broadcast(&zp->work);
		pthread_mutex_unlock(&zp->mu);
		for (int i = 0; i < zp->nth; i++)
			pthread_join(zp->th[i], NULL);
		pthread_cond_destroy(&zp->work);
		pthread_cond_destroy(&zp->done);
		pthread_mutex_destroy(&zp->mu);
	}
	for (size_t i = 0; i < zp->nring; i++) {
		free(zp->ring[i].in);
		free(zp->ring[i].out);
	}
	free(zp->ring);
	zp->ring = NULL;
}

static int writer_open(struct backup_archive *ar, bool index,
		       bool autoclose, struct error *err)
{
	struct backup_packs *P = ar->packs;
	struct pack_writer *w = xzmalloc(sizeof(*w));
	P->w = w;
	w->z.fd = -1;
	w->index = index;
	w->autoclose = autoclose;
	w->mtime = time(NULL);
	w->pack = pack_new(P, "");
	if (zout_open(ar, &w->z, "pack", Z_DEFAULT_COMPRESSION, true, err) <
	    0)
		return -1;
	w->z.count = index ? &ar->new_bytes : NULL;
	pool_start(&w->pool);
	return 0;
}

/* Drops the pack being written: its messages are not there. */
static void writer_abort(struct backup_archive *ar)
{
	struct backup_packs *P = ar->packs;
	struct pack_writer *w = P->w;
	if (!w)
		return;
	P->p[w->pack].gone = true;
	pool_stop(&w->pool);
	zout_free(&w->z, false);
	free(w);
	P->w = NULL;
}

/* A compressed member to the file: its entries learn where it is. */
static int job_write(struct backup_archive *ar, struct zjob *j,
		     struct error *err)
{
	struct backup_packs *P = ar->packs;
	uint64_t moff = P->w->z.off;
	for (size_t i = j->first; i < j->first + j->n; i++)
		P->e[i].moff = moff;
	return zout_write(&P->w->z, j->out, j->outlen, err);
}

/* Writes the oldest job once it is compressed. */
static int pool_write_oldest(struct backup_archive *ar, struct error *err)
{
	struct zpool *zp = &ar->packs->w->pool;
	struct zjob *j = &zp->ring[zp->tail % zp->nring];
	pthread_mutex_lock(&zp->mu);
	while (!j->done)
		pthread_cond_wait(&zp->done, &zp->mu);
	pthread_mutex_unlock(&zp->mu);
	zp->tail++;
	return job_write(ar, j, err);
}

/* The job being filled (a free one started if none). */
static int job_cur(struct backup_archive *ar, struct zjob **j_r,
		   struct error *err)
{
	struct backup_packs *P = ar->packs;
	struct zpool *zp = &P->w->pool;
	if (!zp->filling) {
		while (zp->nth && zp->head - zp->tail == zp->nring)
			if (pool_write_oldest(ar, err) < 0)
				return -1;
		struct zjob *j = &zp->ring[zp->head % zp->nring];
		j->inlen = 0;
		j->first = P->ne;
		j->n = 0;
		j->done = false;
		zp->filling = true;
	}
	*j_r = &zp->ring[zp->head % zp->nring];
	return 0;
}

static void job_add(struct zjob *j, const void *data, size_t len)
{
	if (j->inlen + len > j->incap) {
		j->incap = (j->inlen + len) * 3 / 2 + CHUNK;
		j->in = xrealloc(j->in, j->incap);
	}
	memcpy(j->in + j->inlen, data, len);
	j->inlen += len;
}

/* Ends the member being filled: to a worker, or compressed and written
 * here. */
static int job_submit(struct backup_archive *ar, struct error *err)
{
	struct zpool *zp = &ar->packs->w->pool;
	if (!zp->filling)
		return 0;
	zp->filling = false;
	struct zjob *j = &zp->ring[zp->head % zp->nring];
	if (!zp->nth) {
		zjob_compress(&ar->packs->w->z.zs, j);
		zp->head++;
		zp->tail++;
		return job_write(ar, j, err);
	}
	pthread_mutex_lock(&zp->mu);
	zp->head++;
	pthread_cond_signal(&zp->work);
	pthread_mutex_unlock(&zp->mu);
	return 0;
}

/* Every member so far is in the file: what follows starts a member. */
static int writer_drain(struct backup_archive *ar, struct error *err)
{
	struct zpool *zp = &ar->packs->w->pool;
	if (job_submit(ar, err) < 0)
		return -1;
	while (zp->tail < zp->head)
		if (pool_write_oldest(ar, err) < 0)
			return -1;
	return 0;
}

static int pack_commit(struct backup_archive *ar, struct error *err);

/* Appends the staged object sha (binary) to the pack being written. */
static int writer_add(struct backup_archive *ar, const unsigned char *sha,
		      struct stage *st, struct error *err)
{
	struct backup_packs *P = ar->packs;
	struct pack_writer *w = P->w;
	unsigned char h[512];
	char hex[41];
	static const char zeros[512];
	size_t pad = (size_t)((512 - st->len % 512) % 512);
	struct zjob *j = NULL;

	hex20(sha, hex);
	tar_header(h, hex, (uint32_t)st->len, w->mtime);
	if (st->fd < 0) {
		if (job_cur(ar, &j, err) < 0)
			return -1;
		job_add(j, h, 512);
		job_add(j, st->mem.s, st->mem.len);
		job_add(j, zeros, pad);
	} else {
		/* A big message: a member of its own, streamed from its
		 * file here, not held in memory. */
		static unsigned char rbuf[CHUNK];
		uint64_t left = st->len;
		if (writer_drain(ar, err) < 0)
			return -1;
		if (lseek(st->fd, 0, SEEK_SET) < 0)
			return error_sys(err, ERR_IO, errno, "cannot read "
					 "'%s'", st->tmp);
		uint64_t moff = w->z.off;
		if (zout_deflate(&w->z, h, 512, false, err) < 0)
			return -1;
		while (left) {
			ssize_t n = read_full(st->fd, rbuf,
					      left < CHUNK ? left : CHUNK);
			if (n <= 0)
				return error_sys(err, ERR_IO, n ? errno : EIO,
						 "cannot read '%s'", st->tmp);
			if (zout_deflate(&w->z, rbuf, (size_t)n, false, err) <
			    0)
				return -1;
			left -= (uint64_t)n;
		}
		if (zout_deflate(&w->z, zeros, pad, true, err) < 0)
			return -1;
		struct pack_ent *e = ent_new(P);
		e->moff = moff;
		e->inoff = 512;
		e->size = (uint32_t)st->len;
		e->pack = w->pack;
		memcpy(e->sha, sha, 20);
		P->p[w->pack].nobj++;
		if (w->index)
			table_insert(P, P->ne - 1);
		goto full;
	}
	struct pack_ent *e = ent_new(P);
	e->moff = 0; /* known when the member is written */
	e->inoff = (uint32_t)(j->inlen - pad - st->len);
	e->size = (uint32_t)st->len;
	e->pack = w->pack;
	memcpy(e->sha, sha, 20);
	P->p[w->pack].nobj++;
	j->n++;
	if (w->index)
		table_insert(P, P->ne - 1);
	if (j->inlen >= P->member_size && job_submit(ar, err) < 0)
		return -1;
full:
	if (w->autoclose && w->z.off >= P->pack_size)
		return pack_commit(ar, err);
	return 0;
}

/* Ends the tar stream (its own gzip member) and closes the file; id_r
 * gets the pack's SHA-1. */
static int writer_close(struct backup_archive *ar, char id_r[41],
			struct error *err)
{
	struct backup_packs *P = ar->packs;
	struct pack_writer *w = P->w;
	static const char zeros[1024];
	if (writer_drain(ar, err) < 0)
		return -1;
	pool_stop(&w->pool);
	P->p[w->pack].tail = w->z.off;
	if (zout_deflate(&w->z, zeros, sizeof(zeros), true, err) < 0)
		return -1;
	P->p[w->pack].size = w->z.off;
	backup_sha1_end(w->z.md, id_r);
	w->z.md = NULL;
	return zout_close(ar, &w->z, err);
}

/* The index of pack pi (named id) into a file in tmp/ (*tmp_r). */
static int idx_write(struct backup_archive *ar, uint32_t pi, const char *id,
		     char **tmp_r, struct error *err)
{
	struct backup_packs *P = ar->packs;
	const struct pack_file *p = &P->p[pi];
	struct zout z;
	struct buf b = BUF_INIT;
	EVP_MD_CTX *md = backup_sha1_begin();
	char hex[41], sum[41];
	int r = -1;

	*tmp_r = NULL;
	if (zout_open(ar, &z, "idx", Z_BEST_COMPRESSION, false, err) < 0)
		goto out;
	z.count = P->w && P->w->index ? &ar->new_bytes : NULL;
	buf_printf(&b, "%s\t%d\npack\t%s\t%llu\t%llu\n", PACK_MAGIC,
		   PACK_IDX_VERSION, id, (unsigned long long)p->size,
		   (unsigned long long)p->tail);
	for (size_t i = p->first; i < p->first + p->nobj; i++) {
		const struct pack_ent *e = &P->e[i];
		hex20(e->sha, hex);
		buf_printf(&b, "%s\t%llu\t%u\t%u\n", hex,
			   (unsigned long long)e->moff, e->inoff, e->size);
		if (b.len >= CHUNK) {
			EVP_DigestUpdate(md, b.s, b.len);
			if (zout_deflate(&z, b.s, b.len, false, err) < 0)
				goto out;
			buf_reset(&b);
		}
	}
	EVP_DigestUpdate(md, b.s, b.len);
	backup_sha1_end(md, sum);
	md = NULL;
	buf_printf(&b, "end\t%s\n", sum);
	if (zout_deflate(&z, b.s, b.len, true, err) < 0 ||
	    zout_close(ar, &z, err) < 0)
		goto out;
	*tmp_r = xstrdup(z.tmp);
	r = 0;
out:
	if (md)
		EVP_MD_CTX_free(md);
	zout_free(&z, r == 0);
	buf_release(&b);
	return r;
}

static int format_write(struct backup_archive *ar, int version,
			struct error *err)
{
	char *p = xasprintf("%s/FORMAT", ar->dir);
	char line[32];
	int n = snprintf(line, sizeof(line), "cyrus-backup %d\n", version);
	struct atomicfile af;
	int r = -1;
	if (atomicfile_begin(&af, p, 0666, err) == 0) {
		af.nosync = ar->nosync;
		if (atomicfile_write(&af, line, (size_t)n, err) < 0)
			atomicfile_abort(&af);
		else
			r = atomicfile_commit(&af, err);
	}
	free(p);
	if (r == 0)
		ar->format = version;
	return r;
}

static int sync_dir(struct backup_archive *ar, const char *path,
		    struct error *err)
{
	if (!ar->nosync && fsync_parent_dir(path) < 0)
		return error_sys(err, ERR_IO, errno, "cannot sync the "
				 "directory of '%s'", path);
	return 0;
}

/* The pack (then its index) under their names, each made durable. */
static int pack_install(struct backup_archive *ar, const char *ptmp,
			const char *itmp, const char *id, struct error *err)
{
	struct buf pp = BUF_INIT, ip = BUF_INIT;
	int r = -1;
	pack_name(ar, id, "tar.gz", &pp);
	pack_name(ar, id, "idx.gz", &ip);
	if (rename(ptmp, pp.s) < 0)
		error_sys(err, ERR_CANTCREAT, errno, "cannot store '%s'",
			  pp.s);
	else if (sync_dir(ar, pp.s, err) < 0)
		;
	else if (rename(itmp, ip.s) < 0)
		error_sys(err, ERR_CANTCREAT, errno, "cannot store '%s'",
			  ip.s);
	else if (sync_dir(ar, ip.s, err) == 0)
		r = 0;
	buf_release(&pp);
	buf_release(&ip);
	return r;
}

/* create: the pack being written, closed and put in place with its
 * index. On failure it is dropped, and every later sync fails too (its
 * messages may be named by the manifest being written). */
static int pack_commit(struct backup_archive *ar, struct error *err)
{
	struct backup_packs *P = ar->packs;
	struct pack_writer *w = P->w;
	char id[41], *itmp = NULL;
	struct error lerr = ERROR_INIT;
	if (!err)
		err = &lerr;
	if (writer_close(ar, id, err) < 0 ||
	    idx_write(ar, w->pack, id, &itmp, err) < 0 ||
	    pack_install(ar, w->z.tmp, itmp, id, err) < 0) {
		if (itmp) {
			unlink(itmp);
			free(itmp);
		}
		writer_abort(ar);
		P->failed = *err;
		return -1;
	}
	free(itmp);
	memcpy(P->p[w->pack].id, id, 41);
	zout_free(&w->z, true);
	free(w);
	P->w = NULL;
	return 0;
}

/* create: the staged object (already known to be new) into the pack. */
static int pack_put(struct backup_archive *ar, const char *sha1,
		    struct error *err)
{
	struct backup_packs *P = ar->packs;
	struct error lerr = ERROR_INIT;
	unsigned char k[20];
	if (!err)
		err = &lerr;
	sha_bin(sha1, k);
	if (P->failed.kind) {
		*err = P->failed;
		return -1;
	}
	if (P->st.len > UINT32_MAX)
		return error_set(err, ERR_DATA, "a message of %llu bytes: "
				 "more than 4 GiB",
				 (unsigned long long)P->st.len);
	if (!P->w && writer_open(ar, true, true, err) < 0) {
		writer_abort(ar);
		return -1;
	}
	if (writer_add(ar, k, &P->st, err) < 0) {
		if (P->w) {
			writer_abort(ar);
			P->failed = *err;
		}
		return -1;
	}
	return 0;
}

/* ---- reading a pack ---- */

static void cursor_close(struct cursor *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->live = false;
	c->inlen = 0;
	c->zs.avail_in = 0;
}

static void cursor_free(struct cursor *c)
{
	if (!c)
		return;
	cursor_close(c);
	if (c->zinit)
		inflateEnd(&c->zs);
	free(c);
}

static struct cursor *cursor_new(int fd, uint32_t pack)
{
	struct cursor *c = xzmalloc(sizeof(*c));
	c->fd = fd;
	c->pack = pack;
	return c;
}

/* Inflating from the start of the member at moff. */
static int cursor_start(struct cursor *c, uint64_t moff, struct error *err)
{
	if (!c->zinit) {
		if (inflateInit2(&c->zs, 15 + 16) != Z_OK)
			return error_set(err, ERR_SOFTWARE, "zlib: "
					 "inflateInit2 failed");
		c->zinit = true;
	} else {
		inflateReset(&c->zs);
	}
	/* The next member is often in what was read already. */
	if (c->inlen && moff >= c->bufoff && moff < c->bufoff + c->inlen) {
		c->zs.next_in = c->in + (moff - c->bufoff);
		c->zs.avail_in = (uInt)(c->bufoff + c->inlen - moff);
	} else {
		c->zs.avail_in = 0;
		c->inlen = 0;
		c->foff = moff;
	}
	c->moff = moff;
	c->pos = 0;
	c->live = true;
	c->ended = false;
	return 0;
}

/* The next len bytes of the member's tar stream into dst. */
static int cursor_pull(struct cursor *c, unsigned char *dst, size_t len,
		       const char *path, struct error *err)
{
	if (c->ended && len)
		goto short_member;
	c->zs.next_out = dst;
	c->zs.avail_out = (uInt)len;
	while (c->zs.avail_out) {
		if (!c->zs.avail_in) {
			ssize_t n = pread(c->fd, c->in, CHUNK, (off_t)c->foff);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return error_sys(err, ERR_IO, errno, "cannot "
						 "read '%s'", path);
			if (n == 0)
				return error_set(err, ERR_DATA, "'%s': "
						 "damaged: it ends inside "
						 "the gzip member at %llu",
						 path, (unsigned long long)
						 c->moff);
			c->bufoff = c->foff;
			c->inlen = (size_t)n;
			c->foff += (uint64_t)n;
			c->zs.next_in = c->in;
			c->zs.avail_in = (uInt)n;
		}
		int zr = inflate(&c->zs, Z_NO_FLUSH);
		if (zr == Z_STREAM_END) {
			c->ended = true;
			if (c->zs.avail_out)
				goto short_member;
			break;
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR)
			return error_set(err, ERR_DATA, "'%s': damaged: the "
					 "gzip member at %llu: %s", path,
					 (unsigned long long)c->moff,
					 c->zs.msg ? c->zs.msg
						   : "inflate error");
	}
	c->pos += len;
	return 0;
short_member:
	return error_set(err, ERR_DATA, "'%s': damaged: the gzip member at "
			 "%llu ends early", path,
			 (unsigned long long)c->moff);
}

struct sink {
	EVP_MD_CTX *md;
	struct buf *out;
	int fd;
	struct backup_archive *ar; /* with st: staged */
	struct stage *st;
};

/* Entry e's bytes (after its tar header is checked) to k. */
static int cursor_object(struct cursor *c, const char *path,
			 const struct pack_ent *e, const struct sink *k,
			 struct error *err)
{
	unsigned char h[512];
	char hex[41];
	hex20(e->sha, hex);
	if (!c->live || c->ended || c->moff != e->moff ||
	    c->pos > e->inoff - 512) {
		if (cursor_start(c, e->moff, err) < 0)
			return -1;
	}
	while (c->pos < e->inoff - 512) {
		uint64_t n = e->inoff - 512 - c->pos;
		if (cursor_pull(c, c->out, n > CHUNK ? CHUNK : (size_t)n,
				path, err) < 0)
			goto bad;
	}
	if (cursor_pull(c, h, 512, path, err) < 0)
		goto bad;
	if (memcmp(h, hex, 40) || h[40] ||
	    strtoull((const char *)h + 124, NULL, 8) != e->size) {
		error_set(err, ERR_DATA, "'%s': damaged: no tar member %s of "
			  "%u bytes where its index says", path, hex,
			  e->size);
		goto bad;
	}
	for (uint64_t left = e->size; left;) {
		size_t n = left > CHUNK ? CHUNK : (size_t)left;
		if (cursor_pull(c, c->out, n, path, err) < 0)
			goto bad;
		if (k->md)
			EVP_DigestUpdate(k->md, c->out, n);
		if (k->out)
			buf_add(k->out, c->out, n);
		else if (k->st && stage_add(k->ar, k->st, c->out, n, err) < 0)
			goto bad;
		else if (k->fd >= 0 && write_all(k->fd, c->out, n) < 0) {
			error_sys(err, ERR_IO, errno, "write error");
			goto bad;
		}
		left -= n;
	}
	return 0;
bad:
	c->live = false;
	return -1;
}

/* Why a message is nowhere: what the scan found wrong, if anything. */
static void miss_hint(const struct backup_archive *ar, struct buf *out)
{
	const struct backup_packs *P = ar->packs;
	size_t nbad = 0;
	const char *first = NULL;
	for (size_t i = 0; P && i < P->np; i++)
		if (P->p[i].problem && !P->p[i].nobj) {
			if (!nbad++)
				first = P->p[i].problem;
		}
	if (nbad)
		buf_printf(out, " (%zu pack index%s unreadable: %s%s)", nbad,
			   nbad > 1 ? "es" : "", first, nbad > 1 ? "; ..." : "");
	if (P && P->noidx)
		buf_printf(out, " (%lu pack file%s without an index)",
			   P->noidx, P->noidx > 1 ? "s" : "");
}

/* Reads packed entry e: to the sink, with its SHA-1 into got. */
static int packed_read(const struct backup_archive *ar,
		       const struct pack_ent *e, struct buf *out, int fd_out,
		       char got[41], struct buf *path, struct error *err)
{
	struct backup_packs *P = ar->packs;
	char hex[41];
	hex20(e->sha, hex);
	pack_name(ar, P->p[e->pack].id, "tar.gz", path);
	if (!P->cur || P->cur->pack != e->pack || P->cur->fd < 0) {
		if (!P->cur)
			P->cur = cursor_new(-1, e->pack);
		cursor_close(P->cur);
		P->cur->pack = e->pack;
		P->cur->fd = open(path->s, O_RDONLY | O_CLOEXEC);
		if (P->cur->fd < 0)
			return error_sys(err, errno == ENOENT ? ERR_NOINPUT
							      : ERR_IO,
					 errno, "'%s' (which holds message "
					 "%s): missing", path->s, hex);
	}
	struct sink k = { .md = backup_sha1_begin(), .out = out, .fd = fd_out };
	int r = cursor_object(P->cur, path->s, e, &k, err);
	backup_sha1_end(k.md, got);
	if (r < 0 && err) {
		char m[sizeof(err->msg)];
		snprintf(m, sizeof(m), "%s", err->msg);
		if (!strstr(m, hex))
			error_set(err, err->kind, "message %s: %s", hex, m);
	}
	return r;
}

/* ---- checking and pruning packs ---- */

size_t backup_pack_count(const struct backup_archive *ar)
{
	return ar->packs ? ar->packs->np : 0;
}

void backup_pack_path(const struct backup_archive *ar, size_t i,
		      struct buf *out)
{
	pack_name(ar, ar->packs->p[i].id, "tar.gz", out);
}

/* The SHA-1 and size of a whole file. */
static int file_sha1(const char *path, char hex[41], uint64_t *size,
		     struct error *err)
{
	static unsigned char b[CHUNK];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_sys(err, errno == ENOENT ? ERR_NOINPUT : ERR_IO,
				 errno, "'%s': missing", path);
	EVP_MD_CTX *md = backup_sha1_begin();
	*size = 0;
	for (;;) {
		ssize_t n = read(fd, b, sizeof(b));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			EVP_MD_CTX_free(md);
			close(fd);
			return error_sys(err, ERR_IO, e, "cannot read '%s'",
					 path);
		}
		if (n == 0)
			break;
		EVP_DigestUpdate(md, b, (size_t)n);
		*size += (uint64_t)n;
	}
	close(fd);
	backup_sha1_end(md, hex);
	return 0;
}

int backup_pack_check(const struct backup_archive *ar, size_t i, bool full,
		      struct error *err)
{
	const struct pack_file *p = &ar->packs->p[i];
	if (p->gone)
		return 0;
	if (p->problem)
		return error_set(err, strstr(p->problem, "': missing")
					      ? ERR_NOINPUT : ERR_DATA,
				 "%s", p->problem);
	if (!full)
		return 0;
	struct buf path = BUF_INIT;
	char got[41];
	uint64_t size;
	pack_name(ar, p->id, "tar.gz", &path);
	int r = file_sha1(path.s, got, &size, err);
	if (r == 0 && strcmp(got, p->id))
		r = error_set(err, ERR_DATA, "'%s': damaged: the file has "
			      "SHA-1 %s", path.s, got);
	buf_release(&path);
	return r;
}

struct prune_pack {
	uint32_t i;
	uint64_t total, kept; /* message bytes: all, those kept here */
	size_t nkept;
};

static int cmp_prune(const void *a, const void *b)
{
	const struct prune_pack *x = a, *y = b;
	/* The fullest first: a message held twice stays in that one. */
	unsigned __int128 l = (unsigned __int128)x->kept * (y->total + 1),
			  r = (unsigned __int128)y->kept * (x->total + 1);
	if (l != r)
		return l > r ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

static int remove_pack(struct backup_archive *ar, uint32_t i,
		       struct error *err)
{
	struct backup_packs *P = ar->packs;
	struct buf pp = BUF_INIT, ip = BUF_INIT;
	int r = 0;
	pack_name(ar, P->p[i].id, "idx.gz", &ip);
	pack_name(ar, P->p[i].id, "tar.gz", &pp);
	if (P->cur && P->cur->pack == i)
		cursor_close(P->cur);
	/* The index first: a pack without one is garbage, not damage. */
	if (unlink(ip.s) < 0 && errno != ENOENT)
		r = error_sys(err, ERR_IO, errno, "cannot remove '%s'", ip.s);
	else if (sync_dir(ar, ip.s, err) < 0)
		r = -1;
	else if (unlink(pp.s) < 0 && errno != ENOENT)
		r = error_sys(err, ERR_IO, errno, "cannot remove '%s'", pp.s);
	if (r == 0)
		P->p[i].gone = true;
	buf_release(&pp);
	buf_release(&ip);
	return r;
}

/* Pack i again with only the entries marked in mine; *saved_r gets the
 * bytes it saved. */
static int rewrite_pack(struct backup_archive *ar, uint32_t i,
			const bool *mine, uint64_t *saved_r,
			struct error *err)
{
	struct backup_packs *P = ar->packs;
	struct buf old = BUF_INIT, np = BUF_INIT;
	struct cursor *oc = NULL, *vc = NULL;
	char id[41], *itmp = NULL;
	int r = -1;
	const size_t first = P->p[i].first, end = first + P->p[i].nobj;

	pack_name(ar, P->p[i].id, "tar.gz", &old);
	int fd = open(old.s, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		error_sys(err, ERR_IO, errno, "cannot open '%s'", old.s);
		goto out;
	}
	oc = cursor_new(fd, i);
	if (writer_open(ar, false, false, err) < 0)
		goto out;
	struct pack_writer *w = P->w;
	const uint32_t ni = w->pack;
	for (size_t j = first; j < end;) {
		size_t k = j;
		bool all = true;
		while (k < end && P->e[k].moff == P->e[j].moff)
			all &= mine[k++ - first];
		uint64_t mend = k < end ? P->e[k].moff : P->p[i].tail;
		if (all) {
			/* Every message of the member stays: its bytes as
			 * they are, no inflate, no deflate. */
			if (writer_drain(ar, err) < 0)
				goto out;
			uint64_t moff = w->z.off;
			for (uint64_t o = P->e[j].moff; o < mend;) {
				size_t n = mend - o > CHUNK ? CHUNK
							    : (size_t)(mend - o);
				ssize_t got = pread(fd, oc->out, n, (off_t)o);
				if (got <= 0) {
					error_sys(err, got ? ERR_IO : ERR_DATA,
						  got ? errno : EIO, "cannot "
						  "read '%s'", old.s);
					goto out;
				}
				if (zout_write(&w->z, oc->out, (size_t)got,
					       err) < 0)
					goto out;
				o += (uint64_t)got;
			}
			for (size_t t = j; t < k; t++) {
				struct pack_ent *e = ent_new(P);
				*e = P->e[t];
				e->moff = moff;
				e->pack = ni;
				P->p[ni].nobj++;
			}
		} else {
			for (size_t t = j; t < k; t++) {
				if (!mine[t - first])
					continue;
				struct sink s = { .md = backup_sha1_begin(), .fd = -1,
						  .ar = ar, .st = &P->st };
				unsigned char sha[20];
				char want[41], got[41];
				memcpy(sha, P->e[t].sha, 20);
				stage_reset(&P->st);
				int cr = cursor_object(oc, old.s, &P->e[t], &s,
						       err);
				backup_sha1_end(s.md, got);
				if (cr < 0)
					goto out;
				hex20(sha, want);
				if (strcmp(got, want)) {
					error_set(err, ERR_DATA, "'%s': "
						  "message %s is damaged: "
						  "its content has SHA-1 %s",
						  old.s, want, got);
					goto out;
				}
				if (writer_add(ar, sha, &P->st, err) < 0)
					goto out;
			}
		}
		j = k;
	}
	stage_reset(&P->st);
	if (writer_close(ar, id, err) < 0)
		goto out;
	pack_name(ar, id, "tar.gz", &np);
	if (access(np.s, F_OK) == 0) {
		error_set(err, ERR_SOFTWARE, "'%s' exists already", np.s);
		goto out;
	}
	if (idx_write(ar, ni, id, &itmp, err) < 0)
		goto out;
	/* Read back every message of the new pack before the old one
	 * goes. */
	int vfd = open(w->z.tmp, O_RDONLY | O_CLOEXEC);
	if (vfd < 0) {
		error_sys(err, ERR_IO, errno, "cannot open '%s'", w->z.tmp);
		goto out;
	}
	vc = cursor_new(vfd, ni);
	for (size_t t = P->p[ni].first; t < P->p[ni].first + P->p[ni].nobj;
	     t++) {
		struct sink s = { .md = backup_sha1_begin(), .fd = -1 };
		char want[41], got[41];
		int cr = cursor_object(vc, w->z.tmp, &P->e[t], &s, err);
		backup_sha1_end(s.md, got);
		if (cr < 0)
			goto out;
		hex20(P->e[t].sha, want);
		if (strcmp(got, want)) {
			error_set(err, ERR_SOFTWARE, "'%s': message %s reads "
				  "back wrong", w->z.tmp, want);
			goto out;
		}
	}
	if (pack_install(ar, w->z.tmp, itmp, id, err) < 0)
		goto out;
	memcpy(P->p[ni].id, id, 41);
	zout_free(&w->z, true);
	free(w);
	P->w = NULL;
	*saved_r = P->p[i].size > P->p[ni].size ? P->p[i].size -
							  P->p[ni].size
						: 0;
	r = remove_pack(ar, i, err);
out:
	if (P->w) {
		stage_reset(&P->st);
		writer_abort(ar);
	}
	if (itmp) {
		unlink(itmp); /* gone if it was renamed in */
		free(itmp);
	}
	cursor_free(oc);
	cursor_free(vc);
	buf_release(&old);
	buf_release(&np);
	return r;
}

int backup_packs_prune(struct backup_archive *ar,
		       const struct backup_shaset *keep, unsigned max_unused,
		       bool dry, struct backup_prune_stats *st,
		       struct error *err)
{
	struct backup_packs *P = ar->packs;
	memset(st, 0, sizeof(*st));
	if (!P || !P->np)
		return 0;
	const size_t n0 = P->np, ne0 = P->ne;
	struct prune_pack *q = xcalloc(n0, sizeof(*q));
	bool *mine = xcalloc(ne0 ? ne0 : 1, sizeof(bool));
	struct backup_shaset claimed = { 0 };
	size_t nq = 0;
	char hex[41];
	int r = 0;

	for (size_t i = 0; i < n0; i++) {
		const struct pack_file *p = &P->p[i];
		if (p->gone)
			continue;
		if (p->problem)
			continue; /* below, once the sound ones have claimed */
		q[nq].i = (uint32_t)i;
		for (size_t j = p->first; j < p->first + p->nobj; j++) {
			/* +1: an empty message still counts */
			q[nq].total += P->e[j].size + 1;
			hex20(P->e[j].sha, hex);
			if (backup_shaset_has(keep, hex))
				q[nq].kept += P->e[j].size + 1;
		}
		nq++;
	}
	if (r == 0 && nq)
		qsort(q, nq, sizeof(*q), cmp_prune);
	for (size_t k = 0; k < nq; k++) {
		const struct pack_file *p = &P->p[q[k].i];
		q[k].kept = 0;
		for (size_t j = p->first; j < p->first + p->nobj; j++) {
			hex20(P->e[j].sha, hex);
			if (backup_shaset_has(keep, hex) &&
			    backup_shaset_add(&claimed, hex)) {
				mine[j] = true;
				q[k].kept += P->e[j].size + 1;
				q[k].nkept++;
			}
		}
	}
	/* An unreadable index, a missing or damaged pack: its messages count
	 * nowhere; its index goes only if every kept message it names is in
	 * a sound pack too (create stored them again). */
	for (size_t i = 0; i < n0 && r == 0; i++) {
		const struct pack_file *p = &P->p[i];
		if (p->gone || !p->problem)
			continue;
		bool needed = !p->nobj;
		for (size_t j = p->first; j < p->first + p->nobj; j++) {
			hex20(P->e[j].sha, hex);
			needed |= backup_shaset_has(keep, hex) &&
				  !backup_shaset_has(&claimed, hex);
		}
		if (needed) {
			st->skipped++;
			continue;
		}
		st->removed++;
		st->objects += p->nobj;
		if (!dry && remove_pack(ar, (uint32_t)i, err) < 0)
			r = -1;
	}
	for (size_t k = 0; k < nq && r == 0; k++) {
		/* Index each time: a rewrite adds to P->p. */
		const uint32_t i = q[k].i;
		const size_t nobj = P->p[i].nobj, ndead = nobj - q[k].nkept;
		const uint64_t size = P->p[i].size;
		if (!ndead)
			continue;
		if (!q[k].nkept) {
			st->removed++;
			st->objects += nobj;
			st->bytes += size;
			if (!dry && remove_pack(ar, i, err) < 0)
				r = -1;
			continue;
		}
		uint64_t dead = q[k].total - q[k].kept;
		if (dead * 100 <= (uint64_t)max_unused * q[k].total)
			continue;
		st->rewritten++;
		st->objects += ndead;
		if (dry) {
			st->bytes += (uint64_t)((double)size * (double)dead /
						(double)q[k].total);
			continue;
		}
		uint64_t saved = 0;
		if (rewrite_pack(ar, i, mine + P->p[i].first, &saved, err) < 0)
			r = -1;
		st->bytes += saved;
	}
	backup_shaset_release(&claimed);
	free(mine);
	free(q);
	return r;
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
		r = format_write(ar, BACKUP_FORMAT_VERSION, err);
		goto out;
	}
	if (!f) {
		error_sys(err, errno == ENOENT ? ERR_NOINPUT : ERR_IO, errno,
			  "'%s' is not a backup archive: cannot open FORMAT",
			  ar->dir);
		goto out;
	}
	int v = 0;
	if (!fgets(line, sizeof(line), f) ||
	    strncmp(line, "cyrus-backup ", 13)) {
		error_set(err, ERR_DATA, "'%s' is not a backup archive: bad "
			  "FORMAT file", ar->dir);
	} else if ((v = atoi(line + 13)) < 1 || v > BACKUP_FORMAT_VERSION) {
		line[strcspn(line, "\n")] = '\0';
		error_set(err, ERR_DATA, "'%s' is archive format %s; this "
			  "tool reads formats 1 to %d", ar->dir, line + 13,
			  BACKUP_FORMAT_VERSION);
	} else if (create && v < BACKUP_FORMAT_VERSION) {
		/* An older tool would not see what this run writes (packs,
		 * manifest.gz) and its prune would remove it: it must refuse
		 * the archive from now on. */
		r = format_write(ar, BACKUP_FORMAT_VERSION, err);
	} else {
		ar->format = v;
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
		/* Only create makes the lock file: prune leaves a DIR that
		 * is not an archive as it was. */
		ar->lock_fd = open(lp, (writes ? O_RDWR : O_RDONLY) |
				   (mode == BACKUP_OPEN_CREATE ? O_CREAT : 0) |
				   O_CLOEXEC, 0666);
		if (ar->lock_fd < 0 && mode != BACKUP_OPEN_CREATE &&
		    errno == ENOENT) {
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
		/* No messages/ in a new archive: they go into packs. */
		static const char *const sub[] = { "packs", "files",
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
	if (mode != BACKUP_OPEN_LIST)
		packs_init(ar, mode);
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
	packs_free(ar);
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
	const struct pack_ent *e = kind == BACKUP_MESSAGES ? packed(ar, sha1)
							   : NULL;
	if (e) {
		pack_name(ar, ar->packs->p[e->pack].id, "tar.gz", out);
		buf_printf(out, ":%s", sha1);
	} else if (kind == BACKUP_MESSAGES && ar->packs &&
		   !ar->packs->loose) {
		buf_printf(out, "%s/packs/(none):%s", ar->dir, sha1);
	} else {
		buf_printf(out, "%s/%s/%.2s/%s.gz", ar->dir, kind_dir[kind],
			   sha1, sha1);
	}
}

/* Loose messages exist only in format 1 archives. */
static bool loose_ok(const struct backup_archive *ar, enum backup_kind kind)
{
	return kind == BACKUP_FILES || !ar->packs || ar->packs->loose;
}

bool backup_object_exists(const struct backup_archive *ar,
			  enum backup_kind kind, const char *sha1)
{
	if (ar->pendset[kind] && backup_shaset_has(ar->pendset[kind], sha1))
		return true;
	/* A message whose pack is missing or damaged is stored again. */
	unsigned char k[20];
	if (kind == BACKUP_MESSAGES && ar->packs && sha_bin(sha1, k) &&
	    table_find(ar->packs, k, true))
		return true;
	if (!loose_ok(ar, kind))
		return false;
	struct buf p = BUF_INIT;
	struct stat st;
	backup_object_path(ar, kind, sha1, &p);
	bool r = stat(p.s, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
	buf_release(&p);
	return r;
}

/* The batch of loose objects: made durable, then renamed in. */
static int sync_loose(struct backup_archive *ar, struct error *err)
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

int backup_archive_sync(struct backup_archive *ar, struct error *err)
{
	struct backup_packs *P = ar->packs;
	if (P && P->failed.kind) {
		if (err)
			*err = P->failed;
		return -1;
	}
	if (P && P->w && pack_commit(ar, err) < 0)
		return -1;
	return sync_loose(ar, err);
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
		return sync_loose(ar, err);
	return 0;
}

/*
 * The compressor: feeds bytes to SHA-1 and deflate (gzip wrapper) into a
 * temporary file. The name is known only at the end.
 */
struct putter {
	struct backup_archive *ar;
	EVP_MD_CTX *md;
	struct backup_gzout *gz;
	struct buf zb; /* compressed, not yet written */
	bool pack; /* a message: staged, then into the pack */
	int fd;
	char *tmp;
	uint64_t in, out;
};

static int putter_begin(struct putter *p, struct backup_archive *ar,
			enum backup_kind kind, struct error *err)
{
	memset(p, 0, sizeof(*p));
	buf_init(&p->zb);
	p->ar = ar;
	p->fd = -1;
	p->md = backup_sha1_begin();
	if (ar->dry)
		return 0;
	if (kind == BACKUP_MESSAGES && ar->packs) {
		p->pack = true;
		stage_reset(&ar->packs->st);
		return 0;
	}
	p->gz = backup_gzout_new(Z_DEFAULT_COMPRESSION);
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
	if (p->pack)
		return stage_add(p->ar, &p->ar->packs->st, data, len, err);
	if (!p->gz)
		return 0;
	backup_gzout_add(p->gz, data, len, finish, &p->zb);
	if (p->zb.len && write_all(p->fd, p->zb.s, p->zb.len) < 0)
		return error_sys(err, ERR_IO, errno, "cannot write '%s'",
				 p->tmp);
	p->out += p->zb.len;
	buf_reset(&p->zb);
	return 0;
}

static void putter_abort(struct putter *p)
{
	if (p->md)
		EVP_MD_CTX_free(p->md);
	p->md = NULL;
	if (p->pack)
		stage_reset(&p->ar->packs->st);
	backup_gzout_free(p->gz);
	p->gz = NULL;
	buf_release(&p->zb);
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
	backup_sha1_end(p->md, sha1_r);
	p->md = NULL;
	if (p->pack) {
		int r = 0;
		if (!backup_object_exists(ar, kind, sha1_r)) {
			r = pack_put(ar, sha1_r, err);
			if (r == 0)
				ar->new_objects++;
		}
		stage_reset(&ar->packs->st);
		return r;
	}
	if (ar->dry) {
		if (!backup_object_exists(ar, kind, sha1_r)) {
			ar->new_objects++;
			ar->new_bytes += p->in; /* uncompressed: estimate */
		}
		return 0;
	}
	backup_gzout_free(p->gz);
	p->gz = NULL;
	buf_release(&p->zb);
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
	if (putter_begin(&p, ar, kind, err) < 0) {
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
	if (putter_begin(&p, ar, kind, err) < 0 ||
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
	EVP_MD_CTX *md = backup_sha1_begin();
	EVP_DigestUpdate(md, data, len);
	backup_sha1_end(md, out);
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
		EVP_MD_CTX *whole = backup_sha1_begin();
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
		backup_sha1_end(whole, sha1_r);
		*size_r = len;
		*parts_r = parts;
		*nparts_r = nparts;
		return 0;
	}

	/* From fd: one chunk of look-ahead tells one object from parts. */
	cur = xmalloc(psize);
	next = xmalloc(psize);
	EVP_MD_CTX *whole = backup_sha1_begin();
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
	backup_sha1_end(whole, sha1_r);
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
	static unsigned char obuf[CHUNK];
	struct buf path = BUF_INIT, what = BUF_INIT;
	struct backup_gzin *gz = NULL;
	EVP_MD_CTX *md = NULL;
	uint64_t total = 0;
	int r = -1;
	char got[41];

	if (kind == BACKUP_MESSAGES) {
		const struct pack_ent *e = packed(ar, sha1);
		if (!e) {
			packs_rescan(ar);
			e = packed(ar, sha1);
		}
		if (e) {
			if (packed_read(ar, e, out, fd_out, got, &path, err) < 0)
				goto out;
			buf_printf(&what, "'%s' message %s", path.s, sha1);
			total = e->size;
			goto check;
		}
		if (!loose_ok(ar, kind)) {
			buf_printf(&what, "message %s: missing: in no pack",
				   sha1);
			miss_hint(ar, &what);
			error_set(err, ERR_NOINPUT, "%s", what.s);
			goto out;
		}
	}
	backup_object_path(ar, kind, sha1, &path);
	buf_printf(&what, "'%s'", path.s);
	gz = backup_gzin_open(path.s, what.s);
	if (!gz) {
		int e = errno;
		buf_adds(&what, ": missing");
		if (kind == BACKUP_MESSAGES)
			miss_hint(ar, &what);
		error_sys(err, e == ENOENT ? ERR_NOINPUT : ERR_IO, e, "%s",
			  what.s);
		goto out;
	}
	md = backup_sha1_begin();
	for (;;) {
		ssize_t have = backup_gzin_read(gz, obuf, CHUNK, err);
		if (have < 0)
			goto out;
		if (have == 0)
			break;
		EVP_DigestUpdate(md, obuf, (size_t)have);
		total += (uint64_t)have;
		if (out)
			buf_add(out, obuf, (size_t)have);
		else if (fd_out >= 0 &&
			 write_all(fd_out, obuf, (size_t)have) < 0) {
			error_sys(err, ERR_IO, errno, "write error");
			goto out;
		}
	}
	backup_sha1_end(md, got);
	md = NULL;
check:
	if (strcmp(got, sha1)) {
		error_set(err, ERR_DATA, "%s: damaged: content has SHA-1 %s",
			  what.s, got);
		goto out;
	}
	if (size != UINT64_MAX && total != size) {
		error_set(err, ERR_DATA, "%s: damaged: %llu bytes, the "
			  "manifest says %llu", what.s,
			  (unsigned long long)total, (unsigned long long)size);
		goto out;
	}
	r = 0;
out:
	if (md)
		EVP_MD_CTX_free(md);
	backup_gzin_free(gz);
	buf_release(&path);
	buf_release(&what);
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
	char *gz = xasprintf("%s/snapshots/%s/" BACKUP_MANIFEST_NAME,
			     ar->dir, id);
	if (access(gz, F_OK) < 0 && errno == ENOENT) {
		/* Written before manifests were compressed? */
		char *plain = xasprintf("%s/snapshots/%s/manifest", ar->dir,
					id);
		if (access(plain, F_OK) == 0) {
			free(gz);
			return plain;
		}
		free(plain);
	}
	return gz;
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
	/* After every id of that second, even one pruned since (its number
	 * is not used again: the new id must sort after the kept ones). */
	size_t bl = strlen(base);
	int last = 0;
	char *sd = xasprintf("%s/snapshots", ar->dir);
	DIR *d = opendir(sd);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, base, bl))
			continue;
		int n = !de->d_name[bl] ? 1
			: de->d_name[bl] == '-' ? atoi(de->d_name + bl + 1)
						: 0;
		if (n > last)
			last = n;
	}
	if (d)
		closedir(d);
	free(sd);
	for (int i = last + 1;; i++) {
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
