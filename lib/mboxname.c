#include "compat.h"
#include "mboxname.h"

#include <ctype.h>
#include <strings.h>

#include "buf.h"
#include "config.h"
#include "error.h"
#include "xmalloc.h"

void mboxname_ns_init(struct mboxname_ns *ns, const struct config *cfg,
		      bool isadmin)
{
	const char *vd = config_getenum(cfg, "virtdomains");
	ns->isadmin = isadmin;
	ns->hier_sep = config_getswitch(cfg, "unixhierarchysep") ? '/' : '.';
	ns->isalt = !isadmin && config_getswitch(cfg, "altnamespace");
	ns->crossdomains = config_getswitch(cfg, "crossdomains");
	ns->cdother = config_getswitch(cfg, "crossdomains_onlyother");
	ns->virtdomains = !strcmp(vd, "on")	 ? MBOXNAME_VIRTDOMAINS_ON
			  : !strcmp(vd, "userid") ? MBOXNAME_VIRTDOMAINS_USERID
						  : MBOXNAME_VIRTDOMAINS_OFF;
	ns->defdomain = config_getstring(cfg, "defaultdomain");
	ns->deletedprefix = config_getstring(cfg, "deletedprefix");
	ns->userprefix = config_getstring(cfg, "userprefix");
	ns->sharedprefix = config_getstring(cfg, "sharedprefix");
	ns->altprefix = config_getstring(cfg, "altprefix");
}

void mboxname_init(struct mboxname *mbn)
{
	memset(mbn, 0, sizeof(*mbn));
}

void mboxname_release(struct mboxname *mbn)
{
	free(mbn->domain);
	free(mbn->localpart);
	for (size_t i = 0; i < mbn->nboxes; i++)
		free(mbn->boxes[i]);
	free(mbn->boxes);
	mboxname_init(mbn);
}

static bool streq_null(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return !strcmp(a, b);
}

/* The default domain is stored as no domain at all. */
static void set_domain(const struct mboxname_ns *ns, struct mboxname *mbn,
		       const char *domain, size_t len)
{
	free(mbn->domain);
	mbn->domain = xstrndup(domain, len);
	if (streq_null(mbn->domain, ns->defdomain)) {
		free(mbn->domain);
		mbn->domain = NULL;
	}
}

static void push_box(struct mboxname *mbn, char *box)
{
	mbn->boxes = xrealloc(mbn->boxes, (mbn->nboxes + 1) * sizeof(char *));
	mbn->boxes[mbn->nboxes++] = box;
}

static char *shift_box(struct mboxname *mbn)
{
	if (!mbn->nboxes)
		return NULL;
	char *first = mbn->boxes[0];
	memmove(mbn->boxes, mbn->boxes + 1, --mbn->nboxes * sizeof(char *));
	return first;
}

static char *pop_box(struct mboxname *mbn)
{
	return mbn->nboxes ? mbn->boxes[--mbn->nboxes] : NULL;
}

/* Cyrus splits with strtok: empty components vanish. */
static void split_boxes(struct mboxname *mbn, const char *s, size_t len,
			char sep)
{
	const char *end = s + len;
	while (s < end) {
		const char *q = memchr(s, sep, (size_t)(end - s));
		if (!q)
			q = end;
		if (q > s)
			push_box(mbn, xstrndup(s, (size_t)(q - s)));
		s = q + 1;
	}
}

/* DELETED.<...>.<hex> and user.<localpart>.<...>, as Cyrus reads both. */
static void classify(const struct mboxname_ns *ns, struct mboxname *mbn)
{
	if (mbn->nboxes > 2 && streq_null(mbn->boxes[0], ns->deletedprefix)) {
		free(shift_box(mbn));
		char *hex = pop_box(mbn);
		mbn->isdeleted = (time_t)strtoul(hex, NULL, 16);
		free(hex);
	}
	if (mbn->nboxes > 1 && !strcmp(mbn->boxes[0], "user")) {
		free(shift_box(mbn));
		mbn->localpart = shift_box(mbn);
	}
}

