/* commands.h: every subcommand of `cyrus`, one per table row in main.c. */
#ifndef CYRUS_SHELL_COMMANDS_H
#define CYRUS_SHELL_COMMANDS_H

struct cyrus_ctx;

int cmd_backup(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_ctl_cyrusdb(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_ctl_mboxlist(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_cvt_cyrusdb(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_dbtool(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_mailbox(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_makedirs(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_mbpath(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_quota(int argc, char **argv, struct cyrus_ctx *ctx);
int cmd_reconstruct(int argc, char **argv, struct cyrus_ctx *ctx);

#endif
