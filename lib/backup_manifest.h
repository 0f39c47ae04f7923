/*
 * backup_manifest.h: the manifest of a backup snapshot
 * (doc/backup-format.md): TAB-separated records, %XX escapes, and a last
 * line "end TAB sha1-of-everything-before".
 *
 * The writer streams to a temporary file beside the manifest (hashing as
 * it goes) and renames it into place at commit, after fsync. The reader
 * loads a whole manifest, checks the checksum and splits it into records.
 */
#ifndef CYRUS_LIB_BACKUP_MANIFEST_H
#define CYRUS_LIB_BACKUP_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomicfile.h"
#include "buf.h"

struct error;

#define BACKUP_MANIFEST_MAGIC "cyrus-backup-manifest"

struct backup_manifest_writer {
	struct atomicfile af;
	void *md;          /* EVP_MD_CTX */
	struct buf out;    /* not yet written */
	uint64_t bytes;    /* written so far */
	bool failed;
	struct error *ferr; /* first write error (owned) */
};

/* Starts path (its directory must exist) and writes the first line. */
int backup_manifest_begin(struct backup_manifest_writer *w, const char *path,
			  bool nosync, struct error *err);
/* One record: type, then nfields fields (escaped here). */
void backup_manifest_add(struct backup_manifest_writer *w, const char *type,
			 size_t nfields, const char *const *fields);
/* Same, for fields that may hold any bytes (lens[i] bytes each). */
void backup_manifest_addn(struct backup_manifest_writer *w, const char *type,
			  size_t nfields, const char *const *fields,
			  const size_t *lens);
/* Writes the end line, fsyncs, renames into place. bytes_r: file size. */
int backup_manifest_commit(struct backup_manifest_writer *w,
			   uint64_t *bytes_r, struct error *err);
void backup_manifest_abort(struct backup_manifest_writer *w);

/* Appends s[0..len) escaped as the format says. */
void backup_escape(struct buf *out, const char *s, size_t len);

/* A loaded manifest. Field strings point into data (unescaped, each
 * NUL-terminated; len gives the length when it may hold NULs). */
struct backup_rec {
	size_t first, n; /* fields[first .. first+n): type is the first */
};

struct backup_manifest {
	char *data;
	size_t len;
	char **fields;
	size_t *lens;
	size_t nfields, afields;
	struct backup_rec *recs;
	size_t nrecs, arecs;
	unsigned version;
};

/*
 * Loads and checks path: missing file ERR_NOINPUT; no end line, a wrong
 * checksum, a bad first line: ERR_DATA ("checksum mismatch"...); a newer
 * version: ERR_DATA. The end record is not in recs.
 */
int backup_manifest_load(const char *path, struct backup_manifest *m,
			 struct error *err);
void backup_manifest_release(struct backup_manifest *m);

/* Field i of record r (i = 0 is the type); "" if r has fewer fields. */
const char *backup_rec_field(const struct backup_manifest *m,
			     const struct backup_rec *r, size_t i);
size_t backup_rec_len(const struct backup_manifest *m,
		      const struct backup_rec *r, size_t i);
bool backup_rec_is(const struct backup_manifest *m,
		   const struct backup_rec *r, const char *type);
/* The first record of type (NULL if none). */
const struct backup_rec *backup_manifest_find(const struct backup_manifest *m,
					      const char *type);

#endif
