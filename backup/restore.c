/*
 * restore.c: `cyrus backup restore`: puts mailboxes of a snapshot back
 * into a stopped store, under their own name or a new one.
 *
 * Per mailbox, in this order (a failure undoes what this mailbox wrote):
 *   1. the files: message files, cyrus.cache, cyrus.annotations, then
 *      cyrus.index and cyrus.header, each written beside its target and
 *      renamed; under a new name (or a new uniqueid) cyrus.header gets
 *      the new name, uniqueid and quota root, and cyrus.index the new
 *      header CRC: nothing else changes (UIDs, flags, internaldates,
 *      uidvalidity, modseqs are the snapshot's);
 *   2. syncfs, so that the files are on disk before anything names them;
 *   3. the mailboxes.db entry (N and I records, one transaction);
 *   4. its usage added to its quota root (lib/quota.h, under the quota
 *      database lock; a root the store lacks comes back from the
 *      snapshot with its limits and no usage first). --force first takes
 *      the replaced mailbox's usage off its root.
 */
#include "compat.h"
#include "backup.h"

#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "backup_archive.h"
#include "backup_manifest.h"
#include "buf.h"
#include "config.h"
#include "cyrus.h"
#include "cyrusdb.h"
#include "dbset.h"
#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "mailbox.h"
#include "mboxlist.h"
#include "mboxname.h"
#include "mboxpath.h"
#include "procscan.h"
#include "quota.h"
#include "xmalloc.h"

struct block {
	const char *name; /* in the snapshot */
	size_t first, last; /* its records: recs[first..last) */
	char *target;
};

struct restore {
	struct cyrus_ctx *ctx;
	struct config *cfg;
	struct backup_archive *ar;
	struct backup_manifest m;
	struct mboxlist *ml;
	struct quotadb *qdb;
	bool dry, force, all;
	const char *as, *base;
	struct block *blocks;
	size_t nblocks;
	/* Files written for the current mailbox (undone on failure). */
	char **made;
	size_t nmade;
};

static void made_add(struct restore *r, const char *path)
{
	r->made = xrealloc(r->made, (r->nmade + 1) * sizeof(char *));
	r->made[r->nmade++] = xstrdup(path);
}

static void made_clear(struct restore *r, bool undo)
{
	for (size_t i = r->nmade; i-- > 0;) {
		if (undo && unlink(r->made[i]) < 0 && errno == EISDIR)
			rmdir(r->made[i]);
		free(r->made[i]);
	}
	r->nmade = 0;
}

static int mkdirs(struct restore *r, const char *dir, struct error *err)
{
	struct stat st;
	if (stat(dir, &st) == 0)
		return 0;
	if (fsutil_mkdir_parents(dir, 0755) < 0 ||
	    (mkdir(dir, 0755) < 0 && errno != EEXIST))
		return error_sys(err, ERR_CANTCREAT, errno,
				 "cannot create '%s'", dir);
	(void)r;
	return 0;
}

static char *dir_of(const char *path)
{
	char *d = xstrdup(path);
	char *s = strrchr(d, '/');
	if (s)
		*s = '\0';
	return d;
}

static const char *field(const struct restore *r, size_t rec, size_t i)
{
	return backup_rec_field(&r->m, &r->m.recs[rec], i);
}

static bool rec_is(const struct restore *r, size_t rec, const char *type)
{
	return backup_rec_is(&r->m, &r->m.recs[rec], type);
}

/* A uniqueid as Debian's 3.6.1 makes them: 24 of [0-9a-z]. */
static char *new_uniqueid(void)
{
	static const char set[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	unsigned char rnd[24];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd))
		BUG("cannot read /dev/urandom");
	close(fd);
	char *id = xmalloc(25);
	for (int i = 0; i < 24; i++)
		id[i] = set[rnd[i] % 36];
	id[24] = '\0';
	return id;
}

static bool quota_exists(struct restore *r, const char *root)
{
	struct quota q;
	struct error err = ERROR_INIT;
	quota_init(&q, root);
	bool ok = r->qdb && quotadb_read(r->qdb, &q, NULL, &err) == 0;
	quota_release(&q);
	return ok;
}

/* The quota root a mailbox name falls under, as the server finds it
 * (NULL: none). Malloc'd. */
