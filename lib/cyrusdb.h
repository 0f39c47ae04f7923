/*
 * cyrusdb.h: the key/value database layer of Cyrus 3.6.1, one interface over
 * the four file backends (twoskip, skiplist, flat, quotalegacy).
 *
 * Semantics follow Cyrus's lib/cyrusdb.h (docs/formats/cyrusdb.md section 1):
 * - Keys are non-empty byte strings, values may be empty; both binary-safe
 *   except for quotalegacy.
 * - Every operation takes an optional transaction pointer tid:
 *     tid == NULL          the operation is atomic on its own;
 *     tid && *tid == NULL  a transaction is started and returned in *tid;
 *     tid && *tid          the transaction continues.
 *   A transaction holds the file lock until cyrusdb_commit() or
 *   cyrusdb_abort(); after either (also a failed commit) *tid is invalid.
 * - Pointers returned by fetch and passed to foreach callbacks point into the
 *   handle: valid until the next operation on the same handle.
 *
 * Return values are enum cyrusdb_ret (0 ok, negative error). On an error,
 * cyrusdb_errmsg() says what and where (file, offset) in one line.
 */
#ifndef CYRUS_LIB_CYRUSDB_H
#define CYRUS_LIB_CYRUSDB_H

#include <stdbool.h>
#include <stddef.h>

struct error;

enum cyrusdb_ret {
	CYRUSDB_OK = 0,
	CYRUSDB_DONE = 1,
	CYRUSDB_IOERROR = -1,
	CYRUSDB_AGAIN = -2,
	CYRUSDB_EXISTS = -3,
	CYRUSDB_INTERNAL = -4,
	CYRUSDB_NOTFOUND = -5,
	CYRUSDB_LOCKED = -6,
	CYRUSDB_NOTIMPLEMENTED = -7,
	CYRUSDB_FULL = -8,
	CYRUSDB_READONLY = -9,
};

enum cyrusdb_openflags {
	CYRUSDB_CREATE = 0x01,
	CYRUSDB_MBOXSORT = 0x02,
	CYRUSDB_CONVERT = 0x04,
	CYRUSDB_NOCOMPACT = 0x08,
	CYRUSDB_SHARED = 0x10,
	CYRUSDB_NOCRC = 0x20,
	/* Every commit leaves the file checkpointed (skiplist writes the
	 * commit as a checkpoint; the other backends ignore it). For
	 * conversions: one write of the data instead of log + checkpoint. */
	CYRUSDB_COMMIT_CHECKPOINT = 0x40,
};

/*
 * Process-wide settings the backends need from imapd.conf. Set once with
 * cyrusdb_init() before the first open; the defaults are Cyrus's defaults.
 */
struct cyrusdb_env {
	const char *configdir;   /* skiplist: db/skipstamp lives here; may be NULL */
	bool virtdomains;        /* quotalegacy: domain!root -> domain/ tree */
	bool fulldirhash;        /* quotalegacy: hash character rule */
	bool skiplist_always_checkpoint; /* default true */
	bool nosync;             /* skip fsync (benchmarks/tests only) */
};

struct cyrusdb;
struct cyrusdb_txn;

/* Filter (returns true to pass the record to the callback) and callback
 * (returns non-zero to stop the iteration; that value is returned). */
typedef int cyrusdb_filter_fn(void *rock, const char *key, size_t keylen,
			      const char *data, size_t datalen);
typedef int cyrusdb_cb_fn(void *rock, const char *key, size_t keylen,
			  const char *data, size_t datalen);

void cyrusdb_init(const struct cyrusdb_env *env);
const struct cyrusdb_env *cyrusdb_getenv(void);

/* Backend names, in Cyrus's order: "flat", "skiplist", "quotalegacy",
 * "twoskip"; NULL-terminated. */
extern const char *const cyrusdb_backend_names[];
bool cyrusdb_backend_exists(const char *name);

