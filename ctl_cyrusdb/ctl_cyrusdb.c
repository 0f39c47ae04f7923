/*
 * cyrus ctl_cyrusdb: checkpoint (-c) or recover (-r) the server-wide
 * databases of a config, as Cyrus 3.6.1's ctl_cyrusdb does, with these
 * differences:
 * - a checkpoint copies each database under its shared lock (no write
 *   transaction half-way through) into a temporary file that is fsynced and
 *   renamed into db.backup1, where Cyrus copies the live file unlocked;
 * - recovery opens every database (twoskip and skiplist recover on open),
 *   reports a structurally broken one, and refuses to run while a Cyrus
 *   server uses the config (Cyrus would go ahead and race it);
 * - every database is handled even when one fails, each failure is named
 *   on stderr, and the exit status is non-zero if any failed (Cyrus keeps
 *   only the last status).
 * Not done yet: the mailboxes.db entry fixes of -r without -x (reserved
 * entries, missing uniqueids, legacy specialuse, reverse ACLs).
 */
#include "compat.h"

#include <getopt.h>
#include <sys/stat.h>
#include <time.h>

#include "buf.h"
#include "commands.h"
#include "config.h"
#include "cyrus.h"
#include "cyrusdb.h"
#include "dbset.h"
#include "error.h"
#include "log.h"
#include "procscan.h"
#include "xmalloc.h"

struct run {
	struct config *cfg;
	struct dbset_entry dbs[DBSET_MAX];
	size_t ndbs;
	enum error_kind worst;
	struct buf failed; /* "mailboxes.db, annotations.db" */
	unsigned nfailed;
};

