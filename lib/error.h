/*
 * error.h: what went wrong, for the caller to print, and the one map from
 * error kind to sysexits code.
 *
 * lib/ never prints and never exits: functions return a negative value and
 * fill a struct error; command code prints err.msg and exits with
 * error_exitcode(err.kind).
 */
#ifndef CYRUS_LIB_ERROR_H
#define CYRUS_LIB_ERROR_H

enum error_kind {
	ERR_NONE = 0,
	ERR_USAGE,       /* EX_USAGE 64 */
	ERR_DATA,        /* EX_DATAERR 65: bad or corrupt data */
	ERR_NOINPUT,     /* EX_NOINPUT 66: mailbox or file not found */
	ERR_NOUSER,      /* EX_NOUSER 67 */
	ERR_UNAVAILABLE, /* EX_UNAVAILABLE 69: server unreachable, unsupported */
	ERR_SOFTWARE,    /* EX_SOFTWARE 70: internal bug */
	ERR_OS,          /* EX_OSERR 71: a system call failed */
	ERR_CANTCREAT,   /* EX_CANTCREAT 73: exists / cannot create */
	ERR_IO,          /* EX_IOERR 74 */
	ERR_TEMPFAIL,    /* EX_TEMPFAIL 75: locked, try again */
	ERR_PROTOCOL,    /* EX_PROTOCOL 76: IMAP NO/BAD */
	ERR_PERM,        /* EX_NOPERM 77 */
	ERR_CONFIG,      /* EX_CONFIG 78: imapd.conf */
};

struct error {
	enum error_kind kind;
	char msg[1024];
	int errnum;   /* error_sys's errno (0 otherwise): ENOSPC ... */
};

#define ERROR_INIT { ERR_NONE, "", 0 }

/* Fills err (if not NULL) and returns -1. */
int error_set(struct error *err, enum error_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Like error_set, appending ": strerror(errnum)". */
int error_sys(struct error *err, enum error_kind kind, int errnum,
	      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The error kind that fits an errno value (ENOENT -> ERR_NOINPUT ...). */
enum error_kind error_kind_from_errno(int errnum);
void error_clear(struct error *err);
int error_exitcode(enum error_kind kind);
/* When several errors happen: a temporary failure wins, else the first. */
enum error_kind error_worst(enum error_kind a, enum error_kind b);

#endif
