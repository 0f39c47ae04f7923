#include "compat.h"

#include "dbset.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "config.h"
#include "cyrusdb.h"
#include "error.h"
#include "lock.h"
#include "xmalloc.h"

/* Cyrus's dblist[] order; the first four are archived. */
static const struct {
	const char *db;
	bool archive;
} dbs[DBSET_MAX] = {
	{ "mboxlist", true },	   { "quota", true },
	{ "annotation", true },	   { "backup", true },
	{ "duplicate", false },	   { "tls_sessions", false },
	{ "ptscache", false },	   { "statuscache", false },
};

size_t dbset_get(const struct config *cfg, struct dbset_entry *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(dbs); i++) {
		out[i].db = dbs[i].db;
		out[i].backend = config_db_backend(cfg, dbs[i].db);
		out[i].path = config_db_path(cfg, dbs[i].db);
		out[i].archive = dbs[i].archive;
		char opt[64];
		snprintf(opt, sizeof(opt), "%s_db_path", dbs[i].db);
		out[i].path_set = config_getstring(cfg, opt) != NULL;
	}
	return ARRAY_SIZE(dbs);
}

void dbset_release(struct dbset_entry *entries, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(entries[i].path);
		entries[i].path = NULL;
	}
}

const char *dbset_basename(const struct dbset_entry *e)
{
	const char *slash = strrchr(e->path, '/');
	return slash ? slash + 1 : e->path;
}

/* Empties dir of its entries not starting with '.', then removes it. */
static int remove_backup_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			char *f = xasprintf("%s/%s", dir, de->d_name);
			unlink(f);
			free(f);
		}
		closedir(d);
	}
	return rmdir(dir);
}

int dbset_rotate_backups(const char *configdir, char **backup1_r,
			 struct error *err)
{
	char *b1 = xasprintf("%s/db.backup1", configdir);
	char *b2 = xasprintf("%s/db.backup2", configdir);
	int r = -1;

	if (remove_backup_dir(b2) < 0 && errno != ENOENT) {
		error_sys(err, error_kind_from_errno(errno), errno,
			  "cannot remove '%s'", b2);
		goto out;
	}
	if (rename(b1, b2) < 0 && errno != ENOENT) {
		error_sys(err, error_kind_from_errno(errno), errno,
			  "cannot rename '%s' to '%s'", b1, b2);
		goto out;
	}
	if (mkdir(b1, 0755) < 0) {
		error_sys(err, ERR_CANTCREAT, errno, "cannot create '%s'", b1);
		goto out;
	}
	fsync_parent_dir(b1);
	r = 0;
out:
	if (r == 0 && backup1_r)
		*backup1_r = b1;
	else
		free(b1);
	free(b2);
	return r;
}

int dbset_copy_locked(const char *src, const char *dst,
		      unsigned long long *bytes_r, struct error *err)
{
	struct atomicfile af = { 0 };
	struct stat st;
	bool begun = false;
	char buf[65536];
	int r = -1;
	int fd = open(src, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return error_sys(err, error_kind_from_errno(errno), errno,
				 "cannot open '%s'", src);
	if (lock_reopen(&fd, src, LOCK_SHARED, &st, err) < 0)
		goto out;
	if (!S_ISREG(st.st_mode)) {
		error_set(err, ERR_DATA, "'%s' is not a regular file", src);
		goto out;
	}
	if (st.st_size == 0) {
		error_set(err, ERR_DATA, "'%s' is an empty file", src);
		goto out;
	}
	if (atomicfile_begin(&af, dst, 0666, err) < 0)
		goto out;
	begun = true;
	af.nosync = cyrusdb_getenv()->nosync;
	unsigned long long total = 0;
	/* In the kernel where it can (no copy through user space); the read
	 * loop below does the rest, or all where copy_file_range cannot. */
	while (total < (unsigned long long)st.st_size) {
		off_t in = (off_t)total;
		ssize_t n = copy_file_range(fd, &in, af.fd, NULL,
					    (size_t)st.st_size - total, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		total += (unsigned long long)n;
	}
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), (off_t)total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error_sys(err, ERR_IO, errno, "cannot read '%s'", src);
			goto out;
		}
		if (n == 0)
			break;
		if (atomicfile_write(&af, buf, (size_t)n, err) < 0)
			goto out;
		total += (unsigned long long)n;
	}
	if (total != (unsigned long long)st.st_size) {
		error_set(err, ERR_IO, "'%s' changed size while locked (%llu "
			  "of %lld bytes)", src, total, (long long)st.st_size);
		goto out;
	}
	begun = false;
	if (atomicfile_commit(&af, err) < 0)
		goto out;
	if (bytes_r)
		*bytes_r = total;
	r = 0;
out:
	if (begun)
		atomicfile_abort(&af);
	if (fd >= 0)
		close(fd); /* drops the lock */
	return r;
}

int dbset_write_skipstamp(const char *configdir, bool *written_r,
			  struct error *err)
{
	char *clean = xasprintf("%s/db/skipcleanshutdown", configdir);
	char *stamp = xasprintf("%s/db/skipstamp", configdir);
	struct atomicfile af = { 0 };
	struct stat st;
	int r = -1;

	*written_r = false;
	if (stat(clean, &st) == 0) {
		if (unlink(clean) < 0) {
			error_sys(err, error_kind_from_errno(errno), errno,
				  "cannot remove '%s'", clean);
			goto out;
		}
		r = 0;
		goto out;
	}
	uint32_t now = (uint32_t)time(NULL);
	unsigned char b[4] = { (unsigned char)(now >> 24),
			       (unsigned char)(now >> 16),
			       (unsigned char)(now >> 8), (unsigned char)now };
	if (atomicfile_begin(&af, stamp, 0644, err) < 0)
		goto out;
	af.nosync = cyrusdb_getenv()->nosync;
	if (atomicfile_write(&af, b, sizeof(b), err) < 0) {
		atomicfile_abort(&af);
		goto out;
	}
	if (atomicfile_commit(&af, err) < 0)
		goto out;
	*written_r = true;
	r = 0;
out:
	free(clean);
	free(stamp);
	return r;
}

/* The twoskip header (docs/formats/cyrusdb.md): 20 bytes of magic, then
 * big-endian version (4), generation (8), num_records (8), repack_size
 * (8), current_size (8), flags (4), crc (4). */
#define TS_MAGIC "\241\002\213\015twoskip file\0\0\0\0"
#define TS_HEADER_SIZE 64
#define TS_FLAG_DIRTY 1

static uint64_t be64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

bool dbset_unclean(const char *path, const char *backend)
{
	if (strcmp(backend, "twoskip"))
		return !strcmp(backend, "skiplist");
	unsigned char h[TS_HEADER_SIZE];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	bool unclean = fstat(fd, &st) < 0 ||
		       pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
		       memcmp(h, TS_MAGIC, 20) ||
		       (h[59] & TS_FLAG_DIRTY) ||
		       be64(h + 48) != (uint64_t)st.st_size;
	close(fd);
	return unclean;
}