static void failed(struct run *run, const char *what, enum error_kind kind,
		   const char *msg)
{
	log_error("%s", msg);
	run->worst = run->worst == ERR_NONE ? kind
					    : error_worst(run->worst, kind);
	if (run->failed.len)
		buf_adds(&run->failed, ", ");
	buf_adds(&run->failed, what);
	run->nfailed++;
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* Only what our library can open: sql and zeroskip are not. */
static bool usable(struct run *run, const struct dbset_entry *e)
{
	if (cyrusdb_backend_exists(e->backend))
		return true;
	char *msg = xasprintf("cannot handle '%s': backend '%s' (%s_db) is "
			      "not supported", e->path, e->backend, e->db);
	failed(run, dbset_basename(e), ERR_UNAVAILABLE, msg);
	free(msg);
	return false;
}

static bool repackable(const char *backend)
{
	return !strcmp(backend, "twoskip") || !strcmp(backend, "skiplist");
}

static void repack_one(struct run *run, const struct dbset_entry *e)
{
	struct error err = ERROR_INIT;
	struct cyrusdb *db = NULL;
	int r = cyrusdb_open(e->backend, e->path, 0, &db, &err);
	if (r == CYRUSDB_OK && (r = cyrusdb_repack(db)) != CYRUSDB_OK)
		error_set(&err, ERR_IO, "cannot repack '%s': %s", e->path,
			  cyrusdb_errmsg(db));
	cyrusdb_close(&db);
	if (r != CYRUSDB_OK)
		failed(run, dbset_basename(e), err.kind, err.msg);
	else
		log_info("repacked %s", e->path);
}

static void checkpoint(struct run *run, bool repack)
{
	const char *configdir = config_getstring(run->cfg, "configdirectory");
	struct error err = ERROR_INIT;
	char *backup1 = NULL;

	/* File backends have nothing to sync; a repack is on request only. */
	for (size_t i = 0; repack && i < run->ndbs; i++) {
		const struct dbset_entry *e = &run->dbs[i];
		if (repackable(e->backend) && exists(e->path))
			repack_one(run, e);
	}

	if (dbset_rotate_backups(configdir, &backup1, &err) < 0) {
		failed(run, "db.backup1", err.kind, err.msg);
		return;
	}
	for (size_t i = 0; i < run->ndbs; i++) {
		const struct dbset_entry *e = &run->dbs[i];
		/* quotalegacy is a directory tree: Cyrus archives nothing. */
		if (!e->archive || !strcmp(e->backend, "quotalegacy"))
			continue;
		if (!exists(e->path)) {
			log_debug("not archiving %s: no such file", e->path);
			continue;
		}
		char *dst = xasprintf("%s/%s", backup1, dbset_basename(e));
		unsigned long long bytes = 0;
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		error_clear(&err);
		if (dbset_copy_locked(e->path, dst, &bytes, &err) < 0) {
			char *msg = xasprintf("cannot archive '%s': %s",
					      e->path, err.msg);
			failed(run, dbset_basename(e), err.kind, msg);
			free(msg);
		} else {
			clock_gettime(CLOCK_MONOTONIC, &t1);
			log_info("archived %s: %llu bytes in %.3fs", e->path,
				 bytes,
				 (double)(t1.tv_sec - t0.tv_sec) +
					 (t1.tv_nsec - t0.tv_nsec) / 1e9);
		}
		free(dst);
	}
	free(backup1);
}

/* Cyrus's check_convert: a detectable file of another format is
 * converted in place to the configured backend. */
static int convert_if_needed(struct run *run, const struct dbset_entry *e)
{
	const char *found = cyrusdb_detect(e->path);
	if (!found || !strcmp(found, e->backend))
		return 0;
	struct error err = ERROR_INIT;
	unsigned long n = 0;
	log_notice("converting %s from %s to %s", e->path, found, e->backend);
	if (cyrusdb_convert(e->path, found, e->path, e->backend, &n,
			    &err) < 0) {
		char *msg = xasprintf("cannot convert '%s' from %s to %s: %s",
				      e->path, found, e->backend, err.msg);
		failed(run, dbset_basename(e), err.kind, msg);
		free(msg);
		return -1;
	}
	log_info("converted %s from %s to %s: %lu records", e->path, found,
		 e->backend, n);
	return 0;
}

/* Opening recovers a twoskip or skiplist left by a crash; then check it. */
static void recover_one(struct run *run, const struct dbset_entry *e)
{
	struct error err = ERROR_INIT;
	struct cyrusdb *db = NULL;
	int r = cyrusdb_open(e->backend, e->path, 0, &db, &err);
	if (r == CYRUSDB_OK && (r = cyrusdb_consistent(db)) != CYRUSDB_OK)
		error_set(&err, ERR_DATA, "'%s' is not consistent after "
			  "recovery: %s", e->path, cyrusdb_errmsg(db));
	cyrusdb_close(&db);
	if (r != CYRUSDB_OK)
		failed(run, dbset_basename(e), err.kind, err.msg);
	else
		log_info("recovered %s", e->path);
}

static void recover(struct run *run, bool fix_entries)
{
	const char *configdir = config_getstring(run->cfg, "configdirectory");
	struct error err = ERROR_INIT;
	bool stamped;

	if (dbset_write_skipstamp(configdir, &stamped, &err) < 0)
		log_warn("%s (skiplist databases are recovered only when "
			 "their tail is unclean)", err.msg);
	else if (stamped)
		log_notice("skiplist: updated recovery stamp");
	else
		log_notice("skiplist: clean shutdown detected");

	for (size_t i = 0; i < run->ndbs; i++) {
		const struct dbset_entry *e = &run->dbs[i];
		if (!exists(e->path))
			continue;
		if (!usable(run, e) || convert_if_needed(run, e) < 0)
			continue;
		/* quotalegacy keeps one file per root under quota/. */
		if (strcmp(e->backend, "quotalegacy"))
			recover_one(run, e);
	}
	if (fix_entries)
		log_warn("mailboxes.db entry fixes (reserved entries, missing "
			 "uniqueids, reverse ACLs) are not implemented yet; "
			 "databases were recovered as with -x");
}

/* -r must not race a live server: refuse if one uses this config. */
static int refuse_if_running(struct run *run)
{
	const char *files[DBSET_MAX];
	for (size_t i = 0; i < run->ndbs; i++)
		files[i] = run->dbs[i].path;
	struct procscan_hit hit;
	if (!procscan_find_server(config_filename(run->cfg), files, run->ndbs,
				  &hit))
		return 0;
	log_error("refusing to recover: a Cyrus server is running on this "
		  "configuration (%s, pid %d, %s); stop it first, or run "
		  "recovery from the START section of cyrus.conf",
		  hit.comm, (int)hit.pid, hit.why);
	return EX_TEMPFAIL;
}

int cmd_ctl_cyrusdb(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ "repack", no_argument, NULL, 'P' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	enum { NONE, RECOVER, CHECKPOINT } op = NONE;
	const char *alt_config = NULL;
	bool fix_entries = true, repack = false;
	int c, verbose = 0;

	while ((c = getopt_long(argc, argv, "C:rxc", longopts, NULL)) != -1) {
		switch (c) {
		case 'C':
			alt_config = optarg;
			break;
		case 'r':
		case 'c':
			if (op != NONE)
				cyrus_usage(ctx, false);
			op = c == 'r' ? RECOVER : CHECKPOINT;
			break;
		case 'x':
			fix_entries = false;
			break;
		case 'P':
			repack = true;
			break;
		case 'v':
			verbose++;
			break;
		default:
			cyrus_usage(ctx, false);
		}
	}
	argc -= optind;
	if (argc != 0 || op == NONE || (op != RECOVER && !fix_entries) ||
	    (op != CHECKPOINT && repack))
		cyrus_usage(ctx, false);
	log_set_verbose(verbose);

	cyrus_setup(ctx, alt_config);

	struct run run = { .cfg = ctx->cfg, .failed = BUF_INIT };
	run.ndbs = dbset_get(ctx->cfg, run.dbs);
	const char *msg = op == RECOVER ? "recovering cyrus databases"
					: "checkpointing cyrus databases";
	int r = 0;

	if (op == RECOVER && (r = refuse_if_running(&run)) != 0)
		goto out;
	log_notice("%s", msg);
	if (op == RECOVER)
		recover(&run, fix_entries);
	else
		checkpoint(&run, repack);
	log_notice("done %s", msg);

	if (run.nfailed) {
		log_error("%u database%s failed: %s", run.nfailed,
			  run.nfailed == 1 ? "" : "s", run.failed.s);
		r = error_exitcode(run.worst);
	}
out:
	dbset_release(run.dbs, run.ndbs);
	buf_release(&run.failed);
	return r;
}
