/*
 * backup_archive.h: the backup archive directory (doc/backup-format.md):
 * its lock, its content-addressed objects and its snapshot list.
 *
 * Objects are named by the SHA-1 of their uncompressed content. Messages
 * go into pack files, DIR/packs/ID.tar.gz (a ustar stream of members
 * named by their SHA-1, compressed as a series of gzip members), each with
 * its index DIR/packs/ID.idx.gz; other files are single gzip files
 * DIR/files/ab/SHA1.gz. Format 1 archives also have loose messages in
 * DIR/messages/ab/SHA1.gz; they are still read.
 *
 * New objects are written to DIR/tmp and only put in place when whole and
 * durable: loose ones in batches (syncfs, rename), a pack when it is full
 * or at backup_archive_sync() (fsync, rename, then its index the same
 * way). Call backup_archive_sync() before writing a manifest that names
 * the objects.
 *
 * lib/ conventions: 0 or -1 with err filled; nothing prints.
 */
#ifndef CYRUS_LIB_BACKUP_ARCHIVE_H
#define CYRUS_LIB_BACKUP_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct buf;
struct error;
struct backup_shaset;

/* New archives are format 3 (packs, compressed manifests); formats 1 and
 * 2 are read, and become format 3 when create opens them (before it
 * writes anything a tool of their version would not see). */
#define BACKUP_FORMAT_VERSION 3
#define BACKUP_SHA1_HEX 41 /* 40 digits and the NUL */

enum backup_kind { BACKUP_MESSAGES, BACKUP_FILES };

enum backup_open_mode {
	BACKUP_OPEN_READ,   /* verify, restore: shared lock on byte 1 */
	BACKUP_OPEN_LIST,   /* list: no lock (manifests are atomic) */
	BACKUP_OPEN_CREATE, /* create: makes DIR; exclusive lock on byte 0 */
	BACKUP_OPEN_PRUNE,  /* prune: exclusive locks on bytes 0 and 1 */
	BACKUP_OPEN_DRYRUN, /* create -n: reads DIR if it exists, no lock */
};

struct backup_pending;
struct backup_packs;

struct backup_archive {
	char *dir;
	int lock_fd;
	int dir_fd;
	bool dry;          /* put only counts; writes nothing */
	bool nosync;       /* no syncfs/fsync (tests, benchmarks) */
	unsigned long seq; /* temporary file names */
	struct backup_pending *pend;
	size_t npend, apend;
	void *pendset[2]; /* struct backup_shaset per kind: names pending */
	uint64_t pend_bytes;
	/* put_parts from memory: cut the first part here (0: no cut). */
	size_t first_cut;
	/* Counters of objects this handle added (or would add, dry). */
	unsigned long new_objects;
	uint64_t new_bytes; /* compressed bytes written */
	int format;         /* of the archive (FORMAT) */
	struct backup_packs *packs; /* the pack indexes, writer and reader */
};

/*
 * Opens (with CREATE: makes) the archive DIR and takes the mode's lock
 * without waiting: ERR_TEMPFAIL naming the holder's pid if another run
 * holds it. A DIR that is not an archive is ERR_NOINPUT (or ERR_DATA if
 * it exists but has no FORMAT file and is not empty); a newer format is
 * ERR_DATA. CREATE empties DIR/tmp.
 */
int backup_archive_open(const char *dir, enum backup_open_mode mode,
			struct backup_archive **ar_r, struct error *err);
/* Removes what is left in tmp/ of this handle, unlocks, frees. */
void backup_archive_close(struct backup_archive **ar);

/*
 * Where the object is, for messages (appended to out): DIR/packs/ID.tar.gz:
 * SHA1 for a packed message, DIR/packs/(none):SHA1 for a message in no
 * pack of a format 2 archive, else the loose file DIR/messages/ab/SHA1.gz
 * or DIR/files/ab/SHA1.gz (whether it exists or not).
 */
void backup_object_path(const struct backup_archive *ar,
			enum backup_kind kind, const char *sha1,
			struct buf *out);
bool backup_object_exists(const struct backup_archive *ar,
			  enum backup_kind kind, const char *sha1);

/*
 * Stores the bytes readable from fd (from its current offset to EOF),
 * compressed, under their SHA-1 (into sha1_r). size_r gets the length
 * read. If the object exists already nothing is written. Errors: ERR_IO
 * reading fd, ERR_IO/ERR_CANTCREAT writing the archive.
 */
int backup_object_put_fd(struct backup_archive *ar, enum backup_kind kind,
			 int fd, char sha1_r[BACKUP_SHA1_HEX],
			 uint64_t *size_r, struct error *err);
