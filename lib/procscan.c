#include "compat.h"

#include "procscan.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xmalloc.h"

#define DEFAULT_CONFIG "/etc/imapd.conf"

/* Reads a small /proc file; returns its length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

static pid_t parent_of(pid_t pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_small(path, buf, sizeof(buf)) < 0)
		return 0;
	const char *p = strstr(buf, "\nPPid:");
	return p ? (pid_t)atoi(p + 6) : 0;
}

static bool same_file(const char *a, const struct stat *b)
{
	struct stat st;
	return stat(a, &st) == 0 && st.st_dev == b->st_dev &&
	       st.st_ino == b->st_ino;
}

/* The -C argument of a master's command line, or the default. */
static bool master_uses(pid_t pid, const struct stat *conf)
{
	char path[64], buf[8192];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	ssize_t n = read_small(path, buf, sizeof(buf));
	if (n <= 0)
		return false;
	const char *cfile = DEFAULT_CONFIG;
	for (const char *p = buf; p < buf + n; p += strlen(p) + 1) {
		if (!strcmp(p, "-C") && p + strlen(p) + 1 < buf + n) {
			cfile = p + strlen(p) + 1;
			break;
		}
		if (!strncmp(p, "-C", 2) && p[2]) {
			cfile = p + 2;
			break;
		}
	}
	/* A relative -C is relative to the master's working directory. */
	if (cfile[0] != '/') {
		char *full = xasprintf("/proc/%d/cwd/%s", (int)pid, cfile);
		bool r = same_file(full, conf);
		free(full);
		return r;
	}
	return same_file(cfile, conf);
}

/* Which of files (stat'ed in st[]) pid has open, or -1. */
static int has_open(pid_t pid, const struct stat *st, const bool *ok, size_t n)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int found = -1;
	struct dirent *de;
	while (found < 0 && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char *fdpath = xasprintf("%s/%s", path, de->d_name);
		struct stat fst;
		if (stat(fdpath, &fst) == 0) {
			for (size_t i = 0; i < n; i++) {
				if (ok[i] && fst.st_dev == st[i].st_dev &&
				    fst.st_ino == st[i].st_ino) {
					found = (int)i;
					break;
				}
			}
		}
		free(fdpath);
	}
	closedir(d);
	return found;
}

int procscan_find_server(const char *config_file, const char *const *files,
			 size_t n, struct procscan_hit *hit_r)
{
	struct stat conf;
	bool have_conf = stat(config_file ? config_file : DEFAULT_CONFIG,
			      &conf) == 0;
	struct stat *st = xcalloc(n ? n : 1, sizeof(*st));
	bool *ok = xcalloc(n ? n : 1, sizeof(*ok));
	for (size_t i = 0; i < n; i++)
		ok[i] = stat(files[i], &st[i]) == 0;

	/* Ourselves and our ancestors (master running START) do not count. */
	pid_t skip[64];
	size_t nskip = 0;
	for (pid_t p = getpid(); p > 1 && nskip < ARRAY_SIZE(skip);
	     p = parent_of(p))
		skip[nskip++] = p;

	int found = 0;
	DIR *d = opendir("/proc");
	if (!d)
		goto out;
	struct dirent *de;
	while (!found && (de = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid_t pid = (pid_t)atoi(de->d_name);
		bool mine = false;
		for (size_t i = 0; i < nskip; i++)
			mine |= skip[i] == pid;
		if (mine)
			continue;
		char path[64], comm[32];
		snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
		if (read_small(path, comm, sizeof(comm)) <= 0)
			continue;
		comm[strcspn(comm, "\n")] = '\0';
		if (have_conf && (!strcmp(comm, "master") ||
				  !strcmp(comm, "cyrmaster")) &&
		    master_uses(pid, &conf)) {
			found = 1;
			snprintf(hit_r->why, sizeof(hit_r->why),
				 "runs with -C %s",
				 config_file ? config_file : DEFAULT_CONFIG);
		} else {
			int i = has_open(pid, st, ok, n);
			if (i >= 0) {
				found = 1;
				snprintf(hit_r->why, sizeof(hit_r->why),
					 "has %s open", files[i]);
			}
		}
		if (found) {
			hit_r->pid = pid;
			snprintf(hit_r->comm, sizeof(hit_r->comm), "%s", comm);
		}
	}
	closedir(d);
out:
	free(st);
	free(ok);
	return found;
}
