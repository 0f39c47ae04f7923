/*
 * salvage-private.h: what the per-format scanners (salvage_twoskip.c,
 * salvage_skiplist.c) share with the replay and writer in salvage.c.
 *
 * A scanner walks the mapped file from front to back and reports, in file
 * order, every record that checks out on its own (salvage_scan_add) and
 * every run of bytes that does not (salvage_scan_damaged). At the end it
 * sets rep->committed_end; salvage.c drops what lies beyond it.
 */
#ifndef CYRUS_LIB_SALVAGE_PRIVATE_H
#define CYRUS_LIB_SALVAGE_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "salvage.h"

struct error;

enum salvage_rec_type {
	SALVAGE_REC_STORE = '+',  /* key and value */
	SALVAGE_REC_DELETE = '-', /* target: see below */
};

struct salvage_rec {
	uint64_t offset;
	/*
	 * DELETE: twoskip: the offset of the deleted key's successor (0: the
	 * deleted key was the last); skiplist: the offset of the deleted
	 * record itself.
	 */
	uint64_t target;
	const char *key, *val; /* point into the mapped file */
	size_t keylen, vallen;
	uint32_t keyid;        /* filled by salvage.c */
	char type;
};

struct salvage_scan {
	const char *base; /* the mapped file */
	size_t size;
	struct salvage_report *rep;
	struct salvage_rec *recs;
	size_t nrecs, alloc;
	bool deletes_by_successor; /* twoskip: target is the successor */
	/* The open damaged region, if any. */
	bool in_damage;
	uint64_t damage_start, damage_end;
	size_t regions_alloc;
	size_t regions_need_after; /* regions from here on lack key_after */
};

/* A readable committed-or-not record, in file order. */
void salvage_scan_add(struct salvage_scan *s, char type, uint64_t offset,
		      uint64_t target, const char *key, size_t keylen,
		      const char *val, size_t vallen);
/* Bytes [offset, offset+len) are no readable record. */
void salvage_scan_damaged(struct salvage_scan *s, uint64_t offset,
			  uint64_t len);
/* A readable record that is not a key/value or delete (COMMIT, DUMMY,
 * BLANK) ends a damaged region too. */
void salvage_scan_good(struct salvage_scan *s);
/* Adds a region of the given kind (key_before/after filled later). */
struct salvage_region *salvage_scan_region(struct salvage_scan *s,
					   enum salvage_region_kind kind,
					   uint64_t start, uint64_t end);

/* The scanners: 0, or -1 with err filled if the file is not of the format
 * at all. Set rep->committed_end and the header fields. */
int salvage_scan_twoskip(struct salvage_scan *s, struct error *err);
int salvage_scan_skiplist(struct salvage_scan *s, struct error *err);

#endif
