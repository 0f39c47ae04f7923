/*
 * backup.c: `cyrus backup`: the subcommand switch and `create`.
 * The archive format is doc/backup-format.md.
 */
#include "compat.h"
#include "backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup_archive.h"
#include "backup_manifest.h"
#include "buf.h"
#include "commands.h"
#include "config.h"
#include "cyrus.h"
#include "cyrusdb.h"
#include "dbset.h"
#include "error.h"
#include "log.h"
#include "mailbox.h"
#include "mboxlist.h"
#include "mboxname.h"
#include "mboxpath.h"
#include "xmalloc.h"

/* ---- shared helpers ---- */

static bool match_at(const char *p, const char *n)
{
	for (; *p; p++, n++) {
		if (*p == '*') {
			for (const char *t = n;; t++) {
				if (match_at(p + 1, t))
					return true;
				if (!*t)
					return false;
			}
		}
		if (*p == '%') {
			for (const char *t = n;; t++) {
				if (match_at(p + 1, t))
					return true;
				if (!*t || *t == '.')
					return false;
			}
		}
		if (*p != *n)
			return false;
	}
	return *n == '\0';
}

bool backupcmd_match(const char *pat, const char *name)
{
	return match_at(pat, name);
}

bool backupcmd_is_dir(const char *arg)
{
	return strchr(arg, '/') != NULL;
}

void backupcmd_fmt_time(time_t t, char out[32])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm);
}

int backupcmd_parse_time(const char *s, time_t *t_r)
{
	static const char *const fmts[] = {
		"%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%SZ",
		"%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y%m%dT%H%M%SZ",
		"%Y-%m-%d",
	};
	if (s[0] == '@') {
		char *end;
		long long v = strtoll(s + 1, &end, 10);
		if (!s[1] || *end)
			return -1;
		*t_r = (time_t)v;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(fmts); i++) {
		struct tm tm = { 0 };
		const char *end = strptime(s, fmts[i], &tm);
		/* A snapshot id may carry "-2". */
		if (end && (!*end || (i == 5 && *end == '-'))) {
			*t_r = timegm(&tm);
			return 0;
		}
	}
	return -1;
}

/* ---- create ---- */

/* A file record of the current mailbox in the previous snapshot. */
struct prev_file {
	char *name; /* "cyrus.index" */
	char *stat;
	char sha1[BACKUP_SHA1_HEX];
	uint64_t size;
	struct backup_part *parts;
	size_t nparts;
};

struct msgrec {
	uint32_t uid;
	char sha1[BACKUP_SHA1_HEX];
	uint64_t size;
	bool archived;
};

struct metafile {
	const char *name; /* "cyrus.cache" */
	char sha1[BACKUP_SHA1_HEX];
	uint64_t size;
	char stat[96];
	bool present;
	char *tmp; /* raw copy made under the lock, or NULL */
	struct backup_part *parts; /* stored in parts (malloc'd) */
	size_t nparts;
};

struct create {
	struct cyrus_ctx *ctx;
	struct config *cfg;
	struct backup_archive *ar;
	struct mboxlist *ml;
	struct backup_manifest_writer w;
	bool full, dry, progress;
	/* The newest snapshot, read alongside (both in mailbox order), and
	 * the file records of the current mailbox there. */
	struct backup_manifest_side prevside;
	struct prev_file *prev;
	size_t nprev;
	char **names;
	size_t nnames, anames;
	char **users;
	size_t nusers;
	char **qroots;
	size_t nqroots;
	uint64_t nmailboxes, nmessages, bytes, newmsgs;
	enum error_kind worst;
	unsigned nerrors;
	/* The archive cannot be written (full, read-only): the run stops
	 * and writes no snapshot, rather than one with holes. */
	bool stop;
	struct error stop_err;
};

static void fail(struct create *c, const struct error *err)
{
	int e = err->errnum;
	if (e == ENOSPC || e == EDQUOT || e == EFBIG || e == EROFS) {
		if (!c->stop)
			c->stop_err = *err;
		c->stop = true;
		return;
	}
	log_error("%s", err->msg);
	c->worst = c->nerrors++ ? error_worst(c->worst, err->kind)
				: err->kind;
}

/* Manifest records; a dry run writes none. */
static void madd(struct create *c, const char *type, size_t n,
		 const char *const *f)
{
	if (!c->dry)
		backup_manifest_add(&c->w, type, n, f);
}

