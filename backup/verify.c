/*
 * verify.c: `cyrus backup verify`: re-reads every object a snapshot needs
 * (gunzip, SHA-1 against the name, size against the manifest), checks
 * each manifest's own checksum, and that every message cyrus.index lists
 * is in the snapshot under its GUID.
 */
#include "compat.h"
#include "backup.h"

#include <getopt.h>
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
	struct backup_shaset good, bad;
	unsigned long nchecked, nbad;
	const char *snap;
};

static void damaged(struct verify *v, const char *where, const char *msg)
{
	log_error("snapshot %s: %s: %s", v->snap, where, msg);
	v->nbad++;
}

/* Checks one object once; out (may be NULL) gets its bytes. */
static bool check_object(struct verify *v, enum backup_kind kind,
			 const char *sha1, const char *size,
			 const char *where, struct buf *out)
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
	if (!out && backup_shaset_has(&v->good, sha1))
		return true;
	uint64_t sz = strtoull(size, NULL, 10);
	v->nchecked++;
	if (backup_object_read(v->ar, kind, sha1, sz, out, -1, &err) < 0) {
		damaged(v, where, err.msg);
		backup_shaset_add(&v->bad, sha1);
		return false;
	}
	backup_shaset_add(&v->good, sha1);
	return true;
}

struct uidsha {
	uint32_t uid;
	const char *sha1;
};

static int cmp_uid(const void *a, const void *b)
{
	uint32_t x = ((const struct uidsha *)a)->uid;
	uint32_t y = ((const struct uidsha *)b)->uid;
	return x < y ? -1 : x > y;
}

/* Every live record of the saved cyrus.index has its message. */
static void check_index(struct verify *v, const char *mbox,
			const struct buf *ibytes, struct uidsha *msgs,
			size_t nmsgs)
{
	struct mailbox_index idx = { 0 };
	struct error err = ERROR_INIT;
	char where[600];
	snprintf(where, sizeof(where), "%s: cyrus.index", mbox);
	if (mailbox_index_parse((const unsigned char *)ibytes->s, ibytes->len,
				&idx, NULL, &err) < 0) {
		damaged(v, where, err.msg);
		return;
	}
	qsort(msgs, nmsgs, sizeof(*msgs), cmp_uid);
	for (size_t i = 0; i < idx.nrecs; i++) {
		const struct mailbox_record *r = &idx.recs[i];
		if (r->internal_flags & MAILBOX_FLAG_EXPUNGED)
			continue;
		struct uidsha key = { r->uid, NULL };
		struct uidsha *m = nmsgs ? bsearch(&key, msgs, nmsgs,
						   sizeof(*msgs), cmp_uid)
					 : NULL;
		char guid[41], msg[200];
		mailbox_guid_hex(r->guid, guid);
		if (!m) {
			snprintf(msg, sizeof(msg), "message %u is in "
				 "cyrus.index but not in the snapshot", r->uid);
			damaged(v, mbox, msg);
		} else if (strcmp(m->sha1, guid)) {
			snprintf(msg, sizeof(msg), "message %u: stored as %s, "
				 "cyrus.index says GUID %s", r->uid, m->sha1,
				 guid);
			damaged(v, mbox, msg);
		}
	}
	mailbox_index_release(&idx);
}

