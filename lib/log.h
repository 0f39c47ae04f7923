/*
 * log.h: diagnostics for the person at the terminal (stderr, "PROG: msg")
 * and the audit trail in syslog, as the real tools leave it: ident
 * "<syslog_prefix>/<command>" (default prefix "cyrus"), facility from
 * syslog_facility (default mail).
 */
#ifndef CYRUS_LIB_LOG_H
#define CYRUS_LIB_LOG_H

#include <stdarg.h>

struct config;

/* progname prefixes stderr lines; command names the syslog ident. */
void log_init(const char *progname, const char *command);
/* Opens syslog with the config's prefix and facility. */
void log_open_syslog(const struct config *cfg);
const char *log_progname(void);
void log_set_verbose(int level);
int log_verbose(void);

/* stderr "PROG: msg"; warnings and errors also go to syslog. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* stderr only when verbose >= 1. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* stderr only when verbose >= 2. */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* syslog NOTICE only: one line per change made to the store. */
void log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "PROG: msg" and exits with code. Command code only. */
void fatal(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

#endif