static char *quota_root_of(struct restore *r, const char *name)
{
	char *root = NULL;
	struct error err = ERROR_INIT;
	if (!r->qdb || quotadb_findroot(r->qdb, name, &root, &err) != 1)
		return NULL;
	return root;
}

/* The snapshot's quota record for root, or NULL. */
static const struct backup_rec *snap_quota(struct restore *r,
					   const char *root)
{
	for (size_t i = 0; i < r->m.nrecs; i++)
		if (rec_is(r, i, "quota") && !strcmp(field(r, i, 1), root))
			return &r->m.recs[i];
	return NULL;
}

/*
 * A quota root the snapshot had and the store lacks comes back with the
 * snapshot's limits and no usage: the restored mailboxes add theirs.
 */
static int ensure_root(struct restore *r, const char *root,
		       struct error *err)
{
	const struct backup_rec *rec = snap_quota(r, root);
	struct quota q;
	if (!r->qdb || !rec || quota_exists(r, root))
		return 0;
	quota_init(&q, root);
	int ret = quota_parse(backup_rec_field(&r->m, rec, 2),
			      backup_rec_len(&r->m, rec, 2), false, &q, err);
	if (ret == 0) {
		for (int i = 0; i < QUOTA_NUMRESOURCES; i++)
			q.useds[i] = 0;
		ret = quotadb_write(r->qdb, &q, NULL, err);
	}
	if (ret == 0)
		log_info("quota root '%s' restored", root);
	quota_release(&q);
	return ret;
}

/* Adds sign * usage to root's usage, under the database lock. */
static int quota_adjust(struct restore *r, const char *root,
			const long long usage[QUOTA_NUMRESOURCES], int sign,
			struct error *err)
{
	struct cyrusdb_txn *tid = NULL;
	struct quota q;
	if (!r->qdb || !root)
		return 0;
	quota_init(&q, root);
	int ret = quotadb_read(r->qdb, &q, &tid, err);
	if (ret < 0 && err->kind == ERR_NOINPUT) {
		error_clear(err);
		if (tid)
			quotadb_abort(r->qdb, &tid);
		quota_release(&q);
		return 0; /* no such root: nothing to count */
	}
	if (ret == 0) {
		for (int i = 0; i < QUOTA_NUMRESOURCES; i++) {
			q.useds[i] += sign * usage[i];
			if (q.useds[i] < 0)
				q.useds[i] = 0;
		}
		ret = quotadb_write(r->qdb, &q, &tid, err);
	}
	if (ret == 0)
		ret = quotadb_commit(r->qdb, &tid, err);
	else if (tid)
		quotadb_abort(r->qdb, &tid);
	quota_release(&q);
	return ret;
}

/* Removes the files of an existing mailbox that --force replaces: its
 * cyrus.* files and "<uid>." message files; other files stay. */
static bool mailbox_file(const char *n)
{
	if (!strncmp(n, "cyrus.", 6))
		return true;
	size_t l = strspn(n, "0123456789");
	return l && n[l] == '.' && !n[l + 1];
}

static int remove_mailbox_files(struct restore *r,
				const struct mboxlist_entry *old,
				struct error *err)
{
	char *paths[5] = { 0 };
	if (mailbox_paths(r->cfg, &r->ml->ns, old, &paths[0], &paths[1],
			  &paths[2], &paths[3], &paths[4], err) < 0)
		return -1;
	/* What it counted under its quota root goes first. */
	struct mailbox_index oi = { 0 };
	if (mailbox_index_read(paths[1], &oi, NULL, err) == 0) {
		long long usage[QUOTA_NUMRESOURCES];
		char *root = quota_root_of(r, old->name);
		quota_mailbox_usage(&oi.h, usage);
		if (quota_adjust(r, root, usage, -1, err) < 0)
			error_clear(err);
		free(root);
		mailbox_index_release(&oi);
	}
	error_clear(err);
	char *dirs[4] = { dir_of(paths[0]), dir_of(paths[2]),
			  xstrdup(paths[3]), xstrdup(paths[4]) };
	for (int i = 0; i < 4; i++) {
		DIR *d = opendir(dirs[i]);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (!mailbox_file(de->d_name))
				continue;
			char *p = xasprintf("%s/%s", dirs[i], de->d_name);
			unlink(p);
			free(p);
		}
		if (d)
			closedir(d);
	}
	log_notice("removed the files of %s (restore --force)", old->name);
	for (int i = 0; i < 4; i++)
		free(dirs[i]);
	for (int i = 0; i < 5; i++)
		free(paths[i]);
	return 0;
}

