/*
 * verify.c: `cyrus backup verify`: re-reads every object a snapshot needs
 * (gunzip, SHA-1 against the name, size against the manifest), checks
 * each manifest's own checksum, and that every message cyrus.index lists
 * is in the snapshot under its GUID.
 *
 * Memory does not grow with the archive: manifests are read a record at
 * a time, a saved cyrus.index goes to a temporary file and is walked
 * beside the msg records (both in UID order), and an object the previous
 * snapshot had for the same message (or mailbox file) and found intact
 * is not read again: that manifest is read alongside, in the same
 * mailbox order. Only damaged objects are remembered.
 */
#include "compat.h"
#include "backup.h"

#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup_archive.h"
#include "backup_manifest.h"
#include "buf.h"
#include "cyrus.h"
#include "error.h"
#include "log.h"
#include "mailbox.h"
#include "xmalloc.h"

struct verify {
	struct backup_archive *ar;
	struct backup_shaset bad;
	unsigned long nchecked, nbad;
	const char *snap;
	int tmpfd; /* a saved cyrus.index, unlinked */
};

static void damaged(struct verify *v, const char *where, const char *msg)
{
	log_error("snapshot %s: %s: %s", v->snap, where, msg);
	v->nbad++;
}

/* Checks one object; to fd_out (-1: only checked). */
static bool check_object(struct verify *v, enum backup_kind kind,
			 const char *sha1, const char *size,
			 const char *where, int fd_out)
{
	struct error err = ERROR_INIT;
	if (!backup_sha1_valid(sha1)) {
		damaged(v, where, "bad object name in the manifest");
		return false;
	}
	if (backup_shaset_has(&v->bad, sha1)) {
		struct buf p = BUF_INIT;
		backup_object_path(v->ar, kind, sha1, &p);
		buf_adds(&p, ": damaged or missing (see above)");
		damaged(v, where, p.s);
		buf_release(&p);
		return false;
	}
	uint64_t sz = strtoull(size, NULL, 10);
	v->nchecked++;
	if (backup_object_read(v->ar, kind, sha1, sz, NULL, fd_out, &err) <
	    0) {
		damaged(v, where, err.msg);
		backup_shaset_add(&v->bad, sha1);
		return false;
	}
	return true;
}

/* ---- the previous snapshot's objects of the current mailbox ---- */

struct prevmb {
	struct backup_manifest_side side;
	bool has;          /* it has the current mailbox */
	char (*files)[BACKUP_SHA1_HEX]; /* its file and part objects */
	size_t nfiles, afiles;
	bool msg_ok;       /* side.rd holds a msg record of the mailbox */
};

/* Enters mailbox name in the previous manifest: its file and part
 * objects are noted, and it stops at its first message. */
static void prev_enter(struct prevmb *p, const char *name)
{
	p->nfiles = 0;
	p->msg_ok = false;
	p->has = p->side.ok && backup_side_seek(&p->side, name);
	while (p->has && backup_side_next(&p->side)) {
		const struct backup_manifest_reader *rd = &p->side.rd;
		if (backup_manifest_is(rd, "msg")) {
			p->msg_ok = true;
			break;
		}
		if (!backup_manifest_is(rd, "file") &&
		    !backup_manifest_is(rd, "part"))
			continue;
		if (p->nfiles == p->afiles) {
			p->afiles = p->afiles ? 2 * p->afiles : 16;
			p->files = xrealloc(p->files,
					    p->afiles * sizeof(*p->files));
		}
		snprintf(p->files[p->nfiles++], BACKUP_SHA1_HEX, "%s",
			 backup_manifest_field(rd, 2));
	}
}

/* An object the previous snapshot had intact is not read again. */
static bool known_good(const struct verify *v, bool in_prev,
		       const char *sha1)
{
	return in_prev && !backup_shaset_has(&v->bad, sha1);
}

