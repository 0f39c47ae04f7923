/*
 * mailbox.h: the per-mailbox files of Cyrus IMAP 3.6.1 -- cyrus.header,
 * cyrus.index and the mailbox lock protocol (docs/formats/mailbox.md
 * sections 4, 5, 2.6; imap/mailbox.c mailbox_read_header,
 * mailbox_commit_header, mailbox_buf_to_index_header,
 * mailbox_index_header_to_buf, mailbox_buf_to_index_record,
 * mailbox_index_record_to_buf, crc_basic, mailbox_open_advanced,
 * mailbox_lock_index_internal; imap/mboxname.c mboxname_lock; imap/user.c
 * user_namespacelock_full).
 *
 * STATUS (issue 4): done and unit-tested (tests/unit/test-mailbox.c):
 *   - cyrus.header: parse (3.x dlist form and the 2.x line form), format
 *     byte-exact as 3.6.1 writes it, read, atomic write (cyrus.header.NEW,
 *     fsync, rename, fsync dir), CRC32 of the whole file;
 *   - cyrus.index: header and record decode for minor versions 6..17
 *     (CRCs checked from 12 on), encode for 6..17 (CRCs computed),
 *     sync CRC (crc_basic), counter recomputation, whole-file read and
 *     atomic write (cyrus.index.NEW);
 *   - empty cyrus.cache creation (the 4-byte generation);
 *   - the lock protocol: user namespace lock, mailbox name lock, then the
 *     cyrus.index fcntl lock (mailbox_lock_*), and mailbox_open/close on
 *     top of it.
 *   Verified: every cyrus.header and cyrus.index of a store filled by the
 *   real 3.6.1 imapd (instance_fill) parses and re-formats byte for byte,
 *   all record CRCs check.
 * Built on this: lib/cache.h (cache records: parse, CRC check, format;
 * done) and lib/message.h (size, header_size, dates, GUID: done; the MIME
 * parse for the cache items: lib/mimeparse.h). reconstruct: cyrreconstruct/.
 *
 * Creating a mailbox's files as 3.6.1 mailbox_create() does: take the
 * locks (mailbox_lock_names, LOCK_EXCLUSIVE), create the metadata and data
 * directories (0755), mailbox_header_write() (T N I [Q] [A]), then
 * mailbox_index_header_new() with header_file_crc = the CRC it returned
 * and mailbox_index_write() with no records. 3.6.1 creates no cyrus.cache
 * for an empty mailbox (the first append does), nor cyrus.annotations.
 *
 * All integers on disk are big-endian; 64-bit fields are plain big-endian
 * u64. lib/ conventions: functions return 0 or -1 with err filled; nothing
 * prints.
 */
#ifndef CYRUS_LIB_MAILBOX_H
#define CYRUS_LIB_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lock.h"

struct buf;
struct config;
struct error;
struct mboxlist_entry;
struct mboxname_ns;

#define MAILBOX_HEADER_MAGIC                                               \
	"\241\002\213\015Cyrus mailbox header\n"                           \
	"\"The best thing about this system was that it had lots of goals.\"\n" \
	"\t--Jim Morris on Andrew\n"
#define MAILBOX_HEADER_MAGIC_LEN (sizeof(MAILBOX_HEADER_MAGIC) - 1) /* 115 */

#define MAILBOX_MINOR_VERSION 17
#define MAILBOX_CACHE_MINOR_VERSION 11
#define MAILBOX_MAX_USER_FLAGS 128
#define MAILBOX_INDEX_HEADER_SIZE 160 /* version 14..17 */
#define MAILBOX_INDEX_RECORD_SIZE 112 /* version 16..17 */
#define MAILBOX_GUID_SIZE 20
#define MAILBOX_CRC_INIT_ANNOT 12345678

/* System flags (low 16 bits of the stored system_flags word). */
#define MAILBOX_FLAG_ANSWERED (1u << 0)
#define MAILBOX_FLAG_FLAGGED (1u << 1)
#define MAILBOX_FLAG_DELETED (1u << 2)
#define MAILBOX_FLAG_DRAFT (1u << 3)
#define MAILBOX_FLAG_SEEN (1u << 4)
#define MAILBOX_FLAGS_SYSTEM 0x1fu
/* Internal flags (high 16 bits). */
#define MAILBOX_FLAG_SNOOZED (1u << 26)
#define MAILBOX_FLAG_SPLITCONVERSATION (1u << 27)
#define MAILBOX_FLAG_NEEDS_CLEANUP (1u << 28)
#define MAILBOX_FLAG_ARCHIVED (1u << 29)
#define MAILBOX_FLAG_UNLINKED (1u << 30)
#define MAILBOX_FLAG_EXPUNGED (1u << 31)

