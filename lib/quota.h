/*
 * quota.h: quota roots and their usage, as Cyrus IMAP 3.6.1 keeps them
 * (docs/formats/mailbox.md section 9, docs/formats/cyrusdb.md section 5;
 * imap/quota_db.c, imap/quota.c, imap/mailbox.c mailbox_get_usage).
 *
 * A quota root is an internal mailbox name ("user.bob", "shared",
 * "example.com!user.zed", or "example.com!" for a whole domain). The quota
 * database (quota_db, default quotalegacy) maps each root to a value:
 *   - the 3.x dlist form  %(S (used limit) M (..) AS (..) NF (..)
 *     [SCAN %(MBOX name S n M n AS n NF n)] MODSEQ n)  where a resource
 *     without a limit is unlimited and SCAN is the state of a running
 *     `quota -f`;
 *   - the historical text form  "used limit [scan] [NAME used limit
 *     [scan]]..."  (quotalegacy files hold "used LF limit LF").
 * Used values are in bytes (STORAGE, X-ANNOTATION-STORAGE) or counts;
 * limits in KiB or counts (quota_units[]).
 *
 * The usage a mailbox contributes comes from its cyrus.index header alone:
 * quota_mailbox_used, exists, quota_annot_used (3.6.1 keeps the annotation
 * total of the mailbox there, mailbox-level entries of annotations.db and
 * per-message entries of cyrus.annotations alike; `quota -f` does not
 * recount them) and 1 folder; nothing for a mailbox flagged DELETED.
 *
 * Writers take the same locks as the server: the "$QUOTACHANGE" mailbox
 * name lock around a whole fix run (quota_changelock), and the quota
 * database's own lock per record (a cyrusdb transaction: quotalegacy locks
 * the root's file, twoskip/skiplist the whole file).
 */
#ifndef CYRUS_LIB_QUOTA_H
#define CYRUS_LIB_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct config;
struct cyrusdb;
struct cyrusdb_txn;
struct error;
struct mailbox_header;
struct mailbox_index_header;
struct mboxlist_entry;
struct mboxname_ns;

enum quota_resource {
	QUOTA_STORAGE = 0,
	QUOTA_MESSAGE,
	QUOTA_ANNOTSTORAGE,
	QUOTA_NUMFOLDERS,
	QUOTA_NUMRESOURCES
};

#define QUOTA_UNLIMITED (-1LL)

/* "STORAGE", "MESSAGE", "X-ANNOTATION-STORAGE", "X-NUM-FOLDERS". */
extern const char *const quota_names[QUOTA_NUMRESOURCES];
/* The database keys: "S", "M", "AS", "NF". */
extern const char *const quota_db_names[QUOTA_NUMRESOURCES];
/* Bytes per limit unit: 1024, 1, 1024, 1. */
extern const long long quota_units[QUOTA_NUMRESOURCES];

/* A resource index for an IMAP name (case-insensitive), or -1. */
int quota_name_to_resource(const char *name);

struct quota {
	char *root;
	long long useds[QUOTA_NUMRESOURCES];
	long long limits[QUOTA_NUMRESOURCES]; /* QUOTA_UNLIMITED: none */
	char *scanmbox; /* NULL: no scan recorded */
	long long scanuseds[QUOTA_NUMRESOURCES];
	uint64_t modseq;
};

/* Fills q for root (copied): no usage, no limits, no scan. */
void quota_init(struct quota *q, const char *root);
void quota_release(struct quota *q);

/*
 * Parses a database value into q (root untouched; the other fields are
 * reset first), as quota_parseval: the dlist form (numbers that are not
 * plain unsigned decimals read as 0, absent resources stay unused and
 * unlimited; SCAN only with withscan, as Cyrus reads it only under a write
 * lock) or the historical form. An empty, malformed or truncated value is
 * -1 with ERR_DATA.
 */
int quota_parse(const char *data, size_t len, bool withscan, struct quota *q,
		struct error *err);
/* Appends the value Cyrus 3.6.1 writes for q (always the dlist form). */
void quota_format(const struct quota *q, struct buf *out);

/* True if used >= limit * unit with a limit set (quota_is_overquota). */
bool quota_is_over(const struct quota *q, enum quota_resource res);

/*
 * True if mailbox mboxname belongs under root: mboxname is root or starts
 * with "root." (mboxname_is_prefix), or root is a whole-domain root
 * "domain!" and mboxname is in that domain.
 */
bool quota_root_covers(const char *root, const char *mboxname);

/* The usage one mailbox contributes, from its index header. */
void quota_mailbox_usage(const struct mailbox_index_header *ih,
			 long long usage[QUOTA_NUMRESOURCES]);

/*
 * True if the root is in a user's hierarchy (mboxname_isusermailbox with
 * isinbox 0): writing it bumps MODSEQ, as quota_write does.
 */
bool quota_root_is_user(const struct mboxname_ns *ns, const char *root);

/* ------------------------------------------------------------------ */
/* The quota database                                                  */

