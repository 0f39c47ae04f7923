/* mailbox.c: atomic file writes, the lock protocol, open/close (mailbox.h). */
#include "compat.h"
#include "mailbox.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "buf.h"
#include "config.h"
#include "error.h"
#include "fsutil.h"
#include "mboxlist.h"
#include "mboxname.h"
#include "mboxpath.h"
#include "xmalloc.h"

int mailbox_write_file(const char *path, const void *data, size_t len,
		       struct error *err)
{
	char *tmp = xasprintf("%s.NEW", path);
	const char *p = data;
	int r = -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0) {
		error_sys(err, error_kind_from_errno(errno), errno,
			  "cannot create '%s'", tmp);
		free(tmp);
		return -1;
	}
	atomicfile_cleanup_register(tmp);
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			error_sys(err, ERR_IO, errno, "cannot write '%s'", tmp);
			goto fail;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0) {
		error_sys(err, ERR_IO, errno, "cannot fsync '%s'", tmp);
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		error_sys(err, ERR_IO, errno, "cannot close '%s'", tmp);
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		error_sys(err, ERR_IO, errno, "cannot rename '%s'", tmp);
		goto fail;
	}
	atomicfile_cleanup_unregister(tmp);
	if (fsync_parent_dir(path) < 0) {
		free(tmp);
		return error_sys(err, ERR_IO, errno,
				 "cannot fsync the directory of '%s'", path);
	}
	free(tmp);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	atomicfile_cleanup_unregister(tmp);
	free(tmp);
	return r;
}

/* mboxname_lock: open (creating the directories on demand) and lock. */
static int lock_one(const char *path, enum lock_mode mode, bool nonblock,
		    int *fd_r, struct error *err)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0666);
	if (fd < 0 && errno == ENOENT) {
		fsutil_mkdir_parents(path, 0755);
		fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0666);
	}
	if (fd < 0)
		return error_sys(err, error_kind_from_errno(errno), errno,
				 "cannot open lock file '%s'", path);
	if (lock_fd(fd, mode, !nonblock) < 0) {
		int e = errno;
		close(fd);
		if (e == EAGAIN || e == EACCES || e == EWOULDBLOCK)
			return error_set(err, ERR_TEMPFAIL,
					 "'%s' is locked by another process",
					 path);
		return error_sys(err, ERR_IO, e, "cannot lock '%s'", path);
	}
	*fd_r = fd;
	return 0;
}

int mailbox_lock_names(const struct config *cfg, const struct mboxname_ns *ns,
		       const char *intname, const char *uniqueid,
		       bool legacy_dirs, enum lock_mode mode, bool nonblock,
		       struct mailbox_lock *lk, struct error *err)
{
	struct mboxname mbn;
	struct buf userid = BUF_INIT, path = BUF_INIT;
	int r = 0;

	*lk = (struct mailbox_lock)MAILBOX_LOCK_INIT;
	mboxname_init(&mbn);
	mboxname_from_intname(ns, &mbn, intname);
	if (mboxname_userid(&mbn, &userid)) {
		/* user_namespacelock: "*U*" + userid with '.' as '^'. */
		struct buf nm = BUF_INIT;
		buf_adds(&nm, "*U*");
		for (const char *p = userid.s; *p; p++)
			buf_addch(&nm, *p == '.' ? '^' : *p);
		mboxpath_lock(cfg, ns, nm.s, NULL, &path);
		buf_release(&nm);
		r = lock_one(path.s, mode, nonblock, &lk->ns_fd, err);
		if (r < 0)
			goto out;
		lk->ns_path = buf_detach(&path, NULL);
	}
	buf_reset(&path);
	mboxpath_lock(cfg, ns, intname,
		      (legacy_dirs || !uniqueid) ? NULL : uniqueid, &path);
	r = lock_one(path.s, mode, nonblock, &lk->name_fd, err);
	if (r < 0) {
		mailbox_lock_release(lk);
		goto out;
	}
	lk->name_path = buf_detach(&path, NULL);
out:
	mboxname_release(&mbn);
	buf_release(&userid);
	buf_release(&path);
	return r;
}

void mailbox_lock_release(struct mailbox_lock *lk)
{
	if (lk->name_fd >= 0) {
		lock_unlock(lk->name_fd);
		close(lk->name_fd);
	}
	if (lk->ns_fd >= 0) {
		lock_unlock(lk->ns_fd);
		close(lk->ns_fd);
	}
	free(lk->ns_path);
	free(lk->name_path);
	*lk = (struct mailbox_lock)MAILBOX_LOCK_INIT;
}

