/*
 * list.c: `cyrus backup list`: the snapshots of an archive, with their
 * time, mailboxes, messages, bytes and the bytes each added.
 */
#include "compat.h"
#include "backup.h"

#include <getopt.h>
#include <sys/stat.h>

#include "backup_archive.h"
#include "backup_manifest.h"
#include "cyrus.h"
#include "error.h"
#include "log.h"

int cmd_backup_list(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct backup_archive *ar = NULL;
	struct error err = ERROR_INIT;
	const char *dir = BACKUP_DEFAULT_DIR;
	bool json = false;
	int ch, rc = 0;
	char **ids = NULL;
	size_t n = 0;

	while ((ch = getopt_long(argc, argv, "C:j", longopts, NULL)) != -1) {
		switch (ch) {
		case 'C': break; /* accepted: every command takes it */
		case 'j': json = true; break;
		default: cyrus_usage(ctx, false);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc > 1)
		cyrus_usage(ctx, false);
	if (argc)
		dir = argv[0];
	if (backup_archive_open(dir, BACKUP_OPEN_LIST, &ar, &err) < 0 ||
	    backup_snapshot_ids(ar, &ids, &n, &err) < 0) {
		log_error("%s", err.msg);
		backup_archive_close(&ar);
		return error_exitcode(err.kind);
	}
	if (!json)
		printf("%-20s %-19s %9s %9s %14s %14s\n", "SNAPSHOT",
		       "TIME (UTC)", "MAILBOXES", "MESSAGES", "BYTES",
		       "NEW BYTES");
	else
		printf("[");
	for (size_t i = 0; i < n; i++) {
		struct backup_manifest m;
		char *path = backup_manifest_path(ar, ids[i]);
		struct stat st;
		uint64_t msize = stat(path, &st) == 0 ? (uint64_t)st.st_size
						      : 0;
		if (backup_manifest_load(path, &m, &err) < 0) {
			log_error("%s", err.msg);
			rc = EX_DATAERR;
			free(path);
			continue;
		}
		free(path);
		const struct backup_rec *t = backup_manifest_find(&m, "time");
		const struct backup_rec *s = backup_manifest_find(&m, "stats");
		bool incomplete = backup_manifest_find(&m, "incomplete");
		time_t when = t ? (time_t)strtoll(backup_rec_field(&m, t, 1),
						  NULL, 10)
				: 0;
		unsigned long long mb = 0, msgs = 0, bytes = 0, nw = 0;
		if (s) {
			mb = strtoull(backup_rec_field(&m, s, 2), NULL, 10);
			msgs = strtoull(backup_rec_field(&m, s, 4), NULL, 10);
			bytes = strtoull(backup_rec_field(&m, s, 6), NULL, 10);
			nw = strtoull(backup_rec_field(&m, s, 8), NULL, 10) +
			     msize;
		}
		char tb[32];
		backupcmd_fmt_time(when, tb);
		if (json)
			printf("%s\n{\"id\": \"%s\", \"time\": %lld, "
			       "\"mailboxes\": %llu, \"messages\": %llu, "
			       "\"bytes\": %llu, \"new_bytes\": %llu, "
			       "\"complete\": %s}",
			       i ? "," : "", ids[i], (long long)when, mb,
			       msgs, bytes, nw, incomplete ? "false" : "true");
		else
			printf("%-20s %-19s %9llu %9llu %14llu %14llu%s\n",
			       ids[i], tb, mb, msgs, bytes, nw,
			       incomplete ? " incomplete" : "");
		backup_manifest_release(&m);
	}
	if (json)
		printf("%s]\n", n ? "\n" : "");
	backup_ids_free(ids, n);
	backup_archive_close(&ar);
	return rc;
}