int backup_object_put_mem(struct backup_archive *ar, enum backup_kind kind,
			  const void *data, size_t len,
			  char sha1_r[BACKUP_SHA1_HEX], struct error *err);
/* Reads path and puts it (ERR_NOINPUT if missing). */
int backup_object_put_path(struct backup_archive *ar, enum backup_kind kind,
			   const char *path, char sha1_r[BACKUP_SHA1_HEX],
			   uint64_t *size_r, struct error *err);

/*
 * Large files that change by appending or in place (cyrus.cache,
 * cyrus.index) are stored in parts of BACKUP_PART_SIZE bytes, each its
 * own object, so that the next snapshot stores only the parts that
 * changed. CYRUS_BACKUP_PART_SIZE in the environment overrides the size
 * (tests).
 */
#define BACKUP_PART_SIZE (256u << 10)

struct backup_part {
	uint64_t offset, size;
	char sha1[BACKUP_SHA1_HEX];
};

/*
 * Stores what fd reads (to EOF), or with fd < 0 data[0..len): one object
 * if it fits in one part (*nparts_r 0), else one object per part (*parts_r
 * malloc'd, caller frees). sha1_r and size_r get the whole content's.
 * From memory, a first_cut set in ar ends the first part early (then
 * every part is BACKUP_PART_SIZE from there).
 */
int backup_object_put_parts(struct backup_archive *ar, enum backup_kind kind,
			    int fd, const void *data, size_t len,
			    char sha1_r[BACKUP_SHA1_HEX], uint64_t *size_r,
			    struct backup_part **parts_r, size_t *nparts_r,
			    struct error *err);

/* The SHA-1 of data[0..len) as 40 hex digits. */
void backup_sha1_hex(const void *data, size_t len,
		     char out[BACKUP_SHA1_HEX]);
/* The same in steps: a context (an EVP_MD_CTX, fed with
 * EVP_DigestUpdate), then its digest as 40 hex digits (frees it). */
void *backup_sha1_begin(void);
void backup_sha1_end(void *ctx, char out[BACKUP_SHA1_HEX]);

/*
 * gzip streams (RFC 1952, zlib), for the objects, the pack indexes and
 * the manifests. A writer appends compressed bytes to a buffer; finish
 * ends the gzip member (the next add starts a new one).
 */
struct backup_gzout;
struct backup_gzout *backup_gzout_new(int level);
void backup_gzout_add(struct backup_gzout *g, const void *data, size_t len,
		      bool finish, struct buf *out);
void backup_gzout_free(struct backup_gzout *g);

/*
 * A reader inflates what fd holds from offset 0 (pread: the fd's offset
 * is not used): one gzip member or several, as gzip -d does. read returns
 * up to len bytes, 0 at the end of the last member, -1 on error: ERR_IO,
 * or ERR_DATA for bytes that are not gzip or a file that ends inside a
 * member ("truncated gzip data"). what (kept, not copied) names the file
 * in the messages, "WHAT: damaged: ..."; NULL: the reason alone.
 */
struct backup_gzin;
struct backup_gzin *backup_gzin_new(int fd, const char *what);
/* The same for a file it opens (and free closes); NULL with errno set if
 * it cannot. */
struct backup_gzin *backup_gzin_open(const char *path, const char *what);
ssize_t backup_gzin_read(struct backup_gzin *g, void *p, size_t len,
			 struct error *err);
/* Back to the start of the file. */
void backup_gzin_rewind(struct backup_gzin *g);
/* Closes the fd only if open made it. */
void backup_gzin_free(struct backup_gzin *g);

/* Renames the pending objects into place after making them durable, and
 * finishes the pack being written (a sticky error if one failed). */
int backup_archive_sync(struct backup_archive *ar, struct error *err);

/*
 * Reads an object, checks its SHA-1 against its name and its length
 * against size (if size is not UINT64_MAX). To out (appended) or, with
 * out NULL, written to fd_out (-1: only checked). Missing: ERR_NOINPUT;
 * damaged (not gzip, wrong SHA-1, wrong size): ERR_DATA with the reason.
 */
int backup_object_read(const struct backup_archive *ar, enum backup_kind kind,
		       const char *sha1, uint64_t size, struct buf *out,
		       int fd_out, struct error *err);
/*
 * Extracts an object to dst: written to dst.NEW (mode 0666 & umask), then
 * renamed (no fsync: the caller syncs the filesystem once at the end).
 */
