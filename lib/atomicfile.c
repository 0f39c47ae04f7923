#include "compat.h"
#include "atomicfile.h"

#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "xmalloc.h"

/* Fixed-size table: signal handlers must not allocate. */
#define MAX_CLEANUP 64
static char *cleanup_paths[MAX_CLEANUP];
static bool cleanup_installed;

static void cleanup_run(void)
{
	for (int i = 0; i < MAX_CLEANUP; i++)
		if (cleanup_paths[i])
			unlink(cleanup_paths[i]);
}

static void cleanup_signal(int sig)
{
	cleanup_run();
	signal(sig, SIG_DFL);
	raise(sig);
}

void atomicfile_cleanup_register(const char *path)
{
	if (!cleanup_installed) {
		cleanup_installed = true;
		atexit(cleanup_run);
		signal(SIGINT, cleanup_signal);
		signal(SIGTERM, cleanup_signal);
		signal(SIGHUP, cleanup_signal);
	}
	for (int i = 0; i < MAX_CLEANUP; i++) {
		if (!cleanup_paths[i]) {
			cleanup_paths[i] = xstrdup(path);
			return;
		}
	}
}

void atomicfile_cleanup_unregister(const char *path)
{
	for (int i = 0; i < MAX_CLEANUP; i++) {
		if (cleanup_paths[i] && !strcmp(cleanup_paths[i], path)) {
			char *p = cleanup_paths[i];
			cleanup_paths[i] = NULL;
			free(p);
			return;
		}
	}
}

int fsync_parent_dir(const char *path)
{
	char *copy = xstrdup(path);
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

int atomicfile_begin(struct atomicfile *af, const char *path, mode_t mode,
		     struct error *err)
{
	struct stat st;
	bool have_old = stat(path, &st) == 0;

	af->path = xstrdup(path);
	af->tmppath = xasprintf("%s.cyrtmp.%d", path, (int)getpid());
	af->nosync = false;
	unlink(af->tmppath);
	af->fd = open(af->tmppath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
		      have_old ? (st.st_mode & 07777) : mode);
	if (af->fd < 0) {
		int e = errno;
		error_sys(err, error_kind_from_errno(e) == ERR_NOINPUT
				       ? ERR_CANTCREAT
				       : error_kind_from_errno(e),
			  e, "cannot create '%s'", af->tmppath);
		free(af->path);
		free(af->tmppath);
		af->path = af->tmppath = NULL;
		return -1;
	}
	atomicfile_cleanup_register(af->tmppath);
	if (have_old) {
		/* Keep the original's owner and mode (umask must not narrow). */
		if (fchown(af->fd, st.st_uid, st.st_gid) < 0 && errno != EPERM) {
			/* not fatal: an unprivileged user keeps their own */
		}
		fchmod(af->fd, st.st_mode & 07777);
	}
	return 0;
}

int atomicfile_write(struct atomicfile *af, const void *data, size_t len,
		     struct error *err)
{
	const char *p = data;
	while (len) {
		ssize_t n = write(af->fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return error_sys(err, ERR_IO, errno,
					 "cannot write '%s'", af->tmppath);
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int atomicfile_commit(struct atomicfile *af, struct error *err)
{
	int r = 0;
	if (!af->nosync && fsync(af->fd) < 0) {
		r = error_sys(err, ERR_IO, errno, "cannot fsync '%s'",
			      af->tmppath);
		goto fail;
	}
	if (close(af->fd) < 0) {
		af->fd = -1;
		r = error_sys(err, ERR_IO, errno, "cannot close '%s'",
			      af->tmppath);
		goto fail;
	}
	af->fd = -1;
	if (rename(af->tmppath, af->path) < 0) {
		r = error_sys(err, ERR_IO, errno, "cannot rename '%s' to '%s'",
			      af->tmppath, af->path);
		goto fail;
	}
	atomicfile_cleanup_unregister(af->tmppath);
	if (!af->nosync && fsync_parent_dir(af->path) < 0)
		r = error_sys(err, ERR_IO, errno,
			      "cannot fsync directory of '%s'", af->path);
	free(af->path);
	free(af->tmppath);
	af->path = af->tmppath = NULL;
	return r;
fail:
	atomicfile_abort(af);
	return r;
}

void atomicfile_abort(struct atomicfile *af)
{
	if (!af->tmppath)
		return;
	if (af->fd >= 0)
		close(af->fd);
	af->fd = -1;
	unlink(af->tmppath);
	atomicfile_cleanup_unregister(af->tmppath);
	free(af->path);
	free(af->tmppath);
	af->path = af->tmppath = NULL;
}
