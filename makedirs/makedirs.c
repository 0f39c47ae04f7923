/*
 * cyrus makedirs: the directory tree Debian's makedirs script
 * (/usr/lib/cyrus/bin/makedirs) creates, read from imapd.conf with
 * Cyrus's own rules and with -C:
 *
 * - configdirectory (750) with db proc socket log msg user quota lock
 *   (700; socket 750) and the hash directories under user, quota, lock;
 * - every partition-NAME (750, "stage.", hash directories with
 *   hashimapspool) and, beyond the script, every metapartition-NAME (750,
 *   hash directories with hashimapspool);
 * - sievedir (755) and its hash directories (755) unless sieveusehomedir;
 * - everything below those owned by cyrus_user:cyrus_group (cyrus:mail).
 *
 * Hash directories are a..z, or with fulldirhash A..W (Cyrus's dir_hash_c;
 * the script knows only a..z). Directories the script makes without a
 * chmod get the caller's umask, as mkdir(1) gives them. Idempotent: only
 * what is missing is created, modes and owners are re-applied. -n prints
 * what would change and changes nothing.
 */
#include "compat.h"

#include <ftw.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "cyrus.h"
#include "error.h"
#include "log.h"
#include "xmalloc.h"

#define KEEP_MODE ((mode_t)-1)

struct makedirs {
	bool dryrun, cleansquat;
	uid_t uid;
	gid_t gid;
	const char *owner; /* "cyrus:mail", for -n */
	enum error_kind worst;
};

/* nftw() has no rock: the run in progress. */
static struct makedirs *walk_md;

static void failed(struct makedirs *md, enum error_kind kind)
{
	if (md->worst == ERR_NONE)
		md->worst = kind;
	else
		md->worst = error_worst(md->worst, kind);
}

static void sys_failed(struct makedirs *md, const char *what,
		       const char *path)
{
	int e = errno;
	log_error("cannot %s '%s': %s", what, path, strerror(e));
	failed(md, error_kind_from_errno(e));
}

static void set_mode(struct makedirs *md, const char *path, mode_t mode,
		     const struct stat *st)
{
	if (mode == KEEP_MODE || (st && (st->st_mode & 07777) == mode))
		return;
	if (md->dryrun) {
		printf("chmod %o %s\n", (unsigned)mode, path);
		return;
	}
	if (chmod(path, mode) < 0)
		sys_failed(md, "chmod", path);
}

/*
 * Makes sure path is a directory (with parents, mkdir -p, when asked), then
 * applies mode unless KEEP_MODE. Returns false if it is not a directory.
 */
static bool ensure_dir(struct makedirs *md, const char *path, mode_t mode,
		       bool parents)
{
	struct stat st;

	if (stat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			log_error("cannot create directory '%s': exists and "
				  "is not a directory", path);
			failed(md, ERR_CANTCREAT);
			return false;
		}
		set_mode(md, path, mode, &st);
		return true;
	}
	if (errno != ENOENT) {
		sys_failed(md, "stat", path);
		return false;
	}
	if (parents) {
		char *parent = xstrdup(path);
		char *slash = strrchr(parent, '/');
		while (slash && slash > parent && slash[1] == '\0') {
			*slash = '\0';
			slash = strrchr(parent, '/');
		}
		if (slash && slash > parent) {
			*slash = '\0';
			if (!ensure_dir(md, parent, KEEP_MODE, true)) {
				free(parent);
				return false;
			}
		}
		free(parent);
	}
	if (md->dryrun) {
		printf("mkdir %s\n", path);
	} else if (mkdir(path, 0777) < 0 && errno != EEXIST) {
		sys_failed(md, "create directory", path);
		return false;
	}
	set_mode(md, path, mode, NULL);
	return true;
}

static void ensure_hashdirs(struct makedirs *md, const char *dir,
			    bool fulldirhash, mode_t mode)
{
	char first = fulldirhash ? 'A' : 'a', last = fulldirhash ? 'W' : 'z';

	for (char c = first; c <= last; c++) {
		char *p = xasprintf("%s/%c", dir, c);
		ensure_dir(md, p, mode, false);
		free(p);
	}
}

