/*
 * mboxops.h: create, delete and rename mailboxes on the store itself, the
 * way Cyrus 3.6.1's imapd does (imap/mboxlist.c mboxlist_createmailbox,
 * mboxlist_deletemailbox, mboxlist_delayed_deletemailbox,
 * mboxlist_renametree/mboxlist_renamemailbox; imap/mailbox.c
 * mailbox_create, mailbox_rename_nocopy/_copy, mailbox_delete_cleanup;
 * imap/user.c user_deletedata), so that the real imapd serves the result
 * exactly like a mailbox it made itself.
 *
 * What each operation writes:
 *   create  the directory (uuid layout, or by name when the user's INBOX
 *           is legacy or mailbox_legacy_dirs is set), cyrus.header,
 *           an empty cyrus.index, then the N and I records in one
 *           mailboxes.db transaction; missing ancestors are created first
 *           (as imapd's CREATE does); an optional new quota root, or the
 *           folder count of the quota root above.
 *   delete  delete_mode delayed (and the name not already in DELETED.):
 *           a rename to DELETED.<name>.<HEX time>; otherwise the files go
 *           and the N and I records become tombstones ("d"); a DELETED.
 *           name loses its N record (the I record stays, as in Cyrus).
 *           A user's INBOX takes all the user's mailboxes along, then the
 *           user's files (seen, sub, counters...), sieve scripts and quota
 *           roots, as imapd's DELETE of user.X does.
 *   rename  the mailbox and every mailbox below it: a tombstone under the
 *           old name, the new N record and the I record with the old name
 *           in its history; cyrus.header gets the new name and quota root,
 *           cyrus.index a new highestmodseq; files move only for legacy
 *           (by-name) mailboxes or to another partition.
 *
 * Safety: the caller refuses to run beside a live server (see
 * shell/mailbox.c). Besides, every operation takes Cyrus's locks in
 * Cyrus's order, all exclusive -- the user namespace lock (held until
 * mboxops_release), then the name lock of the mailbox being changed
 * (until the next mailbox), then mailboxes.db's own lock for the
 * transaction -- so two of our tools, or a tool and a server that starts
 * meanwhile, exclude each other.
 *
 * Dry run: with dryrun set, every check is made and every step reported
 * through report(), but nothing is written and no lock file is created.
 *
 * lib/ conventions: 0, or -1 with err filled; nothing is printed.
 */
#ifndef CYRUS_LIB_MBOXOPS_H
#define CYRUS_LIB_MBOXOPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct config;
struct error;
struct mboxlist;

/* Quota resources, in the order of the quota record (S M AS NF). */
enum mboxops_quota_res {
	MBOXOPS_QUOTA_STORAGE,     /* KiB */
	MBOXOPS_QUOTA_MESSAGE,
	MBOXOPS_QUOTA_ANNOTSTORAGE, /* KiB */
	MBOXOPS_QUOTA_NUMFOLDERS,
	MBOXOPS_QUOTA_NUM,
};

struct mboxops {
	const struct config *cfg;
	struct mboxlist *ml;  /* open for writing */
	bool dryrun;
	time_t now;           /* 0: time(NULL) at each operation */
	/* One line per step ("create mailbox 'user.bob' ..."); may be NULL. */
	void (*report)(void *rock, const char *line);
	void *rock;
	/* internal: the lock files held (see mboxops.c) */
	void *locks;
	size_t nlocks;
};

/* Drops every lock the operations took. */
void mboxops_release(struct mboxops *ops);

struct mboxops_create {
	const char *partition; /* NULL: the parent's, else the default */
	bool quota;            /* make the mailbox a quota root */
	/* limits for a new quota root, -1 for none (unlimited) */
	long long limits[MBOXOPS_QUOTA_NUM];
};

/*
 * Creates mailbox intname (internal form). Errors: a name Cyrus refuses
 * (ERR_DATA), an existing mailbox (ERR_CANTCREAT), user.X.Y without user.X
 * (ERR_NOINPUT), an unknown partition (ERR_CONFIG), file or database
 * failures (ERR_IO/ERR_OS). uniqueid_r (may be NULL) gets the new
 * mailbox's uniqueid (malloc'd).
 */
int mboxops_create(struct mboxops *ops, const char *intname,
		   const struct mboxops_create *opts, char **uniqueid_r,
		   struct error *err);

/*
 * Deletes mailbox intname as its delete_mode says. A mailbox with
 * children (other than a user's INBOX) is refused (ERR_CANTCREAT, as
 * imapd's "Mailbox has inferior hierarchical names"); an unknown mailbox is
 * ERR_NOINPUT.
 */
int mboxops_delete(struct mboxops *ops, const char *intname,
		   struct error *err);

/*
 * Renames oldname (and every mailbox below it) to newname; partition (may
 * be NULL: keep each mailbox's) moves the files there. newname may equal
 * oldname when a partition is given (a partition move, as imapd's RENAME
 * of a mailbox to itself). Errors as for create, plus ERR_NOINPUT for an
 * unknown oldname and ERR_CANTCREAT for an existing target.
 */
int mboxops_rename(struct mboxops *ops, const char *oldname,
		   const char *newname, const char *partition,
		   struct error *err);

/*
 * The ACL rights string of str in Cyrus's canonical order (the legacy
 * 'c' and 'd' macros expanded as cyrus_acl_strtomask does, deleteright
 * 'c'); -1 if str has a letter Cyrus does not know. out gets the rights.
 */
int mboxops_canon_rights(const char *str, char out[40]);

#endif