static int put_file(struct restore *r, enum backup_kind kind,
		    const char *sha1, const char *size, const char *dst,
		    struct error *err)
{
	if (backup_object_extract(r->ar, kind, sha1,
				  strtoull(size, NULL, 10), dst, err) < 0)
		return -1;
	made_add(r, dst);
	return 0;
}

/* How many part records follow the file record rec. */
static size_t nparts_of(const struct restore *r, size_t rec)
{
	size_t n = 0;
	while (rec + n + 1 < r->m.nrecs && rec_is(r, rec + n + 1, "part"))
		n++;
	return n;
}

/* The file of record rec (whole or in parts) to dst, beside and renamed. */
static int put_file_rec(struct restore *r, size_t rec, const char *dst,
			struct error *err)
{
	size_t np = nparts_of(r, rec);
	if (!np)
		return put_file(r, BACKUP_FILES, field(r, rec, 2),
				field(r, rec, 3), dst, err);
	char *tmp = xasprintf("%s.NEW", dst);
	int ret = -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0) {
		error_sys(err, ERR_CANTCREAT, errno, "cannot create '%s'", tmp);
		free(tmp);
		return -1;
	}
	for (size_t k = 1; k <= np; k++)
		if (backup_object_read(r->ar, BACKUP_FILES,
				       field(r, rec + k, 2),
				       strtoull(field(r, rec + k, 3), NULL,
						10),
				       NULL, fd, err) < 0)
			goto out;
	if (close(fd) < 0) {
		fd = -1;
		error_sys(err, ERR_IO, errno, "cannot write '%s'", tmp);
		goto out;
	}
	fd = -1;
	if (rename(tmp, dst) < 0) {
		error_sys(err, ERR_CANTCREAT, errno, "cannot rename '%s'", tmp);
		goto out;
	}
	made_add(r, dst);
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	if (ret < 0)
		unlink(tmp);
	free(tmp);
	return ret;
}

/* The bytes of the file of record rec, appended to out. */
static int read_file_rec(struct restore *r, size_t rec, struct buf *out,
			 struct error *err)
{
	size_t np = nparts_of(r, rec);
	if (!np)
		return backup_object_read(r->ar, BACKUP_FILES,
					  field(r, rec, 2),
					  strtoull(field(r, rec, 3), NULL, 10),
					  out, -1, err);
	for (size_t k = 1; k <= np; k++)
		if (backup_object_read(r->ar, BACKUP_FILES,
				       field(r, rec + k, 2),
				       strtoull(field(r, rec + k, 3), NULL,
						10),
				       out, -1, err) < 0)
			return -1;
	return 0;
}

static int restore_block(struct restore *r, const struct block *b,
			 struct error *err)
{
	struct mboxlist_entry *e = NULL, *old = NULL, *byid = NULL;
	char *hdr = NULL, *idx = NULL, *cache = NULL, *data = NULL,
	     *archive = NULL, *newid = NULL, *qroot = NULL;
	struct buf apath = BUF_INIT, hb = BUF_INIT, ib = BUF_INIT,
		   tmp = BUF_INIT;
	struct mailbox_header h;
	struct error lerr = ERROR_INIT;
	int ret = -1;
	mailbox_header_init(&h);

	/* The entry, as the snapshot has it. */
	size_t ent = SIZE_MAX;
	for (size_t i = b->first; i < b->last; i++)
		if (rec_is(r, i, "entry"))
			ent = i;
	if (ent == SIZE_MAX) {
		error_set(err, ERR_DATA, "'%s': the snapshot has no "
			  "mailboxes.db entry for it", b->name);
		goto out;
	}
	char *dbname = mboxname_intname_to_dbname(&r->ml->ns, b->name);
	int dr = mboxlist_decode(&r->ml->ns, dbname, strlen(dbname),
				 field(r, ent, 1),
				 backup_rec_len(&r->m, &r->m.recs[ent], 1), &e,
				 err);
	free(dbname);
	if (dr < 0)
		goto out;

