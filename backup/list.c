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
	size_t n = 0, shown = 0;

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
		struct backup_manifest_reader rd;
		char *path = backup_manifest_path(ar, ids[i]);
		struct stat st;
		uint64_t msize = stat(path, &st) == 0 ? (uint64_t)st.st_size
						      : 0;
		time_t when = 0;
		bool incomplete = false;
		unsigned long long mb = 0, msgs = 0, bytes = 0, nw = 0;
		/* One record at a time: "stats" is near the end. */
		int r = backup_manifest_open(path, &rd, &err);
		free(path);
		while (r == 0 && (r = backup_manifest_next(&rd, &err)) > 0) {
			if (backup_manifest_is(&rd, "time")) {
				when = (time_t)strtoll(
					backup_manifest_field(&rd, 1), NULL,
					10);
			} else if (backup_manifest_is(&rd, "incomplete")) {
				incomplete = true;
			} else if (backup_manifest_is(&rd, "stats")) {
				mb = backup_manifest_num(&rd, 2);
				msgs = backup_manifest_num(&rd, 4);
				bytes = backup_manifest_num(&rd, 6);
				nw = backup_manifest_num(&rd, 8) + msize;
			}
			r = 0;
		}
		backup_manifest_close(&rd);
		if (r < 0) {
			log_error("%s", err.msg);
			error_clear(&err);
			rc = EX_DATAERR;
			continue;
		}
		char tb[32];
		backupcmd_fmt_time(when, tb);
		if (json)
			printf("%s\n{\"id\": \"%s\", \"time\": %lld, "
			       "\"mailboxes\": %llu, \"messages\": %llu, "
			       "\"bytes\": %llu, \"new_bytes\": %llu, "
			       "\"complete\": %s}",
			       shown ? "," : "", ids[i], (long long)when, mb,
			       msgs, bytes, nw, incomplete ? "false" : "true");
		else
			printf("%-20s %-19s %9llu %9llu %14llu %14llu%s\n",
			       ids[i], tb, mb, msgs, bytes, nw,
			       incomplete ? " incomplete" : "");
		shown++;
	}
	if (json)
		printf("%s]\n", shown ? "\n" : "");
	backup_ids_free(ids, n);
	backup_archive_close(&ar);
	return rc;
}