int mailbox_paths(const struct config *cfg, const struct mboxname_ns *ns,
		  const struct mboxlist_entry *e, char **header_r,
		  char **index_r, char **cache_r, char **data_r,
		  char **archive_r, struct error *err)
{
	const char *uid = (e->mbtype & MBTYPE_LEGACY_DIRS) ? NULL : e->uniqueid;
	struct buf b = BUF_INIT;
	static const enum mboxpath_meta metas[3] = {
		MBOXPATH_HEADER, MBOXPATH_INDEX, MBOXPATH_CACHE };
	char **outs[3] = { header_r, index_r, cache_r };

	if (!e->partition)
		return error_set(err, ERR_DATA, "'%s' has no partition",
				 e->name);
	for (int k = 0; k < 3; k++) {
		if (!outs[k])
			continue;
		buf_reset(&b);
		if (mboxpath_meta(cfg, ns, e->partition, e->name, uid, metas[k],
				  false, &b, err) < 0)
			goto fail;
		*outs[k] = buf_detach(&b, NULL);
	}
	if (data_r) {
		buf_reset(&b);
		if (mboxpath_data(cfg, ns, e->partition, e->name, uid, 0, &b,
				  err) < 0)
			goto fail;
		*data_r = buf_detach(&b, NULL);
	}
	if (archive_r) {
		buf_reset(&b);
		if (mboxpath_archive(cfg, ns, e->partition, e->name, uid, 0, &b,
				     err) < 0)
			goto fail;
		*archive_r = buf_detach(&b, NULL);
	}
	buf_release(&b);
	return 0;
fail:
	buf_release(&b);
	return -1;
}

static void mailbox_free(struct mailbox *mb)
{
	if (mb->index_fd >= 0)
		close(mb->index_fd);
	mailbox_lock_release(&mb->lock);
	mailbox_header_release(&mb->h);
	free(mb->name);
	free(mb->partition);
	free(mb->uniqueid);
	free(mb->header_path);
	free(mb->index_path);
	free(mb->cache_path);
	free(mb->data_path);
	free(mb->archive_path);
	free(mb);
}

/* Step 3 of the protocol: lock cyrus.index, re-read header and index header. */
static int lock_index(struct mailbox *mb, struct error *err)
{
	struct stat st;
	unsigned char hb[MAILBOX_INDEX_HEADER_SIZE];
	int flags = (mb->mode == LOCK_EXCLUSIVE ? O_RDWR : O_RDONLY) | O_CLOEXEC;

	mb->index_fd = open(mb->index_path, flags);
	if (mb->index_fd < 0)
		return error_sys(err, errno == ENOENT ? ERR_NOINPUT : ERR_IO,
				 errno, "cannot open '%s'", mb->index_path);
	if (lock_reopen(&mb->index_fd, mb->index_path, mb->mode, NULL, err) < 0)
		return -1;
	if (stat(mb->header_path, &st) < 0)
		return error_sys(err, errno == ENOENT ? ERR_NOINPUT : ERR_IO,
				 errno, "cannot stat '%s'", mb->header_path);
	if (st.st_ino != mb->header_ino &&
	    mailbox_header_read(mb->header_path, &mb->h, &mb->header_file_crc,
				&mb->header_ino, err) < 0)
		return -1;
	ssize_t n = pread(mb->index_fd, hb, sizeof(hb), 0);
	if (n < 0)
		return error_sys(err, ERR_IO, errno, "cannot read '%s'",
				 mb->index_path);
	if (mailbox_index_header_decode(hb, (size_t)n, &mb->i, NULL, err) < 0) {
		struct error e2 = ERROR_INIT;
		error_set(&e2, ERR_DATA, "%s: %s", mb->index_path, err->msg);
		*err = e2;
		return -1;
	}
	return 0;
}

int mailbox_open(const struct config *cfg, const struct mboxname_ns *ns,
		 const struct mboxlist_entry *e, enum lock_mode mode,
		 unsigned flags, struct mailbox **mb_r, struct error *err)
{
	struct mailbox *mb = xcalloc(1, sizeof(*mb));
	mb->index_fd = -1;
	mb->lock = (struct mailbox_lock)MAILBOX_LOCK_INIT;
	mb->mode = mode;
	mb->name = xstrdup(e->name);
	mb->partition = e->partition ? xstrdup(e->partition) : NULL;
	mb->uniqueid = e->uniqueid ? xstrdup(e->uniqueid) : NULL;
	mb->mbtype = e->mbtype;
	mailbox_header_init(&mb->h);

	if (mailbox_paths(cfg, ns, e, &mb->header_path, &mb->index_path,
			  &mb->cache_path, &mb->data_path, &mb->archive_path,
			  err) < 0)
		goto fail;
	if (!(flags & MAILBOX_OPEN_NOLOCK) &&
	    mailbox_lock_names(cfg, ns, e->name, e->uniqueid,
			       e->mbtype & MBTYPE_LEGACY_DIRS, mode,
			       flags & MAILBOX_OPEN_NONBLOCK, &mb->lock,
			       err) < 0)
		goto fail;
	if (mailbox_header_read(mb->header_path, &mb->h, &mb->header_file_crc,
				&mb->header_ino, err) < 0)
		goto fail;
	if (lock_index(mb, err) < 0)
		goto fail;
	*mb_r = mb;
	return 0;
fail:
	mailbox_free(mb);
	*mb_r = NULL;
	return -1;
}

int mailbox_read_records(struct mailbox *mb, struct mailbox_record **recs_r,
			 size_t *n_r, struct error *err)
{
	struct mailbox_index idx = { 0 };
	if (mailbox_index_read_fd(mb->index_fd, &idx, NULL, err) < 0)
		return -1;
	mb->i = idx.h;
	*recs_r = idx.recs;
	*n_r = idx.nrecs;
	return 0;
}

void mailbox_close(struct mailbox **mb)
{
	if (!*mb)
		return;
	mailbox_free(*mb);
	*mb = NULL;
}
