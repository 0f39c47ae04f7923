/*
 * backup.h: what the files of `cyrus backup` share (command code only;
 * the archive itself is lib/backup_archive.h and lib/backup_manifest.h).
 */
#ifndef CYRUS_BACKUP_BACKUP_H
#define CYRUS_BACKUP_BACKUP_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct cyrus_ctx;

#define BACKUP_DEFAULT_DIR "/var/backup/cyrus"

int cmd_backup_create(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_backup_list(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_backup_verify(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_backup_restore(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_backup_prune(int argc, char **argv, struct cyrus_ctx *ctx);

/*
 * An IMAP LIST-style pattern on internal names: '*' matches anything,
 * '%' anything but '.'. A pattern without wildcards also matches the
 * mailbox's children when children is true.
 */
bool backupcmd_match(const char *pat, const char *name);

/* True if arg names the archive directory rather than a mailbox
 * pattern: it contains a '/'. */
bool backupcmd_is_dir(const char *arg);

/* "20261125T031500Z" from t. out has room for 32 bytes. */
void backupcmd_fmt_time(time_t t, char out[32]);

/*
 * Parses a time for --at / --keep-days: "@UNIX", "YYYY-MM-DD",
 * "YYYY-MM-DD HH:MM[:SS]", "YYYY-MM-DDTHH:MM[:SS][Z]" or a snapshot id,
 * all UTC. Returns 0 or -1.
 */
int backupcmd_parse_time(const char *s, time_t *t_r);

#endif