void mboxname_from_intname(const struct mboxname_ns *ns,
			   struct mboxname *mbn, const char *intname)
{
	mboxname_init(mbn);
	if (!intname || !*intname)
		return;
	const char *bang = strchr(intname, '!');
	if (bang) {
		set_domain(ns, mbn, intname, (size_t)(bang - intname));
		intname = bang + 1;
	}
	split_boxes(mbn, intname, strlen(intname), '.');
	for (size_t i = 0; i < mbn->nboxes; i++)
		for (char *p = mbn->boxes[i]; *p; p++)
			if (*p == '^')
				*p = '.';
	classify(ns, mbn);
}

void mboxname_from_dbname(const struct mboxname_ns *ns, struct mboxname *mbn,
			  const char *dbname, size_t len)
{
	mboxname_init(mbn);
	/* Cyrus handles it as a C string. */
	const char *nul = memchr(dbname, '\0', len);
	if (nul)
		len = (size_t)(nul - dbname);
	if (!len)
		return;
	const char *gs = memchr(dbname, MBOXNAME_DB_DOMAINSEP, len);
	if (gs) {
		set_domain(ns, mbn, dbname, (size_t)(gs - dbname));
		len -= (size_t)(gs + 1 - dbname);
		dbname = gs + 1;
	}
	split_boxes(mbn, dbname, len, MBOXNAME_DB_HIERSEP);
	classify(ns, mbn);
}

void mboxname_from_userid(const struct mboxname_ns *ns, struct mboxname *mbn,
			  const char *userid)
{
	mboxname_init(mbn);
	if (!userid || !*userid)
		return;
	const char *at = strrchr(userid, '@');
	if (at) {
		mbn->localpart = xstrndup(userid, (size_t)(at - userid));
		set_domain(ns, mbn, at + 1, strlen(at + 1));
	} else {
		mbn->localpart = xstrdup(userid);
	}
}

/* Components of an external name: '^' only with the '.' separator. */
static int unescape_ext(const struct mboxname_ns *ns, struct mboxname *mbn,
			const char *extname, struct error *err)
{
	for (size_t i = 0; i < mbn->nboxes; i++) {
		for (char *p = mbn->boxes[i]; *p; p++) {
			if (*p == '/' || (*p == '^' && ns->hier_sep == '/'))
				return error_set(err, ERR_DATA,
						 "invalid mailbox name '%s'",
						 extname);
			if (*p == '^')
				*p = '.';
		}
	}
	return 0;
}

static void take_user_domain(const struct mboxname_ns *ns,
			     struct mboxname *mbn, const struct mboxname *user)
{
	free(mbn->domain);
	mbn->domain = user->domain ? xstrdup(user->domain) : NULL;
	(void)ns;
}

/* "localpart@domain" in an other-user or shared position (crossdomains). */
static void split_crossdomain(const struct mboxname_ns *ns,
			      struct mboxname *mbn, char *part,
			      const struct mboxname *user)
{
	char *at = part ? strrchr(part, '@') : NULL;
	if (at) {
		*at = '\0';
		free(mbn->domain);
		mbn->domain = NULL;
		if (!streq_null(at + 1, ns->defdomain))
			mbn->domain = xstrdup(at + 1);
	} else if (ns->cdother) {
		take_user_domain(ns, mbn, user);
	}
}

int mboxname_from_extname(const struct mboxname_ns *ns, struct mboxname *mbn,
			  const char *extname, const char *userid,
			  struct error *err)
{
	bool crossdomains = ns->crossdomains && !ns->isadmin;
	bool admindomains = ns->virtdomains && ns->isadmin;
	struct mboxname user;
	char *name = NULL;
	int r = 0;

	mboxname_init(mbn);
	if (!extname || !*extname)
		return 0;
	mboxname_from_userid(ns, &user, userid);
	name = xstrdup(extname);
	if (admindomains) {
		char *at = strrchr(name, '@');
		if (at) {
			*at = '\0';
			if (!streq_null(at + 1, ns->defdomain))
				mbn->domain = xstrdup(at + 1);
		} else {
			take_user_domain(ns, mbn, &user);
		}
	} else if (!crossdomains) {
		take_user_domain(ns, mbn, &user);
	}
	split_boxes(mbn, name, strlen(name), ns->hier_sep);
	if ((r = unescape_ext(ns, mbn, extname, err)) < 0)
		goto out;
	if (!mbn->nboxes)
		goto out;