static bool prev_has_file(const struct prevmb *p, const char *sha1)
{
	for (size_t i = 0; p->has && i < p->nfiles; i++)
		if (!strcmp(p->files[i], sha1))
			return true;
	return false;
}

/* True if the previous snapshot had message uid of this mailbox as the
 * same object (its msg records are in UID order too). */
static bool prev_has_msg(struct prevmb *p, uint32_t uid, const char *sha1,
			 const char *size)
{
	while (p->msg_ok) {
		const struct backup_manifest_reader *rd = &p->side.rd;
		uint32_t puid = (uint32_t)backup_manifest_num(rd, 1);
		if (puid > uid)
			return false;
		if (puid == uid)
			return !strcmp(backup_manifest_field(rd, 2), sha1) &&
			       !strcmp(backup_manifest_field(rd, 3), size);
		do {
			p->msg_ok = backup_side_next(&p->side);
		} while (p->msg_ok && !backup_manifest_is(rd, "msg"));
	}
	return false;
}

/* ---- the saved cyrus.index, walked beside the msg records ---- */

#define IDX_CHUNK 512 /* records read at once */

struct idxwalk {
	bool have;       /* a whole, sound index is in the temporary file */
	struct mailbox_index_header h;
	uint32_t next;   /* index of the next record */
	unsigned char *chunk;
	uint32_t cfirst, cn; /* records in chunk */
	struct mailbox_record rec; /* the last one read */
};

static int idx_load(struct verify *v, struct idxwalk *w, const char *where)
{
	struct stat st;
	unsigned char hb[MAILBOX_INDEX_HEADER_SIZE];
	struct error err = ERROR_INIT;
	w->next = w->cfirst = w->cn = 0;
	if (fstat(v->tmpfd, &st) < 0) {
		damaged(v, where, strerror(errno));
		return -1;
	}
	size_t hl = st.st_size < (off_t)sizeof(hb) ? (size_t)st.st_size
						  : sizeof(hb);
	if (pread(v->tmpfd, hb, hl, 0) != (ssize_t)hl ||
	    mailbox_index_header_decode(hb, hl, &w->h, NULL, &err) < 0) {
		damaged(v, where, err.msg[0] ? err.msg : "cannot read it");
		return -1;
	}
	if (w->h.record_size < mailbox_index_record_size(w->h.minor_version) ||
	    (uint64_t)st.st_size < w->h.start_offset +
					   (uint64_t)w->h.num_records *
						   w->h.record_size) {
		damaged(v, where, "truncated");
		return -1;
	}
	w->chunk = xrealloc(w->chunk, (size_t)IDX_CHUNK * w->h.record_size);
	w->have = true;
	return 0;
}

/* Record i into w->rec: 0, or -1 on a read error. */
static int idx_get(struct verify *v, struct idxwalk *w, uint32_t i)
{
	size_t rs = w->h.record_size;
	if (i < w->cfirst || i >= w->cfirst + w->cn) {
		uint32_t n = w->h.num_records - i;
		if (n > IDX_CHUNK)
			n = IDX_CHUNK;
		if (pread(v->tmpfd, w->chunk, n * rs,
			  (off_t)(w->h.start_offset + (uint64_t)i * rs)) !=
		    (ssize_t)(n * rs))
			return -1;
		w->cfirst = i;
		w->cn = n;
	}
	mailbox_record_decode(w->chunk + (size_t)(i - w->cfirst) * rs,
			      w->h.minor_version, &w->rec);
	return 0;
}

static void missing_msg(struct verify *v, const char *mbox, uint32_t uid)
{
	char msg[200];
	snprintf(msg, sizeof(msg), "message %u is in cyrus.index but not in "
		 "the snapshot", uid);
	damaged(v, mbox, msg);
}

/* A msg record against the index (both in UID order): the records
 * before it must not be live, its own must name the same GUID. */
