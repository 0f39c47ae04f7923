/*
 * restore.c: `cyrus backup restore`: puts mailboxes of a snapshot back,
 * under their own name or a new one, into a stopped store or beside a
 * running server.
 *
 * The manifest is read a record at a time, twice: a first pass notes the
 * mailboxes wanted (and the small records they need: quota roots, the
 * users' files, the server databases), a second restores each mailbox
 * as its records come. Memory does not grow with the number of messages.
 *
 * Per mailbox, in this order (a failure undoes what this mailbox wrote):
 *   1. the message files, cyrus.cache and cyrus.annotations, each
 *      written beside its target and renamed, into directories that no
 *      mailboxes.db entry names yet (a fresh uniqueid's, or a free name's:
 *      those are locked first, see below);
 *   2. under Cyrus's locks, in Cyrus's order -- "$QUOTACHANGE" (as quota
 *      -f and SETQUOTA take it, so no quota scan or root change runs
 *      meanwhile), the user namespace lock, the mailbox name lock, all
 *      exclusive, as imapd's CREATE takes them -- the target is checked
 *      to be still free, cyrus.index and cyrus.header are written (under
 *      a new name or uniqueid cyrus.header gets the new name, uniqueid and
 *      quota root, and cyrus.index the new header CRC: nothing else
 *      changes), a user's seen, sub and counters databases and sieve
 *      files when the user's INBOX comes back under its name and they are
 *      missing, then syncfs, so that all is on disk before anything names
 *      it;
 *   3. the mailboxes.db entry (N and I records, one transaction under the
 *      database's fcntl lock, which a running imapd shares);
 *   4. its usage added to its quota root under the quota database's lock
 *      (a root the store lacks comes back from the snapshot with its
 *      limits and no usage first); then the locks go. Until then no imapd
 *      can open the new mailbox (it waits for the name lock), so nothing
 *      is counted twice or lost.
 * --force (stopped server only) first takes the replaced mailbox's usage
 * off its root and removes its files.
 */
#include "compat.h"
#include "backup.h"

#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
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
#include "lock.h"
#include "log.h"
#include "mailbox.h"
#include "mboxlist.h"
#include "mboxname.h"
#include "mboxpath.h"
#include "procscan.h"
#include "quota.h"
#include "xmalloc.h"

/* A mailbox to restore, from the first pass. */
struct want {
	char *name;   /* in the snapshot */
	char *target;
	unsigned long nmsgs;
};

/* A small record kept from the first pass (quota, user, sieve,
 * sievelink, db): its fields, copied. */
#define KEPT_FIELDS 5
struct kept {
	char *f[KEPT_FIELDS];
	size_t len[KEPT_FIELDS];
};

/* A file record of the current mailbox, with its parts. */
struct fileref {
	bool present;
	char sha1[BACKUP_SHA1_HEX];
	uint64_t size;
	struct backup_part *parts;
	size_t nparts;
};

enum { F_HEADER, F_INDEX, F_CACHE, F_ANNOT, F_ARCHCACHE, F_N };
static const char *const fnames[F_N] = { "cyrus.header", "cyrus.index",
					 "cyrus.cache", "cyrus.annotations",
					 "archive/cyrus.cache" };

struct restore {
	struct cyrus_ctx *ctx;
	struct config *cfg;
	struct backup_archive *ar;
	struct backup_manifest_reader rd;
	struct mboxlist *ml;
	struct quotadb *qdb;
	bool dry, force, all, live;
	struct procscan_hit hit; /* the server, when live */
	const char *as, *base;
	char *snapid;
	bool incomplete;
	struct want *want;
	size_t nwant;
	struct kept *kept;
	size_t nkept;
	unsigned nerr; /* non-fatal failures (users' files, databases) */
	/* What the current mailbox made, undone if it fails: files other
	 * than messages, directories, and the directories whose message
	 * files are all ours. */
	char **made;
	size_t nmade;
	char **dirs;
	size_t ndirs;
	char *msgdirs[2];
};

/* The held locks of one mailbox. */
struct locks {
	int quota_fd, global_fd;
	struct mailbox_lock mb;
	bool held;
};

static void made_add(struct restore *r, const char *path)
{
	r->made = xrealloc(r->made, (r->nmade + 1) * sizeof(char *));
	r->made[r->nmade++] = xstrdup(path);
}

/* Files of a mailbox in its directories: cyrus.* and "<uid>.". */
static bool mailbox_file(const char *n)
{
	if (!strncmp(n, "cyrus.", 6))
		return true;
	size_t l = strspn(n, "0123456789");
	return l && n[l] == '.' && !n[l + 1];
}

static void remove_mailbox_files_in(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (!mailbox_file(de->d_name))
			continue;
		char *p = xasprintf("%s/%s", dir, de->d_name);
		unlink(p);
		free(p);
	}
	if (d)
		closedir(d);
}

/* The end of a mailbox: undo (on failure) or forget what it made. */
static void made_clear(struct restore *r, bool undo)
{
	for (size_t i = r->nmade; i-- > 0;) {
		if (undo)
			unlink(r->made[i]);
		free(r->made[i]);
	}
	r->nmade = 0;
	for (int i = 0; i < 2; i++) {
		if (undo && r->msgdirs[i])
			remove_mailbox_files_in(r->msgdirs[i]);
		free(r->msgdirs[i]);
		r->msgdirs[i] = NULL;
	}
	for (size_t i = r->ndirs; i-- > 0;) {
		if (undo)
			rmdir(r->dirs[i]);
		free(r->dirs[i]);
	}
	r->ndirs = 0;
}