	bool renamed = strcmp(b->target, b->name) != 0;
	if (mboxlist_lookup(r->ml, b->target, false, &old, NULL, &lerr) == 0) {
		if (!r->force) {
			error_set(err, ERR_CANTCREAT, "mailbox '%s' exists "
				  "(--force replaces it)", b->target);
			goto out;
		}
		if (remove_mailbox_files(r, old, err) < 0)
			goto out;
	}
	/* Keep the uniqueid unless another mailbox has it. */
	bool keepid = !renamed && e->uniqueid;
	if (keepid && mboxlist_lookup_by_uniqueid(r->ml, e->uniqueid, &byid,
						  NULL, &lerr) == 0) {
		struct mboxlist_entry *live = NULL;
		if (strcmp(byid->name, b->target) &&
		    mboxlist_lookup(r->ml, byid->name, false, &live, NULL,
				    &lerr) == 0)
			keepid = false;
		mboxlist_entry_free(&live);
	}
	free(e->name);
	e->name = xstrdup(b->target);
	if (!keepid) {
		newid = new_uniqueid();
		free(e->uniqueid);
		e->uniqueid = xstrdup(newid);
		for (size_t i = 0; i < e->nhistory; i++) {
			free(e->history[i].name);
			free(e->history[i].partition);
		}
		free(e->history);
		e->history = NULL;
		e->nhistory = 0;
	}
	if (!e->partition || !config_partitiondir(r->cfg, e->partition)) {
		const char *def = config_defpartition(r->cfg);
		if (!def) {
			error_set(err, ERR_CONFIG, "no partition for '%s'",
				  b->target);
			goto out;
		}
		log_warn("%s: partition '%s' is not configured, using '%s'",
			 b->target, e->partition ? e->partition : "", def);
		free(e->partition);
		e->partition = xstrdup(def);
	}
	if (mailbox_paths(r->cfg, &r->ml->ns, e, &hdr, &idx, &cache, &data,
			  &archive, err) < 0)
		goto out;
	if (!r->force && access(hdr, F_OK) == 0) {
		error_set(err, ERR_CANTCREAT, "'%s' exists although "
			  "mailboxes.db has no '%s' (--force replaces it)", hdr,
			  b->target);
		goto out;
	}
	const char *uidp = (e->mbtype & MBTYPE_LEGACY_DIRS) ? NULL
							     : e->uniqueid;
	if (mboxpath_meta(r->cfg, &r->ml->ns, e->partition, e->name, uidp,
			  MBOXPATH_ANNOTATIONS, false, &apath, err) < 0)
		goto out;

