/*
 * cyrus ctl_cyrusdb: checkpoint (-c) or recover (-r) the server-wide
 * databases of a config, as Cyrus 3.6.1's ctl_cyrusdb does, with these
 * differences:
 * - a checkpoint copies each database under its shared lock (no write
 *   transaction half-way through) into a temporary file that is fsynced and
 *   renamed into db.backup1, where Cyrus copies the live file unlocked;
 * - recovery opens every database (twoskip and skiplist recover on open),
 *   checks what recovery touched (every database with --check), reports a
 *   structurally broken one, and refuses to run while a Cyrus
 *   server uses the config (Cyrus would go ahead and race it);
 * - every database is handled even when one fails, each failure is named
 *   on stderr, and the exit status is non-zero if any failed (Cyrus keeps
 *   only the last status).
 * - a database recovery cannot open or finds broken is named with the
 *   commands that salvage it; with --salvage it is salvaged (lib/salvage.h)
 *   and the damaged file is kept beside the result;
 * - --json and --summary say which databases were handled, their sizes and
 *   how long each took.
 * The mailboxes.db entry fixes of -r without -x are in fixentries.c.
 */
#include "compat.h"

#include <fcntl.h>
#include <getopt.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "buf.h"
#include "commands.h"
#include "config.h"
#include "cyrus.h"
#include "cyrusdb.h"
#include "dbset.h"
#include "error.h"
#include "fixentries.h"
#include "log.h"
#include "procscan.h"
#include "salvage.h"
#include "xmalloc.h"
#include "json.h"

/* What happened to one database, for --json and --summary. */
struct dbresult {
	const char *status; /* "archived", "recovered", "failed", ... */
	unsigned long long bytes;
	double seconds;
	char *error;        /* malloc'd, or NULL */
};

struct run {
	struct config *cfg;
	struct dbset_entry dbs[DBSET_MAX];
	struct dbresult res[DBSET_MAX];
	size_t ndbs;
	enum error_kind worst;
	struct buf failed; /* "mailboxes.db, annotations.db" */
	unsigned nfailed;
	bool salvage;      /* --salvage: salvage what recovery cannot open */
	bool check;        /* --check: check clean databases too */
	const char *conf;  /* the imapd.conf, for the commands we print */
};

static double now_seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static unsigned long long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (unsigned long long)st.st_size : 0;
}

static struct dbresult *result_of(struct run *run, const char *what)
{
	for (size_t i = 0; i < run->ndbs; i++)
		if (!strcmp(dbset_basename(&run->dbs[i]), what))
			return &run->res[i];
	return NULL;
}

