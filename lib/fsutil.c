#include "compat.h"
#include "fsutil.h"

#include <libgen.h>
#include <sys/stat.h>

#include "xmalloc.h"

int fsutil_mkdir_parents(const char *path, mode_t mode)
{
	char *copy = xstrdup(path);
	char *dir = dirname(copy);
	struct stat st;
	int r = 0;
	if (stat(dir, &st) < 0) {
		r = fsutil_mkdir_parents(dir, mode);
		if (!r && mkdir(dir, mode) < 0 && errno != EEXIST)
			r = -1;
	}
	free(copy);
	return r;
}