static void verify_snapshot(struct verify *v, const char *id)
{
	struct backup_manifest m;
	struct error err = ERROR_INIT;
	char *path = backup_manifest_path(v->ar, id);
	v->snap = id;
	if (backup_manifest_load(path, &m, &err) < 0) {
		damaged(v, "manifest", err.msg);
		free(path);
		return;
	}
	free(path);
	unsigned long before = v->nbad;
	const char *mbox = NULL;
	struct buf ibytes = BUF_INIT;
	bool have_index = false;
	struct uidsha *msgs = NULL;
	size_t nmsgs = 0, amsgs = 0, nmbox = 0, nmsg_total = 0;
	char where[700];

	for (size_t i = 0; i <= m.nrecs; i++) {
		const struct backup_rec *r = i < m.nrecs ? &m.recs[i] : NULL;
		if (!r || backup_rec_is(&m, r, "mailbox")) {
			if (mbox && have_index)
				check_index(v, mbox, &ibytes, msgs, nmsgs);
			else if (mbox)
				damaged(v, mbox, "no cyrus.index in the "
					"snapshot");
			if (!r)
				break;
			mbox = backup_rec_field(&m, r, 1);
			nmbox++;
			have_index = false;
			buf_reset(&ibytes);
			nmsgs = 0;
			continue;
		}
		const char *t = backup_rec_field(&m, r, 0);
		if (!strcmp(t, "db") || !strcmp(t, "user") ||
		    !strcmp(t, "sieve")) {
			snprintf(where, sizeof(where), "%s %s %s", t,
				 backup_rec_field(&m, r, 1),
				 backup_rec_field(&m, r, 2));
			check_object(v, BACKUP_FILES,
				     backup_rec_field(&m, r, 3),
				     backup_rec_field(&m, r, 4), where, NULL);
		} else if (!strcmp(t, "file") && mbox) {
			const char *name = backup_rec_field(&m, r, 1);
			bool isindex = !strcmp(name, "cyrus.index");
			snprintf(where, sizeof(where), "%s: %s", mbox, name);
			if (i + 1 < m.nrecs &&
			    backup_rec_is(&m, &m.recs[i + 1], "part")) {
				/* Stored in parts: each is an object. */
				bool ok = true;
				uint64_t total = 0;
				while (i + 1 < m.nrecs &&
				       backup_rec_is(&m, &m.recs[i + 1],
						     "part")) {
					const struct backup_rec *p =
						&m.recs[++i];
					char pw[760];
					snprintf(pw, sizeof(pw), "%s part at %s",
						 where,
						 backup_rec_field(&m, p, 1));
					ok &= check_object(
						v, BACKUP_FILES,
						backup_rec_field(&m, p, 2),
						backup_rec_field(&m, p, 3), pw,
						isindex ? &ibytes : NULL);
					total += strtoull(
						backup_rec_field(&m, p, 3),
						NULL, 10);
				}
				if (ok && total != strtoull(
						 backup_rec_field(&m, r, 3),
						 NULL, 10)) {
					damaged(v, where, "its parts do not "
						"add up to its size");
					ok = false;
				}
				if (ok && isindex) {
					char h[BACKUP_SHA1_HEX];
					backup_sha1_hex(ibytes.s, ibytes.len,
							h);
					if (strcmp(h, backup_rec_field(&m, r,
								       2))) {
						damaged(v, where, "its parts "
							"do not make the file");
						ok = false;
					}
				}
				if (ok && isindex)
					have_index = true;
			} else if (check_object(v, BACKUP_FILES,
						backup_rec_field(&m, r, 2),
						backup_rec_field(&m, r, 3),
						where,
						isindex ? &ibytes : NULL) &&
				   isindex) {
				have_index = true;
			}
		} else if (!strcmp(t, "msg") && mbox) {
			snprintf(where, sizeof(where), "%s: message %s", mbox,
				 backup_rec_field(&m, r, 1));
			check_object(v, BACKUP_MESSAGES,
				     backup_rec_field(&m, r, 2),
				     backup_rec_field(&m, r, 3), where, NULL);
			if (nmsgs == amsgs) {
				amsgs = amsgs ? 2 * amsgs : 256;
				msgs = xrealloc(msgs, amsgs * sizeof(*msgs));
			}
			msgs[nmsgs].uid = (uint32_t)strtoul(
				backup_rec_field(&m, r, 1), NULL, 10);
			msgs[nmsgs++].sha1 = backup_rec_field(&m, r, 2);
			nmsg_total++;
		}
	}
	if (backup_manifest_find(&m, "incomplete"))
		damaged(v, "manifest", "the snapshot is incomplete: some "
			"mailboxes failed when it was made");
	if (v->nbad == before)
		printf("%s: ok, %zu mailboxes, %zu messages\n", id, nmbox,
		       nmsg_total);
	else
		printf("%s: DAMAGED, %lu problems\n", id, v->nbad - before);
	free(msgs);
	buf_release(&ibytes);
	backup_manifest_release(&m);
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
	if (backup_archive_open(dir, BACKUP_OPEN_READ, &v.ar, &err) < 0 ||
	    backup_snapshot_ids(v.ar, &ids, &n, &err) < 0) {
		log_error("%s", err.msg);
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
			verify_snapshot(&v, snap);
		}
	} else if (!n) {
		log_error("'%s' has no snapshot", dir);
		rc = EX_NOINPUT;
	} else {
		for (size_t i = 0; i < n; i++)
			verify_snapshot(&v, ids[i]);
	}
	if (!rc && v.nbad) {
		log_error("%lu problems found in '%s'", v.nbad, dir);
		rc = EX_DATAERR;
	}
	backup_ids_free(ids, n);
	backup_shaset_release(&v.good);
	backup_shaset_release(&v.bad);
	backup_archive_close(&v.ar);
	return rc;
}