static void failed(struct run *run, const char *what, enum error_kind kind,
		   const char *msg)
{
	struct dbresult *res = result_of(run, what);
	if (res) {
		res->status = "failed";
		free(res->error);
		res->error = xstrdup(msg);
	}
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

/*
 * Before a database is opened: a path whose directory does not exist is a
 * configuration error (naming the setting that gives it: NAME_db_path, or
 * configdirectory when that is missing), something that
 * is not a regular file or cannot be opened (for writing when recovering)
 * fails with what the system says. A missing file is no error (Cyrus
 * creates it on first use). Returns true if the database can be handled,
 * false if it is missing or failed (*missing_r tells which).
 */
static bool check_path(struct run *run, const struct dbset_entry *e,
		       bool writing, bool *missing_r)
{
	const char *what = writing ? "recover" : "archive";
	struct stat st;
	char *msg = NULL;
	enum error_kind kind = ERR_NONE;

	*missing_r = false;
	if (!strcmp(e->backend, "quotalegacy"))
		return true; /* a directory tree */
	if (stat(e->path, &st) < 0) {
		int errnum = errno;
		char *dir = xstrdup(e->path);
		char *slash = strrchr(dir, '/');
		struct stat dst;
		if (slash && slash != dir)
			*slash = '\0';
		/* Only a default path under configdirectory may lack its
		 * directory (ptclient/ before ptloader's first run). */
		const char *cdir = config_getstring(run->cfg,
						    "configdirectory");
		if (!e->path_set && cdir && stat(cdir, &dst) == 0 &&
		    S_ISDIR(dst.st_mode))
			*missing_r = errnum == ENOENT || errnum == ENOTDIR;
		if (*missing_r || (errnum == ENOENT && stat(dir, &dst) == 0 &&
				   S_ISDIR(dst.st_mode))) {
			*missing_r = true;
		} else if (errnum == ENOENT || errnum == ENOTDIR) {
			char *setting = e->path_set
				? xasprintf("%s_db_path", e->db)
				: xstrdup("configdirectory");
			kind = ERR_CONFIG;
			msg = xasprintf("cannot %s '%s': directory '%s' does not "
					"exist (%s in %s)", what, e->path, dir,
					setting, run->conf);
			free(setting);
		} else {
			kind = error_kind_from_errno(errnum);
			msg = xasprintf("cannot %s '%s': %s", what, e->path,
					strerror(errnum));
		}
		free(dir);
	} else if (!S_ISREG(st.st_mode)) {
		kind = ERR_NOINPUT;
		msg = xasprintf("cannot %s '%s': not a regular file", what,
				e->path);
	} else {
		int fd = open(e->path, (writing ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (fd < 0) {
			kind = error_kind_from_errno(errno);
			msg = xasprintf("cannot %s '%s': cannot open it%s: %s",
					what, e->path,
					writing ? " for writing" : "",
					strerror(errno));
		} else {
			close(fd);
		}
	}
	if (!msg)
		return !*missing_r;
	failed(run, dbset_basename(e), kind, msg);
	free(msg);
	return false;
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

	for (size_t i = 0; i < run->ndbs; i++) {
		const struct dbset_entry *e = &run->dbs[i];
		struct dbresult *res = &run->res[i];
		res->status = !exists(e->path)		 ? "missing"
			      : e->archive && strcmp(e->backend, "quotalegacy")
				      ? "pending"
				      : "not archived";
		res->bytes = file_size(e->path);
	}

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
		struct dbresult *res = &run->res[i];
		/* quotalegacy is a directory tree: Cyrus archives nothing. */
		if (!e->archive || !strcmp(e->backend, "quotalegacy"))
			continue;
		if (!strcmp(res->status, "failed"))
			continue; /* the repack failed */
		bool missing;
		if (!check_path(run, e, false, &missing)) {
			if (missing)
				log_debug("not archiving %s: no such file",
					  e->path);
			continue;
		}
		char *dst = xasprintf("%s/%s", backup1, dbset_basename(e));
		unsigned long long bytes = 0;
		double t0 = now_seconds();
		error_clear(&err);
		if (dbset_copy_locked(e->path, dst, &bytes, &err) < 0) {
			char *msg = xasprintf("cannot archive '%s': %s",
					      e->path, err.msg);
			failed(run, dbset_basename(e), err.kind, msg);
			free(msg);
		} else {
			res->status = "archived";
			res->bytes = bytes;
			res->seconds = now_seconds() - t0;
			log_info("archived %s: %llu bytes in %.3fs", e->path,
				 bytes, res->seconds);
		}
		res->seconds = now_seconds() - t0;
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

/*
 * --salvage: what normal recovery cannot open or finds broken is replaced
 * by what salvage can read (lib/salvage.h). The order keeps the damaged
 * bytes at every moment:
 *   1. salvage into <path>.salvaged (temporary file, fsync, rename);
 *   2. hard-link the damaged file as <path>.damaged-<time>;
 *   3. rename <path>.salvaged over <path>.
 * A crash between the steps leaves the damaged file in place (1, 2) or
 * beside the result (3). Nothing readable at all: the file is left alone.
 */
static int salvage_one(const struct dbset_entry *e,
		       struct error *err)
{
	struct salvage_report rep;
	struct buf text = BUF_INIT;
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	int r = -1;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	char *tmp = xasprintf("%s.salvaged", e->path);
	char *keep = xasprintf("%s.damaged-%s", e->path, stamp);

	if (salvage_file(e->path, e->backend, false, tmp, &rep, err) < 0)
		goto out;
	salvage_report_text(&rep, e->path, &text);
	if (rep.versions == 0) {
		unlink(tmp);
		error_set(err, ERR_DATA, "salvage found no readable record in "
			  "'%s'; left as it is", e->path);
		goto out;
	}
	if (link(e->path, keep) < 0) {
		error_sys(err, error_kind_from_errno(errno), errno,
			  "cannot keep the damaged file as '%s'", keep);
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, e->path) < 0) {
		error_sys(err, error_kind_from_errno(errno), errno,
			  "cannot rename '%s' to '%s'", tmp, e->path);
		unlink(tmp);
		goto out;
	}
	fsync_parent_dir(e->path);
	/* The report, line by line, for the person and for syslog. */
	for (char *line = text.s, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			break;
		*nl = '\0';
		log_warn("salvage: %s", line);
	}
	log_warn("salvaged %s: %llu keys kept; the damaged file is kept as "
		   "%s", e->path, (unsigned long long)rep.keys, keep);
	r = 0;
out:
	salvage_report_release(&rep);
	buf_release(&text);
	free(tmp);
	free(keep);
	return r;
}

/*
 * Opening recovers a twoskip or skiplist left by a crash. What recovery
 * touched (a file that was unclean before the open, dbset_unclean) is
 * then checked record by record; a clean file only with --check (the
 * real tool checks nothing, and a full check of a large mailboxes.db
 * costs more than the rest of -r -x together).
 */
static void recover_one(struct run *run, const struct dbset_entry *e)
{
	struct error err = ERROR_INIT;
	struct cyrusdb *db = NULL;
	bool check = run->check || dbset_unclean(e->path, e->backend);
	int r = cyrusdb_open(e->backend, e->path, 0, &db, &err);
	if (r == CYRUSDB_OK && check &&
	    (r = cyrusdb_consistent(db)) != CYRUSDB_OK)
		error_set(&err, ERR_DATA, "'%s' is not consistent after "
			  "recovery: %s", e->path, cyrusdb_errmsg(db));
	cyrusdb_close(&db);
	if (r == CYRUSDB_OK) {
		log_info("recovered %s", e->path);
		return;
	}
	if (!repackable(e->backend) || r == CYRUSDB_LOCKED ||
	    r == CYRUSDB_AGAIN || err.kind == ERR_PERM ||
	    err.kind == ERR_TEMPFAIL) {
		failed(run, dbset_basename(e), err.kind, err.msg);
		return;
	}
	if (!run->salvage) {
		char *msg = xasprintf(
			"%s; to see what can be saved: cyrus dbtool -C %s %s %s "
			"salvage -; to replace it by what can be saved (the "
			"damaged file is kept beside it): cyrus ctl_cyrusdb -C "
			"%s -r --salvage",
			err.msg, run->conf, e->path, e->backend, run->conf);
		failed(run, dbset_basename(e), err.kind, msg);
		free(msg);
		return;
	}
	log_warn("%s; salvaging", err.msg);
	error_clear(&err);
	if (salvage_one(e, &err) < 0) {
		failed(run, dbset_basename(e), err.kind, err.msg);
		return;
	}
	run->res[e - run->dbs].status = "salvaged";
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
		struct dbresult *res = &run->res[i];
		bool missing;
		res->status = "recovered";
		if (!usable(run, e))
			continue;
		if (!check_path(run, e, true, &missing)) {
			if (missing)
				res->status = "missing";
			continue;
		}
		double t0 = now_seconds();
		if (convert_if_needed(run, e) == 0 &&
		    strcmp(e->backend, "quotalegacy")) /* one file per root */
			recover_one(run, e);
		res->seconds = now_seconds() - t0;
		res->bytes = file_size(e->path);
	}
	if (fix_entries) {
		const struct dbset_entry *mb = &run->dbs[0];
		struct dbresult *res = &run->res[0];
		if (!exists(mb->path) || !strcmp(res->status, "failed"))
			return;
		double t0 = now_seconds();
		if (fixentries_run(run->cfg, mb->path, &err) < 0)
			failed(run, dbset_basename(mb), err.kind, err.msg);
		res->seconds += now_seconds() - t0;
		res->bytes = file_size(mb->path);
	}
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

enum report_format { REPORT_NONE, REPORT_JSON, REPORT_SUMMARY };

/* One line per database: JSON objects, or aligned text and a total. */
static void print_report(struct run *run, enum report_format fmt,
			 const char *op, double total)
{
	struct buf out = BUF_INIT;
	unsigned long long bytes = 0;
	unsigned ok = 0;

	for (size_t i = 0; i < run->ndbs; i++) {
		const struct dbset_entry *e = &run->dbs[i];
		const struct dbresult *res = &run->res[i];
		const char *status = res->status ? res->status : "skipped";
		if (fmt == REPORT_JSON) {
			buf_adds(&out, "{\"operation\": ");
			json_append_string(&out, op);
			buf_adds(&out, ", \"database\": ");
			json_append_string(&out, dbset_basename(e));
			buf_adds(&out, ", \"path\": ");
			json_append_string(&out, e->path);
			buf_adds(&out, ", \"backend\": ");
			json_append_string(&out, e->backend);
			buf_adds(&out, ", \"status\": ");
			json_append_string(&out, status);
			buf_printf(&out, ", \"bytes\": %llu, \"seconds\": %.6f",
				   res->bytes, res->seconds);
			if (res->error) {
				buf_adds(&out, ", \"error\": ");
				json_append_string(&out, res->error);
			}
			buf_adds(&out, "}\n");
		} else {
			buf_printf(&out, "%-18s %-11s %-12s %12llu bytes "
				   "%9.3fs\n", dbset_basename(e), e->backend,
				   status, res->bytes, res->seconds);
		}
		if (!strcmp(status, "archived") ||
		    !strcmp(status, "recovered") ||
		    !strcmp(status, "salvaged"))
			ok++, bytes += res->bytes;
	}
	if (fmt == REPORT_SUMMARY)
		buf_printf(&out, "%s: %u databases %s (%llu bytes), %u "
			   "failed, in %.3fs\n", op, ok,
			   op[0] == 'c' ? "archived" : "recovered", bytes,
			   run->nfailed, total);
	fwrite(out.s, 1, out.len, stdout);
	buf_release(&out);
}

int cmd_ctl_cyrusdb(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ "repack", no_argument, NULL, 'P' },
		{ "salvage", no_argument, NULL, 'S' },
		{ "check", no_argument, NULL, 'K' },
		{ "json", no_argument, NULL, 'J' },
		{ "summary", no_argument, NULL, 'U' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	enum { NONE, RECOVER, CHECKPOINT } op = NONE;
	const char *alt_config = NULL;
	bool fix_entries = true, repack = false, salvage = false;
	bool check = false;
	enum report_format report = REPORT_NONE;
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
		case 'S':
			salvage = true;
			break;
		case 'K':
			check = true;
			break;
		case 'J':
		case 'U':
			if (report != REPORT_NONE)
				cyrus_usage(ctx, false);
			report = c == 'J' ? REPORT_JSON : REPORT_SUMMARY;
			break;
		default:
			cyrus_usage(ctx, false);
		}
	}
	argc -= optind;
	if (argc != 0 || op == NONE || (op != RECOVER && !fix_entries) ||
	    (op != CHECKPOINT && repack) || (op != RECOVER && salvage) ||
	    (op != RECOVER && check))
		cyrus_usage(ctx, false);
	log_set_verbose(verbose);

	cyrus_setup(ctx, alt_config);

	struct run run = { .cfg = ctx->cfg, .failed = BUF_INIT,
			   .salvage = salvage, .check = check,
			   .conf = config_filename(ctx->cfg) };
	run.ndbs = dbset_get(ctx->cfg, run.dbs);
	const char *msg = op == RECOVER ? "recovering cyrus databases"
					: "checkpointing cyrus databases";
	int r = 0;

	const char *cdir = config_getstring(ctx->cfg, "configdirectory");
	struct stat st;
	if (!cdir || stat(cdir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		log_error("cannot %s: configdirectory '%s' is not a directory "
			  "(in %s)", op == RECOVER ? "recover" : "checkpoint",
			  cdir ? cdir : "", run.conf);
		r = EX_CONFIG;
		goto out;
	}
	if (op == RECOVER && (r = refuse_if_running(&run)) != 0)
		goto out;
	log_notice("%s", msg);
	double t0 = now_seconds();
	if (op == RECOVER)
		recover(&run, fix_entries);
	else
		checkpoint(&run, repack);
	log_notice("done %s", msg);
	if (report != REPORT_NONE)
		print_report(&run, report, op == RECOVER ? "recover"
							: "checkpoint",
			     now_seconds() - t0);

	if (run.nfailed) {
		log_error("%u database%s failed: %s", run.nfailed,
			  run.nfailed == 1 ? "" : "s", run.failed.s);
		r = error_exitcode(run.worst);
	}
out:
	for (size_t i = 0; i < run.ndbs; i++)
		free(run.res[i].error);
	dbset_release(run.dbs, run.ndbs);
	buf_release(&run.failed);
	return r;
}
