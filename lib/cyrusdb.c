#include "compat.h"
#include "cyrusdb.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "cyrusdb-private.h"
#include "error.h"
#include "xmalloc.h"

static struct cyrusdb_env env = {
	.configdir = NULL,
	.virtdomains = false,
	.fulldirhash = false,
	.skiplist_always_checkpoint = true,
	.nosync = false,
};

void cyrusdb_init(const struct cyrusdb_env *e)
{
	env = *e;
}

const struct cyrusdb_env *cyrusdb_getenv(void)
{
	return &env;
}

/* Cyrus's order (cyr_dbtool's "Usable Backends" list, minus sql). */
static const struct cyrusdb_backend *const backends[] = {
	&cyrusdb_flat,
	&cyrusdb_skiplist,
	&cyrusdb_quotalegacy,
	&cyrusdb_twoskip,
};

const char *const cyrusdb_backend_names[] = {
	"flat", "skiplist", "quotalegacy", "twoskip", NULL,
};

static const struct cyrusdb_backend *backend_find(const char *name)
{
	size_t len = strlen(name);
	/* Cyrus accepts "NAME-nosync" in imapd.conf settings. */
	if (len > 7 && !strcmp(name + len - 7, "-nosync"))
		len -= 7;
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
		if (strlen(backends[i]->name) == len &&
		    !strncmp(backends[i]->name, name, len))
			return backends[i];
	return NULL;
}

bool cyrusdb_backend_exists(const char *name)
{
	return backend_find(name) != NULL;
}

int cyrusdb_seterr(struct cyrusdb *db, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
	va_end(ap);
	return r;
}

const char *cyrusdb_strerror(int r)
{
	switch (r) {
	case CYRUSDB_OK:
		return "ok";
	case CYRUSDB_DONE:
		return "done";
	case CYRUSDB_IOERROR:
		return "I/O error or corrupt database";
	case CYRUSDB_AGAIN:
		return "try again";
	case CYRUSDB_EXISTS:
		return "record exists";
	case CYRUSDB_INTERNAL:
		return "database is not consistent";
	case CYRUSDB_NOTFOUND:
		return "not found";
	case CYRUSDB_LOCKED:
		return "database is locked";
	case CYRUSDB_NOTIMPLEMENTED:
		return "not implemented by this backend";
	case CYRUSDB_FULL:
		return "database is full";
	case CYRUSDB_READONLY:
		return "database is read-only";
	default:
		return "unknown error";
	}
}

static enum error_kind kind_of(int r)
{
	switch (r) {
	case CYRUSDB_NOTFOUND:
		return ERR_NOINPUT;
	case CYRUSDB_AGAIN:
	case CYRUSDB_LOCKED:
		return ERR_TEMPFAIL;
	case CYRUSDB_INTERNAL:
		return ERR_DATA;
	case CYRUSDB_EXISTS:
		return ERR_CANTCREAT;
	case CYRUSDB_READONLY:
		return ERR_PERM;
	case CYRUSDB_NOTIMPLEMENTED:
		return ERR_UNAVAILABLE;
	default:
		return ERR_IO;
	}
}

const char *cyrusdb_detect(const char *fname)
{
	static const char magic[4] = { '\241', '\002', '\213', '\015' };
	char buf[32];
	ssize_t n = -1;
	int fd = open(fname, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = pread(fd, buf, sizeof(buf), 0);
		close(fd);
	}
	if (n < (ssize_t)sizeof(buf) || memcmp(buf, magic, 4))
		return NULL;
	if (!memcmp(buf + 4, "skiplist fil", 12))
		return "skiplist";
	if (!memcmp(buf + 4, "twoskip file", 12))
		return "twoskip";
	return NULL;
}

static int open_with(const struct cyrusdb_backend *be, const char *fname,
		     int flags, struct cyrusdb **db_r, char *errmsg)
{
	errmsg[0] = '\0';
	int r = be->open(fname, flags, db_r, errmsg);
	if (r == CYRUSDB_OK) {
		(*db_r)->backend = be;
		(*db_r)->fname = xstrdup(fname);
		(*db_r)->flags = flags;
		(*db_r)->errmsg[0] = '\0';
	}
	return r;
}

