/*
 * mboxlist.h: mailboxes.db, the list of mailboxes (docs/formats/mailbox.md
 * section 3; imap/mboxlist.c and imap/ctl_mboxlist.c of Cyrus 3.6.1).
 *
 * Keys: 'N' + dbname (one per name: live, tombstone, intermediate...) and
 * 'I' + uniqueid (current name and name history). Values are dlist
 * kvlists; 3.6 still reads two older value forms, and so do we. Decoding
 * and encoding are byte-exact: what mboxlist_encode() writes is what
 * Cyrus's mboxlist_update() would write for the same entry and time.
 *
 * The dump format of ctl_mboxlist -d/-u (one JSON object, one member per
 * mailbox) is here too, printed byte for byte as jansson prints it.
 */
#ifndef CYRUS_LIB_MBOXLIST_H
#define CYRUS_LIB_MBOXLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "mboxname.h"

struct buf;
struct config;
struct cyrusdb;
struct cyrusdb_txn;
struct error;

/* The mailbox type: a kind in the low 4 bits, then flags. */
#define MBTYPE_EMAIL 0x0
#define MBTYPE_NETNEWS 0x1
#define MBTYPE_JMAPSUBMIT 0x2
#define MBTYPE_JMAPPUSHSUB 0x3
#define MBTYPE_SIEVE 0x5
#define MBTYPE_COLLECTION 0x8
#define MBTYPE_CALENDAR 0x9
#define MBTYPE_ADDRESSBOOK 0xa
#define MBTYPE_KIND(t) ((t) & 0xf)
#define MBTYPE_REMOTE (1 << 4)
#define MBTYPE_RESERVE (1 << 5)
#define MBTYPE_MOVING (1 << 6)
#define MBTYPE_DELETED (1 << 7)
#define MBTYPE_INTERMEDIATE (1 << 8)
#define MBTYPE_LEGACY_DIRS (1 << 9)

#define MBOXLIST_MAX_PARTITION 64 /* MAX_PARTITION_LEN */

/* One former name of a mailbox (the H list of an I record). */
struct mboxlist_history {
	char *name; /* internal name */
	time_t mtime;
	uint32_t uidvalidity;
	uint64_t createdmodseq, foldermodseq;
	uint32_t mbtype;
	char *partition; /* may be NULL */
};

/* One entry, as Cyrus's mbentry_t. Strings may be NULL (absent). */
struct mboxlist_entry {
	char *name; /* internal name */
	time_t mtime;
	uint32_t uidvalidity;
	uint64_t createdmodseq, foldermodseq;
	uint32_t mbtype;
	char *partition, *server;
	char *acl; /* "id TAB rights TAB ..." */
	char *uniqueid;
	char *legacy_specialuse;
	struct mboxlist_history *history;
	size_t nhistory;
};

struct mboxlist_entry *mboxlist_entry_new(void);
void mboxlist_entry_free(struct mboxlist_entry **e);
void mboxlist_entry_add_history(struct mboxlist_entry *e,
				const struct mboxlist_history *h);

/* "e", "el", "ed"... (kind letter, then flags in the order d m r z i l). */
void mboxlist_mbtype_to_string(uint32_t mbtype, struct buf *out);
/* The reverse; an unknown letter is ERR_DATA (Cyrus asserts). */
int mboxlist_mbtype_from_string(const char *s, uint32_t *mbtype_r,
				struct error *err);

/*
 * Decodes one record value. dbname/dbnamelen is the key without its type
 * byte (the entry's name comes from it; NULL for I records, where the N
 * field names it). Reads the three value forms Cyrus 3.6 reads. Returns 0,
 * or -1 with ERR_DATA for an empty or malformed value.
 */
int mboxlist_decode(const struct mboxname_ns *ns, const char *dbname,
		    size_t dbnamelen, const char *data, size_t datalen,
		    struct mboxlist_entry **e_r, struct error *err);
/*
 * Encodes e as Cyrus writes it: the N record value (for_ikey false), or
 * the I record value with e's history. now is the M field.
 */
void mboxlist_encode(const struct mboxname_ns *ns,
		     const struct mboxlist_entry *e, bool for_ikey, time_t now,
		     struct buf *out);

/* The ACL as a dlist kvlist %(id rights ...), as mailbox_acl_to_dlist. */
void mboxlist_acl_to_dlist(const char *acl, struct buf *out);

/* An open mailboxes.db. */
struct mboxlist {
	struct cyrusdb *db;
	const struct config *cfg;
	struct mboxname_ns ns; /* the admin namespace */
};

/*
 * Opens fname (NULL: the configured mboxlist_db_path) with the configured
 * backend (mboxlist_db). flags are cyrusdb open flags (CYRUSDB_CREATE...).
 * Refuses a version-1 (pre-3.6) database with ERR_DATA.
 */