static void idx_msg(struct verify *v, struct idxwalk *w, const char *mbox,
		    uint32_t uid, const char *sha1)
{
	while (w->have && w->next < w->h.num_records) {
		if (idx_get(v, w, w->next) < 0) {
			damaged(v, mbox, "cannot read the saved cyrus.index");
			w->have = false;
			return;
		}
		if (w->rec.uid > uid)
			return; /* not in the index: nothing to compare */
		w->next++;
		bool live = !(w->rec.internal_flags & MAILBOX_FLAG_EXPUNGED);
		if (w->rec.uid < uid) {
			if (live)
				missing_msg(v, mbox, w->rec.uid);
			continue;
		}
		char guid[41];
		mailbox_guid_hex(w->rec.guid, guid);
		if (live && strcmp(sha1, guid)) {
			char msg[200];
			snprintf(msg, sizeof(msg), "message %u: stored as %s, "
				 "cyrus.index says GUID %s", uid, sha1, guid);
			damaged(v, mbox, msg);
		}
		return;
	}
}

/* At the end of a mailbox: its remaining live records lack messages. */
static void idx_end(struct verify *v, struct idxwalk *w, const char *mbox)
{
	if (!w->have)
		return;
	while (w->next < w->h.num_records) {
		if (idx_get(v, w, w->next++) < 0) {
			damaged(v, mbox, "cannot read the saved cyrus.index");
			break;
		}
		if (!(w->rec.internal_flags & MAILBOX_FLAG_EXPUNGED))
			missing_msg(v, mbox, w->rec.uid);
	}
	w->have = false;
}

static int tmp_reset(struct verify *v)
{
	if (lseek(v->tmpfd, 0, SEEK_SET) < 0 || ftruncate(v->tmpfd, 0) < 0)
		return -1;
	return 0;
}