static void maddn(struct create *c, const char *type, size_t n,
		  const char *const *f, const size_t *l)
{
	if (!c->dry)
		backup_manifest_addn(&c->w, type, n, f, l);
}

static void add_unique(char ***list, size_t *n, const char *s)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*list)[i], s))
			return;
	*list = xrealloc(*list, (*n + 1) * sizeof(char *));
	(*list)[(*n)++] = xstrdup(s);
}

static void free_list(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

/* The newest snapshot, to be read alongside: unchanged files are not
 * read again. A damaged manifest only costs speed. */
static void open_prev(struct create *c)
{
	char **ids = NULL;
	size_t n = 0;
	struct error err = ERROR_INIT;
	if (c->full || backup_snapshot_ids(c->ar, &ids, &n, &err) < 0 || !n) {
		backup_ids_free(ids, n);
		return;
	}
	char *path = backup_manifest_path(c->ar, ids[n - 1]);
	backup_ids_free(ids, n);
	if (backup_side_open(&c->prevside, path, &err) < 0)
		log_info("not using the previous snapshot: %s", err.msg);
	free(path);
}

static void prev_clear(struct create *c)
{
	for (size_t i = 0; i < c->nprev; i++) {
		free(c->prev[i].name);
		free(c->prev[i].stat);
		free(c->prev[i].parts);
	}
	free(c->prev);
	c->prev = NULL;
	c->nprev = 0;
}

/* The file records of mailbox mbox in the previous snapshot. */
static void prev_enter(struct create *c, const char *mbox)
{
	struct backup_manifest_reader *rd = &c->prevside.rd;
	struct prev_file *p = NULL;
	prev_clear(c);
	if (!c->prevside.ok || !backup_side_seek(&c->prevside, mbox))
		return;
	while (backup_side_next(&c->prevside)) {
		if (backup_manifest_is(rd, "msg"))
			break; /* the files come first */
		if (backup_manifest_is(rd, "part") && p) {
			size_t n = p->nparts + 1;
			p->parts = xrealloc(p->parts, n * sizeof(*p->parts));
			struct backup_part *bp = &p->parts[p->nparts++];
			bp->offset = backup_manifest_num(rd, 1);
			snprintf(bp->sha1, sizeof(bp->sha1), "%s",
				 backup_manifest_field(rd, 2));
			bp->size = backup_manifest_num(rd, 3);
			continue;
		}
		p = NULL;
		if (!backup_manifest_is(rd, "file") ||
		    backup_manifest_nfields(rd) < 5 ||
		    !backup_sha1_valid(backup_manifest_field(rd, 2)))
			continue;
		c->prev = xrealloc(c->prev, (c->nprev + 1) * sizeof(*c->prev));
		p = &c->prev[c->nprev++];
		p->name = xstrdup(backup_manifest_field(rd, 1));
		p->stat = xstrdup(backup_manifest_field(rd, 4));
		snprintf(p->sha1, sizeof(p->sha1), "%s",
			 backup_manifest_field(rd, 2));
		p->size = backup_manifest_num(rd, 3);
		p->parts = NULL;
		p->nparts = 0;
	}
}

static const struct prev_file *find_prev(const struct create *c,
					 const char *file)
{
	for (size_t i = 0; i < c->nprev; i++)
		if (!strcmp(c->prev[i].name, file))
			return &c->prev[i];
	return NULL;
}

static void stat_key(const struct stat *st, char out[96])
{
	snprintf(out, 96, "%llu:%llu:%lld%09ld",
		 (unsigned long long)st->st_ino,
		 (unsigned long long)st->st_size, (long long)st->st_mtim.tv_sec,
		 st->st_mtim.tv_nsec);
}

static int copy_file(const char *src, const char *dst, struct error *err)
{
	char buf[65536];
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return error_sys(err, error_kind_from_errno(errno), errno,
				 "cannot open '%s'", src);
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		close(in);
		return error_sys(err, ERR_CANTCREAT, errno,
				 "cannot create '%s'", dst);
	}
	int r = 0;
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = error_sys(err, ERR_IO, errno, "cannot read '%s'",
				      src);
			break;
		}
		if (n == 0)
			break;
		if (write(out, buf, (size_t)n) != n) {
			r = error_sys(err, ERR_IO, errno, "cannot write '%s'",
				      dst);
			break;
		}
	}
	close(in);
	if (close(out) < 0 && !r)
		r = error_sys(err, ERR_IO, errno, "cannot write '%s'", dst);
	if (r)
		unlink(dst);
	return r;
}