/*
 * Opens fname with the named backend. If the file is of another detectable
 * format: with CYRUSDB_CONVERT it is converted in place, else opened with the
 * detected backend (as Cyrus does). A missing file without CYRUSDB_CREATE is
 * CYRUSDB_NOTFOUND. err (may be NULL) gets one line on failure.
 */
int cyrusdb_open(const char *backend, const char *fname, int flags,
		 struct cyrusdb **db_r, struct error *err);
/* Closes; aborts a transaction still open. Sets *db to NULL. */
int cyrusdb_close(struct cyrusdb **db);

int cyrusdb_fetch(struct cyrusdb *db, const char *key, size_t keylen,
		  const char **data, size_t *datalen, struct cyrusdb_txn **tid);
int cyrusdb_fetchlock(struct cyrusdb *db, const char *key, size_t keylen,
		      const char **data, size_t *datalen,
		      struct cyrusdb_txn **tid);
/* First record strictly after key (twoskip only; else NOTIMPLEMENTED). */
int cyrusdb_fetchnext(struct cyrusdb *db, const char *key, size_t keylen,
		      const char **foundkey, size_t *foundkeylen,
		      const char **data, size_t *datalen,
		      struct cyrusdb_txn **tid);
int cyrusdb_foreach(struct cyrusdb *db, const char *prefix, size_t prefixlen,
		    cyrusdb_filter_fn *p, cyrusdb_cb_fn *cb, void *rock,
		    struct cyrusdb_txn **tid);
int cyrusdb_create(struct cyrusdb *db, const char *key, size_t keylen,
		   const char *data, size_t datalen, struct cyrusdb_txn **tid);
int cyrusdb_store(struct cyrusdb *db, const char *key, size_t keylen,
		  const char *data, size_t datalen, struct cyrusdb_txn **tid);
int cyrusdb_delete(struct cyrusdb *db, const char *key, size_t keylen,
		   struct cyrusdb_txn **tid, bool force);
int cyrusdb_commit(struct cyrusdb *db, struct cyrusdb_txn *tid);
int cyrusdb_abort(struct cyrusdb *db, struct cyrusdb_txn *tid);
/* 0 if the structure is sound, CYRUSDB_INTERNAL (or IOERROR) if not. */
int cyrusdb_consistent(struct cyrusdb *db);
/* Checkpoint/compact now; 0 where the backend has nothing to do. */
int cyrusdb_repack(struct cyrusdb *db);
/* Debug dump of the internal structure to f. */
int cyrusdb_dump(struct cyrusdb *db, FILE *f, int detail);
/* The comparator of this database (memcmp-like result). */
int cyrusdb_compar(struct cyrusdb *db, const char *a, size_t alen,
		   const char *b, size_t blen);

const char *cyrusdb_name(const struct cyrusdb *db);     /* backend name */
const char *cyrusdb_fname(const struct cyrusdb *db);
/* One line describing the last failure of an operation on db. */
const char *cyrusdb_errmsg(const struct cyrusdb *db);
const char *cyrusdb_strerror(int r);

/* "twoskip", "skiplist" or NULL, from the file's first 32 bytes. */
const char *cyrusdb_detect(const char *fname);

/*
 * Copies every record of fromfile into a fresh tofile. Safe: the result is
 * written to a temporary file beside tofile, checked (record count and
 * consistency), fsynced and only then renamed over tofile (so equal names
 * convert in place and an existing tofile survives a failure).
 * nrecords_r (may be NULL) gets the number of records copied.
 */
int cyrusdb_convert(const char *fromfile, const char *frombackend,
		    const char *tofile, const char *tobackend,
		    unsigned long *nrecords_r, struct error *err);

/* Comparators (docs/formats/cyrusdb.md 2.9, 3.4). */
int cyrusdb_compar_raw(const char *a, size_t alen, const char *b, size_t blen);
int cyrusdb_compar_signed(const char *a, size_t alen, const char *b,
			  size_t blen);
int cyrusdb_compar_mbox(const char *a, size_t alen, const char *b, size_t blen);
/* The MBOXSORT byte map. */
extern const unsigned char cyrusdb_mboxsort_map[256];

#endif
