/*
 * cyrusdb-private.h: the vtable each backend implements. Only lib/cyrusdb.c
 * and lib/cyrusdb_*.c include this.
 *
 * A backend's handle struct embeds struct cyrusdb as its first member; the
 * generic layer fills base.backend, base.fname and base.flags after open.
 * Backends report details of failures with cyrusdb_seterr(), which also
 * returns the code so that "return cyrusdb_seterr(db, CYRUSDB_IOERROR, ...)"
 * reads naturally.
 */
#ifndef CYRUS_LIB_CYRUSDB_PRIVATE_H
#define CYRUS_LIB_CYRUSDB_PRIVATE_H

#include "cyrusdb.h"

struct cyrusdb_backend;

struct cyrusdb {
	const struct cyrusdb_backend *backend;
	char *fname;
	int flags;
	char errmsg[512];
};

struct cyrusdb_backend {
	const char *name;
	/* Allocates the handle (base embedded first). errmsg_r (512 bytes)
	 * gets one line on failure, the return value is a cyrusdb_ret. */
	int (*open)(const char *fname, int flags, struct cyrusdb **db_r,
		    char *errmsg_r);
	int (*close)(struct cyrusdb *db);
	int (*fetch)(struct cyrusdb *db, const char *key, size_t keylen,
		     const char **data, size_t *datalen,
		     struct cyrusdb_txn **tid);
	int (*fetchlock)(struct cyrusdb *db, const char *key, size_t keylen,
			 const char **data, size_t *datalen,
			 struct cyrusdb_txn **tid);
	int (*fetchnext)(struct cyrusdb *db, const char *key, size_t keylen,
			 const char **foundkey, size_t *foundkeylen,
			 const char **data, size_t *datalen,
			 struct cyrusdb_txn **tid); /* may be NULL */
	int (*foreach)(struct cyrusdb *db, const char *prefix, size_t prefixlen,
		       cyrusdb_filter_fn *p, cyrusdb_cb_fn *cb, void *rock,
		       struct cyrusdb_txn **tid);
	int (*create)(struct cyrusdb *db, const char *key, size_t keylen,
		      const char *data, size_t datalen,
		      struct cyrusdb_txn **tid);
	int (*store)(struct cyrusdb *db, const char *key, size_t keylen,
		     const char *data, size_t datalen,
		     struct cyrusdb_txn **tid);
	int (*delete)(struct cyrusdb *db, const char *key, size_t keylen,
		      struct cyrusdb_txn **tid, bool force);
	int (*commit)(struct cyrusdb *db, struct cyrusdb_txn *tid);
	int (*abort)(struct cyrusdb *db, struct cyrusdb_txn *tid);
	int (*consistent)(struct cyrusdb *db);
	int (*repack)(struct cyrusdb *db);               /* may be NULL */
	int (*dump)(struct cyrusdb *db, FILE *f, int detail); /* may be NULL */
	int (*compar)(struct cyrusdb *db, const char *a, size_t alen,
		      const char *b, size_t blen);
};

extern const struct cyrusdb_backend cyrusdb_twoskip;
extern const struct cyrusdb_backend cyrusdb_skiplist;
extern const struct cyrusdb_backend cyrusdb_flat;
extern const struct cyrusdb_backend cyrusdb_quotalegacy;

int cyrusdb_seterr(struct cyrusdb *db, int r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
