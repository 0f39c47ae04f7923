#include "compat.h"
#include "log.h"

#include <syslog.h>

#include "config.h"
#include "xmalloc.h"

static const char *progname = "cyrus";
static const char *command = "cyrus";
static char *ident;
static int verbose;
static bool syslog_open;

void log_init(const char *prog, const char *cmd)
{
	progname = prog;
	command = cmd;
}

const char *log_progname(void)
{
	return progname;
}

static int facility_of(const char *name)
{
	static const struct {
		const char *name;
		int facility;
	} map[] = {
		{ "MAIL", LOG_MAIL },     { "DAEMON", LOG_DAEMON },
		{ "USER", LOG_USER },     { "LOCAL0", LOG_LOCAL0 },
		{ "LOCAL1", LOG_LOCAL1 }, { "LOCAL2", LOG_LOCAL2 },
		{ "LOCAL3", LOG_LOCAL3 }, { "LOCAL4", LOG_LOCAL4 },
		{ "LOCAL5", LOG_LOCAL5 }, { "LOCAL6", LOG_LOCAL6 },
		{ "LOCAL7", LOG_LOCAL7 },
	};
	for (size_t i = 0; name && i < ARRAY_SIZE(map); i++)
		if (!strcasecmp(map[i].name, name))
			return map[i].facility;
	return LOG_MAIL;
}

void log_open_syslog(const struct config *cfg)
{
	const char *prefix = config_getstring(cfg, "syslog_prefix");
	free(ident);
	ident = xasprintf("%s/%s", prefix ? prefix : "cyrus", command);
	openlog(ident, LOG_PID,
		facility_of(config_getstring(cfg, "syslog_facility")));
	syslog_open = true;
}

void log_set_verbose(int level)
{
	verbose = level;
}

int log_verbose(void)
{
	return verbose;
}

static void emit(int prio, bool to_stderr, const char *fmt, va_list ap)
{
	va_list cp;
	if (to_stderr) {
		va_copy(cp, ap);
		fflush(stdout);
		fprintf(stderr, "%s: ", progname);
		vfprintf(stderr, fmt, cp);
		fputc('\n', stderr);
		va_end(cp);
	}
	if (syslog_open && prio <= LOG_NOTICE)
		vsyslog(prio, fmt, ap);
}

void log_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(LOG_ERR, true, fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(LOG_WARNING, true, fmt, ap);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(LOG_INFO, verbose >= 1, fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(LOG_DEBUG, verbose >= 2, fmt, ap);
	va_end(ap);
}

void log_notice(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(LOG_NOTICE, false, fmt, ap);
	va_end(ap);
}

void fatal(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(LOG_ERR, true, fmt, ap);
	va_end(ap);
	exit(code);
}
