/*
 * mboxname.h: mailbox names in their three forms (docs/formats/mailbox.md
 * section 1; imap/mboxname.c and imap/mboxlist.c of Cyrus 3.6.1):
 *
 * - internal ("user.bob.Sent", "example.com!user.zed", "DELETED.user.bob.
 *   6560A1B2"): '.' separates, '^' stands for a '.' inside a component;
 * - database (the mailboxes.db key after 'N'): 0x1F separates, 0x1D
 *   follows the domain, '.' is literal;
 * - external (what IMAP clients and the admin tools see): depends on the
 *   namespace (standard or alternate, separator '.' or '/', virtdomains).
 *
 * All three go through the parsed form struct mboxname, as Cyrus's mbname_t
 * does, so that a conversion is parse + print.
 */
#ifndef CYRUS_LIB_MBOXNAME_H
#define CYRUS_LIB_MBOXNAME_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct buf;
struct config;
struct error;

#define MBOXNAME_MAX 490       /* MAX_MAILBOX_NAME */
#define MBOXNAME_DB_HIERSEP '\x1F'
#define MBOXNAME_DB_DOMAINSEP '\x1D'

enum mboxname_virtdomains {
	MBOXNAME_VIRTDOMAINS_OFF,
	MBOXNAME_VIRTDOMAINS_USERID,
	MBOXNAME_VIRTDOMAINS_ON,
};

/* The namespace settings; strings point into the config. */
struct mboxname_ns {
	char hier_sep;   /* '/' with unixhierarchysep, else '.' */
	bool isalt;      /* alternate namespace (never for the admin) */
	bool isadmin;
	bool crossdomains, cdother;
	enum mboxname_virtdomains virtdomains;
	const char *defdomain;     /* NULL: none */
	const char *deletedprefix; /* "DELETED" */
	const char *userprefix, *sharedprefix, *altprefix;
};

/* The namespace of cfg as an admin (isadmin) or a user sees it. */
void mboxname_ns_init(struct mboxname_ns *ns, const struct config *cfg,
		      bool isadmin);

/* The parsed form. boxes are plain components ('.' unescaped). */
struct mboxname {
	char *domain;    /* NULL: the default domain */
	char *localpart; /* NULL: a shared mailbox */
	char **boxes;
	size_t nboxes;
	time_t isdeleted; /* 0, or the deletion time of a DELETED. name */
};

void mboxname_init(struct mboxname *mbn);
void mboxname_release(struct mboxname *mbn);

/* Parsers, as Cyrus's mbname_from_*; they cannot fail (any string is
 * some name), check with mboxname_policycheck(). */
void mboxname_from_intname(const struct mboxname_ns *ns,
			   struct mboxname *mbn, const char *intname);
void mboxname_from_dbname(const struct mboxname_ns *ns, struct mboxname *mbn,
			  const char *dbname, size_t len);
/* "bob" or "bob@example.com". */
void mboxname_from_userid(const struct mboxname_ns *ns, struct mboxname *mbn,
			  const char *userid);
/*
 * An external name as userid (NULL for none; the admin tools use
 * "cyrus") sees it. Returns -1 (ERR_DATA) for a name no mailbox has,
 * e.g. one with '/' in a component with the '.' separator.
 */
int mboxname_from_extname(const struct mboxname_ns *ns, struct mboxname *mbn,
			  const char *extname, const char *userid,
			  struct error *err);

/* Printers: each appends to out. */
void mboxname_intname(const struct mboxname_ns *ns,
		      const struct mboxname *mbn, struct buf *out);
void mboxname_dbname(const struct mboxname_ns *ns,
		     const struct mboxname *mbn, struct buf *out);
/* Returns false (and appends nothing) if userid cannot see the name. */
bool mboxname_extname(const struct mboxname_ns *ns,
		      const struct mboxname *mbn, const char *userid,
		      struct buf *out);
/* "localpart[@domain]"; false for a shared mailbox. */
bool mboxname_userid(const struct mboxname *mbn, struct buf *out);

/* Shortcuts; each returns a malloc'd string, caller frees. */
char *mboxname_intname_to_dbname(const struct mboxname_ns *ns,
				 const char *intname);
char *mboxname_dbname_to_intname(const struct mboxname_ns *ns,
				 const char *dbname, size_t len);

/*
 * Cyrus's mboxname_policycheck() for a new internal name: 0 if allowed,
 * else -1 with ERR_DATA and the reason. Names in the DELETED. hierarchy
 * pass unchecked, as in Cyrus.
 */
int mboxname_policycheck(const struct mboxname_ns *ns, const char *intname,
			 struct error *err);

/*
 * True if s[0..len) is valid IMAP modified UTF-7 as Cyrus checks it:
 * every '&' starts base64 (A-Za-z0-9+,) ended by '-', encoding no US-ASCII
 * character, with zero trailing bits, no two encoded runs adjacent; "&-"
 * is '&'. Other bytes must be printable ASCII.
 */
bool mboxname_utf7_valid(const char *s, size_t len);

/* True if intname is in the DELETED. hierarchy (Cyrus's
 * mboxname_isdeletedmailbox); *when_r (may be NULL) gets the time. */
bool mboxname_isdeleted(const struct mboxname_ns *ns, const char *intname,
			time_t *when_r);

#endif