static int fix_owner_cb(const char *path, const struct stat *st,
			int type UNUSED, struct FTW *ftw UNUSED)
{
	struct makedirs *md = walk_md;

	if (st->st_uid == md->uid && st->st_gid == md->gid)
		return 0;
	if (md->dryrun) {
		printf("chown %s %s\n", md->owner, path);
		return 0;
	}
	/* lchown: a symlink in the spool must not hand its target to cyrus. */
	if (lchown(path, md->uid, md->gid) < 0)
		sys_failed(md, "chown", path);
	return 0;
}

static int clean_squat_cb(const char *path, const struct stat *st UNUSED,
			  int type, struct FTW *ftw)
{
	struct makedirs *md = walk_md;

	if (type != FTW_F || strcmp(path + ftw->base, "cyrus.squat"))
		return 0;
	if (md->dryrun) {
		printf("rm %s\n", path);
		return 0;
	}
	if (unlink(path) < 0 && errno != ENOENT)
		sys_failed(md, "remove", path);
	return 0;
}

/*
 * Walks the tree below root without following symlinks, except root
 * itself (find -H). A root that does not exist yet (-n) is skipped.
 */
static void walk(struct makedirs *md, const char *root,
		 int (*cb)(const char *, const struct stat *, int,
			   struct FTW *))
{
	char resolved[PATH_MAX];
	struct stat st;

	if (lstat(root, &st) < 0)
		return;
	if (S_ISLNK(st.st_mode)) {
		if (!realpath(root, resolved))
			return;
		root = resolved;
	}
	walk_md = md;
	if (nftw(root, cb, 32, FTW_PHYS) < 0)
		sys_failed(md, "walk", root);
	walk_md = NULL;
}

struct partlist {
	char **dirs;
	size_t n;
};