/*
 * Under the mailbox lock: note the file's identity, and unless it is the
 * one the last snapshot stored, copy it aside (dry: remember the path).
 */
static int grab_meta(struct create *c, const char *path,
		     struct metafile *mf, struct error *err)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return error_sys(err, ERR_IO, errno, "cannot stat '%s'", path);
	}
	mf->present = true;
	stat_key(&st, mf->stat);
	const struct prev_file *p = c->full ? NULL : find_prev(c, mf->name);
	if (p && !strcmp(p->stat, mf->stat) &&
	    (p->nparts ? backup_object_exists(c->ar, BACKUP_FILES,
					      p->parts[0].sha1)
		       : backup_object_exists(c->ar, BACKUP_FILES, p->sha1))) {
		memcpy(mf->sha1, p->sha1, sizeof(mf->sha1));
		mf->size = p->size;
		if (p->nparts) {
			mf->parts = xmemdup(p->parts,
					    p->nparts * sizeof(*p->parts));
			mf->nparts = p->nparts;
		}
		return 0;
	}
	if (c->dry) {
		mf->tmp = xstrdup(path);
		return 0;
	}
	mf->tmp = backup_archive_tmpname(c->ar, "meta");
	if (copy_file(path, mf->tmp, err) < 0) {
		free(mf->tmp);
		mf->tmp = NULL;
		return -1;
	}
	return 0;
}