	/* 1. The files. */
	char *dirs[] = { dir_of(hdr), dir_of(idx), dir_of(cache),
			 xstrdup(data) };
	int mr = 0;
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		if (!mr)
			mr = mkdirs(r, dirs[i], err);
		free(dirs[i]);
	}
	if (mr < 0)
		goto out;
	size_t fhdr = SIZE_MAX, fidx = SIZE_MAX;
	unsigned long nmsg = 0;
	for (size_t i = b->first; i < b->last; i++) {
		if (rec_is(r, i, "msg")) {
			bool arch = !strcmp(field(r, i, 4), "archived");
			buf_reset(&tmp);
			buf_printf(&tmp, "%s/%s.", arch ? archive : data,
				   field(r, i, 1));
			if (arch && mkdirs(r, archive, err) < 0)
				goto out;
			if (put_file(r, BACKUP_MESSAGES, field(r, i, 2),
				     field(r, i, 3), tmp.s, err) < 0)
				goto out;
			nmsg++;
		} else if (rec_is(r, i, "file")) {
			const char *fn = field(r, i, 1);
			if (!strcmp(fn, "cyrus.header"))
				fhdr = i;
			else if (!strcmp(fn, "cyrus.index"))
				fidx = i;
			else if (!strcmp(fn, "cyrus.cache") &&
				 put_file_rec(r, i, cache, err) < 0)
				goto out;
			else if (!strcmp(fn, "cyrus.annotations") &&
				 put_file_rec(r, i, apath.s, err) < 0)
				goto out;
		}
	}
	if (fhdr == SIZE_MAX || fidx == SIZE_MAX) {
		error_set(err, ERR_DATA, "'%s': the snapshot lacks its "
			  "cyrus.header or cyrus.index", b->name);
		goto out;
	}
	if (read_file_rec(r, fhdr, &hb, err) < 0 ||
	    read_file_rec(r, fidx, &ib, err) < 0 ||
	    mailbox_header_parse(hb.s, hb.len, &h, err) < 0)
		goto out;

	/* The quota root: the old one if it (still or again) exists. */
	if (h.quotaroot && !renamed && ensure_root(r, h.quotaroot, err) < 0)
		goto out;
	qroot = quota_root_of(r, b->target);
	bool hchanged = renamed || !keepid ||
			strcmp(h.quotaroot ? h.quotaroot : "",
			       qroot ? qroot : "") != 0;
	if (!hchanged) {
		if (put_file_rec(r, fidx, idx, err) < 0 ||
		    put_file_rec(r, fhdr, hdr, err) < 0)
			goto out;
	} else {
		struct mailbox_index_header ih;
		uint32_t crc = 0;
		free(h.name);
		h.name = xstrdup(b->target);
		free(h.uniqueid);
		h.uniqueid = xstrdup(e->uniqueid);
		free(h.quotaroot);
		h.quotaroot = qroot ? xstrdup(qroot) : NULL;
		buf_reset(&tmp);
		mailbox_header_format(&h, &tmp);
		crc = (uint32_t)crc32(0, (const Bytef *)tmp.s, (uInt)tmp.len);
		if (mailbox_index_header_decode((const unsigned char *)ib.s,
						ib.len, &ih, NULL, err) < 0)
			goto out;
		ih.header_file_crc = crc;
		unsigned char hbuf[MAILBOX_INDEX_HEADER_SIZE];
		size_t hl = mailbox_index_header_encode(&ih, hbuf);
		if (hl > ib.len || hl != ih.start_offset) {
			error_set(err, ERR_DATA, "'%s': cyrus.index: "
				  "unexpected header length", b->name);
			goto out;
		}
		memcpy(ib.s, hbuf, hl);
		if (mailbox_write_file(idx, ib.s, ib.len, err) < 0)
			goto out;
		made_add(r, idx);
		if (mailbox_write_file(hdr, tmp.s, tmp.len, err) < 0)
			goto out;
		made_add(r, hdr);
	}

	/* 2. On disk before mailboxes.db names them. */
	int dfd = open(data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (!getenv("CYRUS_TOOLKIT_NOSYNC"))
			syncfs(dfd);
		close(dfd);
	}
	/* 3. The entry. */
	if (mboxlist_update(r->ml, e, time(NULL), NULL, err) < 0)
		goto out;
	/* 4. Its usage counts under its quota root. */
	struct mailbox_index_header nih;
	long long usage[QUOTA_NUMRESOURCES];
	if (qroot && mailbox_index_header_decode((const unsigned char *)ib.s,
						 ib.len, &nih, NULL, err) == 0) {
		quota_mailbox_usage(&nih, usage);
		if (quota_adjust(r, qroot, usage, 1, err) < 0) {
			log_error("quota usage of '%s' not updated: %s (run "
				  "'quota -f %s')", qroot, err->msg, qroot);
			error_clear(err);
		}
	}
	made_clear(r, false);
	log_notice("restored %s as %s from snapshot %s (%lu messages)",
		   b->name, b->target, field(r, 1, 1), nmsg);
	log_info("%s: restored as %s, %lu messages%s", b->name, b->target,
		 nmsg, keepid ? "" : ", new uniqueid");
	ret = 0;
out:
	made_clear(r, ret < 0);
	if (ret < 0) {
		char *d = data ? xstrdup(data) : NULL;
		if (d)
			rmdir(d);
		free(d);
	}
	mailbox_header_release(&h);
	mboxlist_entry_free(&e);
	mboxlist_entry_free(&old);
	mboxlist_entry_free(&byid);
	free(hdr);
	free(idx);
	free(cache);
	free(data);
	free(archive);
	free(newid);
	free(qroot);
	buf_release(&apath);
	buf_release(&hb);
	buf_release(&ib);
	buf_release(&tmp);
	return ret;
}