static int collect_partition(void *rock, const char *name UNUSED,
			     const char *dir)
{
	struct partlist *pl = rock;

	pl->dirs = xrealloc(pl->dirs, (pl->n + 1) * sizeof(*pl->dirs));
	pl->dirs[pl->n++] = xstrdup(dir);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted and without duplicates, as the script's "sort | uniq". */
static void partlist_sort(struct partlist *pl)
{
	size_t j = 0;

	if (pl->n)
		qsort(pl->dirs, pl->n, sizeof(*pl->dirs), cmp_str);
	for (size_t i = 0; i < pl->n; i++) {
		if (j && !strcmp(pl->dirs[j - 1], pl->dirs[i]))
			free(pl->dirs[i]);
		else
			pl->dirs[j++] = pl->dirs[i];
	}
	pl->n = j;
}

static bool partlist_has(const struct partlist *pl, const char *dir)
{
	for (size_t i = 0; i < pl->n; i++)
		if (!strcmp(pl->dirs[i], dir))
			return true;
	return false;
}

static void partlist_release(struct partlist *pl)
{
	for (size_t i = 0; i < pl->n; i++)
		free(pl->dirs[i]);
	free(pl->dirs);
	pl->dirs = NULL;
	pl->n = 0;
}

struct meta_rock {
	const struct config *cfg;
	const struct partlist *parts;
	struct partlist *metas;
};

/* The metapartitions: the value of metapartition-NAME for every NAME that
 * is a partition, unless it is a data partition's directory too. */
static int collect_metapartition(void *rock, const char *name,
				 const char *dir UNUSED)
{
	struct meta_rock *mr = rock;
	const char *meta = config_metapartitiondir(mr->cfg, name);

	if (meta && !partlist_has(mr->parts, meta))
		collect_partition(mr->metas, name, meta);
	return 0;
}

static int lookup_owner(const struct config *cfg, struct makedirs *md,
			struct error *err)
{
	const char *user = config_getstring(cfg, "cyrus_user");
	const char *group = config_getstring(cfg, "cyrus_group");
	struct passwd *pw;
	struct group *gr;

	if (!user)
		user = "cyrus";
	pw = getpwnam(user);
	if (!pw)
		return error_set(err, ERR_NOUSER, "no such user '%s'", user);
	md->uid = pw->pw_uid;
	md->gid = pw->pw_gid;
	if (group) {
		gr = getgrnam(group);
		if (!gr)
			return error_set(err, ERR_NOUSER, "no such group '%s'",
					 group);
		md->gid = gr->gr_gid;
	}
	gr = getgrgid(md->gid);
	md->owner = xasprintf("%s:%s", user, gr ? gr->gr_name : "?");
	return 0;
}

static void make_confdir(struct makedirs *md, const char *confdir,
			 bool fulldirhash)
{
	static const char *const subdirs[] = { "db",   "proc",  "socket",
					       "log",  "msg",   "user",
					       "quota", "lock" };

	printf("Creating/updating cyrus control directories in %s...\n",
	       confdir);
	ensure_dir(md, confdir, 0750, false);
	for (size_t i = 0; i < ARRAY_SIZE(subdirs); i++) {
		char *p = xasprintf("%s/%s", confdir, subdirs[i]);
		ensure_dir(md, p, strcmp(subdirs[i], "socket") ? 0700 : 0750,
			   false);
		if (!strcmp(subdirs[i], "user") ||
		    !strcmp(subdirs[i], "quota") || !strcmp(subdirs[i], "lock"))
			ensure_hashdirs(md, p, fulldirhash, KEEP_MODE);
		free(p);
	}
	walk(md, confdir, fix_owner_cb);
}

static void make_partition(struct makedirs *md, const char *dir,
			   const char *kind, bool hashspool, bool fulldirhash,
			   bool stage)
{
	printf("Creating/updating %s spool %s...\n", kind, dir);
	if (!ensure_dir(md, dir, 0750, true))
		return;
	if (hashspool)
		ensure_hashdirs(md, dir, fulldirhash, KEEP_MODE);
	if (stage) {
		char *p = xasprintf("%s/stage.", dir);
		ensure_dir(md, p, KEEP_MODE, false);
		free(p);
	}
	walk(md, dir, fix_owner_cb);
	if (md->cleansquat)
		walk(md, dir, clean_squat_cb);
}

int cmd_makedirs(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ "cleansquat", no_argument, NULL, 's' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	struct makedirs md = { 0 };
	struct partlist parts = { 0 }, metas = { 0 };
	struct error err = ERROR_INIT;
	const char *alt_config = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "C:n", longopts, NULL)) != -1) {
		switch (c) {
		case 'C': alt_config = optarg; break;
		case 'n': md.dryrun = true; break;
		case 's': md.cleansquat = true; break;
		default: cyrus_usage(ctx, false);
		}
	}
	argc -= optind;
	if (argc != 0)
		cyrus_usage(ctx, false);

	/*
	 * cyrus_setup applies imapd.conf's umask (077), meant for the files
	 * of the store; the directories the script makes without a chmod
	 * get the caller's umask, so we keep that one.
	 */
	mode_t saved_umask = umask(022);
	umask(saved_umask);
	cyrus_setup(ctx, alt_config);
	umask(saved_umask);

	const struct config *cfg = ctx->cfg;
	const char *confdir = config_getstring(cfg, "configdirectory");
	bool hashspool = config_getswitch(cfg, "hashimapspool");
	bool fulldirhash = config_getswitch(cfg, "fulldirhash");

	config_foreach_partition(cfg, collect_partition, &parts);
	if (!parts.n)
		fatal(EX_CONFIG, "no partition-NAME in '%s': nothing to make",
		      config_filename(cfg));
	partlist_sort(&parts);
	struct meta_rock mr = { cfg, &parts, &metas };
	config_foreach_partition(cfg, collect_metapartition, &mr);
	partlist_sort(&metas);

	struct stat st;
	if (!confdir || stat(confdir, &st) < 0 || !S_ISDIR(st.st_mode))
		fatal(EX_CONFIG, "configdirectory '%s' is not a directory",
		      confdir ? confdir : "");
	if (lookup_owner(cfg, &md, &err) < 0)
		fatal(error_exitcode(err.kind), "%s", err.msg);

	make_confdir(&md, confdir, fulldirhash);
	for (size_t i = 0; i < parts.n; i++)
		make_partition(&md, parts.dirs[i], "partition", hashspool,
			       fulldirhash, true);
	for (size_t i = 0; i < metas.n; i++)
		make_partition(&md, metas.dirs[i], "metapartition", hashspool,
			       fulldirhash, false);

	if (!config_getswitch(cfg, "sieveusehomedir")) {
		const char *sievedir = config_getstring(cfg, "sievedir");
		if (sievedir && ensure_dir(&md, sievedir, 0755, false)) {
			ensure_hashdirs(&md, sievedir, fulldirhash, 0755);
			walk(&md, sievedir, fix_owner_cb);
		}
	}

	partlist_release(&parts);
	partlist_release(&metas);
	free((char *)md.owner);
	return md.worst == ERR_NONE ? 0 : error_exitcode(md.worst);
}