/* Index header options (offset 60). */
#define MAILBOX_OPT_POP3_NEW_UIDL (1u << 0)
#define MAILBOX_OPT_IMAP_SHAREDSEEN (1u << 2)
#define MAILBOX_OPT_IMAP_DUPDELIVER (1u << 3)
#define MAILBOX_OPT_IMAP_HAS_ALARMS (1u << 4)
#define MAILBOX_OPT_NEEDS_UNLINK (1u << 29)
#define MAILBOX_OPT_NEEDS_REPACK (1u << 30)
#define MAILBOX_OPT_DELETED (1u << 31)
#define MAILBOX_OPT_VALID 0xe000001du /* the only bits ever written */

/* ------------------------------------------------------------------ */
/* cyrus.header                                                        */

struct mailbox_header {
	uint32_t mbtype;   /* MBTYPE_* of lib/mboxlist.h (the T field) */
	char *name;        /* internal name (N), may be NULL in 2.x files */
	char *uniqueid;    /* I; may be NULL */
	char *quotaroot;   /* Q; NULL: none */
	char *acl;         /* "id TAB rights TAB ..."; NULL: none */
	/* User flag n; NULL for an unused slot (NIL in the file). */
	char *flagname[MAILBOX_MAX_USER_FLAGS];
	bool oldformat;    /* read from the 2.x line form */
};

void mailbox_header_init(struct mailbox_header *h);
void mailbox_header_release(struct mailbox_header *h);
/* Deep copy; dst is initialised first (not released). */
void mailbox_header_copy(struct mailbox_header *dst,
			 const struct mailbox_header *src);

/*
 * Parses the bytes of a whole cyrus.header file: the magic, then either
 * the dlist line (3.x) or the three 2.x lines. h is released and refilled.
 * Returns 0, or -1 with ERR_DATA ("bad magic", "no end of line", ...).
 */
int mailbox_header_parse(const char *data, size_t len,
			 struct mailbox_header *h, struct error *err);
/* Appends the whole file as 3.6.1 writes it (magic, dlist T N I Q A U, LF). */
void mailbox_header_format(const struct mailbox_header *h, struct buf *out);

/*
 * Reads and parses path. crc_r (may be NULL) gets the CRC32 of the whole
 * file (the index's header_file_crc), ino_r (may be NULL) its inode.
 * A missing file is ERR_NOINPUT, other open/read errors ERR_IO, a bad one
 * ERR_DATA.
 */
int mailbox_header_read(const char *path, struct mailbox_header *h,
			uint32_t *crc_r, ino_t *ino_r, struct error *err);
/*
 * Writes h to path atomically (path.NEW, fsync, rename, fsync of the
 * directory); crc_r (may be NULL) gets the new file's CRC32, which the
 * caller must store in the index header's header_file_crc.
 */
int mailbox_header_write(const char *path, const struct mailbox_header *h,
			 uint32_t *crc_r, struct error *err);

/* ------------------------------------------------------------------ */
/* cyrus.index                                                         */

struct mailbox_index_header {
	uint32_t generation_no, format, minor_version, start_offset;
	uint32_t record_size, num_records, last_appenddate, last_uid;
	uint64_t quota_mailbox_used;
	uint32_t pop3_last_login, uidvalidity, deleted, answered, flagged;
	uint32_t options, leaked_cache_records;
	uint64_t highestmodseq, deletedmodseq;
	uint32_t exists, first_expunged, last_repack_time, header_file_crc;
	uint32_t sync_crc, recentuid, recenttime, pop3_show_after;
	uint32_t quota_annot_used, sync_crc_annot, unseen;
	uint64_t createdmodseq;
	uint32_t changes_epoch;
	uint32_t header_crc; /* as stored (decode) / as written (encode) */
};

struct mailbox_record {
	uint32_t uid, internaldate, sentdate, size, header_size, gmtime;
	uint64_t cache_offset; /* 48 bits; 0 = no cache record */
	uint32_t last_updated;
	uint32_t system_flags;   /* low 16 bits only */
	uint32_t internal_flags; /* high 16 bits only */
	uint32_t user_flags[MAILBOX_MAX_USER_FLAGS / 32];
	uint32_t savedate;
	uint32_t cache_version;  /* low 16 bits of the stored word */
	unsigned char guid[MAILBOX_GUID_SIZE];
	uint64_t modseq, cid, createdmodseq;
	uint32_t cache_crc;
	uint32_t record_crc; /* as stored (decode) / as written (encode) */
	bool crc_ok;         /* decode: record CRC matched (or none in v<12) */
};