/* seen, sub and sieve of a user whose INBOX came back under its name. */
static void restore_user_files(struct restore *r, const char *userid,
			       unsigned *nerr)
{
	struct mboxname mbn;
	struct buf p = BUF_INIT;
	struct error err = ERROR_INIT;
	mboxname_init(&mbn);
	mboxname_from_userid(&r->ml->ns, &mbn, userid);
	for (size_t i = 0; i < r->m.nrecs; i++) {
		bool isuser = rec_is(r, i, "user");
		bool issieve = rec_is(r, i, "sieve");
		bool islink = rec_is(r, i, "sievelink");
		if ((!isuser && !issieve && !islink) ||
		    strcmp(field(r, i, 1), userid))
			continue;
		buf_reset(&p);
		int pr = isuser ? mboxlist_user_path(r->ml, &mbn,
						     field(r, i, 2), &p, &err)
				: mboxlist_sieve_path(r->ml, &mbn, &p, &err);
		if (pr < 0 || !p.len)
			continue;
		if (!isuser) {
			buf_addch(&p, '/');
			buf_adds(&p, field(r, i, 2));
		}
		struct stat st;
		if (lstat(p.s, &st) == 0 && !r->force)
			continue; /* never overwrite the user's newer state */
		char *d = dir_of(p.s);
		int mr = mkdirs(r, d, &err);
		free(d);
		if (mr == 0 && islink) {
			unlink(p.s);
			if (symlink(field(r, i, 3), p.s) < 0)
				mr = error_sys(&err, ERR_CANTCREAT, errno,
					       "cannot create '%s'", p.s);
		} else if (mr == 0) {
			mr = backup_object_extract(r->ar, BACKUP_FILES,
						   field(r, i, 3),
						   strtoull(field(r, i, 4),
							    NULL, 10),
						   p.s, &err);
		}
		if (mr < 0) {
			log_error("%s", err.msg);
			(*nerr)++;
		}
	}
	mboxname_release(&mbn);
	buf_release(&p);
}

/*
 * --all: the server databases the store lacks (annotations.db...) come
 * from the snapshot's locked copies; mailboxes.db is rebuilt entry by
 * entry instead, and existing databases are never replaced.
 */
static void restore_server_dbs(struct restore *r, unsigned *nerr)
{
	struct dbset_entry ents[DBSET_MAX];
	struct error err = ERROR_INIT;
	size_t n = dbset_get(r->cfg, ents);
	for (size_t i = 0; i < r->m.nrecs; i++) {
		if (!rec_is(r, i, "db") ||
		    !strcmp(field(r, i, 1), "mailboxes.db"))
			continue;
		for (size_t k = 0; k < n; k++) {
			struct stat st;
			if (strcmp(dbset_basename(&ents[k]), field(r, i, 1)) ||
			    stat(ents[k].path, &st) == 0)
				continue;
			if (backup_object_extract(r->ar, BACKUP_FILES,
						  field(r, i, 3),
						  strtoull(field(r, i, 4), NULL,
							   10),
						  ents[k].path, &err) < 0) {
				log_error("%s", err.msg);
				(*nerr)++;
			} else {
				log_info("%s restored", ents[k].path);
			}
		}
	}
	dbset_release(ents, n);
}

static int pick_snapshot(struct restore *r, const char *dir,
			 const char *snap, const char *at, char **id_r,
			 struct error *err)
{
	char **ids;
	size_t n;
	*id_r = NULL;
	if (backup_snapshot_ids(r->ar, &ids, &n, err) < 0)
		return -1;
	int ret = 0;
	if (snap) {
		size_t i;
		for (i = 0; i < n && strcmp(ids[i], snap); i++)
			;
		if (i == n)
			ret = error_set(err, ERR_NOINPUT, "no snapshot '%s' in "
					"'%s'", snap, dir);
		else
			*id_r = xstrdup(ids[i]);
	} else if (at) {
		time_t t;
		if (backupcmd_parse_time(at, &t) < 0) {
			ret = error_set(err, ERR_USAGE, "cannot read the time "
					"'%s' (YYYY-MM-DD[ HH:MM[:SS]], UTC, "
					"or @UNIXTIME)", at);
		} else {
			for (size_t i = n; i-- > 0 && !*id_r;) {
				time_t st;
				if (backupcmd_parse_time(ids[i], &st) == 0 &&
				    st <= t)
					*id_r = xstrdup(ids[i]);
			}
			if (!*id_r)
				ret = error_set(err, ERR_NOINPUT, "no snapshot "
						"in '%s' is as old as '%s'",
						dir, at);
		}
	} else if (n) {
		*id_r = xstrdup(ids[n - 1]);
	} else {
		ret = error_set(err, ERR_NOINPUT, "'%s' has no snapshot", dir);
	}
	backup_ids_free(ids, n);
	return ret;
}

