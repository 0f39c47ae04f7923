/*
 * backup_manifest.h: the manifest of a backup snapshot
 * (doc/backup-format.md): TAB-separated records, backslash escapes, and a
 * last line "end TAB sha1-of-everything-before".
 *
 * A path that ends in ".gz" is a gzip file of that text (what create
 * writes); any other path is the plain text (archives written before
 * manifests were compressed). Writer and reader tell them by the name.
 *
 * The writer streams to a temporary file beside the manifest (hashing the
 * text as it goes) and renames it into place at commit, after fsync. The
 * reader streams too: open checks the end line and the checksum in a
 * first pass that keeps nothing, then next() hands out one record at a
 * time, so memory does not grow with the manifest. backup_manifest_load()
 * keeps a whole manifest, for callers that want random access to small
 * ones.
 */
#ifndef CYRUS_LIB_BACKUP_MANIFEST_H
#define CYRUS_LIB_BACKUP_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomicfile.h"
#include "buf.h"

struct error;
struct backup_gzout;
struct backup_gzin;

#define BACKUP_MANIFEST_MAGIC "cyrus-backup-manifest"

struct backup_manifest_writer {
	struct atomicfile af;
	void *md;          /* EVP_MD_CTX of the text */
	struct buf out;    /* text not yet written */
	struct backup_gzout *gz; /* NULL: plain text */
	struct buf zout;   /* its output, not yet written */
	uint64_t bytes;    /* file bytes written so far */
	bool failed;
	struct error *ferr; /* first write error (owned) */
};

/* Starts path (its directory must exist; gzip if it ends in ".gz") and
 * writes the first line. */
int backup_manifest_begin(struct backup_manifest_writer *w, const char *path,
			  bool nosync, struct error *err);
/* One record: type, then nfields fields (escaped here). */
void backup_manifest_add(struct backup_manifest_writer *w, const char *type,
			 size_t nfields, const char *const *fields);
/* Same, for fields that may hold any bytes (lens[i] bytes each). */
void backup_manifest_addn(struct backup_manifest_writer *w, const char *type,
			  size_t nfields, const char *const *fields,
			  const size_t *lens);
/* Writes the end line, fsyncs, renames into place. bytes_r: file size
 * (compressed). */
int backup_manifest_commit(struct backup_manifest_writer *w,
			   uint64_t *bytes_r, struct error *err);
void backup_manifest_abort(struct backup_manifest_writer *w);

/* Appends s[0..len) escaped as the format says. */
void backup_escape(struct buf *out, const char *s, size_t len);

/*
 * A manifest read one record at a time. open() makes a first pass over
 * the whole text (SHA-1 of everything before the end line, compared with
 * it; then the first line: magic and version), keeping nothing; next()
 * then reads the records after the first line, unescaped, one at a time,
 * and hashes them again: if the file changed between the passes, the end
 * is ERR_DATA. The end line is not a record. A .gz manifest is inflated
 * as it is read, each pass from the start.
 */
struct backup_manifest_reader {
	int fd;
	char *path;
	char *what;        /* 'path', for gzip errors */
	struct backup_gzin *gz; /* NULL: plain text */
	uint64_t foff;     /* plain: file offset of the next read */
	uint64_t body;     /* text bytes before the end line */
	uint64_t pos;      /* text offset of rbuf[0] */
	char *rbuf;        /* read buffer */
	size_t rlen, roff; /* bytes in it, next unread */
	struct buf line;   /* the current record, unescaped in place */
	char **fields;
	size_t *lens;
	size_t nfields, afields;
	void *md;          /* EVP_MD_CTX of the second pass */
	char sum[41];      /* the end line's checksum */
	unsigned version;
	unsigned long recno; /* of the current record; 1 = the first line */
	bool again;        /* next() returns the current record again */
	bool at_end;
};

/*
 * Opens and checks path: missing file ERR_NOINPUT; no end line, a wrong
 * checksum, a bad first line, gzip data that is damaged or cut short:
 * ERR_DATA ("damaged: checksum mismatch"...); a newer version: ERR_DATA.
 * On error nothing is left open.
 */
int backup_manifest_open(const char *path, struct backup_manifest_reader *rd,
			 struct error *err);
/* 1: a record is current; 0: no more records; -1: error (ERR_DATA for a
 * bad escape or a file that changed, ERR_IO). */
int backup_manifest_next(struct backup_manifest_reader *rd,
			 struct error *err);
/* The next next() returns the current record again (a look-ahead undone). */
void backup_manifest_unread(struct backup_manifest_reader *rd);
/* Back to the first record, for another pass. */
int backup_manifest_rewind(struct backup_manifest_reader *rd,
			   struct error *err);
/* Also safe on a reader that failed to open, or a zeroed one. */
void backup_manifest_close(struct backup_manifest_reader *rd);

/* The current record: field i (0 is the type), "" past its last field;
 * NUL-terminated, len gives the length when it may hold NULs. */
size_t backup_manifest_nfields(const struct backup_manifest_reader *rd);
const char *backup_manifest_field(const struct backup_manifest_reader *rd,
				  size_t i);
size_t backup_manifest_flen(const struct backup_manifest_reader *rd,
			    size_t i);
bool backup_manifest_is(const struct backup_manifest_reader *rd,
			const char *type);
/* A field as a number (0 if it is not one). */
uint64_t backup_manifest_num(const struct backup_manifest_reader *rd,
			     size_t i);

/*
 * The order create writes mailboxes in: mailboxes.db's key order (the
 * database name, memcmp), computed from internal names alone ('.' is
 * 0x1F there, '^' a '.', the domain's '!' 0x1D). memcmp-like result.
 */
int backup_manifest_mbox_cmp(const char *a, const char *b);

/*
 * Another manifest (the previous snapshot) read alongside one being
 * written or read: both list their mailboxes in that order, so seeking
 * to each mailbox in turn reads the other file once, front to back, and
 * holds one record. A manifest out of that order only costs matches.
 */
struct backup_manifest_side {
	struct backup_manifest_reader rd;
	bool ok; /* open, no error, not at its end */
};

/* Opens path (errors as backup_manifest_open). */
int backup_side_open(struct backup_manifest_side *s, const char *path,
		     struct error *err);
/* Skips to mailbox name, which must not sort before the last one asked
 * for: true if the other manifest has it (its records follow). */
bool backup_side_seek(struct backup_manifest_side *s, const char *name);
/* The next record of that mailbox in s->rd: 1, or 0 at its end. */
int backup_side_next(struct backup_manifest_side *s);
void backup_side_close(struct backup_manifest_side *s);

/* A whole manifest in memory (through the reader). Field strings point
 * into data (unescaped, each NUL-terminated; len gives the length when it
 * may hold NULs). */
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
 * Loads and checks path, errors as backup_manifest_open and _next. recs[0]
 * is the first line; the end record is not in recs.
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