static int store_meta(struct create *c, struct metafile *mf,
		      struct error *err)
{
	if (!mf->tmp)
		return 0;
	int r = -1, fd = open(mf->tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		error_sys(err, ERR_IO, errno, "cannot open '%s'", mf->tmp);
	else
		r = backup_object_put_parts(c->ar, BACKUP_FILES, fd, NULL, 0,
					    mf->sha1, &mf->size, &mf->parts,
					    &mf->nparts, err);
	if (fd >= 0)
		close(fd);
	if (!c->dry)
		unlink(mf->tmp);
	free(mf->tmp);
	mf->tmp = NULL;
	return r;
}

static void note_user(struct create *c, const char *intname)
{
	struct mboxname mbn;
	struct buf u = BUF_INIT;
	mboxname_init(&mbn);
	mboxname_from_intname(&c->ml->ns, &mbn, intname);
	if (!mbn.isdeleted && mboxname_userid(&mbn, &u))
		add_unique(&c->users, &c->nusers, u.s);
	mboxname_release(&mbn);
	buf_release(&u);
}

enum { META_HEADER, META_INDEX, META_CACHE, META_ANNOT, META_ARCHCACHE,
       META_N };

/*
 * One attempt at one mailbox. Returns 0 done, 1 to try again (a message
 * file vanished after the locks were dropped), -1 error.
 */
static int mailbox_attempt(struct create *c, const struct mboxlist_entry *e,
			   struct metafile *mf, struct msgrec **msgs_r,
			   size_t *nmsgs_r, struct error *err)
{
	struct mailbox *mb = NULL;
	struct mailbox_index idx = { 0 };
	unsigned char *ibytes = NULL;
	struct buf hbytes = BUF_INIT, apath = BUF_INIT, mpath = BUF_INIT,
		   acpath = BUF_INIT;
	struct msgrec *msgs = NULL;
	size_t nmsgs = 0;
	char *data_path = NULL, *archive_path = NULL;
	int r = -1;

	/* The locks: held only while the metadata is read or copied. */
	if (mailbox_open(c->cfg, &c->ml->ns, e, LOCK_SHARED, 0, &mb, err) < 0)
		goto out;
	data_path = xstrdup(mb->data_path);
	archive_path = xstrdup(mb->archive_path ? mb->archive_path
						: mb->data_path);
	struct stat st;
	if (fstat(mb->index_fd, &st) < 0) {
		error_sys(err, ERR_IO, errno, "cannot stat '%s'",
			  mb->index_path);
		goto out;
	}
	size_t ilen = (size_t)st.st_size, got = 0;
	ibytes = xmalloc(ilen ? ilen : 1);
	while (got < ilen) {
		ssize_t n = pread(mb->index_fd, ibytes + got, ilen - got,
				  (off_t)got);
		if (n <= 0) {
			error_sys(err, ERR_IO, n < 0 ? errno : EIO,
				  "cannot read '%s'", mb->index_path);
			goto out;
		}
		got += (size_t)n;
	}
	mf[META_INDEX].present = true;
	stat_key(&st, mf[META_INDEX].stat);
	int hfd = open(mb->header_path, O_RDONLY | O_CLOEXEC);
	if (hfd < 0 || fstat(hfd, &st) < 0) {
		error_sys(err, ERR_IO, errno, "cannot read '%s'",
			  mb->header_path);
		if (hfd >= 0)
			close(hfd);
		goto out;
	}
	mf[META_HEADER].present = true;
	stat_key(&st, mf[META_HEADER].stat);
	char tmp[8192];
	ssize_t n;
	while ((n = read(hfd, tmp, sizeof(tmp))) > 0)
		buf_add(&hbytes, tmp, (size_t)n);
	close(hfd);
	if (n < 0) {
		error_sys(err, ERR_IO, errno, "cannot read '%s'",
			  mb->header_path);
		goto out;
	}
	struct mailbox_header h;
	mailbox_header_init(&h);
	if (mailbox_header_parse(hbytes.s, hbytes.len, &h, err) == 0 &&
	    h.quotaroot)
		add_unique(&c->qroots, &c->nqroots, h.quotaroot);
	mailbox_header_release(&h);
	error_clear(err);
	if (grab_meta(c, mb->cache_path, &mf[META_CACHE], err) < 0)
		goto out;
	const char *uid_for_path =
		(e->mbtype & MBTYPE_LEGACY_DIRS) ? NULL : e->uniqueid;
	if (mboxpath_meta(c->cfg, &c->ml->ns, e->partition, e->name,
			  uid_for_path, MBOXPATH_ANNOTATIONS, false, &apath,
			  err) < 0 ||
	    grab_meta(c, apath.s, &mf[META_ANNOT], err) < 0)
		goto out;
	/* With an archive partition, the cache records of the archived
	 * messages are in a cyrus.cache of their own there. */
	if (mboxpath_meta(c->cfg, &c->ml->ns, e->partition, e->name,
			  uid_for_path, MBOXPATH_ARCHIVECACHE, false, &acpath,
			  err) < 0 ||
	    (strcmp(acpath.s, mb->cache_path) &&
	     grab_meta(c, acpath.s, &mf[META_ARCHCACHE], err) < 0))
		goto out;
	mailbox_close(&mb);

	/* Outside the locks. */
	if (mailbox_index_parse(ibytes, ilen, &idx, NULL, err) < 0) {
		char m[sizeof(err->msg)];
		snprintf(m, sizeof(m), "%s", err->msg);
		error_set(err, ERR_DATA, "cannot back up '%s': cyrus.index: "
			  "%s", e->name, m);
		goto out;
	}
	if (backup_object_put_mem(c->ar, BACKUP_FILES, hbytes.s, hbytes.len,
				  mf[META_HEADER].sha1, err) < 0)
		goto out;
	/* The index header changes with every write: its own part. */
	c->ar->first_cut = idx.h.start_offset;
	int pr = backup_object_put_parts(c->ar, BACKUP_FILES, -1, ibytes, ilen,
					 mf[META_INDEX].sha1,
					 &mf[META_INDEX].size,
					 &mf[META_INDEX].parts,
					 &mf[META_INDEX].nparts, err);
	c->ar->first_cut = 0;
	if (pr < 0)
		goto out;
	mf[META_HEADER].size = hbytes.len;
	if (store_meta(c, &mf[META_CACHE], err) < 0 ||
	    store_meta(c, &mf[META_ANNOT], err) < 0 ||
	    store_meta(c, &mf[META_ARCHCACHE], err) < 0)
		goto out;

	msgs = xcalloc(idx.nrecs ? idx.nrecs : 1, sizeof(*msgs));
	for (size_t i = 0; i < idx.nrecs; i++) {
		const struct mailbox_record *rec = &idx.recs[i];
		bool expunged = rec->internal_flags & MAILBOX_FLAG_EXPUNGED;
		bool archived = rec->internal_flags & MAILBOX_FLAG_ARCHIVED;
		if (rec->internal_flags & MAILBOX_FLAG_UNLINKED)
			continue;
		struct msgrec *m = &msgs[nmsgs];
		m->uid = rec->uid;
		m->size = rec->size;
		m->archived = archived;
		mailbox_guid_hex(rec->guid, m->sha1);
		if (!c->full &&
		    backup_object_exists(c->ar, BACKUP_MESSAGES, m->sha1)) {
			nmsgs++;
			continue;
		}
		buf_reset(&mpath);
		buf_printf(&mpath, "%s/%u.",
			   archived ? archive_path : data_path, rec->uid);
		unsigned long before = c->ar->new_objects;
		char guid[BACKUP_SHA1_HEX];
		memcpy(guid, m->sha1, sizeof(guid));
		if (backup_object_put_path(c->ar, BACKUP_MESSAGES, mpath.s,
					   m->sha1, &m->size, err) < 0) {
			if (err->kind != ERR_NOINPUT)
				goto out;
			if (expunged) {
				error_clear(err);
				continue;
			}
			r = 1; /* expunged after we read the index */
			goto out;
		}
		if (c->ar->new_objects != before)
			c->newmsgs++;
		if (strcmp(guid, m->sha1))
			log_warn("%s: message %u does not match its GUID in "
				 "cyrus.index (stored as %s)", e->name,
				 rec->uid, m->sha1);
		nmsgs++;
	}
	*msgs_r = msgs;
	*nmsgs_r = nmsgs;
	msgs = NULL;
	r = 0;
out:
	if (mb)
		mailbox_close(&mb);
	for (int i = 0; i < META_N; i++) {
		if (mf[i].tmp && !c->dry)
			unlink(mf[i].tmp);
		free(mf[i].tmp);
		mf[i].tmp = NULL;
		if (r != 0) {
			free(mf[i].parts);
			mf[i].parts = NULL;
			mf[i].nparts = 0;
		}
	}
	free(msgs);
	free(ibytes);
	free(data_path);
	free(archive_path);
	mailbox_index_release(&idx);
	buf_release(&hbytes);
	buf_release(&apath);
	buf_release(&acpath);
	buf_release(&mpath);
	return r;
}

static void backup_mailbox(struct create *c, const char *name)
{
	struct error err = ERROR_INIT;
	struct mboxlist_entry *e = NULL;
	struct msgrec *msgs = NULL;
	size_t nmsgs = 0;
	struct metafile mf[META_N];
	int r = -1;

	prev_enter(c, name);
	for (int attempt = 0; attempt < 5; attempt++) {
		mboxlist_entry_free(&e);
		if (mboxlist_lookup(c->ml, name, false, &e, NULL, &err) < 0) {
			if (err.kind == ERR_NOINPUT) {
				log_info("%s: deleted meanwhile, skipped",
					 name);
				return;
			}
			break;
		}
		if (e->mbtype & (MBTYPE_REMOTE | MBTYPE_RESERVE |
				 MBTYPE_MOVING)) {
			log_info("%s: not a local mailbox, skipped", name);
			mboxlist_entry_free(&e);
			return;
		}
		memset(mf, 0, sizeof(mf));
		mf[META_HEADER].name = "cyrus.header";
		mf[META_INDEX].name = "cyrus.index";
		mf[META_CACHE].name = "cyrus.cache";
		mf[META_ANNOT].name = "cyrus.annotations";
		mf[META_ARCHCACHE].name = "archive/cyrus.cache";
		r = mailbox_attempt(c, e, mf, &msgs, &nmsgs, &err);
		if (r != 1)
			break;
		log_info("%s: changed while being read, reading it again",
			 name);
	}
	if (r != 0) {
		if (r == 1)
			error_set(&err, ERR_TEMPFAIL, "cannot back up '%s': "
				  "it keeps changing", name);
		fail(c, &err);
		mboxlist_entry_free(&e);
		return;
	}

	struct buf v = BUF_INIT;
	mboxlist_encode(&c->ml->ns, e, false, e->mtime, &v);
	const char *f1[] = { e->name };
	madd(c, "mailbox", 1, f1);
	const char *fv[] = { v.s };
	size_t lv[] = { v.len };
	maddn(c, "entry", 1, fv, lv);
	for (int i = 0; i < META_N; i++) {
		if (!mf[i].present)
			continue;
		char sz[32];
		snprintf(sz, sizeof(sz), "%llu",
			 (unsigned long long)mf[i].size);
		const char *ff[] = { mf[i].name, mf[i].sha1, sz, mf[i].stat };
		madd(c, "file", 4, ff);
		c->bytes += mf[i].size;
		for (size_t k = 0; k < mf[i].nparts; k++) {
			char po[32], ps[32];
			snprintf(po, sizeof(po), "%llu",
				 (unsigned long long)mf[i].parts[k].offset);
			snprintf(ps, sizeof(ps), "%llu",
				 (unsigned long long)mf[i].parts[k].size);
			const char *fp[] = { po, mf[i].parts[k].sha1, ps };
			madd(c, "part", 3, fp);
		}
		free(mf[i].parts);
		mf[i].parts = NULL;
	}
	for (size_t i = 0; i < nmsgs; i++) {
		char uid[16], sz[32];
		snprintf(uid, sizeof(uid), "%u", msgs[i].uid);
		snprintf(sz, sizeof(sz), "%llu",
			 (unsigned long long)msgs[i].size);
		const char *fm[] = { uid, msgs[i].sha1, sz, "archived" };
		madd(c, "msg", msgs[i].archived ? 4 : 3,
				    fm);
		c->bytes += msgs[i].size;
	}
	c->nmessages += nmsgs;
	c->nmailboxes++;
	log_info("%s: %zu messages", e->name, nmsgs);

	/* Its owner's files come once, at the end. */
	note_user(c, e->name);
	buf_release(&v);
	free(msgs);
	mboxlist_entry_free(&e);
}

static void put_file_rec(struct create *c, const char *type,
			 const char *who, const char *what, const char *path,
			 bool locked)
{
	struct error err = ERROR_INIT;
	char sha1[BACKUP_SHA1_HEX];
	uint64_t size = 0;
	char *tmp = NULL;
	const char *src = path;
	struct stat st;

	if (stat(path, &st) < 0)
		return; /* no such file: nothing to keep */
	if (locked && !c->dry) {
		unsigned long long n = 0;
		tmp = backup_archive_tmpname(c->ar, "db");
		if (dbset_copy_locked(path, tmp, &n, &err) < 0) {
			free(tmp);
			if (st.st_size == 0)
				return;
			fail(c, &err);
			return;
		}
		src = tmp;
	}
	if (backup_object_put_path(c->ar, BACKUP_FILES, src, sha1, &size,
				   &err) < 0) {
		fail(c, &err);
	} else {
		char sz[32];
		snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
		const char *f[] = { who, what, sha1, sz };
		madd(c, type, 4, f);
		c->bytes += size;
	}
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
}

static void backup_config_dbs(struct create *c)
{
	struct dbset_entry ents[DBSET_MAX];
	size_t n = dbset_get(c->cfg, ents);
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (!ents[i].archive || stat(ents[i].path, &st) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		put_file_rec(c, "db", dbset_basename(&ents[i]),
			     ents[i].backend, ents[i].path, true);
	}
	dbset_release(ents, n);
}

static void backup_users(struct create *c)
{
	struct buf p = BUF_INIT;
	struct error err = ERROR_INIT;
	for (size_t i = 0; i < c->nusers; i++) {
		const char *u = c->users[i];
		struct mboxname mbn;
		mboxname_init(&mbn);
		mboxname_from_userid(&c->ml->ns, &mbn, u);
		/* counters: the user's modseq and uidvalidity high-water
		 * marks (with conversations on); copied under its lock. */
		static const char *const kinds[] = { "seen", "sub",
						     "counters" };
		for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
			buf_reset(&p);
			if (mboxlist_user_path(c->ml, &mbn, kinds[k], &p,
					       &err) < 0) {
				fail(c, &err);
				continue;
			}
			put_file_rec(c, "user", u, kinds[k], p.s, true);
		}
		buf_reset(&p);
		if (mboxlist_sieve_path(c->ml, &mbn, &p, &err) == 0 &&
		    p.len) {
			DIR *d = opendir(p.s);
			struct dirent *de;
			while (d && (de = readdir(d))) {
				if (de->d_name[0] == '.')
					continue;
				char *fp = xasprintf("%s/%s", p.s, de->d_name);
				struct stat st;
				char target[4096];
				ssize_t tl;
				bool ok = lstat(fp, &st) == 0;
				if (ok && S_ISLNK(st.st_mode) &&
				    (tl = readlink(fp, target,
						   sizeof(target) - 1)) > 0) {
					target[tl] = '\0';
					const char *f[] = { u, de->d_name,
							    target };
					madd(c, "sievelink",
							    3, f);
				} else if (ok && S_ISREG(st.st_mode)) {
					put_file_rec(c, "sieve", u, de->d_name,
						     fp, false);
				}
				free(fp);
			}
			if (d)
				closedir(d);
		}
		mboxname_release(&mbn);
	}
	buf_release(&p);
}

