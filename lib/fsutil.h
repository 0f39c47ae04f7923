/* fsutil.h: small filesystem helpers shared by the store code. */
#ifndef CYRUS_LIB_FSUTIL_H
#define CYRUS_LIB_FSUTIL_H

#include <sys/types.h>

/* Creates the missing directories above path (not path itself), with mode.
 * 0 or -1 (errno set). */
int fsutil_mkdir_parents(const char *path, mode_t mode);

#endif
