#include "compat.h"
#include "error.h"

#include <stdarg.h>

int error_set(struct error *err, enum error_kind kind, const char *fmt, ...)
{
	va_list ap;
	if (!err)
		return -1;
	err->kind = kind;
	err->errnum = 0;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

int error_sys(struct error *err, enum error_kind kind, int errnum,
	      const char *fmt, ...)
{
	va_list ap;
	if (!err)
		return -1;
	err->kind = kind;
	err->errnum = errnum;
	va_start(ap, fmt);
	int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s",
			 strerror(errnum));
	return -1;
}

enum error_kind error_kind_from_errno(int errnum)
{
	switch (errnum) {
	case ENOENT:
	case ENOTDIR:
		return ERR_NOINPUT;
	case EACCES:
	case EPERM:
	case EROFS:
		return ERR_PERM;
	case EEXIST:
		return ERR_CANTCREAT;
	case EAGAIN:
	case EINTR:
	case EDEADLK:
		return ERR_TEMPFAIL;
	case EIO:
	case ENOSPC:
	case EDQUOT:
		return ERR_IO;
	default:
		return ERR_OS;
	}
}

void error_clear(struct error *err)
{
	err->kind = ERR_NONE;
	err->msg[0] = '\0';
	err->errnum = 0;
}

int error_exitcode(enum error_kind kind)
{
	static const int map[] = {
		[ERR_NONE] = EX_OK,
		[ERR_USAGE] = EX_USAGE,
		[ERR_DATA] = EX_DATAERR,
		[ERR_NOINPUT] = EX_NOINPUT,
		[ERR_NOUSER] = EX_NOUSER,
		[ERR_UNAVAILABLE] = EX_UNAVAILABLE,
		[ERR_SOFTWARE] = EX_SOFTWARE,
		[ERR_OS] = EX_OSERR,
		[ERR_CANTCREAT] = EX_CANTCREAT,
		[ERR_IO] = EX_IOERR,
		[ERR_TEMPFAIL] = EX_TEMPFAIL,
		[ERR_PROTOCOL] = EX_PROTOCOL,
		[ERR_PERM] = EX_NOPERM,
		[ERR_CONFIG] = EX_CONFIG,
	};
	if ((unsigned)kind >= ARRAY_SIZE(map))
		return EX_SOFTWARE;
	return map[kind];
}

enum error_kind error_worst(enum error_kind a, enum error_kind b)
{
	if (a == ERR_TEMPFAIL || b == ERR_TEMPFAIL)
		return ERR_TEMPFAIL;
	return a != ERR_NONE ? a : b;
}