static void backup_quotas(struct create *c)
{
	struct cyrusdb *db = NULL;
	struct error err = ERROR_INIT;
	if (!c->nqroots)
		return;
	char *path = config_db_path(c->cfg, "quota");
	if (cyrusdb_open(config_db_backend(c->cfg, "quota"), path, 0, &db,
			 &err) < 0) {
		log_warn("quota roots not saved: %s", err.msg);
		free(path);
		return;
	}
	free(path);
	for (size_t i = 0; i < c->nqroots; i++) {
		const char *data;
		size_t len;
		const char *root = c->qroots[i];
		if (cyrusdb_fetch(db, root, strlen(root), &data, &len, NULL))
			continue;
		const char *f[] = { root, data };
		size_t l[] = { strlen(root), len };
		maddn(c, "quota", 2, f, l);
	}
	cyrusdb_close(&db);
}

static int collect_cb(void *rock, const struct mboxlist_entry *e)
{
	struct create *c = rock;
	if (c->nnames == c->anames) {
		c->anames = c->anames ? 2 * c->anames : 64;
		c->names = xrealloc(c->names, c->anames * sizeof(char *));
	}
	c->names[c->nnames++] = xstrdup(e->name);
	return 0;
}

static bool wanted(char **pats, int npats, const char *name)
{
	if (!npats)
		return true;
	for (int i = 0; i < npats; i++)
		if (backupcmd_match(pats[i], name))
			return true;
	return false;
}