	if (ns->isalt) {
		const char *top = mbn->boxes[0];
		if (streq_null(top, ns->altprefix)) {
			free(shift_box(mbn));
			mbn->localpart = user.localpart ? xstrdup(user.localpart)
							: NULL;
			if (crossdomains)
				take_user_domain(ns, mbn, &user);
		} else if (streq_null(top, ns->userprefix)) {
			free(shift_box(mbn));
			mbn->localpart = shift_box(mbn);
			if (crossdomains && mbn->localpart)
				split_crossdomain(ns, mbn, mbn->localpart,
						  &user);
		} else if (streq_null(top, ns->sharedprefix)) {
			free(shift_box(mbn));
			if (crossdomains)
				split_crossdomain(ns, mbn,
						  mbn->nboxes ? mbn->boxes[0]
							      : NULL,
						  &user);
		} else {
			mbn->localpart = user.localpart ? xstrdup(user.localpart)
							: NULL;
			if (crossdomains)
				take_user_domain(ns, mbn, &user);
			if (!strcasecmp(mbn->boxes[0], "INBOX")) {
				if (mbn->nboxes == 1)
					free(shift_box(mbn));
				else
					for (char *p = mbn->boxes[0]; *p; p++)
						*p = (char)toupper(
							(unsigned char)*p);
			}
		}
		goto out;
	}

	if (!strcasecmp(mbn->boxes[0], "INBOX")) {
		free(shift_box(mbn));
		mbn->localpart = user.localpart ? xstrdup(user.localpart) : NULL;
		if (crossdomains)
			take_user_domain(ns, mbn, &user);
		goto out;
	}
	if (ns->isadmin && streq_null(mbn->boxes[0], ns->deletedprefix)) {
		free(shift_box(mbn));
		char *hex = pop_box(mbn);
		if (!hex)
			goto out;
		mbn->isdeleted = (time_t)strtoul(hex, NULL, 16);
		free(hex);
	}
	if (!mbn->nboxes)
		goto out;
	if (!strcmp(mbn->boxes[0], "user")) {
		free(shift_box(mbn));
		mbn->localpart = shift_box(mbn);
		if (crossdomains && mbn->localpart)
			split_crossdomain(ns, mbn, mbn->localpart, &user);
		goto out;
	}
	/* Shared folders are in the user's domain, unless admin. */
	if ((ns->virtdomains && !ns->isadmin) || crossdomains)
		take_user_domain(ns, mbn, &user);
out:
	free(name);
	mboxname_release(&user);
	if (r < 0)
		mboxname_release(mbn);
	return r;
}

static void append_int(struct buf *out, const char *s, char dot)
{
	for (; *s; s++)
		buf_addch(out, *s == '.' ? dot : *s);
}

void mboxname_intname(const struct mboxname_ns *ns,
		      const struct mboxname *mbn, struct buf *out)
{
	bool sep = false;
	if (mbn->domain) {
		buf_adds(out, mbn->domain);
		buf_addch(out, '!');
	}
	if (mbn->isdeleted) {
		buf_adds(out, ns->deletedprefix);
		sep = true;
	}
	if (mbn->localpart) {
		if (sep)
			buf_addch(out, '.');
		buf_adds(out, "user.");
		append_int(out, mbn->localpart, '^');
		sep = true;
	}
	for (size_t i = 0; i < mbn->nboxes; i++) {
		if (sep)
			buf_addch(out, '.');
		append_int(out, mbn->boxes[i], '^');
		sep = true;
	}
	if (mbn->isdeleted) {
		if (sep)
			buf_addch(out, '.');
		buf_printf(out, "%X", (unsigned)mbn->isdeleted);
	}
}

void mboxname_dbname(const struct mboxname_ns *ns, const struct mboxname *mbn,
		     struct buf *out)
{
	bool sep = false;
	if (mbn->domain) {
		buf_adds(out, mbn->domain);
		buf_addch(out, MBOXNAME_DB_DOMAINSEP);
	}
	if (mbn->isdeleted) {
		buf_adds(out, ns->deletedprefix);
		sep = true;
	}
	if (mbn->localpart) {
		if (sep)
			buf_addch(out, MBOXNAME_DB_HIERSEP);
		buf_adds(out, "user");
		buf_addch(out, MBOXNAME_DB_HIERSEP);
		buf_adds(out, mbn->localpart);
		sep = true;
	}
	for (size_t i = 0; i < mbn->nboxes; i++) {
		if (sep)
			buf_addch(out, MBOXNAME_DB_HIERSEP);
		buf_adds(out, mbn->boxes[i]);
		sep = true;
	}
	if (mbn->isdeleted) {
		if (sep)
			buf_addch(out, MBOXNAME_DB_HIERSEP);
		buf_printf(out, "%X", (unsigned)mbn->isdeleted);
	}
}

