/* message.c: index fields of a message file (see message.h). */
#include "compat.h"
#include "message.h"

#include <ctype.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "xmalloc.h"

/* A cursor over the date string, as lib/times.c's rfc5322dtbuf. */
struct dt {
	const char *s;
	size_t len, off;
};

#define DT_EOB (-1)

static int dt_cur(const struct dt *d)
{
	return d->off < d->len ? (unsigned char)d->s[d->off] : DT_EOB;
}

/* Advance, return the new current byte (the NUL at len, then EOB). */
static int dt_next(struct dt *d)
{
	if (d->off < d->len) {
		d->off++;
		return (unsigned char)d->s[d->off];
	}
	return DT_EOB;
}

static bool is_ws(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_sep(int c)
{
	return c == ' ' || c == ',' || c == '-' || c == '+' || c == ':';
}

static void dt_skip_ws(struct dt *d)
{
	int c = d->off <= d->len ? (unsigned char)d->s[d->off] : DT_EOB;
	while (c != DT_EOB && is_ws(c))
		c = dt_next(d);
}

/* A run of ASCII letters/digits; false if at the end of the buffer. */
static bool dt_token(struct dt *d, char *tok, int *len)
{
	int c = dt_cur(d);
	*len = 0;
	if (c == DT_EOB)
		return false;
	for (;;) {
		if (c == DT_EOB || is_ws(c) || is_sep(c) || c > 127 ||
		    !isalnum(c) || *len >= 31)
			break;
		tok[(*len)++] = (char)c;
		c = dt_next(d);
		if (c == DT_EOB)
			return false;
	}
	tok[*len] = '\0';
	return true;
}

static int to_int(const char *s, int len)
{
	int n = 0;
	for (int i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -9999;
		n = n * 10 + (s[i] - '0');
	}
	return n;
}

static long tzoffset(const char *s, int len, int sign)
{
	if (len == 1) { /* military */
		int ch = toupper((unsigned char)s[0]);
		if (ch < 'J')
			return (s[0] - 'A' + 1) * 60;
		if (ch == 'J')
			return 0;
		if (ch <= 'M')
			return (s[0] - 'A') * 60;
		if (ch < 'Z')
			return ('M' - s[0]) * 60;
		return 0;
	}
	if (len == 2 && toupper((unsigned char)s[0]) == 'U' &&
	    toupper((unsigned char)s[1]) == 'T')
		return 0;
	if (len == 3) {
		if (toupper((unsigned char)s[2]) != 'T')
			return 0;
		const char *p = strchr("AECMPYHB", toupper((unsigned char)s[0]));
		if (!p)
			return 0;
		long off = ((long)strlen(p) - 12) * 60;
		if (toupper((unsigned char)s[1]) == 'D')
			return off + 60;
		if (toupper((unsigned char)s[1]) == 'S')
			return off;
	}
	if (len == 4) {
		for (int i = 0; i < 4; i++)
			if (!isdigit((unsigned char)s[i]))
				return 0;
		long off = ((s[0] - '0') * 10 + (s[1] - '0')) * 60 +
			   (s[2] - '0') * 10 + (s[3] - '0');
		return sign == '+' ? off : -off;
	}
	return 0;
}

static time_t mkgmtime_(struct tm *tm)
{
	return timegm(tm);
}

int message_parse_date(const char *s, bool dateonly, time_t *t)
{
	static const char *const wday[] = { "Sun", "Mon", "Tue", "Wed",
					    "Thu", "Fri", "Sat" };
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	struct dt d = { s, s ? strlen(s) : 0, 0 };
	struct tm tm;
	char tok[32];
	int len, c, i;
	long tz = 0;

	*t = 0;
	if (!s)
		return -1;
	memset(&tm, 0, sizeof(tm));
	dt_skip_ws(&d);
	c = dt_cur(&d);
	if (c == DT_EOB)
		return -1;
	if (c < 128 && isalpha(c)) {
		if (!dt_token(&d, tok, &len) || len != 3)
			return -1;
		for (i = 0; i < 7; i++)
			if (!strncasecmp(wday[i], tok, 3))
				tm.tm_wday = i;
		if (dt_cur(&d) != ',')
			return -1;
		dt_next(&d);
		dt_skip_ws(&d);
	}
	if (!dt_token(&d, tok, &len) || len < 1 || len > 2 ||
	    !isdigit((unsigned char)tok[0]))
		return -1;
	tm.tm_mday = to_int(tok, len);
	if (tm.tm_mday == -9999)
		return -1;
	c = dt_next(&d);
	if (c != DT_EOB && is_ws(c))
		dt_skip_ws(&d);
	if (!dt_token(&d, tok, &len) || len != 3 ||
	    !isalpha((unsigned char)tok[0]))
		return -1;
	tok[0] = (char)toupper((unsigned char)tok[0]);
	tok[1] = (char)tolower((unsigned char)tok[1]);
	tok[2] = (char)tolower((unsigned char)tok[2]);
	for (i = 0; i < 12; i++)
		if (!memcmp(months + 3 * i, tok, 3))
			break;
	if (i == 12)
		return -1;
	tm.tm_mon = i;
	c = dt_next(&d);
	if (c != DT_EOB && is_ws(c))
		dt_skip_ws(&d);
	if (!dt_token(&d, tok, &len))
		return -1;
	tm.tm_year = to_int(tok, len);
	if (tm.tm_year == -9999)
		return -1;
	if (len == 2) {
		if (tm.tm_year < 70)
			tm.tm_year += 100;
	} else {
		if (tm.tm_year < 1900)
			return -1;
		tm.tm_year -= 1900;
	}
	if (!dateonly) {
		dt_skip_ws(&d);
		if (!dt_token(&d, tok, &len) || len < 1 || len > 2 ||
		    !isdigit((unsigned char)tok[0]))
			return -1;
		tm.tm_hour = to_int(tok, len);
		if (tm.tm_hour == -9999)
			return -1;
		if (dt_cur(&d) != ':' && dt_cur(&d) != '.')
			return -1;
		dt_next(&d);
		if (!dt_token(&d, tok, &len) || len < 1 || len > 2 ||
		    !isdigit((unsigned char)tok[0]))
			return -1;
		tm.tm_min = to_int(tok, len);
		if (tm.tm_min == -9999)
			return -1;
		if (dt_cur(&d) == ':' || dt_cur(&d) == '.') {
			dt_next(&d);
			if (!dt_token(&d, tok, &len) || len < 1 || len > 2 ||
			    !isdigit((unsigned char)tok[0]))
				return -1;
			tm.tm_sec = to_int(tok, len);
			if (tm.tm_sec == -9999)
				return -1;
		}
		dt_skip_ws(&d);
		c = dt_cur(&d);
		if (c == '+' || c == '-')
			dt_next(&d);
		if (dt_token(&d, tok, &len))
			tz = tzoffset(tok, len, c);
		tz *= 60;
	}
	tm.tm_isdst = -1;
	time_t v = dateonly ? mktime(&tm) : mkgmtime_(&tm);
	if (v < 0)
		return -1;
	*t = v - tz;
	return 0;
}

void message_guid(const void *data, size_t len,
		  unsigned char guid[MESSAGE_GUID_SIZE])
{
	SHA1(data, len, guid);
}

/* The value of a header line starting at p (after "Date:"), unfolded as
 * message_parse_string does; malloc'd. */
static char *header_value(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	const char *e = p;
	for (;;) {
		const char *nl = e < end ? memchr(e, '\n', (size_t)(end - e)) :
					   NULL;
		if (!nl) {
			e = end;
			break;
		}
		if (nl + 1 < end && (nl[1] == ' ' || nl[1] == '\t')) {
			e = nl + 1;
			continue;
		}
		e = (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
		break;
	}
	char *v = xstrndup(p, (size_t)(e - p));
	char *w = v;
	for (char *r = v; *r; r++) {
		if (*r == '\n') {
			if (w > v && w[-1] == '\r')
				w--;
			continue;
		}
		*w++ = *r;
	}
	*w = '\0';
	return v;
}

void message_scan(const char *data, size_t len, struct message_info *mi)
{
	const char *end = data + len;
	const char *p = data;
	const char *hend = end;
	char *date = NULL;

	memset(mi, 0, sizeof(*mi));
	mi->size = (uint32_t)len;
	/* Lines until one that is exactly CRLF (message_parse_headers). */
	while (p < end) {
		if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
			hend = p + 2;
			break;
		}
		if (end - p > 5 && !strncasecmp(p, "date:", 5)) {
			free(date);
			date = header_value(p + 5, end);
		}
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		p = nl + 1;
	}
	mi->header_size = (uint32_t)(hend - data);
	time_t t;
	if (date && message_parse_date(date, true, &t) == 0)
		mi->sentdate = (uint32_t)t;
	if (date && message_parse_date(date, false, &t) == 0)
		mi->gmtime = (uint32_t)t;
	free(date);
	message_guid(data, len, mi->guid);
}

void message_info_date_defaults(struct message_info *mi, time_t internaldate)
{
	if (!mi->gmtime)
		mi->gmtime = (uint32_t)internaldate;
	if (!mi->sentdate) {
		struct tm tm;
		localtime_r(&internaldate, &tm);
		tm.tm_sec = tm.tm_min = tm.tm_hour = 0;
		mi->sentdate = (uint32_t)mktime(&tm);
	}
}

int message_scan_file(const char *path, struct message_info *mi,
		      struct error *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_sys(err, errno == ENOENT ? ERR_NOINPUT : ERR_IO,
				 errno, "cannot open '%s'", path);
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return error_sys(err, ERR_IO, e, "cannot stat '%s'", path);
	}
	if ((uint64_t)st.st_size >= (1ull << 32)) {
		close(fd);
		return error_set(err, ERR_DATA, "'%s' is too big", path);
	}
	if (st.st_size == 0) {
		close(fd);
		message_scan("", 0, mi);
		return 0;
	}
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return error_sys(err, ERR_IO, errno, "cannot map '%s'", path);
	message_scan(m, (size_t)st.st_size, mi);
	munmap(m, (size_t)st.st_size);
	return 0;
}