static char *target_of(const struct restore *r, const char *name)
{
	if (!r->as)
		return xstrdup(name);
	return xasprintf("%s%s", r->as, name + strlen(r->base));
}

int cmd_backup_restore(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ "snapshot", required_argument, NULL, 's' },
		{ "at", required_argument, NULL, 't' },
		{ "as", required_argument, NULL, 'a' },
		{ "all", no_argument, NULL, 'A' },
		{ "force", no_argument, NULL, 'f' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct restore r = { 0 };
	struct error err = ERROR_INIT;
	const char *alt_config = NULL, *dir = BACKUP_DEFAULT_DIR;
	const char *snap = NULL, *at = NULL;
	char *id = NULL, *base = NULL;
	int ch, rc = 0, verbose = 0, qlock = -1;

	while ((ch = getopt_long(argc, argv, "C:nvf", longopts, NULL)) != -1) {
		switch (ch) {
		case 'C': alt_config = optarg; break;
		case 's': snap = optarg; break;
		case 't': at = optarg; break;
		case 'a': r.as = optarg; break;
		case 'A': r.all = true; break;
		case 'f': r.force = true; break;
		case 'n': r.dry = true; break;
		case 'v': verbose++; break;
		default: cyrus_usage(ctx, false);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc && backupcmd_is_dir(argv[0])) {
		dir = argv[0];
		argc--;
		argv++;
	}
	if ((snap && at) || (!argc && !r.all) || (argc && r.all) ||
	    (r.as && (r.all || !argc)))
		cyrus_usage(ctx, false);
	log_set_verbose(verbose);
	if (r.as) {
		/* PATTERN's fixed part is what NEWNAME replaces. */
		size_t l = strcspn(argv[0], "*%");
		base = xstrndup(argv[0], l);
		if (l && base[l - 1] == '.')
			base[l - 1] = '\0';
		r.base = base;
	}

	cyrus_setup(ctx, alt_config);
	r.ctx = ctx;
	r.cfg = ctx->cfg;
	char *mbpath = config_db_path(r.cfg, "mboxlist");
	if (!r.dry) {
		struct procscan_hit hit;
		const char *files[] = { mbpath };
		if (procscan_find_server(config_filename(r.cfg), files, 1,
					 &hit) == 1) {
			log_error("a Cyrus server is running on this "
				  "configuration (%s %ld %s): stop it first",
				  hit.comm, (long)hit.pid, hit.why);
			free(mbpath);
			free(base);
			return EX_TEMPFAIL;
		}
	}
	free(mbpath);
	if (backup_archive_open(dir, BACKUP_OPEN_READ, &r.ar, &err) < 0 ||
	    pick_snapshot(&r, dir, snap, at, &id, &err) < 0)
		goto fatal;
	char *mp = backup_manifest_path(r.ar, id);
	int lr = backup_manifest_load(mp, &r.m, &err);
	free(mp);
	if (lr < 0)
		goto fatal;
	if (backup_manifest_find(&r.m, "incomplete"))
		log_warn("snapshot %s is incomplete: some mailboxes failed "
			 "when it was made", id);
	if (mboxlist_open(r.cfg, NULL, r.dry ? 0 : CYRUSDB_CREATE, &r.ml,
			  &err) < 0)
		goto fatal;
	if (quotadb_open(r.cfg, NULL, !r.dry, &r.qdb, &err) < 0) {
		log_warn("quota database not available: %s", err.msg);
		error_clear(&err);
		r.qdb = NULL;
	}
	if (!r.dry && quota_changelock(r.cfg, &r.ml->ns, &qlock, &err) < 0)
		goto fatal;

	/* The mailboxes to restore. */
	for (size_t i = 0; i < r.m.nrecs; i++) {
		if (!rec_is(&r, i, "mailbox"))
			continue;
		if (r.nblocks)
			r.blocks[r.nblocks - 1].last = i;
		const char *name = field(&r, i, 1);
		bool want = r.all;
		for (int k = 0; k < argc && !want; k++)
			want = backupcmd_match(argv[k], name);
		if (want && r.as && strcmp(name, r.base) &&
		    (strncmp(name, r.base, strlen(r.base)) ||
		     name[strlen(r.base)] != '.')) {
			error_set(&err, ERR_USAGE, "'%s' is not '%s' or "
				  "below it: --as cannot rename it", name,
				  r.base);
			goto fatal;
		}
		r.blocks = xrealloc(r.blocks, (r.nblocks + 1) *
					      sizeof(*r.blocks));
		r.blocks[r.nblocks].name = name;
		r.blocks[r.nblocks].first = i;
		r.blocks[r.nblocks].last = r.m.nrecs;
		r.blocks[r.nblocks].target = want ? target_of(&r, name) : NULL;
		r.nblocks++;
	}
	size_t nwant = 0;
	for (size_t i = 0; i < r.nblocks; i++) {
		struct block *b = &r.blocks[i];
		struct mboxlist_entry *ex = NULL;
		struct error lerr = ERROR_INIT;
		if (!b->target)
			continue;
		nwant++;
		if (mboxname_policycheck(&r.ml->ns, b->target, &err) < 0) {
			char m[sizeof(err.msg)];
			snprintf(m, sizeof(m), "%s", err.msg);
			error_set(&err, ERR_DATA, "cannot restore as '%s': %s",
				  b->target, m);
			goto fatal;
		}
		if (mboxlist_lookup(r.ml, b->target, false, &ex, NULL,
				    &lerr) == 0 && !r.force) {
			mboxlist_entry_free(&ex);
			error_set(&err, ERR_CANTCREAT, "mailbox '%s' exists; "
				  "nothing restored (--force replaces it, "
				  "--as NEWNAME restores beside it)",
				  b->target);
			goto fatal;
		}
		mboxlist_entry_free(&ex);
	}
	if (!nwant) {
		error_set(&err, ERR_NOINPUT, "no mailbox in snapshot %s "
			  "matches '%s'", id, argc ? argv[0] : "*");
		goto fatal;
	}
	unsigned nerr = 0;
	for (size_t i = 0; i < r.nblocks; i++) {
		struct block *b = &r.blocks[i];
		if (!b->target)
			continue;
		if (r.dry) {
			unsigned long n = 0;
			for (size_t k = b->first; k < b->last; k++)
				n += rec_is(&r, k, "msg");
			printf("would restore %s as %s (%lu messages) from "
			       "snapshot %s\n", b->name, b->target, n, id);
			continue;
		}
		if (restore_block(&r, b, &err) < 0) {
			log_error("cannot restore '%s': %s", b->name, err.msg);
			rc = error_exitcode(err.kind);
			nerr++;
			error_clear(&err);
			break; /* the rest stays as it was */
		}
		/* A user's INBOX back under its own name: its user files. */
		struct mboxname mbn;
		struct buf u = BUF_INIT;
		mboxname_init(&mbn);
		mboxname_from_intname(&r.ml->ns, &mbn, b->target);
		if (!r.as && mbn.localpart && !mbn.nboxes && !mbn.isdeleted &&
		    mboxname_userid(&mbn, &u))
			restore_user_files(&r, u.s, &nerr);
		mboxname_release(&mbn);
		buf_release(&u);
	}
	if (r.all && !r.dry && !nerr)
		restore_server_dbs(&r, &nerr);
	if (!r.dry && nerr && !rc)
		rc = EX_CANTCREAT;
	goto out;
fatal:
	log_error("%s", err.msg);
	rc = error_exitcode(err.kind);
out:
	for (size_t i = 0; i < r.nblocks; i++)
		free(r.blocks[i].target);
	free(r.blocks);
	made_clear(&r, false);
	free(r.made);
	quota_changelock_release(&qlock);
	quotadb_close(&r.qdb);
	mboxlist_close(&r.ml);
	backup_manifest_release(&r.m);
	backup_archive_close(&r.ar);
	free(id);
	free(base);
	return rc;
}