int cyrusdb_open(const char *backend, const char *fname, int flags,
		 struct cyrusdb **db_r, struct error *err)
{
	char errmsg[512];
	const struct cyrusdb_backend *be = backend_find(backend);
	*db_r = NULL;
	if (!be) {
		error_set(err, ERR_USAGE, "unknown database backend '%s'",
			  backend);
		return CYRUSDB_NOTIMPLEMENTED;
	}
	if ((flags & CYRUSDB_SHARED) && (flags & CYRUSDB_CONVERT)) {
		error_set(err, ERR_USAGE, "cannot open '%s': shared and "
			  "convert exclude each other", fname);
		return CYRUSDB_INTERNAL;
	}
	int r = open_with(be, fname, flags, db_r, errmsg);
	if (r == CYRUSDB_OK || r == CYRUSDB_NOTFOUND)
		goto out;

	/* Wrong format? Detect it, then convert or open as what it is. */
	const char *real = cyrusdb_detect(fname);
	if (!real || !strcmp(real, be->name))
		goto out;
	if (flags & CYRUSDB_CONVERT) {
		struct error cerr = ERROR_INIT;
		if (cyrusdb_convert(fname, real, fname, be->name, NULL,
				    &cerr) < 0) {
			snprintf(errmsg, sizeof(errmsg), "%s", cerr.msg);
			goto out;
		}
		r = open_with(be, fname, flags, db_r, errmsg);
	} else {
		r = open_with(backend_find(real), fname, flags, db_r, errmsg);
	}
out:
	if (r != CYRUSDB_OK && err) {
		if (r == CYRUSDB_NOTFOUND && !errmsg[0])
			error_set(err, ERR_NOINPUT, "cannot open '%s': "
				  "no such database", fname);
		else
			error_set(err, kind_of(r), "cannot open '%s': %s",
				  fname, errmsg[0] ? errmsg
						   : cyrusdb_strerror(r));
	}
	return r;
}

int cyrusdb_close(struct cyrusdb **dbp)
{
	struct cyrusdb *db = *dbp;
	if (!db)
		return 0;
	*dbp = NULL;
	char *fname = db->fname;
	int r = db->backend->close(db);
	free(fname);
	return r;
}

int cyrusdb_fetch(struct cyrusdb *db, const char *key, size_t keylen,
		  const char **data, size_t *datalen, struct cyrusdb_txn **tid)
{
	return db->backend->fetch(db, key, keylen, data, datalen, tid);
}

int cyrusdb_fetchlock(struct cyrusdb *db, const char *key, size_t keylen,
		      const char **data, size_t *datalen,
		      struct cyrusdb_txn **tid)
{
	return db->backend->fetchlock(db, key, keylen, data, datalen, tid);
}

int cyrusdb_fetchnext(struct cyrusdb *db, const char *key, size_t keylen,
		      const char **foundkey, size_t *foundkeylen,
		      const char **data, size_t *datalen,
		      struct cyrusdb_txn **tid)
{
	if (!db->backend->fetchnext)
		return CYRUSDB_NOTIMPLEMENTED;
	return db->backend->fetchnext(db, key, keylen, foundkey, foundkeylen,
				      data, datalen, tid);
}

int cyrusdb_foreach(struct cyrusdb *db, const char *prefix, size_t prefixlen,
		    cyrusdb_filter_fn *p, cyrusdb_cb_fn *cb, void *rock,
		    struct cyrusdb_txn **tid)
{
	return db->backend->foreach(db, prefix, prefixlen, p, cb, rock, tid);
}

int cyrusdb_create(struct cyrusdb *db, const char *key, size_t keylen,
		   const char *data, size_t datalen, struct cyrusdb_txn **tid)
{
	return db->backend->create(db, key, keylen, data, datalen, tid);
}

int cyrusdb_store(struct cyrusdb *db, const char *key, size_t keylen,
		  const char *data, size_t datalen, struct cyrusdb_txn **tid)
{
	return db->backend->store(db, key, keylen, data, datalen, tid);
}

int cyrusdb_delete(struct cyrusdb *db, const char *key, size_t keylen,
		   struct cyrusdb_txn **tid, bool force)
{
	return db->backend->delete(db, key, keylen, tid, force);
}

int cyrusdb_commit(struct cyrusdb *db, struct cyrusdb_txn *tid)
{
	return db->backend->commit(db, tid);
}