int mboxlist_open(const struct config *cfg, const char *fname, int flags,
		  struct mboxlist **ml_r, struct error *err);
void mboxlist_close(struct mboxlist **ml);

enum mboxlist_foreach_flags {
	MBOXLIST_TOMBSTONES = 1 << 0,    /* include 'd' entries */
	MBOXLIST_INTERMEDIATES = 1 << 1, /* include 'i' entries */
};

/*
 * Calls cb for every N record in key order (undecodable records are
 * skipped, as Cyrus does). The entry is valid during the call only. A
 * non-zero return of cb stops and is returned. tid as in cyrusdb.h.
 */
typedef int mboxlist_cb(void *rock, const struct mboxlist_entry *e);
int mboxlist_foreach(struct mboxlist *ml, unsigned flags, mboxlist_cb *cb,
		     void *rock, struct cyrusdb_txn **tid, struct error *err);

/*
 * The entry named intname (caller frees). Without allow_all, tombstones,
 * reserved and intermediate entries count as missing. Missing: -1 with
 * ERR_NOINPUT ("mailbox does not exist").
 */
int mboxlist_lookup(struct mboxlist *ml, const char *intname, bool allow_all,
		    struct mboxlist_entry **e_r, struct cyrusdb_txn **tid,
		    struct error *err);
int mboxlist_lookup_by_uniqueid(struct mboxlist *ml, const char *uniqueid,
				struct mboxlist_entry **e_r,
				struct cyrusdb_txn **tid, struct error *err);

/*
 * Writes e under its name as Cyrus's mboxlist_update_entry() does: the N
 * record, and (with a uniqueid) the I record, carrying over the history
 * of an existing I record (adding the old name if it differs); an I
 * record of a replaced uniqueid that still names this mailbox goes.
 */
int mboxlist_update(struct mboxlist *ml, const struct mboxlist_entry *e,
		    time_t now, struct cyrusdb_txn **tid, struct error *err);
/* Writes only the N record of e (a tombstone: its uniqueid's I record
 * belongs to the mailbox's new name). */
int mboxlist_update_name(struct mboxlist *ml, const struct mboxlist_entry *e,
			 time_t now, struct cyrusdb_txn **tid,
			 struct error *err);
/* Removes the N record of intname (Cyrus leaves the I record). */
int mboxlist_delete(struct mboxlist *ml, const char *intname,
		    struct cyrusdb_txn **tid, struct error *err);

/*
 * The per-user files directory or file (suffix NULL or e.g. "seen") of
 * the user owning mbn, as mboxname_conf_getpath: by the uniqueid of the
 * user's INBOX unless that is legacy or missing (then by name).
 */
int mboxlist_user_path(struct mboxlist *ml, const struct mboxname *mbn,
		       const char *suffix, struct buf *out, struct error *err);
/* The user's sieve directory (user_sieve_path): "" if the user has no
 * INBOX, the global directory for a shared name. */
int mboxlist_sieve_path(struct mboxlist *ml, const struct mboxname *mbn,
			struct buf *out, struct error *err);

/*
 * One member of the ctl_mboxlist -d dump, as jansson's json_dumps(...,
 * JSON_EMBED) prints it: "NAME": {"name": ..., "name_history": [...]}.
 */
void mboxlist_dump_json(const struct mboxlist_entry *e, struct buf *out);

/*
 * Reads a ctl_mboxlist -d dump (one JSON object) and calls cb with each
 * entry in file order as soon as it is read, as ctl_mboxlist -u builds it
 * (mtime 0: the writer sets it). warn (may be NULL) gets the real tool's
 * warnings ("missing uidvalidity for NAME"). Entries the real tool skips
 * (name too long, no partition (except on a tombstone, which has none),
 * partition too long, no uniqueid) and JSON errors are ERR_DATA
 * ("line N: ..."): nothing more is read, but the entries before it have
 * been passed to cb. A name that comes twice is passed twice (jansson
 * would keep the last value at the first place; a caller that writes as
 * it reads refuses the second). A non-zero return of cb stops and is
 * returned.
 */
typedef int mboxlist_undump_cb(void *rock, struct mboxlist_entry *e);
int mboxlist_undump_json(const char *text, size_t len,
			 void (*warn)(void *rock, const char *msg),
			 mboxlist_undump_cb *cb, void *rock, struct error *err);
/*
 * The same, read from in as it goes: one member is parsed, checked and
 * passed to cb before the next is read, so memory does not grow with the
 * dump (a syntax error after some members comes after their calls: the
 * caller keeps "all or nothing" with its transaction). A read error is
 * ERR_IO.
 */
int mboxlist_undump_json_file(FILE *in,
			      void (*warn)(void *rock, const char *msg),
			      mboxlist_undump_cb *cb, void *rock,
			      struct error *err);

#endif