static bool dir_has_mailbox_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool found = false;
	while (d && !found && (de = readdir(d)))
		found = mailbox_file(de->d_name);
	if (d)
		closedir(d);
	return found;
}

/*
 * Makes dir and its missing parents, noting each one made for the undo
 * (which removes them again if empty, as Cyrus removes the empty
 * directories above a deleted mailbox). With mbox, a dir that holds
 * message or cyrus.* files already is refused unless --force replaced
 * them: what the undo removes there is then ours.
 */
static int mkdirs(struct restore *r, const char *dir, bool mbox,
		  struct error *err)
{
	struct stat st;
	for (size_t i = 0; i < r->ndirs; i++)
		if (!strcmp(r->dirs[i], dir))
			return 0;
	if (stat(dir, &st) == 0) {
		if (mbox && !r->force && dir_has_mailbox_files(dir))
			return error_set(err, ERR_CANTCREAT, "'%s' holds "
					 "mailbox files that mailboxes.db does "
					 "not name (move them away, or "
					 "--force)", dir);
		return 0;
	}
	char *p = xstrdup(dir);
	for (char *s = strchr(p + 1, '/');; s = strchr(s + 1, '/')) {
		if (s)
			*s = '\0';
		if (mkdir(p, 0755) == 0) {
			r->dirs = xrealloc(r->dirs,
					   (r->ndirs + 1) * sizeof(char *));
			r->dirs[r->ndirs++] = xstrdup(p);
		} else if (errno != EEXIST) {
			error_sys(err, ERR_CANTCREAT, errno,
				  "cannot create '%s'", p);
			free(p);
			return -1;
		}
		if (!s)
			break;
		*s = '/';
	}
	free(p);
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

/* ---- the first pass ---- */

static void keep(struct restore *r, const struct backup_manifest_reader *rd)
{
	r->kept = xrealloc(r->kept, (r->nkept + 1) * sizeof(*r->kept));
	struct kept *k = &r->kept[r->nkept++];
	for (size_t i = 0; i < KEPT_FIELDS; i++) {
		k->len[i] = backup_manifest_flen(rd, i);
		k->f[i] = xmalloc(k->len[i] + 1);
		memcpy(k->f[i], backup_manifest_field(rd, i), k->len[i]);
		k->f[i][k->len[i]] = '\0';
	}
}

static bool kept_is(const struct kept *k, const char *type)
{
	return !strcmp(k->f[0], type);
}

static char *target_of(const struct restore *r, const char *name)
{
	if (!r->as)
		return xstrdup(name);
	return xasprintf("%s%s", r->as, name + strlen(r->base));
}

static int collect(struct restore *r, int npats, char **pats,
		   struct error *err)
{
	size_t cur = SIZE_MAX;
	int n;
	while ((n = backup_manifest_next(&r->rd, err)) > 0) {
		const struct backup_manifest_reader *rd = &r->rd;
		const char *t = backup_manifest_field(rd, 0);
		if (!strcmp(t, "mailbox")) {
			const char *name = backup_manifest_field(rd, 1);
			bool want = r->all;
			cur = SIZE_MAX;
			for (int k = 0; k < npats && !want; k++)
				want = backupcmd_match(pats[k], name);
			if (!want)
				continue;
			size_t bl = r->base ? strlen(r->base) : 0;
			if (r->as && strcmp(name, r->base) &&
			    (strncmp(name, r->base, bl) || name[bl] != '.'))
				return error_set(err, ERR_USAGE, "'%s' is not "
						 "'%s' or below it: --as "
						 "cannot rename it", name,
						 r->base);
			r->want = xrealloc(r->want,
					   (r->nwant + 1) * sizeof(*r->want));
			cur = r->nwant++;
			r->want[cur].name = xstrdup(name);
			r->want[cur].target = target_of(r, name);
			r->want[cur].nmsgs = 0;
		} else if (!strcmp(t, "msg")) {
			if (cur != SIZE_MAX)
				r->want[cur].nmsgs++;
		} else if (!strcmp(t, "id")) {
			free(r->snapid);
			r->snapid = xstrdup(backup_manifest_field(rd, 1));
		} else if (!strcmp(t, "incomplete")) {
			r->incomplete = true;
		} else if (!strcmp(t, "quota") || !strcmp(t, "user") ||
			   !strcmp(t, "sieve") || !strcmp(t, "sievelink") ||
			   !strcmp(t, "db")) {
			keep(r, rd);
		}
	}
	return n < 0 ? -1 : 0;
}

/* ---- quota ---- */

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

/*
 * A quota root the snapshot had and the store lacks comes back with the
 * snapshot's limits and no usage: the restored mailboxes add theirs.
 */
static int ensure_root(struct restore *r, const char *root,
		       struct error *err)
{
	const struct kept *rec = NULL;
	for (size_t i = 0; i < r->nkept && !rec; i++)
		if (kept_is(&r->kept[i], "quota") &&
		    !strcmp(r->kept[i].f[1], root))
			rec = &r->kept[i];
	struct quota q;
	if (!r->qdb || !rec || quota_exists(r, root))
		return 0;
	quota_init(&q, root);
	int ret = quota_parse(rec->f[2], rec->len[2], false, &q, err);
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

/*
 * Adds sign * usage of mailbox name to root, under the database lock, as
 * quota_update_useds does: a running `quota -f` that has passed the name
 * (its SCAN part) counts it too, and a user's root gets a new MODSEQ.
 */
static int quota_adjust(struct restore *r, const char *root,
			const char *name,
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
		bool scanned = q.scanmbox && strcmp(name, q.scanmbox) <= 0;
		for (int i = 0; i < QUOTA_NUMRESOURCES; i++) {
			q.useds[i] += sign * usage[i];
			if (q.useds[i] < 0)
				q.useds[i] = 0;
			if (scanned)
				q.scanuseds[i] += sign * usage[i];
		}
		if (quota_root_is_user(&r->ml->ns, root))
			q.modseq++;
		ret = quotadb_write(r->qdb, &q, &tid, err);
	}
	if (ret == 0)
		ret = quotadb_commit(r->qdb, &tid, err);
	else if (tid)
		quotadb_abort(r->qdb, &tid);
	quota_release(&q);
	return ret;
}

/* --force (stopped store): the files of the mailbox it replaces go,
 * and what it counted under its quota root. */
static int remove_mailbox_files(struct restore *r,
				const struct mboxlist_entry *old,
				struct error *err)
{
	char *paths[5] = { 0 };
	if (mailbox_paths(r->cfg, &r->ml->ns, old, &paths[0], &paths[1],
			  &paths[2], &paths[3], &paths[4], err) < 0)
		return -1;
	struct mailbox_index oi = { 0 };
	if (mailbox_index_read(paths[1], &oi, NULL, err) == 0) {
		long long usage[QUOTA_NUMRESOURCES];
		char *root = quota_root_of(r, old->name);
		quota_mailbox_usage(&oi.h, usage);
		if (quota_adjust(r, root, old->name, usage, -1, err) < 0)
			error_clear(err);
		free(root);
		mailbox_index_release(&oi);
	}
	error_clear(err);
	char *dirs[4] = { dir_of(paths[0]), dir_of(paths[2]),
			  xstrdup(paths[3]), xstrdup(paths[4]) };
	for (int i = 0; i < 4; i++)
		remove_mailbox_files_in(dirs[i]);
	log_notice("removed the files of %s (restore --force)", old->name);
	for (int i = 0; i < 4; i++)
		free(dirs[i]);
	for (int i = 0; i < 5; i++)
		free(paths[i]);
	return 0;
}

/* ---- locks ---- */

/*
 * Cyrus's order: "$QUOTACHANGE", the user namespace lock ("*U*" alone
 * for a shared name, as user_namespacelock(NULL) takes it), the mailbox
 * name lock; all exclusive, all blocking (their holders are short).
 */
static int lock_target(struct restore *r, const struct mboxlist_entry *e,
		       struct locks *lk, struct error *err)
{
	struct mboxname mbn;
	struct buf u = BUF_INIT;
	if (lk->held)
		return 0;
	if (quota_changelock(r->cfg, &r->ml->ns, &lk->quota_fd, err) < 0)
		return -1;
	mboxname_from_intname(&r->ml->ns, &mbn, e->name);
	bool shared = !mboxname_userid(&mbn, &u);
	mboxname_release(&mbn);
	buf_release(&u);
	if (shared) {
		struct buf p = BUF_INIT;
		mboxpath_lock(r->cfg, &r->ml->ns, "*U*", NULL, &p);
		int fd = open(p.s, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC,
			      0666);
		if (fd < 0 && errno == ENOENT) {
			fsutil_mkdir_parents(p.s, 0755);
			fd = open(p.s, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC,
				  0666);
		}
		if (fd < 0 || lock_fd(fd, LOCK_EXCLUSIVE, true) < 0) {
			error_sys(err, ERR_TEMPFAIL, errno, "cannot lock '%s'",
				  p.s);
			if (fd >= 0)
				close(fd);
			buf_release(&p);
			quota_changelock_release(&lk->quota_fd);
			return -1;
		}
		lk->global_fd = fd;
		buf_release(&p);
	}
	if (mailbox_lock_names(r->cfg, &r->ml->ns, e->name, e->uniqueid,
			       e->mbtype & MBTYPE_LEGACY_DIRS, LOCK_EXCLUSIVE,
			       false, &lk->mb, err) < 0) {
		if (lk->global_fd >= 0)
			close(lk->global_fd);
		lk->global_fd = -1;
		quota_changelock_release(&lk->quota_fd);
		return -1;
	}
	lk->held = true;
	return 0;
}

static void unlock_target(struct locks *lk)
{
	if (!lk->held)
		return;
	mailbox_lock_release(&lk->mb);
	if (lk->global_fd >= 0) {
		lock_unlock(lk->global_fd);
		close(lk->global_fd);
	}
	lk->global_fd = -1;
	quota_changelock_release(&lk->quota_fd);
	lk->held = false;
}

/* ---- files ---- */

/* The bytes of a file (whole or in parts) to fd. */
static int fileref_to_fd(struct restore *r, const struct fileref *f, int fd,
			 struct error *err)
{
	if (!f->nparts)
		return backup_object_read(r->ar, BACKUP_FILES, f->sha1, f->size,
					  NULL, fd, err);
	for (size_t k = 0; k < f->nparts; k++)
		if (backup_object_read(r->ar, BACKUP_FILES, f->parts[k].sha1,
				       f->parts[k].size, NULL, fd, err) < 0)
			return -1;
	return 0;
}

static int fileref_to_buf(struct restore *r, const struct fileref *f,
			  struct buf *out, struct error *err)
{
	if (!f->nparts)
		return backup_object_read(r->ar, BACKUP_FILES, f->sha1, f->size,
					  out, -1, err);
	for (size_t k = 0; k < f->nparts; k++)
		if (backup_object_read(r->ar, BACKUP_FILES, f->parts[k].sha1,
				       f->parts[k].size, out, -1, err) < 0)
			return -1;
	return 0;
}

/*
 * A file to dst: written to dst.NEW, then (with crc set, for cyrus.index)
 * its index header gets that header_file_crc, then renamed. ih_r (may be
 * NULL) gets the index header.
 */
static int put_fileref(struct restore *r, const struct fileref *f,
		       const char *dst, const uint32_t *crc,
		       struct mailbox_index_header *ih_r, struct error *err)
{
	char *tmp = xasprintf("%s.NEW", dst);
	int ret = -1;
	int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0) {
		error_sys(err, ERR_CANTCREAT, errno, "cannot create '%s'", tmp);
		free(tmp);
		return -1;
	}
	if (fileref_to_fd(r, f, fd, err) < 0)
		goto out;
	if (crc || ih_r) {
		unsigned char hb[MAILBOX_INDEX_HEADER_SIZE];
		struct mailbox_index_header ih;
		ssize_t n = pread(fd, hb, sizeof(hb), 0);
		if (n < 0 || mailbox_index_header_decode(hb, (size_t)n, &ih,
							 NULL, err) < 0) {
			if (n < 0)
				error_sys(err, ERR_IO, errno, "cannot read "
					  "'%s'", tmp);
			goto out;
		}
		if (crc) {
			ih.header_file_crc = *crc;
			size_t hl = mailbox_index_header_encode(&ih, hb);
			if (hl != ih.start_offset || hl > (size_t)n) {
				error_set(err, ERR_DATA, "'%s': unexpected "
					  "index header length", dst);
				goto out;
			}
			if (pwrite(fd, hb, hl, 0) != (ssize_t)hl) {
				error_sys(err, ERR_IO, errno, "cannot write "
					  "'%s'", tmp);
				goto out;
			}
		}
		if (ih_r)
			*ih_r = ih;
	}
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

/* Reads a file record and the part records after it into f. */
static int read_fileref(struct restore *r, struct fileref *f,
			struct error *err)
{
	int n;
	f->present = true;
	snprintf(f->sha1, sizeof(f->sha1), "%s",
		 backup_manifest_field(&r->rd, 2));
	f->size = backup_manifest_num(&r->rd, 3);
	free(f->parts);
	f->parts = NULL;
	f->nparts = 0;
	while ((n = backup_manifest_next(&r->rd, err)) > 0 &&
	       backup_manifest_is(&r->rd, "part")) {
		f->parts = xrealloc(f->parts,
				    (f->nparts + 1) * sizeof(*f->parts));
		struct backup_part *p = &f->parts[f->nparts++];
		p->offset = backup_manifest_num(&r->rd, 1);
		snprintf(p->sha1, sizeof(p->sha1), "%s",
			 backup_manifest_field(&r->rd, 2));
		p->size = backup_manifest_num(&r->rd, 3);
	}
	if (n > 0)
		backup_manifest_unread(&r->rd);
	return n < 0 ? -1 : 0;
}

/*
 * One of a user's files to path. Beside a running server, and without
 * --force, only if it is missing, atomically (link: a file the user's
 * imapd created meanwhile wins; its fcntl locks are on that file).
 */
static int put_user_file(struct restore *r, const struct kept *k,
			 const char *path, struct error *err)
{
	bool islink = kept_is(k, "sievelink");
	bool replace = r->force && !r->live;
	struct stat st;
	if (lstat(path, &st) == 0 && !replace)
		return 0; /* never overwrite the user's newer state */
	char *d = dir_of(path);
	int ret = mkdirs(r, d, false, err);
	free(d);
	if (ret < 0)
		return -1;
	if (islink) {
		if (replace)
			unlink(path);
		if (symlink(k->f[3], path) < 0)
			return errno == EEXIST ? 0
					       : error_sys(err, ERR_CANTCREAT,
							   errno, "cannot "
							   "create '%s'", path);
		made_add(r, path);
		return 0;
	}
	/* user: userid, kind, sha1, size; sieve: userid, name, sha1, size */
	const char *sha1 = k->f[3];
	uint64_t size = strtoull(k->f[4], NULL, 10);
	if (replace) {
		if (backup_object_extract(r->ar, BACKUP_FILES, sha1, size, path,
					  err) < 0)
			return -1;
		made_add(r, path);
		return 0;
	}
	char *tmp = xasprintf("%s.RESTORE", path);
	ret = backup_object_extract(r->ar, BACKUP_FILES, sha1, size, tmp, err);
	if (ret == 0) {
		if (link(tmp, path) == 0)
			made_add(r, path);
		else if (errno != EEXIST)
			ret = error_sys(err, ERR_CANTCREAT, errno,
					"cannot create '%s'", path);
	}
	unlink(tmp);
	free(tmp);
	return ret;
}

/* seen, sub, counters and sieve of a user whose INBOX e comes back under
 * its own name, where the server will look for them once e is in
 * mailboxes.db (by its uniqueid, or by name for a legacy INBOX). */
static void restore_user_files(struct restore *r,
			       const struct mboxlist_entry *e,
			       const struct mboxname *mbn, const char *userid)
{
	struct buf p = BUF_INIT;
	struct error err = ERROR_INIT;
	bool byid = e->uniqueid && !(e->mbtype & MBTYPE_LEGACY_DIRS);
	for (size_t i = 0; i < r->nkept; i++) {
		const struct kept *k = &r->kept[i];
		bool isuser = kept_is(k, "user");
		if ((!isuser && !kept_is(k, "sieve") &&
		     !kept_is(k, "sievelink")) ||
		    strcmp(k->f[1], userid))
			continue;
		buf_reset(&p);
		if (isuser && byid) {
			mboxpath_user_byid(r->cfg, e->uniqueid, k->f[2], &p);
		} else if (isuser) {
			mboxpath_user_legacy(r->cfg, mbn, k->f[2], &p);
		} else if (byid) {
			mboxpath_sieve_byid(r->cfg, e->uniqueid, &p);
		} else {
			/* user_sieve_path() reads '^' back as '.'. */
			struct mboxname user = { 0 };
			char *lp = xstrdup(mbn->localpart);
			for (char *c = lp; *c; c++)
				if (*c == '^')
					*c = '.';
			user.localpart = lp;
			user.domain = mbn->domain;
			mboxpath_sieve_legacy(r->cfg, &r->ml->ns, &user, &p);
			free(lp);
		}
		if (!isuser) {
			if (strchr(k->f[2], '/') || k->f[2][0] == '.')
				continue; /* not a plain name: never outside */
			buf_addch(&p, '/');
			buf_adds(&p, k->f[2]);
		} else if (strchr(k->f[2], '/')) {
			continue;
		}
		if (put_user_file(r, k, p.s, &err) < 0) {
			log_error("%s", err.msg);
			error_clear(&err);
			r->nerr++;
		}
	}
	buf_release(&p);
}

/* ---- one mailbox ---- */

/* Where the current mailbox's files go. */
struct paths {
	char *hdr, *idx, *cache, *data, *archive;
	struct buf annot, archcache;
};

static void paths_release(struct paths *p)
{
	free(p->hdr);
	free(p->idx);
	free(p->cache);
	free(p->data);
	free(p->archive);
	buf_release(&p->annot);
	buf_release(&p->archcache);
}

/* The archive partition's directory, made once (the undo's too). */
static int archive_dir(struct restore *r, const struct paths *p,
		       struct error *err)
{
	if (r->msgdirs[1] || !strcmp(p->archive, p->data))
		return 0;
	if (mkdirs(r, p->archive, true, err) < 0)
		return -1;
	r->msgdirs[1] = xstrdup(p->archive);
	return 0;
}

/*
 * Step 1: the mailbox's records up to the next mailbox: message files,
 * cyrus.cache, cyrus.annotations and the archive cyrus.cache are put in
 * place as they come; the other file records are kept in fr.
 */
static int put_records(struct restore *r, const struct want *w,
		       const struct paths *p, struct fileref fr[F_N],
		       unsigned long *nmsg, struct error *err)
{
	struct backup_manifest_reader *rd = &r->rd;
	struct buf tmp = BUF_INIT;
	int n, ret = -1;
	while ((n = backup_manifest_next(rd, err)) > 0) {
		if (backup_manifest_is(rd, "mailbox")) {
			backup_manifest_unread(rd);
			break;
		}
		if (backup_manifest_is(rd, "msg")) {
			bool arch = !strcmp(backup_manifest_field(rd, 4),
					    "archived");
			if (arch && archive_dir(r, p, err) < 0)
				goto out;
			buf_reset(&tmp);
			buf_printf(&tmp, "%s/%s.", arch ? p->archive : p->data,
				   backup_manifest_field(rd, 1));
			if (backup_object_extract(r->ar, BACKUP_MESSAGES,
						  backup_manifest_field(rd, 2),
						  backup_manifest_num(rd, 3),
						  tmp.s, err) < 0)
				goto out;
			(*nmsg)++;
			continue;
		}
		if (!backup_manifest_is(rd, "file"))
			continue;
		int fi;
		for (fi = 0; fi < F_N; fi++)
			if (!strcmp(backup_manifest_field(rd, 1), fnames[fi]))
				break;
		if (fi == F_N)
			continue;
		if (read_fileref(r, &fr[fi], err) < 0)
			goto out;
		const char *dst = fi == F_CACHE ? p->cache
				  : fi == F_ANNOT ? p->annot.s
				  : fi == F_ARCHCACHE ? p->archcache.s
						      : NULL;
		if (fi == F_ARCHCACHE && !strcmp(dst, p->cache)) {
			log_warn("%s: no archive partition here: the cache "
				 "records of its archived messages are not "
				 "restored", w->target);
			continue;
		}
		if (fi == F_ARCHCACHE) {
			char *ad = dir_of(dst);
			int ar = archive_dir(r, p, err);
			if (ar == 0)
				ar = mkdirs(r, ad, true, err);
			free(ad);
			if (ar < 0)
				goto out;
		}
		if (dst && put_fileref(r, &fr[fi], dst, NULL, NULL, err) < 0)
			goto out;
	}
	ret = n < 0 ? -1 : 0;
out:
	buf_release(&tmp);
	return ret;
}

static int restore_mailbox(struct restore *r, const struct want *w,
			   struct error *err)
{
	struct mboxlist_entry *e = NULL, *old = NULL, *byid = NULL;
	char *qroot = NULL;
	struct paths p = { NULL, NULL, NULL, NULL, NULL, BUF_INIT, BUF_INIT };
	struct buf hb = BUF_INIT, tmp = BUF_INIT;
	struct fileref fr[F_N];
	struct mailbox_header h;
	struct locks lk = { -1, -1, MAILBOX_LOCK_INIT, false };
	struct cyrusdb_txn *tid = NULL;
	struct error lerr = ERROR_INIT;
	struct mboxname mbn;
	struct buf userid = BUF_INIT;
	unsigned long nmsg = 0;
	int ret = -1, n;
	memset(fr, 0, sizeof(fr));
	mailbox_header_init(&h);
	mboxname_init(&mbn);