/* Header length of a minor version (76/92/96/128/160), 0 if unknown. */
size_t mailbox_index_header_size(uint32_t minor_version);
/* Record length of a minor version (60/72/80/88/96/104/112), 0 if unknown. */
size_t mailbox_index_record_size(uint32_t minor_version);

/*
 * Decodes an index header as Cyrus does: unknown minor version or short
 * buffer -> -1, ERR_DATA "bad format"; CRC mismatch (v12+) -> -1,
 * ERR_DATA "checksum mismatch" (and *crcbad_r true if not NULL). The
 * reader's implied values are applied: POP3_NEW_UIDL when exists is 0,
 * highestmodseq 0 -> 1, v<12 deletedmodseq/exists, v<17 changes_epoch.
 */
int mailbox_index_header_decode(const unsigned char *buf, size_t len,
				struct mailbox_index_header *ih,
				bool *crcbad_r, struct error *err);
/*
 * Encodes ih for ih->minor_version into buf (MAILBOX_INDEX_HEADER_SIZE
 * bytes, zero-filled past the version's length) with the header CRC, as
 * mailbox_index_header_to_buf; returns the version's header length.
 */
size_t mailbox_index_header_encode(const struct mailbox_index_header *ih,
				   unsigned char *buf);

/* Decodes one record of version (CRC result in r->crc_ok, never fails). */
void mailbox_record_decode(const unsigned char *buf, uint32_t version,
			   struct mailbox_record *r);
/* Encodes into buf (MAILBOX_INDEX_RECORD_SIZE bytes zero-filled past the
 * version's length) with the record CRC; returns the record length. */
size_t mailbox_record_encode(const struct mailbox_record *r,
			     uint32_t version, unsigned char *buf);

/* The sync CRC of a record (crc_basic): 0 for EXPUNGED records. */
uint32_t mailbox_record_sync_crc(const struct mailbox_record *r,
				 const struct mailbox_header *h);
/*
 * The annotation sync CRC share of a record (crc_virtannot of 3.6.1: its
 * cid, savedate and createdmodseq as the virtual annotations of minor
 * version 13/15/16 on); 0 for EXPUNGED records. The index header's
 * sync_crc_annot is MAILBOX_CRC_INIT_ANNOT ^ these ^ the CRCs of the
 * mailbox's real per-message annotations.
 */
uint32_t mailbox_record_annot_crc(const struct mailbox_record *r,
				  uint32_t minor_version);
/* 40 lower-case hex digits + NUL into out. */
void mailbox_guid_hex(const unsigned char *guid, char out[41]);

/*
 * Recomputes the counters of 5.3 from records: exists, answered, flagged,
 * deleted, unseen, quota_mailbox_used, sync_crc, num_records; raises
 * last_uid and highestmodseq to the records' maxima. Nothing else.
 */
void mailbox_index_recount(struct mailbox_index_header *ih,
			   const struct mailbox_record *recs, size_t n,
			   const struct mailbox_header *h);

/* A new mailbox's index header as mailbox_create() sets it. */
void mailbox_index_header_new(struct mailbox_index_header *ih,
			      uint32_t uidvalidity, uint64_t highestmodseq,
			      uint64_t createdmodseq, uint32_t options,
			      uint32_t now);

/* A whole cyrus.index in memory. */
struct mailbox_index {
	struct mailbox_index_header h;
	struct mailbox_record *recs;
	size_t nrecs;
};

void mailbox_index_release(struct mailbox_index *idx);

/*
 * Decodes a whole index file image: header (errors as
 * mailbox_index_header_decode), then num_records records (a file too
 * short for them is ERR_DATA "truncated"). Records with a bad CRC are kept
 * with crc_ok false; the caller decides.
 */
int mailbox_index_parse(const unsigned char *data, size_t len,
			struct mailbox_index *idx, bool *crcbad_r,
			struct error *err);
/* Reads path (ERR_NOINPUT if missing) then mailbox_index_parse. */
int mailbox_index_read(const char *path, struct mailbox_index *idx,
		       bool *crcbad_r, struct error *err);
int mailbox_index_read_fd(int fd, struct mailbox_index *idx, bool *crcbad_r,
			  struct error *err);
/*
 * Serialises h + recs for h->minor_version: start_offset, record_size and
 * num_records are set from the version and n; all CRCs computed. Counters
 * are written as given (call mailbox_index_recount first if needed).
 */
void mailbox_index_format(const struct mailbox_index_header *h,
			  const struct mailbox_record *recs, size_t n,
			  struct buf *out);
/* Writes mailbox_index_format() atomically to path (path.NEW, rename). */
int mailbox_index_write(const char *path, const struct mailbox_index_header *h,
			const struct mailbox_record *recs, size_t n,
			struct error *err);