int cmd_backup_create(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ "full", no_argument, NULL, 'F' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct create c = { 0 };
	struct error err = ERROR_INIT;
	const char *alt_config = NULL, *dir = BACKUP_DEFAULT_DIR;
	int ch, verbose = 0;
	int rc = 0;
	bool begun = false;

	while ((ch = getopt_long(argc, argv, "C:nv", longopts, NULL)) != -1) {
		switch (ch) {
		case 'C': alt_config = optarg; break;
		case 'F': c.full = true; break;
		case 'n': c.dry = true; break;
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
	log_set_verbose(verbose);
	c.ctx = ctx;
	c.progress = !verbose && isatty(2);

	cyrus_setup(ctx, alt_config);
	c.cfg = ctx->cfg;
	if (backup_archive_open(dir, c.dry ? BACKUP_OPEN_DRYRUN
					   : BACKUP_OPEN_CREATE,
				&c.ar, &err) < 0) {
		log_error("%s", err.msg);
		return error_exitcode(err.kind);
	}
	if (mboxlist_open(c.cfg, NULL, 0, &c.ml, &err) < 0) {
		log_error("cannot open mailboxes.db: %s", err.msg);
		rc = error_exitcode(err.kind);
		goto out;
	}
	c.prevside.ok = false;
	if (c.ar->dir_fd >= 0)
		open_prev(&c);

	time_t now = time(NULL);
	char *id = backup_snapshot_newid(c.ar, now);
	char *sdir = xasprintf("%s/snapshots/%s", dir, id);
	char *mpath = xasprintf("%s/" BACKUP_MANIFEST_NAME, sdir);
	if (!c.dry) {
		if (mkdir(sdir, 0777) < 0 && errno != EEXIST) {
			log_error("cannot create '%s': %s", sdir,
				  strerror(errno));
			rc = EX_CANTCREAT;
			goto out2;
		}
		if (backup_manifest_begin(&c.w, mpath, c.ar->nosync, &err) < 0)
			goto fatal;
	}
	begun = !c.dry;
	char tbuf[32];
	snprintf(tbuf, sizeof(tbuf), "%lld", (long long)now);
	const char *server = config_getstring(c.cfg, "servername");
	const char *f_id[] = { id }, *f_t[] = { tbuf },
		   *f_c[] = { config_filename(c.cfg) },
		   *f_s[] = { server ? server : "" };
	madd(&c, "id", 1, f_id);
	madd(&c, "time", 1, f_t);
	madd(&c, "config", 1, f_c);
	madd(&c, "server", 1, f_s);

	backup_config_dbs(&c);
	if (mboxlist_foreach(c.ml, 0, collect_cb, &c, NULL, &err) < 0) {
		char m[sizeof(err.msg)];
		snprintf(m, sizeof(m), "%s", err.msg);
		error_set(&err, err.kind, "cannot read mailboxes.db: %s", m);
		goto fatal;
	}
	size_t todo = 0, done = 0;
	for (size_t i = 0; i < c.nnames; i++)
		if (wanted(argv, argc, c.names[i]))
			todo++;
	for (size_t i = 0; i < c.nnames; i++) {
		if (!wanted(argv, argc, c.names[i]))
			continue;
		if (c.progress)
			fprintf(stderr, "\r%s: %zu/%zu mailboxes",
				ctx->progname, done, todo);
		backup_mailbox(&c, c.names[i]);
		done++;
		if (c.stop)
			break;
	}
	if (c.progress)
		fprintf(stderr, "\r\033[K");
	if (argc && !todo) {
		error_set(&err, ERR_NOINPUT, "no mailbox matches '%s'",
			  argv[0]);
		goto fatal;
	}
	if (!c.stop)
		backup_users(&c);
	if (!c.stop)
		backup_quotas(&c);
	if (c.stop) {
		error_set(&err, c.stop_err.kind, "%s; no snapshot written",
			  c.stop_err.msg);
		goto fatal;
	}

	if (backup_archive_sync(c.ar, &err) < 0)
		goto fatal;
	char s1[32], s2[32], s3[32], s4[32];
	snprintf(s1, sizeof(s1), "%llu", (unsigned long long)c.nmailboxes);
	snprintf(s2, sizeof(s2), "%llu", (unsigned long long)c.nmessages);
	snprintf(s3, sizeof(s3), "%llu", (unsigned long long)c.bytes);
	snprintf(s4, sizeof(s4), "%llu", (unsigned long long)c.ar->new_bytes);
	const char *fs[] = { "mailboxes", s1, "messages", s2, "bytes", s3,
			     "new", s4 };
	if (c.dry) {
		printf("would back up %s mailboxes, %s messages (%s bytes); "
		       "%lu new objects (%s bytes before compression), "
		       "%llu new messages\n", s1, s2, s3,
		       c.ar->new_objects, s4,
		       (unsigned long long)c.newmsgs);
		goto out2;
	}
	if (c.nerrors)
		madd(&c, "incomplete", 0, NULL);
	madd(&c, "stats", 8, fs);
	uint64_t mbytes = 0;
	begun = false;
	if (backup_manifest_commit(&c.w, &mbytes, &err) < 0)
		goto fatal;
	log_notice("snapshot %s: %s mailboxes, %s messages, %s new bytes",
		   id, s1, s2, s4);
	log_info("snapshot %s: %s mailboxes, %s messages, %llu new messages, "
		 "%s bytes written", id, s1, s2,
		 (unsigned long long)c.newmsgs, s4);
	if (c.nerrors) {
		log_error("snapshot %s is incomplete: %u mailbox%s failed", id,
			  c.nerrors, c.nerrors == 1 ? "" : "es");
		rc = error_exitcode(c.worst);
	}
	goto out2;
fatal:
	log_error("%s", err.msg);
	rc = error_exitcode(err.kind);
out2:
	if (begun)
		backup_manifest_abort(&c.w);
	if (rc && !c.dry)
		rmdir(sdir); /* empty unless the manifest made it */
	free(id);
	free(sdir);
	free(mpath);
out:
	mboxlist_close(&c.ml);
	backup_archive_close(&c.ar);
	prev_clear(&c);
	backup_side_close(&c.prevside);
	free_list(c.names, c.nnames);
	free_list(c.users, c.nusers);
	free_list(c.qroots, c.nqroots);
	return rc;
}

/* ---- the switch ---- */

int cmd_backup(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **, struct cyrus_ctx *);
	} subs[] = {
		{ "create", cmd_backup_create }, { "list", cmd_backup_list },
		{ "verify", cmd_backup_verify },
		{ "restore", cmd_backup_restore },
		{ "prune", cmd_backup_prune },
	};
	if (argc < 2)
		cyrus_usage(ctx, false);
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++) {
		if (!strcmp(argv[1], subs[i].name)) {
			optind = 0;
			return subs[i].fn(argc - 1, argv + 1, ctx);
		}
	}
	if (argv[1][0] != '-')
		log_error("'%s' is not a backup command (create, list, "
			  "verify, restore, prune)", argv[1]);
	cyrus_usage(ctx, false);
}