	/* The entry, as the snapshot has it: the record after "mailbox". */
	if ((n = backup_manifest_next(&r->rd, err)) < 0)
		goto out;
	if (!n || !backup_manifest_is(&r->rd, "entry")) {
		error_set(err, ERR_DATA, "'%s': the snapshot has no "
			  "mailboxes.db entry for it", w->name);
		goto out;
	}
	char *dbname = mboxname_intname_to_dbname(&r->ml->ns, w->name);
	int dr = mboxlist_decode(&r->ml->ns, dbname, strlen(dbname),
				 backup_manifest_field(&r->rd, 1),
				 backup_manifest_flen(&r->rd, 1), &e, err);
	free(dbname);
	if (dr < 0)
		goto out;

	bool renamed = strcmp(w->target, w->name) != 0;
	if (mboxlist_lookup(r->ml, w->target, false, &old, NULL, &lerr) == 0) {
		/* Checked before: only --force on a stopped store. */
		if (!r->force || r->live) {
			error_set(err, ERR_CANTCREAT, "mailbox '%s' exists",
				  w->target);
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
		if (strcmp(byid->name, w->target) &&
		    mboxlist_lookup(r->ml, byid->name, false, &live, NULL,
				    &lerr) == 0)
			keepid = false;
		mboxlist_entry_free(&live);
	}
	free(e->name);
	e->name = xstrdup(w->target);
	if (!keepid) {
		free(e->uniqueid);
		e->uniqueid = new_uniqueid();
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
				  w->target);
			goto out;
		}
		log_warn("%s: partition '%s' is not configured, using '%s'",
			 w->target, e->partition ? e->partition : "", def);
		free(e->partition);
		e->partition = xstrdup(def);
	}
	if (mailbox_paths(r->cfg, &r->ml->ns, e, &p.hdr, &p.idx, &p.cache,
			  &p.data, &p.archive, err) < 0)
		goto out;
	if (!r->force && access(p.hdr, F_OK) == 0) {
		error_set(err, ERR_CANTCREAT, "'%s' exists although "
			  "mailboxes.db has no '%s' (--force replaces it)",
			  p.hdr, w->target);
		goto out;
	}
	bool legacy = e->mbtype & MBTYPE_LEGACY_DIRS;
	if (mboxpath_meta(r->cfg, &r->ml->ns, e->partition, e->name,
			  legacy ? NULL : e->uniqueid, MBOXPATH_ANNOTATIONS,
			  false, &p.annot, err) < 0 ||
	    mboxpath_meta(r->cfg, &r->ml->ns, e->partition, e->name,
			  legacy ? NULL : e->uniqueid, MBOXPATH_ARCHIVECACHE,
			  false, &p.archcache, err) < 0)
		goto out;
	/* By-name directories are also whoever creates that name's: lock
	 * before writing there. A uniqueid's are ours alone until the entry
	 * names them. */
	if (legacy && lock_target(r, e, &lk, err) < 0)
		goto out;

