#include "compat.h"
#include "lock.h"

#include <fcntl.h>
#include <unistd.h>

#include "error.h"

int lock_fd(int fd, enum lock_mode mode, bool wait)
{
	struct flock fl = {
		.l_type = mode == LOCK_EXCLUSIVE ? F_WRLCK : F_RDLCK,
		.l_whence = SEEK_SET,
		.l_start = 0,
		.l_len = 0,
	};
	for (;;) {
		if (fcntl(fd, wait ? F_SETLKW : F_SETLK, &fl) == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

int lock_unlock(int fd)
{
	struct flock fl = {
		.l_type = F_UNLCK,
		.l_whence = SEEK_SET,
		.l_start = 0,
		.l_len = 0,
	};
	for (;;) {
		if (fcntl(fd, F_SETLKW, &fl) == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

int lock_holder(int fd, enum lock_mode mode)
{
	struct flock fl = {
		.l_type = mode == LOCK_EXCLUSIVE ? F_WRLCK : F_RDLCK,
		.l_whence = SEEK_SET,
		.l_start = 0,
		.l_len = 0,
	};
	if (fcntl(fd, F_GETLK, &fl) < 0)
		return -1;
	return fl.l_type == F_UNLCK ? 0 : (int)fl.l_pid;
}

static int lock_reopen_wait(int *fd, const char *path, enum lock_mode mode,
			    struct stat *st_r, bool wait, struct error *err)
{
	struct stat sbuf, sfile;
	for (;;) {
		if (lock_fd(*fd, mode, wait) < 0) {
			if (errno == EAGAIN || errno == EACCES)
				return error_set(err, ERR_TEMPFAIL,
						 "cannot lock '%s': locked by "
						 "another process", path);
			return error_sys(err, ERR_IO, errno,
					 "cannot lock '%s'", path);
		}
		if (fstat(*fd, &sbuf) < 0) {
			int e = errno;
			lock_unlock(*fd);
			return error_sys(err, ERR_IO, e, "cannot fstat '%s'",
					 path);
		}
		if (stat(path, &sfile) < 0) {
			int e = errno;
			lock_unlock(*fd);
			return error_sys(err, error_kind_from_errno(e), e,
					 "cannot stat '%s'", path);
		}
		if (sbuf.st_ino == sfile.st_ino && sbuf.st_dev == sfile.st_dev)
			break;
		/* Replaced by rename while we waited: lock the new file. */
		int newfd = open(path, O_RDWR | O_CLOEXEC);
		if (newfd < 0 && (errno == EACCES || errno == EROFS))
			newfd = open(path, O_RDONLY | O_CLOEXEC);
		if (newfd < 0) {
			int e = errno;
			lock_unlock(*fd);
			return error_sys(err, error_kind_from_errno(e), e,
					 "cannot reopen '%s'", path);
		}
		close(*fd);
		*fd = newfd;
	}
	if (st_r)
		*st_r = sbuf;
	return 0;
}

int lock_reopen(int *fd, const char *path, enum lock_mode mode,
		struct stat *st_r, struct error *err)
{
	return lock_reopen_wait(fd, path, mode, st_r, true, err);
}

int lock_reopen_nonblock(int *fd, const char *path, enum lock_mode mode,
			 struct stat *st_r, struct error *err)
{
	return lock_reopen_wait(fd, path, mode, st_r, false, err);
}
