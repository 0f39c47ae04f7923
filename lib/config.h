/*
 * config.h: imapd.conf, read with Cyrus 3.6.1's rules (lib/libconfig.c):
 * - one "key: value" per line; leading whitespace and lines starting with
 *   '#' are skipped; a line ending in a backslash continues on the next;
 * - keys are letters, digits, '-' and '_' (case-insensitive, lower-cased);
 *   the value is trimmed and must not be empty;
 * - "@include: FILE" reads another file in place (each file once);
 * - "IDENT_key" (IDENT = the program's name, e.g. reconstruct_foo) wins over
 *   the plain key for that program;
 * - an option given twice is an error; unknown keys (partition-NAME and
 *   friends) are kept as they are;
 * - switches take 1/0, yes/no, on/off, true/false (by first letters, as
 *   Cyrus does); durations take "1d2h30m10s" with a default unit;
 * - string defaults that start with "{configdirectory}" are expanded.
 * Defaults are those of Cyrus's lib/imapoptions for every option we read.
 * Looking up an option that is not in our table is a BUG().
 */
#ifndef CYRUS_LIB_CONFIG_H
#define CYRUS_LIB_CONFIG_H

#include <stdbool.h>

struct error;
struct cyrusdb_env;
struct config;

#define CONFIG_DEFAULT_FILE "/etc/imapd.conf"

/*
 * Reads filename (NULL: CONFIG_DEFAULT_FILE). ident selects service-specific
 * keys (may be NULL). Fails with ERR_CONFIG and "FILE:LINE: problem" in err.
 * Also checks what Cyrus's config_read checks: configdirectory is set, and
 * defaultpartition (if set) is alphanumeric.
 */
int config_load(const char *filename, const char *ident,
		struct config **cfg_r, struct error *err);
void config_free(struct config **cfg);

const char *config_filename(const struct config *cfg);
/* A string option (NULL if unset and no default); points into cfg. */
const char *config_getstring(const struct config *cfg, const char *name);
long config_getint(const struct config *cfg, const char *name);
bool config_getswitch(const struct config *cfg, const char *name);
/* An enum or stringlist option: the value's name, e.g. "delayed". */
const char *config_getenum(const struct config *cfg, const char *name);
/* A duration option in seconds; defunit is 'd', 'h', 'm' or 's' for bare
 * numbers. */
long config_getduration(const struct config *cfg, const char *name,
			int defunit);
/* Any key, known or not, as written in the file (NULL if absent). */
const char *config_getraw(const struct config *cfg, const char *key);
/* True if the key was set in the file (not just defaulted). */
bool config_isset(const struct config *cfg, const char *name);

/* "partition-NAME" (NULL if no such partition). */
const char *config_partitiondir(const struct config *cfg, const char *name);
/* "metapartition-NAME" (NULL if none: meta files live in the partition). */
const char *config_metapartitiondir(const struct config *cfg,
				    const char *name);
/* "archivepartition-NAME" (NULL if none). */
const char *config_archivepartitiondir(const struct config *cfg,
				       const char *name);
/* The default partition: defaultpartition, else the only/first
 * partition-NAME in file order; NULL if there is none. */
const char *config_defpartition(const struct config *cfg);
/* Calls cb for each partition-NAME in file order; stops on non-zero. */
int config_foreach_partition(const struct config *cfg,
			     int (*cb)(void *rock, const char *name,
				       const char *dir),
			     void *rock);

/* Duration/switch parsers, as Cyrus's: 0 on success, -1 on bad input. */
int config_parse_duration(const char *s, int defunit, long *secs_r);
int config_parse_switch(const char *s); /* 1, 0, or -1 */

/*
 * The Cyrus databases: for "mboxlist", "quota", "annotation", "duplicate",
 * "tls_sessions", "ptscache", "statuscache", "userdeny", "zoneinfo",
 * "backup", "sync_cache": the configured backend (NAME_db, "-nosync"
 * stripped) and path (NAME_db_path or the default file under
 * configdirectory). Returned path is malloc'd, caller frees.
 */
const char *config_db_backend(const struct config *cfg, const char *db);
char *config_db_path(const struct config *cfg, const char *db);

/* The cyrusdb settings this config implies. */
void config_cyrusdb_env(const struct config *cfg, struct cyrusdb_env *env);

#endif
