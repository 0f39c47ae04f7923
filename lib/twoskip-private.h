/*
 * twoskip-private.h: the engine behind lib/cyrusdb_twoskip.c, shared by its
 * helper files twoskip_file.c (header, records, mapping, locks),
 * twoskip_repair.c (recovery, consistency, repack, dump) and twoskip_crc.c.
 * Nothing else includes it but the unit test.
 *
 * The format is Cyrus 3.6.1's (docs/formats/cyrusdb.md section 2). One
 * engine exists per file path and process; every cyrusdb handle on that
 * path points to it, so the process holds one descriptor (and one fcntl
 * lock) per file, as Cyrus does.
 *
 * Writes go straight into a shared writable mapping of the file: appended
 * records land in space preallocated beyond the data, head rewrites happen
 * in place. Stores past the last key ("seq mode", cyrusdb_twoskip.c) are
 * staged in memory instead and written out in big pieces, before anything
 * reads the file again. The crash protocol is unchanged by this: the DIRTY
 * flag is written and synced before the first byte of a transaction is
 * touched, and the commit syncs the data before the header that makes it
 * valid.
 *
 * twoskip_crc.c has the CRC-32 (zlib's) that records and header carry.
 */
#ifndef CYRUS_LIB_TWOSKIP_PRIVATE_H
#define CYRUS_LIB_TWOSKIP_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "buf.h"
#include "lock.h"

#define TS_MAXLEVEL 31
#define TS_VERSION 1
#define TS_HEADER_SIZE 64
#define TS_DUMMY_OFFSET TS_HEADER_SIZE
#define TS_DIRTY 0x1
/* Cyrus's MINREWRITE, misspelt constant included. */
#define TS_MINREWRITE 16834
/* type + level + lengths (8), two long lengths, 32 pointers, two CRCs */
#define TS_MAXHEAD (8 + 16 + 8 * (TS_MAXLEVEL + 1) + 8)
#define TS_BLOCKSIZE 512
#define TS_BLANK " BLANK\x07\xa0"
/* where the records of a file with only the DUMMY start */
#define TS_DUMMY_END (TS_DUMMY_OFFSET + 16 + 8 * (TS_MAXLEVEL + 1))

enum ts_type {
	TS_DUMMY = '=',
	TS_RECORD = '+',
	TS_DELETE = '-',
	TS_COMMIT = '$',
};

/* A record as decoded; offsets are file offsets. next[] is valid for
 * 0..level only. */
struct ts_record {
	uint64_t offset;
	uint64_t len;
	uint8_t type;
	uint8_t level;
	uint64_t keylen;
	uint64_t vallen;
	uint32_t crc_head;
	uint32_t crc_tail;
	uint64_t keyoff;
	uint64_t valoff;
	uint64_t next[TS_MAXLEVEL + 1];
};

struct ts_header {
	uint32_t version;
	uint32_t flags;
	uint64_t generation;
	uint64_t num_records;
	uint64_t repack_size;
	uint64_t current_size;
};

/*
 * A position in the skiplist: rec is the record with key (exact) or the
 * last record before it; back[l] is the last record before key at level l
 * and fwd[l] what back[l] points to. Valid while generation and end are
 * those of the engine.
 */
struct ts_loc {
	struct buf key;
	bool exact;
	struct ts_record rec;
	uint64_t back[TS_MAXLEVEL + 1];
	uint64_t fwd[TS_MAXLEVEL + 1];
	uint64_t generation;
	uint64_t end;
};

enum ts_lock { TS_UNLOCKED, TS_SHARED, TS_EXCLUSIVE };

struct twoskip;

struct cyrusdb_txn {
	struct twoskip *ts;
	const void *owner; /* the handle that started it */
	bool shared;
};

typedef int ts_compar_fn(const char *a, size_t alen, const char *b,
			 size_t blen);

struct twoskip {
	char *fname;
	int fd;
	bool writable;      /* fd opened read-write */
	dev_t dev;
	ino_t ino;
	char *base;         /* shared mapping of the file */
	uint64_t maplen;
	uint64_t size;      /* bytes of data in the file */
	uint64_t alloc;     /* bytes the file has (>= size while appending) */
	struct ts_header header;
	uint64_t end;       /* logical end: current_size, or the append point */
	enum ts_lock lock;
	struct cyrusdb_txn *txn;
	int flags;          /* open flags without CYRUSDB_CREATE */
	ts_compar_fn *compar;
	struct ts_loc loc;
	/* the DUMMY as last read, valid for dummy_end/dummy_gen */
	struct ts_record dummy;
	bool dummy_ok;
	uint64_t dummy_end, dummy_gen;
	uint32_t rng;
	/*
	 * Sequential appends (cyrusdb_twoskip.c): while a write transaction
	 * stores keys past the last one, records go to the end with their
	 * predecessors' pointers patched in place and head CRCs sealed once
	 * complete. pend[l] is the last record at level l; records from
	 * start on were written this way.
	 */
	struct {
		bool on;
		uint64_t start;
		uint64_t lastkey, lastkeylen; /* file offset and length */
		uint64_t pend[TS_MAXLEVEL];
	} seq;
	/*
	 * The open write transaction started on a file holding only the
	 * DUMMY and has appended nothing but seq mode records so far: the
	 * file it commits is already what a repack would write.
	 */
	bool txn_compact;
	/* seq mode's appends not yet written: the file bytes from stage_off */
	struct buf stage;
	uint64_t stage_off;
	/* per-process list of open files */
	int refcount;
	struct twoskip *next_open;
	char errmsg[512];
};

