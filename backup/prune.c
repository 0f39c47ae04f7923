/*
 * prune.c: `cyrus backup prune`: drops old snapshots, then the objects no
 * remaining snapshot names. Crash-safe by order: the kept manifests are
 * read first (one that cannot be read stops prune before anything
 * changes), then the dropped ones go (and are synced), the sweep after; a
 * sweep cut short is finished by the next prune, and an object is never
 * removed while a kept manifest names it. Packs: one whose messages are all unused goes; one whose unused
 * messages pass --max-unused percent of its bytes is rewritten without
 * them (lib/backup_archive.c: backup_packs_prune). Below that they stay
 * until more of the pack is unused: rewriting a pack copies all of it.
 */
#include "compat.h"
#include "backup.h"

#include <dirent.h>
#include <getopt.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "backup_archive.h"
#include "backup_manifest.h"
#include "buf.h"
#include "cyrus.h"
#include "error.h"
#include "log.h"
#include "xmalloc.h"

/* The objects a manifest names go into set. -1 if it cannot be read. */
static int collect(struct backup_archive *ar, const char *id,
		   struct backup_shaset *msgs, struct backup_shaset *files,
		   struct error *err)
{
	struct backup_manifest m;
	char *path = backup_manifest_path(ar, id);
	int r = backup_manifest_load(path, &m, err);
	free(path);
	if (r < 0)
		return -1;
	for (size_t i = 0; i < m.nrecs; i++) {
		const struct backup_rec *rec = &m.recs[i];
		const char *t = backup_rec_field(&m, rec, 0);
		if (!strcmp(t, "msg"))
			backup_shaset_add(msgs, backup_rec_field(&m, rec, 2));
		else if (!strcmp(t, "file") || !strcmp(t, "part"))
			backup_shaset_add(files, backup_rec_field(&m, rec, 2));
		else if (!strcmp(t, "db") || !strcmp(t, "user") ||
			 !strcmp(t, "sieve"))
			backup_shaset_add(files, backup_rec_field(&m, rec, 3));
	}
	backup_manifest_release(&m);
	return 0;
}

static time_t snapshot_time(struct backup_archive *ar, const char *id)
{
	time_t t;
	if (backupcmd_parse_time(id, &t) == 0)
		return t;
	char *path = backup_manifest_path(ar, id);
	struct stat st;
	t = stat(path, &st) == 0 ? st.st_mtime : 0;
	free(path);
	return t;
}

/* Unused bytes a pack may keep before it is rewritten (percent). */
#define MAX_UNUSED_DEFAULT 5

/* Removes the loose objects of one kind that set does not hold. */
static int sweep(struct backup_archive *ar, const char *kind,
		 const struct backup_shaset *keep, bool dry,
		 unsigned long *n_r, unsigned long long *bytes_r)
{
	char *top = xasprintf("%s/%s", ar->dir, kind);
	DIR *d = opendir(top);
	struct dirent *de;
	int r = 0;
	if (!d) {
		free(top);
		return 0;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *sub = xasprintf("%s/%s", top, de->d_name);
		DIR *s = opendir(sub);
		struct dirent *oe;
		while (s && (oe = readdir(s))) {
			size_t l = strlen(oe->d_name);
			char sha[41];
			if (l != 43 || strcmp(oe->d_name + 40, ".gz"))
				continue;
			memcpy(sha, oe->d_name, 40);
			sha[40] = '\0';
			if (!backup_sha1_valid(sha) ||
			    backup_shaset_has(keep, sha))
				continue;
			char *p = xasprintf("%s/%s", sub, oe->d_name);
			struct stat st;
			if (stat(p, &st) == 0)
				*bytes_r += (unsigned long long)st.st_size;
			if (!dry && unlink(p) < 0 && errno != ENOENT) {
				log_error("cannot remove '%s': %s", p,
					  strerror(errno));
				r = -1;
			}
			(*n_r)++;
			free(p);
		}
		if (s)
			closedir(s);
		if (!dry)
			rmdir(sub); /* only if empty */
		free(sub);
	}
	closedir(d);
	free(top);
	return r;
}

/* Snapshot directories without a manifest are runs that died: empty
 * them (we hold the create lock, so none is running). */
static void remove_dead_runs(struct backup_archive *ar, bool dry)
{
	char *sd = xasprintf("%s/snapshots", ar->dir);
	DIR *d = opendir(sd);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *mp = backup_manifest_path(ar, de->d_name);
		char *dir = xasprintf("%s/%s", sd, de->d_name);
		if (access(mp, F_OK) < 0 && errno == ENOENT) {
			log_info("removing '%s' (an unfinished run)", dir);
			DIR *s = dry ? NULL : opendir(dir);
			struct dirent *fe;
			while (s && (fe = readdir(s))) {
				if (!strcmp(fe->d_name, ".") ||
				    !strcmp(fe->d_name, ".."))
					continue;
				char *f = xasprintf("%s/%s", dir, fe->d_name);
				unlink(f);
				free(f);
			}
			if (s)
				closedir(s);
			if (!dry)
				rmdir(dir);
		}
		free(mp);
		free(dir);
	}
	if (d)
		closedir(d);
	free(sd);
}