bool mboxname_userid(const struct mboxname *mbn, struct buf *out)
{
	if (!mbn->localpart)
		return false;
	buf_adds(out, mbn->localpart);
	if (mbn->domain) {
		buf_addch(out, '@');
		buf_adds(out, mbn->domain);
	}
	return true;
}

static void append_ext(const struct mboxname_ns *ns, struct buf *out,
		       const char *s)
{
	append_int(out, s, ns->hier_sep == '/' ? '.' : '^');
}

static void append_boxes(const struct mboxname_ns *ns, struct buf *out,
			 const struct mboxname *mbn, size_t from)
{
	for (size_t i = from; i < mbn->nboxes; i++) {
		buf_addch(out, ns->hier_sep);
		append_ext(ns, out, mbn->boxes[i]);
	}
}

/* "@domain" after a user or shared top level, with crossdomains. */
static void append_crossdomain(const struct mboxname_ns *ns, struct buf *out,
			       const struct mboxname *mbn,
			       const struct mboxname *user)
{
	if (!ns->cdother || !streq_null(mbn->domain, user->domain)) {
		const char *domain = mbn->domain ? mbn->domain : ns->defdomain;
		buf_addch(out, '@');
		append_ext(ns, out, domain ? domain : "");
	}
}

static bool extname_alt(const struct mboxname_ns *ns,
			const struct mboxname *mbn, const char *userid,
			const struct mboxname *user, bool crossdomains,
			struct buf *out)
{
	if (mbn->isdeleted)
		return false;
	if (!mbn->localpart) {
		if (!mbn->nboxes)
			return false;
		if (mbn->nboxes == 1 && !strcmp(mbn->boxes[0], "user")) {
			buf_adds(out, ns->userprefix);
			return true;
		}
		buf_adds(out, ns->sharedprefix);
		buf_addch(out, ns->hier_sep);
		append_ext(ns, out, mbn->boxes[0]);
		if (crossdomains)
			append_crossdomain(ns, out, mbn, user);
		append_boxes(ns, out, mbn, 1);
		return true;
	}
	struct buf uid = BUF_INIT;
	mboxname_userid(mbn, &uid);
	bool other = !streq_null(uid.s, userid);
	buf_release(&uid);
	if (other) {
		buf_adds(out, ns->userprefix);
		buf_addch(out, ns->hier_sep);
		append_ext(ns, out, mbn->localpart);
		if (crossdomains)
			append_crossdomain(ns, out, mbn, user);
		append_boxes(ns, out, mbn, 0);
		return true;
	}
	if (!mbn->nboxes) {
		buf_adds(out, "INBOX");
		return true;
	}
	const char *top = mbn->boxes[0];
	if (!strcasecmp(top, "INBOX")) {
		if (mbn->nboxes == 1 || strcmp(top, "INBOX")) {
			buf_adds(out, ns->altprefix);
			buf_addch(out, ns->hier_sep);
		}
	} else if (streq_null(top, ns->userprefix) ||
		   streq_null(top, ns->sharedprefix) ||
		   streq_null(top, ns->altprefix)) {
		buf_adds(out, ns->altprefix);
		buf_addch(out, ns->hier_sep);
	}
	append_ext(ns, out, top);
	append_boxes(ns, out, mbn, 1);
	return true;
}

bool mboxname_extname(const struct mboxname_ns *ns,
		      const struct mboxname *mbn, const char *userid,
		      struct buf *out)
{
	bool crossdomains = ns->crossdomains && !ns->isadmin;
	bool admindomains = ns->virtdomains && ns->isadmin;
	struct buf b = BUF_INIT;
	struct mboxname user;
	bool ok = false;

