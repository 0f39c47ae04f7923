/*
 * salvage.h: rescue what is left of a damaged twoskip or skiplist file.
 *
 * Normal recovery (cyrusdb_open) follows the file's pointers and gives up
 * when one is wrong. Salvage does not use pointers to find records: it
 * reads the file from front to back, record by record, and keeps a record
 * only if it checks out on its own:
 *   - twoskip: both CRCs hold (head and tail), or for a store the tail
 *     CRC (key and value) alone: a store whose head (pointers) is damaged
 *     is kept and counted; the header is used only if its own CRC holds;
 *   - skiplist (no checksums): the record's structure holds (known type,
 *     lengths inside the file, 1..maxlevel pointers inside the file, the
 *     0xFFFFFFFF terminator); a DELETE names the record it deletes.
 * Where a record does not check out, the reader moves on 8 (twoskip) or 4
 * (skiplist) bytes at a time until one does; the bytes skipped are a
 * damaged region of the report.
 *
 * A record counts only if it was committed: before the header's committed
 * size when the twoskip header is intact, otherwise before the last COMMIT
 * record that reads correctly (a transaction is committed before the next
 * one starts, so a later COMMIT proves every earlier record committed).
 * The committed records are replayed in file order (the order they were
 * written), which leaves the newest committed value of each key.
 *
 * Deletes: a skiplist DELETE names the deleted record's offset. A twoskip
 * DELETE names only the deleted key's successor at the time of the
 * delete; the deleted key is the live key just before that successor in
 * the replayed state (checked: the successor must be the live version of
 * its key). A delete that cannot be resolved is counted, and its key (if
 * any) stays.
 */
#ifndef CYRUS_LIB_SALVAGE_H
#define CYRUS_LIB_SALVAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct error;

enum salvage_region_kind {
	SALVAGE_DAMAGED,     /* bytes that are no readable record */
	SALVAGE_UNCOMMITTED, /* readable records after the committed end */
	SALVAGE_TRUNCATED,   /* committed size beyond the end of the file */
	SALVAGE_FOREIGN,     /* another file of the format starts here */
};

/* A run of bytes salvage could not use. Keys are those of the readable
 * records just before and after the region in file order (malloc'd, NULL
 * if none). */
struct salvage_region {
	enum salvage_region_kind kind;
	uint64_t start, end; /* byte offsets, end exclusive */
	uint64_t records;    /* SALVAGE_UNCOMMITTED: records dropped */
	char *key_before, *key_after;
	size_t key_before_len, key_after_len;
};

struct salvage_report {
	const char *backend;     /* "twoskip" or "skiplist" */
	uint64_t file_size;
	bool header_ok;          /* magic, version (and twoskip CRC) hold */
	char header_problem[128];
	uint64_t generation;     /* twoskip, if header_ok */
	uint64_t header_records; /* twoskip num_records, if header_ok */
	uint64_t committed_end;  /* records before this offset were used */
	uint64_t versions;       /* committed key/value records read */
	uint64_t deletes;        /* committed deletes applied */
	uint64_t deletes_unresolved;
	uint64_t commits;        /* COMMIT records read */
	uint64_t damaged_bytes;  /* total of the SALVAGE_DAMAGED regions */
	uint64_t heads_damaged;  /* twoskip stores kept on their tail CRC */
	uint64_t keys;           /* live keys in the result */
	struct salvage_region *regions;
	size_t nregions;
};

/* Called for each live key in key order; non-zero stops and is returned. */
typedef int salvage_cb(void *rock, const char *key, size_t keylen,
		       const char *val, size_t vallen);

/*
 * Reads fname as backend ("twoskip" or "skiplist"; anything else is
 * ERR_USAGE), fills rep (release with salvage_report_release) and calls
 * cb (may be NULL) for every live key, in the order of the backend's
 * comparator (mboxsort: the MBOXSORT comparator). The file is only read.
 * Returns 0 (damage is not an error: it is in rep), or -1 with err filled
 * (the file cannot be read, is not of this backend at all, or cb failed).
 */
int salvage_read(const char *fname, const char *backend, bool mboxsort,
		 salvage_cb *cb, void *rock, struct salvage_report *rep,
		 struct error *err);

/*
 * salvage_read, then writes the live keys to a fresh database outfile of
 * the same backend through the normal writer (cyrusdb_open with
 * CYRUSDB_CREATE into a temporary file beside outfile, every store in one
 * transaction, commit, fsync, rename over outfile). outfile must not be
 * fname. The temporary file gets fname's mode. outfile is untouched on
 * failure. Returns 0, or -1 with err filled.
 */
int salvage_file(const char *fname, const char *backend, bool mboxsort,
		 const char *outfile, struct salvage_report *rep,
		 struct error *err);

/* True if salvage found anything lost (damage, uncommitted or truncated
 * data, unresolved deletes). */
bool salvage_report_lossy(const struct salvage_report *rep);

/* The report as text lines (appended to out), for a person. */
void salvage_report_text(const struct salvage_report *rep, const char *fname,
			 struct buf *out);

void salvage_report_release(struct salvage_report *rep);

#endif