int cyrusdb_abort(struct cyrusdb *db, struct cyrusdb_txn *tid)
{
	return db->backend->abort(db, tid);
}

int cyrusdb_consistent(struct cyrusdb *db)
{
	return db->backend->consistent(db);
}

int cyrusdb_repack(struct cyrusdb *db)
{
	return db->backend->repack ? db->backend->repack(db) : 0;
}

int cyrusdb_dump(struct cyrusdb *db, FILE *f, int detail)
{
	if (!db->backend->dump)
		return CYRUSDB_NOTIMPLEMENTED;
	return db->backend->dump(db, f, detail);
}

int cyrusdb_compar(struct cyrusdb *db, const char *a, size_t alen,
		   const char *b, size_t blen)
{
	return db->backend->compar(db, a, alen, b, blen);
}

const char *cyrusdb_name(const struct cyrusdb *db)
{
	return db->backend->name;
}

const char *cyrusdb_fname(const struct cyrusdb *db)
{
	return db->fname;
}

const char *cyrusdb_errmsg(const struct cyrusdb *db)
{
	return db->errmsg[0] ? db->errmsg : "unknown error";
}

/* ---- comparators ---- */

int cyrusdb_compar_raw(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int r = n ? memcmp(a, b, n) : 0;
	if (r)
		return r;
	return alen < blen ? -1 : alen > blen;
}

int cyrusdb_compar_signed(const char *a, size_t alen, const char *b,
			  size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	for (size_t i = 0; i < n; i++) {
		signed char ca = (signed char)a[i], cb = (signed char)b[i];
		if (ca != cb)
			return ca < cb ? -1 : 1;
	}
	return alen < blen ? -1 : alen > blen;
}

/* Identity except: TAB and LF -> 1, '.' -> 2, 0x01..0x08 -> 0x03..0x0a. */
#define R8(n) n, n + 1, n + 2, n + 3, n + 4, n + 5, n + 6, n + 7
#define R16(n) R8(n), R8(n + 8)
#define R64(n) R16(n), R16(n + 16), R16(n + 32), R16(n + 48)
const unsigned char cyrusdb_mboxsort_map[256] = {
	0x00, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
	0x0a, 0x01, 0x01, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	R16(0x10),
	0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
	0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x02, 0x2f,
	R16(0x30),
	R64(0x40),
	R64(0x80),
	R64(0xc0),
};

int cyrusdb_compar_mbox(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	for (size_t i = 0; i < n; i++) {
		unsigned char ca = cyrusdb_mboxsort_map[(unsigned char)a[i]];
		unsigned char cb = cyrusdb_mboxsort_map[(unsigned char)b[i]];
		if (ca != cb)
			return ca < cb ? -1 : 1;
	}
	return alen < blen ? -1 : alen > blen;
}

/* ---- conversion ---- */

struct copy_rock {
	struct cyrusdb *to;
	struct cyrusdb_txn *tid;
	unsigned long n;
	int r;
};

static int copy_one(void *rock, const char *key, size_t keylen,
		    const char *data, size_t datalen)
{
	struct copy_rock *cr = rock;
	cr->r = cyrusdb_store(cr->to, key, keylen, data, datalen, &cr->tid);
	if (cr->r)
		return cr->r;
	cr->n++;
	return 0;
}