/* Writes an empty cyrus.cache (just the generation) atomically. */
int mailbox_cache_create(const char *path, uint32_t generation,
			 struct error *err);

/*
 * Writes data to path atomically the way Cyrus does (path.NEW created with
 * mode 0666 & umask, written, fsync'd, renamed over path, directory
 * fsync'd). The .NEW file is removed on failure and on signals.
 */
int mailbox_write_file(const char *path, const void *data, size_t len,
		       struct error *err);

/* ------------------------------------------------------------------ */
/* Locks                                                               */

/*
 * The 3.6.1 lock protocol for a mailbox, in this order:
 *   1. the user namespace lock, for mailboxes in a user's hierarchy:
 *      <lockpath>/q/ *U*<userid with '.' as '^'>.lock (mboxpath_lock of
 *      the name "*U*<userid>"), same mode as the index lock (exclusive for
 *      create/delete/rename/reconstruct);
 *   2. the mailbox name lock: <lockpath>/<hash>/<name or uniqueid>.lock
 *      (the uniqueid unless the mailbox has legacy dirs), shared to read
 *      or append, exclusive for create, delete, rename, reconstruct;
 *   3. the fcntl lock on the whole cyrus.index (shared to read, exclusive
 *      to write); after it is granted, re-stat cyrus.header and re-read it
 *      if its inode changed, then re-read and CRC-check the index header.
 * Lock files are created (mode 0666 & umask, parent dirs 0755) and
 * truncated on open, as mboxname_lock does. All locks are POSIX fcntl
 * locks, blocking (F_SETLKW) unless nonblock is asked for.
 */
struct mailbox_lock {
	int ns_fd;   /* -1 if none */
	int name_fd; /* -1 if none */
	char *ns_path, *name_path;
};

#define MAILBOX_LOCK_INIT { -1, -1, NULL, NULL }

/*
 * Steps 1 and 2 for mailbox intname. uniqueid NULL (or legacy_dirs) locks
 * by name. nonblock: -1 with ERR_TEMPFAIL if another process holds it.
 */
int mailbox_lock_names(const struct config *cfg, const struct mboxname_ns *ns,
		       const char *intname, const char *uniqueid,
		       bool legacy_dirs, enum lock_mode mode, bool nonblock,
		       struct mailbox_lock *lk, struct error *err);
/* Drops the locks in reverse order and closes the files. */
void mailbox_lock_release(struct mailbox_lock *lk);

/* ------------------------------------------------------------------ */
/* An open mailbox                                                     */

struct mailbox {
	char *name;       /* internal name */
	char *partition;
	char *uniqueid;   /* from mailboxes.db */
	uint32_t mbtype;  /* from mailboxes.db */
	char *header_path, *index_path, *cache_path;
	char *data_path;  /* the message directory */
	char *archive_path; /* the archive message directory */
	struct mailbox_lock lock;
	enum lock_mode mode;
	int index_fd;     /* -1 if not open (no index) */
	struct mailbox_header h;
	uint32_t header_file_crc;
	ino_t header_ino;
	struct mailbox_index_header i;
};

enum mailbox_open_flags {
	MAILBOX_OPEN_NONBLOCK = 1 << 0, /* name locks fail with ERR_TEMPFAIL */
	MAILBOX_OPEN_NOLOCK = 1 << 1,   /* no locks at all (store is offline
					 * and the caller knows it) */
};

/*
 * Opens the mailbox of mailboxes.db entry e: computes its paths, takes the
 * locks of the protocol above in mode, reads cyrus.header and the index
 * header. Errors: ERR_NOINPUT for a missing header or index, ERR_DATA for
 * a bad one (the message names the file), ERR_TEMPFAIL when locked and
 * nonblocking. On error nothing is held.
 */
int mailbox_open(const struct config *cfg, const struct mboxname_ns *ns,
		 const struct mboxlist_entry *e, enum lock_mode mode,
		 unsigned flags, struct mailbox **mb_r, struct error *err);
/* Reads every record of the open mailbox (caller frees *recs_r). */
int mailbox_read_records(struct mailbox *mb, struct mailbox_record **recs_r,
			 size_t *n_r, struct error *err);
/* Unlocks and frees; *mb becomes NULL. */
void mailbox_close(struct mailbox **mb);

/*
 * Paths of a mailbox from its entry, without opening anything (each a
 * malloc'd string the caller frees; pass NULL for those not wanted).
 */
int mailbox_paths(const struct config *cfg, const struct mboxname_ns *ns,
		  const struct mboxlist_entry *e, char **header_r,
		  char **index_r, char **cache_r, char **data_r,
		  char **archive_r, struct error *err);

#endif