int backup_object_extract(const struct backup_archive *ar,
			  enum backup_kind kind, const char *sha1,
			  uint64_t size, const char *dst, struct error *err);

/* A path in tmp/ for the caller's work files (malloc'd, caller frees);
 * removed at close. */
char *backup_archive_tmpname(struct backup_archive *ar, const char *tag);

/* ---- packs ---- */

/*
 * A gzip member of a pack holds about BACKUP_MEMBER_SIZE bytes of tar
 * stream (whole tar members; a large message makes a larger one); a pack
 * is closed when it passes BACKUP_PACK_SIZE compressed bytes.
 * CYRUS_BACKUP_MEMBER_SIZE and CYRUS_BACKUP_PACK_SIZE in the environment
 * override them (tests). Members are compressed by one thread per CPU (at
 * most 4) while the caller reads on; CYRUS_BACKUP_THREADS=N sets the
 * number (0: the caller compresses).
 */
#define BACKUP_MEMBER_SIZE (1u << 20)
#define BACKUP_PACK_SIZE (128u << 20)

/* The packs found at open: those with an index, readable or not (a pack
 * without an index is unfinished: not one of them). */
size_t backup_pack_count(const struct backup_archive *ar);
/* Pack i's name (DIR/packs/ID.tar.gz) into out (appended). */
void backup_pack_path(const struct backup_archive *ar, size_t i,
		      struct buf *out);
/*
 * Checks pack i: its index was read and is intact, the pack file is there
 * with the size the index gives, and (full) the SHA-1 of the pack file is
 * its name (a damaged byte anywhere, even outside every message). ERR_DATA
 * or ERR_NOINPUT naming the file.
 */
int backup_pack_check(const struct backup_archive *ar, size_t i, bool full,
		      struct error *err);

struct backup_prune_stats {
	unsigned long removed;   /* packs removed: nothing in them is kept */
	unsigned long rewritten; /* packs rewritten with the kept messages */
	unsigned long objects;   /* messages dropped from packs */
	uint64_t bytes;          /* pack bytes freed (estimated when dry) */
	unsigned long skipped;   /* packs left alone: index or pack damaged */
};

/*
 * prune's part for packs (ar opened with BACKUP_OPEN_PRUNE): a pack none
 * of whose messages is in keep is removed (index first, then the pack); a
 * pack whose messages not in keep make up more than max_unused percent of
 * its bytes is rewritten with the others (new pack and index in tmp/,
 * fsynced, every message of the new pack read back and checked, renamed
 * in, the directory fsynced, and only then the old index and pack
 * removed). A message held by two packs (a rewrite cut short) counts for
 * one only, the one with the larger share of kept bytes. dry: only
 * counts. A pack whose index is damaged, or whose file is missing or of
 * the wrong size, is left alone (counted in skipped), unless every kept
 * message it names is in a sound pack too (create stored it again): then
 * it is removed.
 */
int backup_packs_prune(struct backup_archive *ar,
		       const struct backup_shaset *keep, unsigned max_unused,
		       bool dry, struct backup_prune_stats *st,
		       struct error *err);

/* ---- snapshots ---- */

/* The snapshot ids that have a manifest, sorted (oldest first);
 * *ids_r is a malloc'd array of malloc'd strings (backup_ids_free). */
int backup_snapshot_ids(const struct backup_archive *ar, char ***ids_r,
			size_t *n_r, struct error *err);
void backup_ids_free(char **ids, size_t n);
/*
 * The manifest of snapshot ID (malloc'd): DIR/snapshots/ID/manifest.gz,
 * or the plain DIR/snapshots/ID/manifest of an archive written before
 * manifests were compressed if only that one is there. What create
 * writes, for a new ID.
 */
#define BACKUP_MANIFEST_NAME "manifest.gz"
char *backup_manifest_path(const struct backup_archive *ar, const char *id);
/* A fresh id for time t (ID, ID-2, ...), malloc'd. */
char *backup_snapshot_newid(const struct backup_archive *ar, time_t t);

/* ---- a set of SHA-1s (hex), for verify and prune ---- */

struct backup_shaset {
	unsigned char *keys; /* 20 bytes each; all-zero = empty slot */
	size_t n, cap;
};
/* Adds; returns false if it was there already. */
bool backup_shaset_add(struct backup_shaset *s, const char *sha1hex);
bool backup_shaset_has(const struct backup_shaset *s, const char *sha1hex);
void backup_shaset_release(struct backup_shaset *s);

/* True if s is 40 lower-case hex digits. */
bool backup_sha1_valid(const char *s);

#endif