	mboxname_from_userid(ns, &user, userid);
	if (ns->isalt) {
		ok = extname_alt(ns, mbn, userid, &user, crossdomains, &b);
		goto end;
	}
	if (mbn->isdeleted) {
		buf_adds(&b, ns->deletedprefix);
		buf_addch(&b, ns->hier_sep);
	}
	if (!mbn->localpart) {
		if (!mbn->nboxes || !strcasecmp(mbn->boxes[0], "INBOX"))
			goto done;
		if (!admindomains && !streq_null(mbn->domain, user.domain))
			goto done;
		append_ext(ns, &b, mbn->boxes[0]);
		append_boxes(ns, &b, mbn, 1);
		ok = true;
		goto end;
	}
	struct buf uid = BUF_INIT;
	mboxname_userid(mbn, &uid);
	bool other = !streq_null(uid.s, userid);
	buf_release(&uid);
	if (mbn->isdeleted || other) {
		buf_adds(&b, "user");
		buf_addch(&b, ns->hier_sep);
		append_ext(ns, &b, mbn->localpart);
		if (crossdomains)
			append_crossdomain(ns, &b, mbn, &user);
		else if (!admindomains &&
			 !streq_null(mbn->domain, user.domain))
			goto done;
		append_boxes(ns, &b, mbn, 0);
		ok = true;
		goto end;
	}
	buf_adds(&b, "INBOX");
	append_boxes(ns, &b, mbn, 0);
	ok = true;
end:
	if (ok && mbn->isdeleted) {
		buf_addch(&b, ns->hier_sep);
		buf_printf(&b, "%X", (unsigned)mbn->isdeleted);
	}
	if (ok && admindomains && mbn->domain) {
		buf_addch(&b, '@');
		buf_adds(&b, mbn->domain);
	}
	if (ok)
		buf_addbuf(out, &b);
done:
	buf_release(&b);
	mboxname_release(&user);
	return ok;
}

char *mboxname_intname_to_dbname(const struct mboxname_ns *ns,
				 const char *intname)
{
	struct mboxname mbn;
	struct buf b = BUF_INIT;
	mboxname_from_intname(ns, &mbn, intname);
	mboxname_dbname(ns, &mbn, &b);
	mboxname_release(&mbn);
	return buf_detach(&b, NULL);
}

char *mboxname_dbname_to_intname(const struct mboxname_ns *ns,
				 const char *dbname, size_t len)
{
	struct mboxname mbn;
	struct buf b = BUF_INIT;
	mboxname_from_dbname(ns, &mbn, dbname, len);
	mboxname_intname(ns, &mbn, &b);
	mboxname_release(&mbn);
	return buf_detach(&b, NULL);
}

bool mboxname_isdeleted(const struct mboxname_ns *ns, const char *intname,
			time_t *when_r)
{
	struct mboxname mbn;
	mboxname_from_intname(ns, &mbn, intname);
	time_t when = mbn.isdeleted;
	mboxname_release(&mbn);
	if (when_r)
		*when_r = when;
	return when != 0;
}

#define XX 127
/* Modified base64 (RFC 3501 5.1.3): A-Z a-z 0-9 + , */
static int mod64(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return XX;
}

/*
 * One "&...-" run starting after the '&'; *p is advanced past the '-'.
 * Returns 0, or -1 with the reason. The bytes are read through a length
 * bound, unlike Cyrus, which relies on the terminating NUL.
 */
