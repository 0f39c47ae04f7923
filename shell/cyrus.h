/*
 * cyrus.h: what the `cyrus` dispatcher hands to each subcommand, and the
 * conventions every subcommand shares.
 *
 * A subcommand is int cmd_NAME(int argc, char **argv, struct cyrus_ctx *ctx):
 * argv[0] is the name it was called by; it parses its own options with the
 * real tool's letters (getopt_long, optind already reset), then calls
 * cyrus_setup() which meets the preconditions its table row asks for
 * (imapd.conf read, cyrus user, umask, database settings, syslog). It
 * returns an exit code (sysexits).
 */
#ifndef CYRUS_SHELL_CYRUS_H
#define CYRUS_SHELL_CYRUS_H

#include <stdbool.h>

struct config;
struct command;

enum command_flags {
	CMD_CONFIG = 1 << 0,   /* reads imapd.conf (-C FILE, else default) */
	CMD_AS_CYRUS = 1 << 1, /* run as root: become the cyrus user first */
	CMD_WRITES = 1 << 2,   /* changes the store (has a dry-run) */
	CMD_HIDDEN = 1 << 3,   /* not listed by `cyrus help` */
};

struct cyrus_ctx {
	const struct command *cmd;
	const char *progname;    /* for messages: "cvt_cyrusdb", "cyrus dbtool" */
	const char *config_file; /* -C given before the subcommand, or NULL */
	struct config *cfg;      /* after cyrus_setup() with CMD_CONFIG */
};

/*
 * Reads imapd.conf (config_file if not NULL, else ctx->config_file, else
 * /etc/imapd.conf) and does what the command's flags ask. On failure prints
 * one line and exits (EX_CONFIG, EX_NOUSER...).
 */
void cyrus_setup(struct cyrus_ctx *ctx, const char *config_file);

/* Prints the command's usage: to stdout and exit 0 if ok, else to stderr
 * and exit EX_USAGE. */
void cyrus_usage(const struct cyrus_ctx *ctx, bool ok)
	__attribute__((noreturn));

#endif