int cmd_backup_prune(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ "keep", required_argument, NULL, 'k' },
		{ "keep-days", required_argument, NULL, 'd' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "max-unused", required_argument, NULL, 'u' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct backup_archive *ar = NULL;
	struct error err = ERROR_INIT;
	struct backup_shaset msgs = { 0 }, files = { 0 };
	const char *dir = BACKUP_DEFAULT_DIR;
	long keep = -1, days = -1, max_unused = MAX_UNUSED_DEFAULT;
	bool dry = false;
	int ch, rc = 0, verbose = 0;
	char **ids = NULL;
	size_t n = 0;
	char *end;

	while ((ch = getopt_long(argc, argv, "C:k:d:nu:v", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'C': break;
		case 'k':
			keep = strtol(optarg, &end, 10);
			if (*end || keep < 1) {
				log_error("--keep wants a number of at "
					  "least 1, not '%s'", optarg);
				return EX_USAGE;
			}
			break;
		case 'd':
			days = strtol(optarg, &end, 10);
			if (*end || days < 0) {
				log_error("--keep-days wants a number of "
					  "days, not '%s'", optarg);
				return EX_USAGE;
			}
			break;
		case 'u':
			max_unused = strtol(optarg, &end, 10);
			if (*end || max_unused < 0 || max_unused > 100) {
				log_error("--max-unused wants a percentage "
					  "(0 to 100), not '%s'", optarg);
				return EX_USAGE;
			}
			break;
		case 'n': dry = true; break;
		case 'v': verbose++; break;
		default: cyrus_usage(ctx, false);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc > 1 || (keep < 0 && days < 0))
		cyrus_usage(ctx, false);
	if (argc)
		dir = argv[0];
	log_set_verbose(verbose);

	if (backup_archive_open(dir, BACKUP_OPEN_PRUNE, &ar, &err) < 0 ||
	    backup_snapshot_ids(ar, &ids, &n, &err) < 0) {
		log_error("%s", err.msg);
		backup_archive_close(&ar);
		return error_exitcode(err.kind);
	}
	/* Newest first: ids are sorted oldest first. */
	time_t now = time(NULL);
	bool *drop = xcalloc(n ? n : 1, sizeof(bool));
	size_t kept = 0;
	for (size_t j = n; j-- > 0;) {
		bool k = true;
		if (keep > 0 && kept >= (size_t)keep)
			k = false;
		if (days >= 0 && kept > 0 &&
		    snapshot_time(ar, ids[j]) < now - days * 86400L)
			k = false;
		drop[j] = !k;
		kept += k;
	}
	/* 1. What the kept ones need, read before anything is dropped: an
	 * unreadable kept manifest stops prune (its objects must not go,
	 * and the snapshots it would replace stay too). */
	for (size_t j = 0; j < n; j++) {
		if (drop[j])
			continue;
		if (collect(ar, ids[j], &msgs, &files, &err) < 0) {
			log_error("not pruning anything: %s", err.msg);
			rc = error_exitcode(err.kind);
			goto out;
		}
	}
	remove_dead_runs(ar, dry);
	/* 2. The manifests of the dropped snapshots. */
	for (size_t j = 0; j < n; j++) {
		if (!drop[j])
			continue;
		char *mp = backup_manifest_path(ar, ids[j]);
		log_info("dropping snapshot %s", ids[j]);
		if (dry) {
			printf("would drop snapshot %s\n", ids[j]);
		} else if (unlink(mp) < 0 && errno != ENOENT) {
			log_error("cannot remove '%s': %s", mp,
				  strerror(errno));
			rc = EX_IOERR;
		} else {
			fsync_parent_dir(mp);
			char *sd = xasprintf("%s/snapshots/%s", dir, ids[j]);
			rmdir(sd);
			free(sd);
		}
		free(mp);
	}
	if (rc)
		goto out;
	/* 3. The sweep: packs, then loose objects (messages only in a
	 * format 1 archive). */
	unsigned long nobj = 0;
	unsigned long long bytes = 0;
	struct backup_prune_stats ps;
	if (backup_packs_prune(ar, &msgs, (unsigned)max_unused, dry, &ps,
			       &err) < 0) {
		log_error("%s", err.msg);
		rc = error_exitcode(err.kind);
	}
	nobj += ps.objects;
	bytes += ps.bytes;
	for (size_t i = 0; ps.skipped && i < backup_pack_count(ar); i++)
		if (backup_pack_check(ar, i, false, &err) < 0)
			log_warn("left alone: %s", err.msg);
	if (sweep(ar, "messages", &msgs, dry, &nobj, &bytes) < 0 ||
	    sweep(ar, "files", &files, dry, &nobj, &bytes) < 0)
		rc = rc ? rc : EX_IOERR;
	if (dry) {
		printf("would remove %lu objects (%llu bytes)\n", nobj, bytes);
		if (ps.removed || ps.rewritten)
			printf("would remove %lu packs and rewrite %lu\n",
			       ps.removed, ps.rewritten);
	} else {
		log_info("removed %lu objects (%llu bytes); packs: %lu "
			 "removed, %lu rewritten", nobj, bytes, ps.removed,
			 ps.rewritten);
	}
	if (!dry && nobj)
		log_notice("prune: removed %lu objects (%llu bytes)", nobj,
			   bytes);
out:
	free(drop);
	backup_ids_free(ids, n);
	backup_shaset_release(&msgs);
	backup_shaset_release(&files);
	backup_archive_close(&ar);
	return rc;
}