/* The SHA-1 of the temporary file (the parts put together). */
static bool tmp_sha1_is(struct verify *v, const char *want)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[EVP_MAX_MD_SIZE], buf[65536];
	unsigned mdlen = 0;
	off_t off = 0;
	ssize_t n;
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha1(), NULL))
		BUG("cannot set up SHA-1");
	while ((n = pread(v->tmpfd, buf, sizeof(buf), off)) > 0) {
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		off += n;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	char hex[BACKUP_SHA1_HEX];
	for (unsigned i = 0; i < 20; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return n == 0 && !strcmp(hex, want);
}

/* ---- one snapshot ---- */

struct mbstate {
	char *name;    /* the current mailbox (malloc'd) */
	bool saw_index;
	struct idxwalk idx;
};

static void mailbox_end(struct verify *v, struct mbstate *mb)
{
	if (!mb->name)
		return;
	if (!mb->saw_index)
		damaged(v, mb->name, "no cyrus.index in the snapshot");
	else
		idx_end(v, &mb->idx, mb->name);
	free(mb->name);
	mb->name = NULL;
}

/* A file record (and its parts, read here); -1 if the manifest cannot be
 * read on. */
static int verify_file(struct verify *v, struct backup_manifest_reader *rd,
			struct mbstate *mb, struct prevmb *prev,
			struct error *err)
{
	char where[700];
	const char *name = backup_manifest_field(rd, 1);
	bool isindex = !strcmp(name, "cyrus.index");
	char fsha[BACKUP_SHA1_HEX];
	uint64_t fsize = backup_manifest_num(rd, 3);
	snprintf(fsha, sizeof(fsha), "%s", backup_manifest_field(rd, 2));
	snprintf(where, sizeof(where), "%s: %s", mb->name, name);
	if (isindex) {
		mb->saw_index = true;
		if (tmp_reset(v) < 0) {
			damaged(v, where, strerror(errno));
			isindex = false;
		}
	}
	int tfd = isindex ? v->tmpfd : -1;
	bool ok = true, parts = false;
	uint64_t total = 0;
	int r;
	while ((r = backup_manifest_next(rd, err)) > 0 &&
	       backup_manifest_is(rd, "part")) {
		parts = true;
		const char *psha = backup_manifest_field(rd, 2);
		char pw[760];
		snprintf(pw, sizeof(pw), "%s part at %s", where,
			 backup_manifest_field(rd, 1));
		if (tfd >= 0 || !known_good(v, prev_has_file(prev, psha), psha))
			ok &= check_object(v, BACKUP_FILES, psha,
					   backup_manifest_field(rd, 3), pw,
					   tfd);
		total += backup_manifest_num(rd, 3);
	}
	if (r < 0)
		return -1;
	if (r > 0)
		backup_manifest_unread(rd);
	if (!parts) {
		char sz[32];
		snprintf(sz, sizeof(sz), "%llu", (unsigned long long)fsize);
		if (tfd >= 0 || !known_good(v, prev_has_file(prev, fsha), fsha))
			ok = check_object(v, BACKUP_FILES, fsha, sz, where,
					  tfd);
	} else if (ok && total != fsize) {
		damaged(v, where, "its parts do not add up to its size");
		ok = false;
	} else if (ok && isindex && !tmp_sha1_is(v, fsha)) {
		damaged(v, where, "its parts do not make the file");
		ok = false;
	}
	if (ok && isindex)
		idx_load(v, &mb->idx, where);
	return 0;
}

/* Returns false if the manifest could not be read to its end (the next
 * snapshot then checks everything itself). */
static bool verify_snapshot(struct verify *v, const char *id,
			    const char *previd)
{
	struct backup_manifest_reader rd;
	struct prevmb prev = { 0 };
	struct mbstate mb = { 0 };
	struct error err = ERROR_INIT;
	char *path = backup_manifest_path(v->ar, id);
	v->snap = id;
	int r = backup_manifest_open(path, &rd, &err);
	free(path);
	if (r < 0) {
		damaged(v, "manifest", err.msg);
		return false;
	}
	prev.side.ok = false;
	if (previd) {
		char *pp = backup_manifest_path(v->ar, previd);
		if (backup_side_open(&prev.side, pp, &err) < 0)
			error_clear(&err);
		free(pp);
	}
	unsigned long before = v->nbad;
	size_t nmbox = 0, nmsg_total = 0;
	bool incomplete = false;
	char where[700];

	while ((r = backup_manifest_next(&rd, &err)) > 0) {
		const char *t = backup_manifest_field(&rd, 0);
		if (!strcmp(t, "mailbox")) {
			mailbox_end(v, &mb);
			mb.name = xstrdup(backup_manifest_field(&rd, 1));
			mb.saw_index = false;
			mb.idx.have = false;
			nmbox++;
			prev_enter(&prev, mb.name);
		} else if (!strcmp(t, "db") || !strcmp(t, "user") ||
			   !strcmp(t, "sieve")) {
			snprintf(where, sizeof(where), "%s %s %s", t,
				 backup_manifest_field(&rd, 1),
				 backup_manifest_field(&rd, 2));
			check_object(v, BACKUP_FILES,
				     backup_manifest_field(&rd, 3),
				     backup_manifest_field(&rd, 4), where, -1);
		} else if (!strcmp(t, "file") && mb.name) {
			if (verify_file(v, &rd, &mb, &prev, &err) < 0) {
				r = -1;
				break;
			}
		} else if (!strcmp(t, "msg") && mb.name) {
			const char *uid = backup_manifest_field(&rd, 1);
			const char *sha1 = backup_manifest_field(&rd, 2);
			const char *size = backup_manifest_field(&rd, 3);
			uint32_t u = (uint32_t)strtoul(uid, NULL, 10);
			snprintf(where, sizeof(where), "%s: message %s",
				 mb.name, uid);
			bool in_prev = prev.has &&
				       prev_has_msg(&prev, u, sha1, size);
			if (!known_good(v, in_prev, sha1))
				check_object(v, BACKUP_MESSAGES, sha1, size,
					     where, -1);
			idx_msg(v, &mb.idx, mb.name, u, sha1);
			nmsg_total++;
		} else if (!strcmp(t, "incomplete")) {
			incomplete = true;
		}
	}
	if (r < 0)
		damaged(v, "manifest", err.msg);
	else
		mailbox_end(v, &mb);
	free(mb.name);
	free(mb.idx.chunk);
	free(prev.files);
	backup_side_close(&prev.side);
	backup_manifest_close(&rd);
	if (incomplete)
		damaged(v, "manifest", "the snapshot is incomplete: some "
			"mailboxes failed when it was made");
	if (v->nbad == before)
		printf("%s: ok, %zu mailboxes, %zu messages\n", id, nmbox,
		       nmsg_total);
	else
		printf("%s: DAMAGED, %lu problems\n", id, v->nbad - before);
	return r == 0;
}

static int open_tmp(struct error *err)
{
	const char *dir = getenv("TMPDIR");
	char *path = xasprintf("%s/cyrus-verify.XXXXXX",
			       dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0)
		error_sys(err, ERR_CANTCREAT, errno, "cannot create '%s'",
			  path);
	else
		unlink(path);
	free(path);
	return fd;
}

int cmd_backup_verify(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = { { NULL, 0, NULL, 0 } };
	struct verify v = { 0 };
	struct error err = ERROR_INIT;
	const char *dir = BACKUP_DEFAULT_DIR, *snap = NULL;
	char **ids = NULL;
	size_t n = 0;
	int ch, rc = 0;

	while ((ch = getopt_long(argc, argv, "C:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'C': break;
		default: cyrus_usage(ctx, false);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc > 2)
		cyrus_usage(ctx, false);
	if (argc == 2) {
		dir = argv[0];
		snap = argv[1];
	} else if (argc == 1) {
		if (backupcmd_is_dir(argv[0]))
			dir = argv[0];
		else
			snap = argv[0];
	}
	v.tmpfd = -1;
	if (backup_archive_open(dir, BACKUP_OPEN_READ, &v.ar, &err) < 0 ||
	    backup_snapshot_ids(v.ar, &ids, &n, &err) < 0 ||
	    (v.tmpfd = open_tmp(&err)) < 0) {
		log_error("%s", err.msg);
		backup_ids_free(ids, n);
		backup_archive_close(&v.ar);
		return error_exitcode(err.kind);
	}
	if (snap) {
		size_t i;
		for (i = 0; i < n && strcmp(ids[i], snap); i++)
			;
		if (i == n) {
			log_error("no snapshot '%s' in '%s'", snap, dir);
			rc = EX_NOINPUT;
		} else {
			verify_snapshot(&v, snap, NULL);
		}
	} else if (!n) {
		log_error("'%s' has no snapshot", dir);
		rc = EX_NOINPUT;
	} else {
		/* Oldest first: each one is read beside the one before. */
		bool prev_ok = false;
		for (size_t i = 0; i < n; i++)
			prev_ok = verify_snapshot(&v, ids[i],
						  prev_ok ? ids[i - 1] : NULL);
		/* Whole packs too: a damaged byte outside every message
		 * still breaks a by-hand tar -xzf; an index, a lookup. */
		for (size_t i = 0; i < backup_pack_count(v.ar); i++) {
			struct error e = ERROR_INIT;
			if (backup_pack_check(v.ar, i, true, &e) < 0) {
				log_error("%s", e.msg);
				v.nbad++;
			}
		}
	}
	if (!rc && v.nbad) {
		log_error("%lu problems found in '%s'", v.nbad, dir);
		rc = EX_DATAERR;
	}
	close(v.tmpfd);
	backup_ids_free(ids, n);
	backup_shaset_release(&v.bad);
	backup_archive_close(&v.ar);
	return rc;
}