	/* 1. Messages, cyrus.cache, cyrus.annotations as they come. */
	char *dirs[] = { xstrdup(p.data), dir_of(p.hdr), dir_of(p.idx),
			 dir_of(p.cache), dir_of(p.annot.s) };
	int mr = 0;
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		if (!mr)
			mr = mkdirs(r, dirs[i], true, err);
		free(dirs[i]);
	}
	if (mr < 0)
		goto out;
	r->msgdirs[0] = xstrdup(p.data);
	if (put_records(r, w, &p, fr, &nmsg, err) < 0)
		goto out;
	if (!fr[F_HEADER].present || !fr[F_INDEX].present) {
		error_set(err, ERR_DATA, "'%s': the snapshot lacks its "
			  "cyrus.header or cyrus.index", w->name);
		goto out;
	}
	if (fileref_to_buf(r, &fr[F_HEADER], &hb, err) < 0 ||
	    mailbox_header_parse(hb.s, hb.len, &h, err) < 0)
		goto out;

	/* 2. Under the locks: still free? Then cyrus.index, cyrus.header. */
	if (lock_target(r, e, &lk, err) < 0)
		goto out;
	mboxlist_entry_free(&old);
	if (mboxlist_lookup(r->ml, w->target, false, &old, NULL, &lerr) == 0 &&
	    (!r->force || r->live)) {
		error_set(err, ERR_CANTCREAT, "mailbox '%s' was created "
			  "meanwhile; nothing restored for it", w->target);
		goto out;
	}
	/* The quota root: the old one if it (still or again) exists. */
	if (h.quotaroot && !renamed && ensure_root(r, h.quotaroot, err) < 0)
		goto out;
	qroot = quota_root_of(r, w->target);
	bool hchanged = renamed || !keepid ||
			strcmp(h.quotaroot ? h.quotaroot : "",
			       qroot ? qroot : "") != 0;
	struct mailbox_index_header ih;
	if (!hchanged) {
		if (put_fileref(r, &fr[F_INDEX], p.idx, NULL, &ih, err) < 0 ||
		    put_fileref(r, &fr[F_HEADER], p.hdr, NULL, NULL, err) < 0)
			goto out;
	} else {
		free(h.name);
		h.name = xstrdup(w->target);
		free(h.uniqueid);
		h.uniqueid = xstrdup(e->uniqueid);
		free(h.quotaroot);
		h.quotaroot = qroot ? xstrdup(qroot) : NULL;
		buf_reset(&tmp);
		mailbox_header_format(&h, &tmp);
		uint32_t crc = (uint32_t)crc32(0, (const Bytef *)tmp.s,
					       (uInt)tmp.len);
		if (put_fileref(r, &fr[F_INDEX], p.idx, &crc, &ih, err) < 0)
			goto out;
		if (mailbox_write_file(p.hdr, tmp.s, tmp.len, err) < 0)
			goto out;
		made_add(r, p.hdr);
	}
	/* A user's INBOX under its own name: the user's files, before the
	 * entry lets the user's imapd look for them. */
	mboxname_from_intname(&r->ml->ns, &mbn, w->target);
	if (!r->as && mbn.localpart && !mbn.nboxes && !mbn.isdeleted &&
	    mboxname_userid(&mbn, &userid))
		restore_user_files(r, e, &mbn, userid.s);
	/* On disk before mailboxes.db names them. */
	int dfd = open(p.data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (!getenv("CYRUS_TOOLKIT_NOSYNC"))
			syncfs(dfd);
		close(dfd);
	}

	/* 3. The entry, in one transaction that checks the name again. */
	mboxlist_entry_free(&old);
	error_clear(&lerr);
	int lr = mboxlist_lookup(r->ml, w->target, false, &old, &tid, &lerr);
	if (lr < 0 && lerr.kind != ERR_NOINPUT) {
		*err = lerr;
		goto out;
	}
	if (lr == 0 && (!r->force || r->live)) {
		error_set(err, ERR_CANTCREAT, "mailbox '%s' was created "
			  "meanwhile; nothing restored for it", w->target);
		goto out;
	}
	if (mboxlist_update(r->ml, e, time(NULL), &tid, err) < 0)
		goto out;
	if (cyrusdb_commit(r->ml->db, tid) < 0) {
		tid = NULL;
		error_set(err, ERR_IO, "cannot commit mailboxes.db: %s",
			  cyrusdb_errmsg(r->ml->db));
		goto out;
	}
	tid = NULL;

	/* 4. Its usage counts under its quota root. */
	long long usage[QUOTA_NUMRESOURCES];
	quota_mailbox_usage(&ih, usage);
	if (qroot && quota_adjust(r, qroot, w->target, usage, 1, err) < 0) {
		log_error("quota usage of '%s' not updated: %s (run "
			  "'quota -f %s')", qroot, err->msg, qroot);
		error_clear(err);
		r->nerr++;
	}
	made_clear(r, false);
	log_notice("restored %s as %s from snapshot %s (%lu messages)",
		   w->name, w->target, r->snapid ? r->snapid : "?", nmsg);
	log_info("%s: restored as %s, %lu messages%s", w->name, w->target,
		 nmsg, keepid ? "" : ", new uniqueid");
	ret = 0;
