/*
 * atomicfile.h: replace a file by rename, so that readers and a crash see
 * either the old file or the complete new one, never a half-written one.
 *
 * The protocol:
 *   1. atomicfile_begin() creates a temporary file beside the target
 *      (same directory, so rename is atomic), with the mode and owner of the
 *      existing target if there is one;
 *   2. the caller writes through af->fd (or atomicfile_write());
 *   3. atomicfile_commit() fsyncs the file, renames it over the target and
 *      fsyncs the directory;
 *   or atomicfile_abort() unlinks the temporary file.
 * A temporary file still open at exit or on SIGINT/SIGTERM/SIGHUP is
 * unlinked, so no half-written file is left behind.
 */
#ifndef CYRUS_LIB_ATOMICFILE_H
#define CYRUS_LIB_ATOMICFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct error;

struct atomicfile {
	char *path;    /* the target */
	char *tmppath; /* the temporary file beside it */
	int fd;
	bool nosync;   /* skip fsync (tests and benchmarks only) */
};

/* mode is used when the target does not exist yet. */
int atomicfile_begin(struct atomicfile *af, const char *path, mode_t mode,
		     struct error *err);
int atomicfile_write(struct atomicfile *af, const void *data, size_t len,
		     struct error *err);
int atomicfile_commit(struct atomicfile *af, struct error *err);
void atomicfile_abort(struct atomicfile *af);

/* Registers/unregisters a temporary path to unlink at exit or on signal
 * (for modules that manage their own temp files). */
void atomicfile_cleanup_register(const char *path);
void atomicfile_cleanup_unregister(const char *path);

/* fsync of the directory holding path. 0 or -1 (errno set). */
int fsync_parent_dir(const char *path);

#endif