#define TS_KEY(ts, rec) ((ts)->base + (rec)->keyoff)
#define TS_VAL(ts, rec) ((ts)->base + (rec)->valoff)

/* twoskip_file.c */
int twoskip_seterr(struct twoskip *ts, int r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int twoskip_read_header(struct twoskip *ts);
int twoskip_write_header(struct twoskip *ts);
int twoskip_sync(struct twoskip *ts);
int twoskip_truncate(struct twoskip *ts, uint64_t size);
int twoskip_read_record(struct twoskip *ts, uint64_t offset,
			struct ts_record *rec);
int twoskip_read_skipdelete(struct twoskip *ts, uint64_t offset,
			    struct ts_record *rec);
int twoskip_check_tail(struct twoskip *ts, const struct ts_record *rec);
size_t twoskip_format_head(struct ts_record *rec, unsigned char *buf);
int twoskip_rewrite_head(struct twoskip *ts, struct ts_record *rec);
int twoskip_append(struct twoskip *ts, struct ts_record *rec,
		   const char *key, const char *val);
#define TS_APPEND_TAILCRC 0x1   /* rec->crc_tail is given */
#define TS_APPEND_NOHEADCRC 0x2 /* head CRC left for twoskip_seal_head */
#define TS_APPEND_STAGED 0x4    /* to the staging buffer (seq mode) */
int twoskip_append_ex(struct twoskip *ts, struct ts_record *rec,
		      const char *key, const char *val, unsigned flags);
int twoskip_append_staged(struct twoskip *ts, struct ts_record *rec,
			  const char *key, const char *val, unsigned flags);
int twoskip_stage_flush(struct twoskip *ts);
char *twoskip_wptr(struct twoskip *ts, uint64_t offset);
void twoskip_drop_pages(struct twoskip *ts, uint64_t from, uint64_t to);
/* Where a scan is; zero-initialised at its start. */
struct ts_scan {
	uint64_t from, last;
	bool back;
};
void twoskip_scan_note(struct twoskip *ts, struct ts_scan *sc,
		       uint64_t offset);
void twoskip_put_next(struct twoskip *ts, uint64_t offset, unsigned slot,
		      uint64_t value);
void twoskip_seal_head(struct twoskip *ts, uint64_t offset);
uint64_t twoskip_getloc(const struct twoskip *ts, const struct ts_record *rec,
			unsigned level);
void twoskip_setloc(const struct twoskip *ts, struct ts_record *rec,
		    unsigned level, uint64_t offset);
bool twoskip_is_clean(const struct twoskip *ts);
bool twoskip_is_blank(const struct twoskip *ts, uint64_t offset);
int twoskip_lock(struct twoskip *ts, enum lock_mode mode);
void twoskip_unlock(struct twoskip *ts);
int twoskip_create_empty(struct twoskip *ts);
int twoskip_engine_new(const char *fname, int flags, bool create,
		       struct twoskip **ts_r);
void twoskip_engine_free(struct twoskip *ts);
void twoskip_adopt(struct twoskip *ts, struct twoskip *from);

/* twoskip_crc.c: CRC-32 as zlib's crc32(crc, p, len), for any len. */
uint32_t twoskip_crc(uint32_t crc, const void *p, uint64_t len);
/* Whether the carry-less multiply code is used (set before main when the
 * CPU has it; tests clear it to check the table code). */
extern bool twoskip_crc_clmul;

/* cyrusdb_twoskip.c: the engine-level operations the repair code reuses */
int twoskip_engine_open(const char *fname, int flags,
			struct twoskip **ts_r);
int twoskip_txn_begin(struct twoskip *ts, bool shared, const void *owner,
		      struct cyrusdb_txn **tid_r);
int twoskip_txn_commit(struct twoskip *ts, struct cyrusdb_txn *tid,
		       bool may_repack);
int twoskip_txn_abort(struct twoskip *ts, struct cyrusdb_txn *tid);
int twoskip_write(struct twoskip *ts, const char *key, size_t keylen,
		  const char *val, size_t vallen, bool force);
int twoskip_delete_before(struct twoskip *ts, const char *key,
			  size_t keylen);
void twoskip_loc_reset(struct twoskip *ts);
int twoskip_copy_record(struct twoskip *ts, const char *key, size_t keylen,
			const char *val, size_t vallen, uint32_t crc_tail);
int twoskip_seq_finish(struct twoskip *ts);

/* twoskip_repair.c */
int twoskip_recovery(struct twoskip *ts);
int twoskip_recovery1(struct twoskip *ts, uint64_t *count_r);
int twoskip_consistent_locked(struct twoskip *ts);
int twoskip_consistent_links(struct twoskip *ts);
int twoskip_checkpoint(struct twoskip *ts);
int twoskip_dump_locked(struct twoskip *ts, FILE *f, int detail);

#endif
