/*
 * lock.h: file locks compatible with a running Cyrus 3.6.1.
 *
 * Cyrus (built with lock_fcntl.c, as Debian builds it) locks a database or
 * mailbox file with a POSIX fcntl record lock over the whole file
 * (l_whence SEEK_SET, l_start 0, l_len 0): F_RDLCK for readers, F_WRLCK for
 * writers, blocking with F_SETLKW. Files are replaced by rename (repack,
 * recovery, flat rewrites), so after the lock is granted the holder stat()s
 * the path and compares the inode with the open descriptor; if they differ
 * it re-opens the path and locks again. We do exactly the same, on the same
 * files, so our tools and a live server exclude each other.
 *
 * fcntl locks belong to the process: closing any descriptor of a file drops
 * every lock this process holds on it. Keep one descriptor per file.
 */
#ifndef CYRUS_LIB_LOCK_H
#define CYRUS_LIB_LOCK_H

#include <stdbool.h>
#include <sys/stat.h>

struct error;

enum lock_mode { LOCK_SHARED, LOCK_EXCLUSIVE };

/*
 * Locks *fd (open on path) in mode, blocking. If path was replaced meanwhile,
 * closes *fd, re-opens path (O_RDWR, or O_RDONLY if that is refused) and
 * retries; *fd is updated. st_r (may be NULL) gets fstat of the locked file.
 * Returns 0, or -1 with err filled.
 */
int lock_reopen(int *fd, const char *path, enum lock_mode mode,
		struct stat *st_r, struct error *err);
/* Like lock_reopen but never waits: -1 with ERR_TEMPFAIL if held. */
int lock_reopen_nonblock(int *fd, const char *path, enum lock_mode mode,
			 struct stat *st_r, struct error *err);
/* Takes a lock on fd alone (no inode check). 0 or -1 (errno set). */
int lock_fd(int fd, enum lock_mode mode, bool wait);
int lock_unlock(int fd);
/* Returns the pid holding a conflicting lock on fd, 0 if none, -1 on error. */
int lock_holder(int fd, enum lock_mode mode);

#endif
