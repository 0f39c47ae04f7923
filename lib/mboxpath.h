/*
 * mboxpath.h: where a mailbox's files live (docs/formats/mailbox.md
 * section 2; imap/mboxname.c mboxname_hash, mboxname_id_hash,
 * mboxname_datapath/metapath/archivepath, mboxname_conf_getpath and
 * imap/user.c user_sieve_path of Cyrus 3.6.1).
 *
 * Two layouts: by uniqueid ("uuid/<c0>/<c1>/<uniqueid>", every mailbox
 * created by 3.6 unless mailbox_legacy_dirs), and the legacy by-name
 * layout (hash letters with hashimapspool, "domain/" with virtdomains),
 * recorded per mailbox by the 'l' flag of its type. Functions that take a
 * uniqueid use the uuid layout when it is not NULL, else the legacy one.
 *
 * Every function appends to out and returns 0, or -1 with ERR_CONFIG when
 * the partition is not configured (or ERR_DATA for a too-long path).
 */
#ifndef CYRUS_LIB_MBOXPATH_H
#define CYRUS_LIB_MBOXPATH_H

#include <stdbool.h>

struct buf;
struct config;
struct error;
struct mboxname;
struct mboxname_ns;

#define MBOXPATH_MAX 4096 /* MAX_MAILBOX_PATH */

/* The per-mailbox metadata files (mboxname_metapath's metafile). */
enum mboxpath_meta {
	MBOXPATH_DIR = 0, /* the metadata directory itself */
	MBOXPATH_HEADER,  /* cyrus.header */
	MBOXPATH_INDEX,   /* cyrus.index */
	MBOXPATH_CACHE,   /* cyrus.cache */
	MBOXPATH_EXPUNGE, /* cyrus.expunge */
	MBOXPATH_SQUAT,   /* cyrus.squat */
	MBOXPATH_ANNOTATIONS, /* cyrus.annotations */
	MBOXPATH_DAV,     /* cyrus.dav */
	MBOXPATH_ARCHIVECACHE, /* cyrus.cache in the archive partition */
};

/* Cyrus's dir_hash_c: first letter, or with full the 23-letter hash of
 * the part before the first '.'. */
char mboxpath_hashchar(const char *name, bool full);

/* root + legacy by-name directory of intname (mboxname_hash). */
void mboxpath_hash(const struct config *cfg, const struct mboxname_ns *ns,
		   const char *root, const char *intname, struct buf *out);
/* [root/]uuid/<c0>/<c1>/<uniqueid> (mboxname_id_hash); root may be NULL. */
void mboxpath_id_hash(const char *root, const char *uniqueid,
		      struct buf *out);

/* The message directory, or with uid > 0 the message file "<dir>/<uid>.". */
int mboxpath_data(const struct config *cfg, const struct mboxname_ns *ns,
		  const char *partition, const char *intname,
		  const char *uniqueid, unsigned long uid, struct buf *out,
		  struct error *err);
/* The same under archivepartition-NAME (else the partition). */
int mboxpath_archive(const struct config *cfg, const struct mboxname_ns *ns,
		     const char *partition, const char *intname,
		     const char *uniqueid, unsigned long uid, struct buf *out,
		     struct error *err);
/*
 * A metadata file (or with MBOXPATH_DIR its directory): metadir-TYPE-PART,
 * else metapartition-PART if the type is in metapartition_files, else (for
 * the archive cache) archivepartition-PART, else partition-PART. isnew
 * appends ".NEW" (the atomic-rewrite name).
 */
int mboxpath_meta(const struct config *cfg, const struct mboxname_ns *ns,
		  const char *partition, const char *intname,
		  const char *uniqueid, enum mboxpath_meta meta, bool isnew,
		  struct buf *out, struct error *err);
/* The per-mailbox lock file: always the legacy layout of NAME under
 * mboxname_lockpath (default configdirectory/lock); NAME is the uniqueid
 * for uuid mailboxes. */
void mboxpath_lock(const struct config *cfg, const struct mboxname_ns *ns,
		   const char *intname, const char *uniqueid, struct buf *out);

/*
 * Per-user files (seen, sub, counters...): by the uniqueid of the user's
 * INBOX (configdirectory/user/uuid/c0/c1/ID[/SUFFIX.db]), or legacy by
 * name (configdirectory[/domain/h/D]/user/h[/LOCALPART.SUFFIX], or for a
 * shared name the shared files). suffix may be NULL for the directory.
 */
void mboxpath_user_byid(const struct config *cfg, const char *uniqueid,
			const char *suffix, struct buf *out);
void mboxpath_user_legacy(const struct config *cfg,
			  const struct mboxname *mbn, const char *suffix,
			  struct buf *out);
/* The user's sieve directory, by INBOX uniqueid or by name (global
 * scripts for a shared name). */
void mboxpath_sieve_byid(const struct config *cfg, const char *uniqueid,
			 struct buf *out);
void mboxpath_sieve_legacy(const struct config *cfg,
			   const struct mboxname_ns *ns,
			   const struct mboxname *mbn, struct buf *out);

#endif