out:
	if (tid)
		cyrusdb_abort(r->ml->db, tid);
	if (ret < 0) {
		/* Skip the rest of this mailbox's records. */
		while (backup_manifest_next(&r->rd, &lerr) > 0)
			if (backup_manifest_is(&r->rd, "mailbox")) {
				backup_manifest_unread(&r->rd);
				break;
			}
	}
	made_clear(r, ret < 0);
	unlock_target(&lk);
	for (int i = 0; i < F_N; i++)
		free(fr[i].parts);
	mailbox_header_release(&h);
	mboxname_release(&mbn);
	mboxlist_entry_free(&e);
	mboxlist_entry_free(&old);
	mboxlist_entry_free(&byid);
	paths_release(&p);
	free(qroot);
	buf_release(&hb);
	buf_release(&tmp);
	buf_release(&userid);
	return ret;
}

/*
 * --all: the server databases the store lacks (annotations.db...) come
 * from the snapshot's locked copies; mailboxes.db is rebuilt entry by
 * entry instead, and existing databases are never replaced.
 */
static void restore_server_dbs(struct restore *r)
{
	struct dbset_entry ents[DBSET_MAX];
	struct error err = ERROR_INIT;
	size_t n = dbset_get(r->cfg, ents);
	for (size_t i = 0; i < r->nkept; i++) {
		const struct kept *k = &r->kept[i];
		if (!kept_is(k, "db") || !strcmp(k->f[1], "mailboxes.db"))
			continue;
		for (size_t j = 0; j < n; j++) {
			struct stat st;
			if (strcmp(dbset_basename(&ents[j]), k->f[1]) ||
			    stat(ents[j].path, &st) == 0)
				continue;
			if (backup_object_extract(r->ar, BACKUP_FILES, k->f[3],
						  strtoull(k->f[4], NULL, 10),
						  ents[j].path, &err) < 0) {
				log_error("%s", err.msg);
				error_clear(&err);
				r->nerr++;
			} else {
				log_info("%s restored", ents[j].path);
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

/* Before anything is written: every target is a name Cyrus takes, and
 * free (or --force on a stopped store). */
static int check_targets(struct restore *r, struct error *err)
{
	for (size_t i = 0; i < r->nwant; i++) {
		const char *t = r->want[i].target;
		struct mboxlist_entry *ex = NULL;
		struct error lerr = ERROR_INIT;
		if (mboxname_policycheck(&r->ml->ns, t, err) < 0) {
			char m[sizeof(err->msg)];
			snprintf(m, sizeof(m), "%s", err->msg);
			return error_set(err, ERR_DATA, "cannot restore as "
					 "'%s': %s", t, m);
		}
		bool exists = mboxlist_lookup(r->ml, t, false, &ex, NULL,
					      &lerr) == 0;
		mboxlist_entry_free(&ex);
		if (!exists)
			continue;
		/* Replacing it would pull its UIDs and modseqs back under
		 * the imapds and clients that have it open. */
		if (r->live)
			return error_set(err, ERR_TEMPFAIL, "mailbox '%s' "
					 "exists and a Cyrus server is "
					 "running on this configuration (%s "
					 "%ld): nothing restored; --as NEWNAME "
					 "restores beside it (--force replaces "
					 "it only in a stopped store)", t,
					 r->hit.comm, (long)r->hit.pid);
		if (!r->force)
			return error_set(err, ERR_CANTCREAT, "mailbox '%s' "
					 "exists; nothing restored (--force "
					 "replaces it, --as NEWNAME restores "
					 "beside it)", t);
	}
	return 0;
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
	int ch, rc = 0, verbose = 0;

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
	r.rd.fd = -1;
	char *mbpath = config_db_path(r.cfg, "mboxlist");
	const char *files[] = { mbpath };
	r.live = procscan_find_server(config_filename(r.cfg), files, 1,
				      &r.hit) == 1;
	free(mbpath);
	if (r.live && r.all && !r.dry) {
		log_error("a Cyrus server is running on this configuration "
			  "(%s %ld %s): restore --all needs a stopped one",
			  r.hit.comm, (long)r.hit.pid, r.hit.why);
		free(base);
		return EX_TEMPFAIL;
	}
	if (backup_archive_open(dir, BACKUP_OPEN_READ, &r.ar, &err) < 0 ||
	    pick_snapshot(&r, dir, snap, at, &id, &err) < 0)
		goto fatal;
	char *mp = backup_manifest_path(r.ar, id);
	int lr = backup_manifest_open(mp, &r.rd, &err);
	free(mp);
	if (lr < 0 || collect(&r, argc, argv, &err) < 0)
		goto fatal;
	if (!r.snapid)
		r.snapid = xstrdup(id);
	if (r.incomplete)
		log_warn("snapshot %s is incomplete: some mailboxes failed "
			 "when it was made", id);
	if (!r.nwant) {
		error_set(&err, ERR_NOINPUT, "no mailbox in snapshot %s "
			  "matches '%s'", id, argc ? argv[0] : "*");
		goto fatal;
	}
	if (mboxlist_open(r.cfg, NULL, r.dry ? 0 : CYRUSDB_CREATE, &r.ml,
			  &err) < 0)
		goto fatal;
	if (quotadb_open(r.cfg, NULL, !r.dry, &r.qdb, &err) < 0) {
		log_warn("quota database not available: %s", err.msg);
		error_clear(&err);
		r.qdb = NULL;
	}
	if (check_targets(&r, &err) < 0)
		goto fatal;
	if (r.dry) {
		for (size_t i = 0; i < r.nwant; i++)
			printf("would restore %s as %s (%lu messages) from "
			       "snapshot %s%s\n", r.want[i].name,
			       r.want[i].target, r.want[i].nmsgs, id,
			       r.live ? " beside the running server" : "");
		goto out;
	}
	if (r.live)
		log_info("a Cyrus server is running (%s %ld): restoring "
			 "through its locks", r.hit.comm, (long)r.hit.pid);

	/* The second pass: each wanted mailbox as its records come. */
	if (backup_manifest_rewind(&r.rd, &err) < 0)
		goto fatal;
	size_t next = 0;
	while (next < r.nwant && backup_manifest_next(&r.rd, &err) > 0) {
		if (!backup_manifest_is(&r.rd, "mailbox") ||
		    strcmp(backup_manifest_field(&r.rd, 1), r.want[next].name))
			continue;
		if (restore_mailbox(&r, &r.want[next], &err) < 0) {
			log_error("cannot restore '%s': %s", r.want[next].name,
				  err.msg);
			rc = error_exitcode(err.kind);
			error_clear(&err);
			break; /* the rest stays as it was */
		}
		next++;
	}
	if (!rc && next < r.nwant) {
		if (!err.msg[0])
			error_set(&err, ERR_DATA, "'%s': the manifest "
				  "changed between its two readings",
				  r.want[next].name);
		goto fatal;
	}
	if (!rc && config_getswitch(r.cfg, "conversations"))
		log_warn("conversations are on: the users' conversations.db "
			 "does not count the restored messages until "
			 "'ctl_conversationsdb -R USER' counts it again");
	if (r.all && !rc && !r.nerr)
		restore_server_dbs(&r);
	if (r.nerr && !rc)
		rc = EX_CANTCREAT;
	goto out;
fatal:
	log_error("%s", err.msg);
	rc = error_exitcode(err.kind);
out:
	for (size_t i = 0; i < r.nwant; i++) {
		free(r.want[i].name);
		free(r.want[i].target);
	}
	free(r.want);
	for (size_t i = 0; i < r.nkept; i++)
		for (size_t k = 0; k < KEPT_FIELDS; k++)
			free(r.kept[i].f[k]);
	free(r.kept);
	made_clear(&r, false);
	free(r.made);
	free(r.dirs);
	quotadb_close(&r.qdb);
	mboxlist_close(&r.ml);
	backup_manifest_close(&r.rd);
	backup_archive_close(&r.ar);
	free(r.snapid);
	free(id);
	free(base);
	return rc;
}