struct quotadb {
	struct cyrusdb *db; /* NULL: the database does not exist (empty) */
	const struct config *cfg;
	bool virtdomains;
};

/*
 * Opens the quota database of cfg (quota_db, quota_db_path; fname
 * overrides the path). Without create, a missing database opens as an
 * empty one (db NULL) so that reading changes nothing. Errors: ERR_IO,
 * ERR_DATA for a bad file, ERR_CONFIG for an unknown backend.
 */
int quotadb_open(const struct config *cfg, const char *fname, bool create,
		 struct quotadb **qdb_r, struct error *err);
void quotadb_close(struct quotadb **qdb);

/*
 * Reads root into q (quota_init'ed by the caller with that root). With
 * tid, the record is read under the database's write lock and the SCAN
 * part is read too (tid as in cyrusdb.h). A missing or empty record is -1
 * with ERR_NOINPUT, a bad one ERR_DATA, a locked one ERR_TEMPFAIL.
 */
int quotadb_read(struct quotadb *qdb, struct quota *q,
		 struct cyrusdb_txn **tid, struct error *err);
/* Stores quota_format(q) under q->root. */
int quotadb_write(struct quotadb *qdb, const struct quota *q,
		  struct cyrusdb_txn **tid, struct error *err);
/* Removes root; a missing root is not an error. */
int quotadb_delete(struct quotadb *qdb, const char *root,
		   struct cyrusdb_txn **tid, struct error *err);
int quotadb_commit(struct quotadb *qdb, struct cyrusdb_txn **tid,
		   struct error *err);
void quotadb_abort(struct quotadb *qdb, struct cyrusdb_txn **tid);

/*
 * Calls cb for every root whose name starts with prefix (NULL or "": all),
 * in database order, with the parsed value (no SCAN part). Records that do
 * not parse are skipped, as Cyrus skips them. A non-zero return of cb stops
 * and is returned.
 */
typedef int quotadb_cb(void *rock, const struct quota *q);
int quotadb_foreach(struct quotadb *qdb, const char *prefix, quotadb_cb *cb,
		    void *rock, struct error *err);

/*
 * The quota root of mailbox mboxname as the server finds it
 * (quota_findroot): the longest of mboxname and its parents that is a
 * root, else with virtdomains the whole-domain root "domain!". Returns 1
 * with *root_r (malloc'd, caller frees), 0 if there is none, -1 on error.
 */
int quotadb_findroot(struct quotadb *qdb, const char *mboxname,
		     char **root_r, struct error *err);

/*
 * The lock Cyrus takes around quota root changes (quota_changelock): the
 * exclusive mailbox name lock "$QUOTACHANGE" (<lockpath>/q/$QUOTACHANGE.lock).
 * *fd_r gets the locked descriptor; quota_changelock_release closes it.
 */
int quota_changelock(const struct config *cfg, const struct mboxname_ns *ns,
		     int *fd_r, struct error *err);
void quota_changelock_release(int *fd);

/* ------------------------------------------------------------------ */
/* A mailbox, opened the way `quota -f` opens it                       */

/*
 * Opens mailbox e for the quota scan with 3.6.1's mailbox_open_iwl locks:
 * the user namespace lock (exclusive when writable, else shared), the
 * mailbox name lock shared (so that clients with the mailbox selected do
 * not block us), then the cyrus.index fcntl lock (exclusive when writable,
 * else shared); cyrus.header and the index header are read under it.
 * Errors: ERR_NOINPUT (missing files), ERR_DATA (bad files), ERR_IO;
 * with QUOTA_MBOX_NOWAIT, ERR_TEMPFAIL if a lock is held elsewhere.
 *
 * fcntl locks belong to the process: two mailboxes of one user open at
 * once share the namespace lock, and closing either drops it for both.
 */
struct quota_mbox {
	char *name;
	char *header_path, *index_path;
	int ns_fd, name_fd, index_fd;
	bool writable;
	struct mailbox_header *h;
	struct mailbox_index_header *i;
};

#define QUOTA_MBOX_WRITABLE 0x1 /* exclusive locks, quotaroot may be set */
#define QUOTA_MBOX_NOWAIT 0x2   /* fail with ERR_TEMPFAIL, never block */

int quota_mbox_open(const struct config *cfg, const struct mboxname_ns *ns,
		    const struct mboxlist_entry *e, unsigned flags,
		    struct quota_mbox **qm_r, struct error *err);
/* The root its cyrus.header names (NULL: none); points into qm. */
const char *quota_mbox_quotaroot(const struct quota_mbox *qm);
/*
 * Records root (NULL: none) in cyrus.header as mailbox_set_quotaroot and
 * mailbox_commit do: the header is rewritten by rename, then the index
 * header is rewritten in place with the new header_file_crc and fsynced.
 * Needs a writable open.
 */
int quota_mbox_set_quotaroot(struct quota_mbox *qm, const char *root,
			     struct error *err);
void quota_mbox_close(struct quota_mbox **qm);

#endif