static int count_one(void *rock, const char *key UNUSED, size_t keylen UNUSED,
		     const char *data UNUSED, size_t datalen UNUSED)
{
	(*(unsigned long *)rock)++;
	return 0;
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	if (!strcmp(a, b))
		return true;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 &&
	       sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int cyrusdb_convert(const char *fromfile, const char *frombackend,
		    const char *tofile, const char *tobackend,
		    unsigned long *nrecords_r, struct error *err)
{
	struct cyrusdb *from = NULL, *to = NULL;
	struct cyrusdb_txn *fromtid = NULL;
	struct copy_rock cr = { 0 };
	char *tmp = NULL;
	bool in_tree = false;
	int r;

	if (!backend_find(tobackend)) {
		error_set(err, ERR_USAGE, "unknown database backend '%s'",
			  tobackend);
		return CYRUSDB_NOTIMPLEMENTED;
	}
	r = cyrusdb_open(frombackend, fromfile, 0, &from, err);
	if (r)
		return r;
	/* Hold the source lock for the whole copy: a consistent snapshot. */
	const char *d;
	size_t dl;
	r = cyrusdb_fetch(from, "_", 1, &d, &dl, &fromtid);
	if (r && r != CYRUSDB_NOTFOUND) {
		error_set(err, kind_of(r), "cannot read '%s': %s", fromfile,
			  cyrusdb_errmsg(from));
		goto out;
	}

	/*
	 * Write beside the target under a temporary name; the target is only
	 * replaced once the copy is complete, verified and synced. quotalegacy
	 * keeps its records in a directory tree, not in the named file, so it
	 * is written in place (its writes are per-file atomic renames).
	 */
	in_tree = !strcmp(backend_find(tobackend)->name, "quotalegacy");
	tmp = in_tree ? xstrdup(tofile)
		      : xasprintf("%s.cyrtmp.%d", tofile, (int)getpid());
	if (!in_tree) {
		unlink(tmp);
		atomicfile_cleanup_register(tmp);
	}
	/*
	 * A skiplist whose records all sit in one logged transaction makes
	 * Cyrus's recovery (run on every open without a skipstamp) quadratic:
	 * the commit is written as a checkpoint (the ordered part), as Cyrus's
	 * own conversion ends up doing through its automatic checkpoint.
	 */
	r = cyrusdb_open(tobackend, tmp, CYRUSDB_CREATE | CYRUSDB_NOCOMPACT |
			 CYRUSDB_COMMIT_CHECKPOINT, &to, err);
	if (r)
		goto out;
	cr.to = to;
	r = cyrusdb_foreach(from, "", 0, NULL, copy_one, &cr, &fromtid);
	if (r) {
		error_set(err, kind_of(r), "cannot copy '%s' to '%s': %s",
			  fromfile, tmp,
			  cr.r ? cyrusdb_errmsg(to) : cyrusdb_errmsg(from));
		if (cr.tid)
			cyrusdb_abort(to, cr.tid);
		goto out;
	}
	if (cr.tid) {
		r = cyrusdb_commit(to, cr.tid);
		if (r) {
			error_set(err, kind_of(r), "cannot commit '%s': %s",
				  tmp, cyrusdb_errmsg(to));
			goto out;
		}
	}
	/*
	 * The copy is complete: let the source go (and its pages), unless
	 * it is the file about to be replaced, whose lock keeps writers out
	 * until the rename.
	 */
	if (!same_file(fromfile, tofile)) {
		if (fromtid)
			cyrusdb_abort(from, fromtid);
		fromtid = NULL;
		cyrusdb_close(&from);
	}

	/* Verify before the target is touched: same count, sound structure. */
	unsigned long check = 0;
	r = cyrusdb_foreach(to, "", 0, NULL, count_one, &check, NULL);
	if (!r && check != cr.n) {
		error_set(err, ERR_SOFTWARE, "conversion of '%s' lost records: "
			  "%lu written, %lu read back", fromfile, cr.n, check);
		r = CYRUSDB_INTERNAL;
		goto out;
	}
	if (!r)
		r = cyrusdb_consistent(to);
	if (r) {
		error_set(err, kind_of(r), "verification of '%s' failed: %s",
			  tmp, cyrusdb_errmsg(to));
		goto out;
	}
	cyrusdb_close(&to);
	if (!in_tree) {
		if (!env.nosync) {
			int fd = open(tmp, O_RDONLY | O_CLOEXEC);
			if (fd >= 0) {
				fsync(fd);
				close(fd);
			}
		}
		if (rename(tmp, tofile) < 0) {
			error_sys(err, ERR_IO, errno, "cannot rename '%s' to '%s'",
				  tmp, tofile);
			r = CYRUSDB_IOERROR;
			goto out;
		}
		atomicfile_cleanup_unregister(tmp);
		if (!env.nosync)
			fsync_parent_dir(tofile);
	}
	if (nrecords_r)
		*nrecords_r = cr.n;
out:
	if (to)
		cyrusdb_close(&to);
	if (r && tmp && !in_tree) {
		unlink(tmp);
		atomicfile_cleanup_unregister(tmp);
	}
	if (fromtid)
		cyrusdb_abort(from, fromtid);
	cyrusdb_close(&from);
	free(tmp);
	return r;
}
