/*
 * dbset.h: the server-wide databases of a config, as Cyrus 3.6.1's
 * ctl_cyrusdb knows them (imap/ctl_cyrusdb.c, dblist[]), and the two file
 * operations its checkpoint needs: rotating db.backup1/db.backup2 and
 * copying a database into a backup directory.
 *
 * The list, in Cyrus's order: mailboxes.db, quotas.db, annotations.db,
 * backups.db (these four are archived by ctl_cyrusdb -c), deliver.db,
 * tls_sessions.db, ptclient/ptscache.db, statuscache.db. Each has its
 * backend from NAME_db and its path from NAME_db_path or the default file
 * under configdirectory.
 */
#ifndef CYRUS_LIB_DBSET_H
#define CYRUS_LIB_DBSET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct config;
struct error;

struct dbset_entry {
	const char *db;      /* config prefix: "mboxlist", "quota"... */
	const char *backend; /* configured, "-nosync" stripped; points into cfg */
	char *path;          /* absolute file name; owned by the entry */
	bool archive;        /* copied into db.backup1 by a checkpoint */
	bool path_set;       /* NAME_db_path is in the config */
};

#define DBSET_MAX 8

/* Fills out[] (DBSET_MAX entries) from cfg; returns the count. */
size_t dbset_get(const struct config *cfg, struct dbset_entry *out);
/* Frees the paths of n entries. */
void dbset_release(struct dbset_entry *entries, size_t n);

/* The file name part of an entry's path ("mailboxes.db"); points into it. */
const char *dbset_basename(const struct dbset_entry *e);

/*
 * Rotates the backup directories as Cyrus does once per checkpoint:
 * empties and removes <configdir>/db.backup2 (files whose names start with
 * '.' are left, which makes the removal fail, as in Cyrus), renames
 * db.backup1 to db.backup2, creates an empty db.backup1 with mode 0755
 * (narrowed by the umask). A missing db.backup2 or db.backup1 is fine.
 * backup1_r (may be NULL) gets the malloc'd path of db.backup1, caller
 * frees. Returns 0, or -1 with err filled.
 */
int dbset_rotate_backups(const char *configdir, char **backup1_r,
			 struct error *err);

/*
 * Copies the database file src to dst, consistently and atomically: src is
 * opened and held under a shared fcntl lock (the lock Cyrus's readers
 * take, so no write transaction is half-way through; a file replaced by a
 * repack meanwhile is re-opened), its bytes go to a temporary file beside
 * dst (created with mode 0666 narrowed by the umask, as Cyrus's copy),
 * which is fsynced and renamed over dst. An empty src is an error, as in
 * Cyrus. bytes_r (may be NULL) gets the size copied.
 * Returns 0, or -1 with err filled; dst is untouched on failure.
 */
int dbset_copy_locked(const char *src, const char *dst,
		      unsigned long long *bytes_r, struct error *err);

/*
 * Writes the skiplist global recovery stamp as Cyrus's skiplist init does
 * with CYRUSDB_RECOVER: if <configdir>/db/skipcleanshutdown exists it is
 * removed and no stamp is written (*written_r = false); otherwise
 * <configdir>/db/skipstamp gets now as a 4-byte big-endian Unix time
 * (mode 0644 narrowed by the umask, written by rename).
 * Returns 0, or -1 with err filled.
 */
int dbset_write_skipstamp(const char *configdir, bool *written_r,
			  struct error *err);

/*
 * Whether a database file shows that its last writer did not finish, so
 * that recovery must be checked afterwards: a twoskip whose header has the
 * DIRTY flag, a size other than its committed size, or no twoskip magic;
 * every skiplist (its log has no cheap sign of a clean end). A flat or
 * quotalegacy database never is. A file that cannot be read is unclean.
 */
bool dbset_unclean(const char *path, const char *backend);

#endif
