/*
 * procscan.h: is a Cyrus server running on this configuration?
 *
 * Cyrus itself has no per-config marker: master's pidfile is a command-line
 * option, and services hold database locks only inside transactions. So we
 * look at /proc, as the cyrus user sees it:
 *   - a process named "master" or "cyrmaster" whose -C option (default
 *     /etc/imapd.conf) is the same file as ours is a running server;
 *   - any process with one of the given database files open (imapd, lmtpd
 *     and friends keep mailboxes.db open) is a running server.
 * Our own process and its ancestors do not count: master runs its START
 * entries (ctl_cyrusdb -r) as children before it starts any service.
 * Processes whose /proc entries we may not read are not seen.
 */
#ifndef CYRUS_LIB_PROCSCAN_H
#define CYRUS_LIB_PROCSCAN_H

#include <stddef.h>
#include <sys/types.h>

struct procscan_hit {
	pid_t pid;
	char comm[32];   /* the process's name */
	char why[512];   /* "runs with -C FILE", "has FILE open" */
};

/*
 * config_file: the imapd.conf in use; files: n database paths (missing
 * files are ignored). Returns 1 with hit_r filled if a server was found,
 * 0 if none (also when /proc is not mounted).
 */
int procscan_find_server(const char *config_file, const char *const *files,
			 size_t n, struct procscan_hit *hit_r);

#endif