static int utf7_run(const char **pp, const char *end, bool *encoded,
		    const char **why)
{
	const char *p = *pp;
	unsigned c[8];
	*encoded = false;
#define NEXT(i)                                                            \
	do {                                                               \
		if (p >= end || (c[i] = (unsigned)mod64(                   \
					 (unsigned char)*p++)) == XX) {    \
			*why = "bad modified UTF-7 (not base64)";          \
			return -1;                                         \
		}                                                          \
	} while (0)
	while (p < end && *p != '-') {
		unsigned ucs;
		if (*encoded) {
			*why = "two adjacent modified UTF-7 runs";
			return -1;
		}
		NEXT(0);
		NEXT(1);
		NEXT(2);
		ucs = (c[0] << 10) | (c[1] << 4) | (c[2] >> 2);
		if (!(ucs & 0xff80))
			goto ascii;
		if (p < end && *p == '-') {
			if (c[2] & 0x03)
				goto bits;
			break;
		}
		NEXT(3);
		NEXT(4);
		NEXT(5);
		ucs = ((c[2] & 0x03) << 14) | (c[3] << 8) | (c[4] << 2) |
		      (c[5] >> 4);
		if (!(ucs & 0xff80))
			goto ascii;
		if (p < end && *p == '-') {
			if (c[5] & 0x0f)
				goto bits;
			break;
		}
		NEXT(6);
		NEXT(7);
		ucs = ((c[5] & 0x0f) << 12) | (c[6] << 6) | c[7];
		if (!(ucs & 0xff80))
			goto ascii;
		/*
		 * Cyrus sets its "adjacent run" flag only at the end of the
		 * run, so a long run loops on here: keep going.
		 */
	}
#undef NEXT
	if (p >= end) {
		*why = "unterminated modified UTF-7";
		return -1;
	}
	*encoded = p[-1] != '&';
	*pp = p + 1;
	return 0;
ascii:
	*why = "modified UTF-7 encodes US-ASCII";
	return -1;
bits:
	*why = "modified UTF-7 has non-zero trailing bits";
	return -1;
}

static const char goodchars[] =
	" #$'()*+,-.0123456789:=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_"
	"abcdefghijklmnopqrstuvwxyz~";

/* The character rules of mboxname_policycheck; NULL if fine. */
static const char *check_chars(const char *s, size_t len, bool hasdom)
{
	const char *end = s + len;
	bool sawutf7 = false;
	while (s < end) {
		if (*s == '&') {
			const char *why = NULL;
			bool encoded;
			s++;
			if (sawutf7 && s < end && *s != '-')
				return "two adjacent modified UTF-7 runs";
			if (utf7_run(&s, end, &encoded, &why) < 0)
				return why;
			sawutf7 = encoded;
		} else {
			if (!*s || !(strchr(goodchars, *s) ||
				     (hasdom && *s == '!')))
				return "character not allowed";
			s++;
			sawutf7 = false;
		}
	}
	return NULL;
}

bool mboxname_utf7_valid(const char *s, size_t len)
{
	const char *end = s + len;
	bool sawutf7 = false;
	while (s < end) {
		if (*s == '&') {
			const char *why;
			bool encoded;
			s++;
			if (sawutf7 && s < end && *s != '-')
				return false;
			if (utf7_run(&s, end, &encoded, &why) < 0)
				return false;
			sawutf7 = encoded;
		} else {
			if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
				return false;
			s++;
			sawutf7 = false;
		}
	}
	return true;
}

int mboxname_policycheck(const struct mboxname_ns *ns, const char *name,
			 struct error *err)
{
	const char *orig = name, *why = NULL;
	size_t len = strlen(name);
	bool hasdom = false;

	/* mailboxes.db keys beginning with '$' are reserved. */
	if (name[0] == '$') {
		why = "starts with '$'";
		goto bad;
	}
	/* Cyrus lets anything into the DELETED. hierarchy. */
	if (mboxname_isdeleted(ns, name, NULL))
		return 0;
	if (len > MBOXNAME_MAX) {
		why = "longer than 490 bytes";
		goto bad;
	}
	const char *bang = strchr(name, '!');
	if (bang) {
		if (!ns->virtdomains) {
			why = "'!' without virtdomains";
			goto bad;
		}
		name = bang + 1;
		len = strlen(name);
		hasdom = true;
	}
	if (!len)
		why = "empty";
	else if (name[0] == '.' || name[0] == '~')
		why = "bad first character";
	else if (name[len - 1] == '.')
		why = "ends with '.'";
	else if (strstr(name, ".."))
		why = "empty component";
	else if (strpbrk(name, "\r\n\t"))
		why = "contains CR, LF or TAB";
	else if (!strcmp(name, "user") || !strcmp(name, "user.anyone") ||
		 !strcmp(name, "user.anonymous") || !strncmp(name, "user.%", 6))
		why = "reserved name";
	else
		why = check_chars(name, len, hasdom);
	if (!why)
		return 0;
bad:
	return error_set(err, ERR_DATA, "invalid mailbox name '%s': %s", orig,
			 why);
}
